"""Field transforms between HubSpot's wire values and an app's native values.

Every transform has four functions around one *canonical* value (a string or None):

    hub_canon(wire) -> canon      app_canon(native) -> canon
    to_hub(canon)  -> wire        to_app(canon)     -> native

and round-trips: `hub_canon(to_hub(c)) == c` and `app_canon(to_app(c)) == c` for every canonical
`c` (a property test). Every HubSpot value is a string on the wire; "" clears a value.
An unreadable value raises InvalidValue, which the decision turns into `invalid_value`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from crmsync.engine.types import Canon

_UTC = dt.UTC


class InvalidValue(ValueError):
    """A value that cannot be read as the mapping's type; the message says which and why."""


class SkipField(InvalidValue):
    """A value that cannot be written to the other side although nothing is wrong with the
    record (a record owner the other side does not know): the decision goes on without the
    field and keeps a field-level warning. Code that knows no better treats it as an
    InvalidValue of that field alone."""


def _empty(v: Any) -> bool:
    return v is None or (isinstance(v, str) and v.strip() == "")


# --- string ---------------------------------------------------------------------------------


def _str_canon(v: Any) -> Canon:
    if type(v) is str:  # nearly every value: HubSpot sends strings
        return v if v != "" else None
    if v is None:
        return None
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    s = v if isinstance(v, str) else str(v)
    return s if s != "" else None


def _str_out(c: Canon) -> str:
    return "" if c is None else c


def _str_app(c: Canon) -> Any:
    return c


# --- number ---------------------------------------------------------------------------------


# Beyond these magnitudes a value is no number any CRM stores (HubSpot's are doubles, up to
# 1.8e308), and writing it out in full would take memory without bound ("1e999999999").
_MAX_EXPONENT = 1000


def _num_canon(v: Any) -> Canon:
    if type(v) is str and len(v) <= 18 and v.isascii() and v.isdigit():
        return str(int(v))  # the common case, without a Decimal: "007" -> "7"
    if _empty(v):
        return None
    if isinstance(v, bool):
        raise InvalidValue(f"{v!r} is not a number")
    try:
        d = Decimal(str(v).strip())
    except InvalidOperation:
        raise InvalidValue(f"{v!r} is not a number") from None
    if not d.is_finite():
        raise InvalidValue(f"{v!r} is not a finite number")
    if d == 0:
        return "0"  # -0 and 0.000 are 0
    if not -_MAX_EXPONENT <= d.adjusted() <= _MAX_EXPONENT:
        raise InvalidValue(f"{str(v)[:40]!r} is outside the numbers crmsync handles "
                           f"(1e-{_MAX_EXPONENT} to 1e{_MAX_EXPONENT})")
    # format() is exact at any size; normalize() would round to the context's 28 digits and
    # str(int(d)) stops at Python's 4,300-digit limit.
    text = format(d, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def _num_app(c: Canon) -> Any:
    if c is None:
        return None
    d = Decimal(c)
    if d == d.to_integral_value() and abs(d) < 2**53:
        return int(d)
    return c  # kept as text: a float would lose digits


# --- bool -----------------------------------------------------------------------------------

_TRUE = frozenset({"true", "1", "yes", "y", "t", "on"})
_FALSE = frozenset({"false", "0", "no", "n", "f", "off"})


def _bool_canon(v: Any) -> Canon:
    if _empty(v):
        return None
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        if v in (0, 1):
            return "true" if v == 1 else "false"
        raise InvalidValue(f"{v!r} is not a boolean")
    s = str(v).strip().lower()
    if s in _TRUE:
        return "true"
    if s in _FALSE:
        return "false"
    raise InvalidValue(f"{v!r} is not a boolean")


def _bool_app(c: Canon) -> Any:
    return None if c is None else c == "true"


# --- date and datetime ------------------------------------------------------------------------


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MS = dt.timedelta(milliseconds=1)


def _epoch_ms(v: Any, seconds_by_size: bool) -> int | None:
    """Epoch milliseconds from a number or numeric string, or None if `v` is not numeric.

    HubSpot always sends milliseconds. An app may store seconds: with `seconds_by_size`,
    a magnitude below 1e11 is read as seconds (1e11 s is the year 5138; 1e11 ms is 1973,
    so app values in milliseconds before March 1973 are the price of guessing).
    """
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        n: Decimal = Decimal(v)
    elif isinstance(v, float):
        n = Decimal(repr(v))
    else:
        text = str(v).strip()
        if not text.lstrip("-").replace(".", "", 1).isdigit():
            return None
        n = Decimal(text)
    if seconds_by_size and abs(n) < Decimal(10) ** 11:
        n = n * 1000
    return int(n.to_integral_value())


def _from_ms(ms: int) -> dt.datetime:
    return _EPOCH + dt.timedelta(milliseconds=ms)


def _to_ms(d: dt.datetime) -> int:
    d = d if d.tzinfo else d.replace(tzinfo=_UTC)  # naive app timestamps are taken as UTC
    return (d - _EPOCH) // _MS


def _parse_iso(s: str) -> dt.datetime:
    text = s.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        d = dt.datetime.fromisoformat(text)
    except ValueError:
        raise InvalidValue(f"{s!r} is not a date or time") from None
    if d.tzinfo is None:
        d = d.replace(tzinfo=_UTC)
    return d


def _in_range(fn: Callable[[Any], Any], what: str) -> Callable[[Any], Any]:
    """Dates outside what Python's datetime holds (years 1-9999) are invalid values."""

    def guarded(v: Any) -> Any:
        try:
            return fn(v)
        except InvalidValue:
            raise
        except (OverflowError, OSError, ValueError, ArithmeticError):
            raise InvalidValue(f"{v!r} is not a {what} crmsync can represent") from None

    return guarded


def _date_reader(seconds_by_size: bool) -> Callable[[Any], Canon]:
    def canon(v: Any) -> Canon:
        if _empty(v):
            return None
        if isinstance(v, dt.datetime):
            return v.date().isoformat()
        if isinstance(v, dt.date):
            return v.isoformat()
        ms = _epoch_ms(v, seconds_by_size)
        if ms is not None:
            return _from_ms(ms).date().isoformat()
        text = str(v).strip()
        if len(text) == 10:
            try:
                return dt.date.fromisoformat(text).isoformat()
            except ValueError:
                raise InvalidValue(f"{v!r} is not a date") from None
        return _parse_iso(text).astimezone(_UTC).date().isoformat()

    return _in_range(canon, "date")


def _date_out(c: Canon) -> str:
    return "" if c is None else c


def _datetime_reader(seconds_by_size: bool) -> Callable[[Any], Canon]:
    def canon(v: Any) -> Canon:
        if _empty(v):
            return None
        if isinstance(v, dt.datetime):
            return str(_to_ms(v))
        ms = _epoch_ms(v, seconds_by_size)
        if ms is not None:
            _from_ms(ms)  # in range?
            return str(ms)
        return str(_to_ms(_parse_iso(str(v))))

    return _in_range(canon, "date and time")


def _datetime_iso_raw(c: Canon) -> Any:
    if c is None:
        return None
    return _from_ms(int(c)).isoformat(timespec="milliseconds").replace("+00:00", "Z")


_datetime_iso = _in_range(_datetime_iso_raw, "date and time")


def _datetime_hub(c: Canon) -> str:
    return "" if c is None else _datetime_iso(c)


class Transform:
    """The four functions of one mapping's transform."""

    __slots__ = ("app_canon", "hub_canon", "kind", "to_app", "to_hub")

    def __init__(
        self,
        kind: str,
        hub_canon: Callable[[Any], Canon],
        app_canon: Callable[[Any], Canon],
        to_hub: Callable[[Canon], str],
        to_app: Callable[[Canon], Any],
    ) -> None:
        self.kind = kind
        self.hub_canon = hub_canon
        self.app_canon = app_canon
        self.to_hub = to_hub
        self.to_app = to_app


STRING = Transform("string", _str_canon, _str_canon, _str_out, _str_app)


def _email_canon(v: Any) -> Canon:
    s = _str_canon(v)
    return None if s is None else (s.strip().lower() or None)


# Email addresses compare case-insensitively (as they match): "Ann@X.com" is not a change.
EMAIL = Transform("email", _email_canon, _email_canon, _str_out, _str_app)
NUMBER = Transform("number", _num_canon, _num_canon, _str_out, _num_app)
BOOL = Transform("bool", _bool_canon, _bool_canon, _str_out, _bool_app)
DATE = Transform("date", _date_reader(False), _date_reader(True), _date_out, _str_app)
DATETIME = Transform("datetime", _datetime_reader(False), _datetime_reader(True), _datetime_hub,
                     _datetime_iso)


def enum_transform(options: Mapping[str, str]) -> Transform:
    """Enumeration with an option map app value -> HubSpot option value.

    HubSpot's enumeration values are case-sensitive; app values are matched exactly first and
    then case-insensitively, so "GOLD" in the app reads as the "gold" option.
    """
    to_hub_map = dict(options)
    folded = {k.casefold(): v for k, v in options.items()}
    to_app_map = {v: k for k, v in options.items()}

    def app_canon(v: Any) -> Canon:
        s = _str_canon(v)
        if s is None:
            return None
        hit = to_hub_map.get(s)
        if hit is None:
            hit = folded.get(s.casefold())
        if hit is None:
            raise InvalidValue(f"{s!r} is not one of the mapped options "
                               f"({', '.join(sorted(to_hub_map))})")
        return hit

    def hub_canon(v: Any) -> Canon:
        return _str_canon(v)

    def to_app(c: Canon) -> Any:
        if c is None:
            return None
        hit = to_app_map.get(c)
        if hit is None:
            raise InvalidValue(f"HubSpot option {c!r} has no app value in the option map")
        return hit

    return Transform("enum", hub_canon, app_canon, _str_out, to_app)


def multiselect_transform(separator: str) -> Transform:
    """Multi-select: HubSpot joins values with ";", the app with `separator`.

    The canonical value is the set of options, sorted, so reordering is not a change.
    """

    def canon_with(sep: str) -> Callable[[Any], Canon]:
        def canon(v: Any) -> Canon:
            if _empty(v):
                return None
            items = v if isinstance(v, list | tuple) else str(v).split(sep)
            parts = sorted({str(p).strip() for p in items if str(p).strip()})
            return ";".join(parts) or None

        return canon

    def to_app(c: Canon) -> Any:
        return None if c is None else separator.join(c.split(";"))

    return Transform("multiselect", canon_with(";"), canon_with(separator), _str_out, to_app)


SIMPLE: dict[str, Transform] = {
    "string": STRING,
    "number": NUMBER,
    "bool": BOOL,
    "date": DATE,
    "datetime": DATETIME,
}
