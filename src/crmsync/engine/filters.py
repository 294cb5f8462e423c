"""Filters that decide which records are first brought into an object sync.

Values compare as numbers when both sides read as numbers (codes with leading zeros stay
text), as instants when the filter value is an ISO date, else as case-insensitive text
(HubSpot's own search compares case-insensitively). A missing value fails every operator but
NEQ, NOT_IN and NOT_HAS_PROPERTY.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

import msgspec


class CompiledFilter(msgspec.Struct, frozen=True):
    side: str
    property: str
    operator: str
    value: str | None = None
    values: tuple[str, ...] = ()

    def describe(self) -> str:
        if self.operator in ("IN", "NOT_IN"):
            return f"{self.side}.{self.property} {self.operator} [{', '.join(self.values)}]"
        if self.operator in ("HAS_PROPERTY", "NOT_HAS_PROPERTY"):
            return f"{self.side}.{self.property} {self.operator}"
        return f"{self.side}.{self.property} {self.operator} {self.value}"


def _num(v: Any) -> Decimal | None:
    """A number, unless the text is a code that merely looks like one ("02134", "007")."""
    if isinstance(v, bool):
        return None
    text = str(v).strip()
    digits = text.lstrip("+-")
    if len(digits) > 1 and digits[0] == "0" and digits[1] != ".":
        return None
    try:
        d = Decimal(text)
    except (InvalidOperation, ValueError):
        return None
    return d if d.is_finite() else None


def _instant(v: Any) -> float | None:
    """An ISO date or date-time as epoch milliseconds (UTC when no zone is given)."""
    text = str(v).strip()
    if len(text) < 10 or text[4:5] != "-":
        return None
    try:
        d = dt.datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    if d.tzinfo is None:
        d = d.replace(tzinfo=dt.UTC)
    return d.timestamp() * 1000


def _text(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v).strip().casefold()


def _compare(a: Any, b: str) -> int:
    """Numbers as numbers; an ISO date filter value against a date or epoch-ms value as
    instants (HubSpot sends dates as epoch milliseconds); anything else as folded text."""
    tb = _instant(b)
    if tb is not None:
        ta = _instant(a)
        if ta is None:
            na = _num(a)
            ta = float(na) if na is not None else None
        if ta is not None:
            return (ta > tb) - (ta < tb)
    na, nb = _num(a), _num(b)
    if na is not None and nb is not None:
        return (na > nb) - (na < nb)
    sa, sb = _text(a), _text(b)
    return (sa > sb) - (sa < sb)


def matches(f: CompiledFilter, props: Mapping[str, Any]) -> bool:
    raw = props.get(f.property)
    present = raw is not None and not (isinstance(raw, str) and raw.strip() == "")
    op = f.operator
    if op == "HAS_PROPERTY":
        return present
    if op == "NOT_HAS_PROPERTY":
        return not present
    if op in ("IN", "NOT_IN"):
        inside = present and any(_compare(raw, v) == 0 for v in f.values)
        return inside if op == "IN" else not inside
    if not present:
        return op == "NEQ"
    assert f.value is not None
    if op == "CONTAINS":
        return _text(f.value) in _text(raw)
    c = _compare(raw, f.value)
    if op == "EQ":
        return c == 0
    if op == "NEQ":
        return c != 0
    if op == "LT":
        return c < 0
    if op == "LTE":
        return c <= 0
    if op == "GT":
        return c > 0
    if op == "GTE":
        return c >= 0
    raise ValueError(f"unknown filter operator {op!r}")


def first_mismatch(
    filters: tuple[CompiledFilter, ...], side: str, props: Mapping[str, Any]
) -> CompiledFilter | None:
    """The first filter on `side` that the record does not pass, or None."""
    for f in filters:
        if f.side == side and not matches(f, props):
            return f
    return None
