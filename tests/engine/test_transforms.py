"""Field transforms (issue 2 §3): every HubSpot value is a string on the wire; dates and times
come as epoch milliseconds or ISO strings; canonical values compare by meaning ("10" == "10.0");
and every transform round-trips its canonical values through both sides."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from crmsync.engine.transforms import (
    BOOL,
    DATE,
    DATETIME,
    NUMBER,
    STRING,
    InvalidValue,
    Transform,
    enum_transform,
    multiselect_transform,
)

UTC = dt.UTC
OPTIONS = {"Gold": "gold", "Silver": "silver", "Bronze Plus": "bronze_plus"}
ENUM = enum_transform(OPTIONS)
MULTI_SEMI = multiselect_transform(";")
MULTI_COMMA = multiselect_transform(",")


def ms(*args: int) -> int:
    """Epoch milliseconds of a UTC date/time."""
    return int(dt.datetime(*args, tzinfo=UTC).timestamp()) * 1000  # type: ignore[misc]


def both_canon(t: Transform, v: Any) -> tuple[Any, Any]:
    return t.hub_canon(v), t.app_canon(v)


# --- string ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "canon"), [
    (None, None), ("", None), ("Acme", "Acme"), ("São Paulo", "São Paulo"),
    (10, "10"), (10.0, "10"), (True, "true"),
])
def test_string_canon(value: Any, canon: Any) -> None:
    assert both_canon(STRING, value) == (canon, canon)


def test_string_writes_empty_as_an_empty_hub_string() -> None:
    assert STRING.to_hub(None) == ""  # "" clears a HubSpot property
    assert STRING.to_app(None) is None


# --- number ---------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["10", "10.0", "10.00", " 10 ", "1e1", "+10", 10, 10.0,
                                   Decimal("10.000")])
def test_number_ten_is_ten_however_written(value: Any) -> None:
    assert both_canon(NUMBER, value) == ("10", "10")


@pytest.mark.parametrize(("value", "canon"), [
    ("10.50", "10.5"), ("-2.250", "-2.25"), (0.1, "0.1"), ("1.5e-7", "0.00000015"),
    ("1234567890123", "1234567890123"), ("", None), (None, None), ("  ", None),
    ("007", "7"), ("0000", "0"), ("\u0661\u0662", "12"),  # Arabic-Indic digits are digits too
])
def test_number_canon(value: Any, canon: Any) -> None:
    assert both_canon(NUMBER, value) == (canon, canon)


@pytest.mark.parametrize("zero", ["-0", "-0.0", -0.0, "0.000", 0])
def test_number_negative_zero_is_zero(zero: Any) -> None:
    # An app computing with floats can hold -0.0; it is the same number as HubSpot's "0".
    assert NUMBER.hub_canon(zero) == NUMBER.hub_canon("0") == NUMBER.app_canon(zero)


@pytest.mark.parametrize("value", ["abc", "1,000", "12abc", "NaN", "Infinity", "-inf", True,
                                   False])
def test_number_rejects_non_numbers(value: Any) -> None:
    with pytest.raises(InvalidValue):
        NUMBER.hub_canon(value)
    with pytest.raises(InvalidValue):
        NUMBER.app_canon(value)


@pytest.mark.parametrize("value", ["1e30", "12345678901234567890123456789", 1e28, "1e400",
                                   "9" * 5000, "1e5000", "1e999999999", "1e-999999999",
                                   "-" + "7" * 4301])
def test_number_huge_values_are_read_or_rejected_as_invalid(value: Any) -> None:
    """A huge number is a number: read it exactly, or at worst raise InvalidValue (which the
    decision turns into fail(invalid_value)) - never another exception."""
    try:
        c = NUMBER.hub_canon(value)
    except InvalidValue:
        return
    assert c is not None and Decimal(c) == Decimal(str(value))


def test_number_magnitude_is_bounded_not_the_digits() -> None:
    # Long but plausible numbers are read exactly; absurd magnitudes are invalid values,
    # never a ValueError from Python's int/str digit limit or an unbounded string.
    long = "1" + "0" * 999
    assert NUMBER.hub_canon(long) == NUMBER.hub_canon("1e999") == long
    assert NUMBER.hub_canon("-" + "12" * 400 + ".50") == "-" + "12" * 400 + ".5"
    for absurd in ("1e1001", "-1e5000", "1e-1001", "9" * 5000):
        with pytest.raises(InvalidValue, match="outside the numbers crmsync handles"):
            NUMBER.hub_canon(absurd)


def test_number_writes_integers_as_ints_to_the_app() -> None:
    assert NUMBER.to_app("10") == 10
    assert NUMBER.to_hub("10") == "10"
    assert NUMBER.app_canon(NUMBER.to_app("10.5")) == "10.5"


# --- bool -----------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["true", "True", "TRUE", " true ", "1", "yes", "Y", "on",
                                   True, 1])
def test_bool_true_variants(value: Any) -> None:
    assert both_canon(BOOL, value) == ("true", "true")


@pytest.mark.parametrize("value", ["false", "False", "0", "no", "N", "off", False, 0])
def test_bool_false_variants(value: Any) -> None:
    assert both_canon(BOOL, value) == ("false", "false")


@pytest.mark.parametrize("value", ["maybe", "2", 2, "truthy"])
def test_bool_rejects_other_values(value: Any) -> None:
    with pytest.raises(InvalidValue):
        BOOL.app_canon(value)


def test_bool_writes() -> None:
    assert BOOL.to_hub("true") == "true" and BOOL.to_hub("false") == "false"
    assert BOOL.to_app("true") is True and BOOL.to_app("false") is False
    assert BOOL.to_hub(None) == "" and BOOL.to_app(None) is None
    assert BOOL.hub_canon("") is None


# --- date -----------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [
    str(ms(2024, 1, 2)), ms(2024, 1, 2), "2024-01-02", "2024-01-02T00:00:00Z",
    "2024-01-02T00:00:00.000Z", dt.date(2024, 1, 2), dt.datetime(2024, 1, 2),
])
def test_date_from_epoch_ms_and_iso(value: Any) -> None:
    assert both_canon(DATE, value) == ("2024-01-02", "2024-01-02")


@pytest.mark.parametrize("day", [
    dt.date(1971, 5, 20),  # epoch ms 43545600000: a small number, still milliseconds
    dt.date(1969, 7, 20),  # negative epoch ms of a realistic birth date
    dt.date(1966, 11, 5),
    dt.date(1973, 1, 1),
    dt.date(1960, 1, 1),
])
def test_date_from_hubspot_epoch_ms_near_1970(day: dt.date) -> None:
    """HubSpot sends a date property as the epoch milliseconds of midnight UTC. A birth date
    around 1970 has a small epoch-ms value; it is still milliseconds, never seconds."""
    wire = str(ms(day.year, day.month, day.day))
    assert DATE.hub_canon(wire) == day.isoformat()


@pytest.mark.parametrize("value", ["soon", "2024-13-45", "2024-02-30", "31/12/2024",
                                   "99999999999999999"])
def test_date_rejects_non_dates(value: Any) -> None:
    with pytest.raises(InvalidValue):
        DATE.hub_canon(value)


# --- datetime -------------------------------------------------------------------------------

T = ms(2024, 1, 2, 15, 4, 5) + 123


@pytest.mark.parametrize("value", [
    str(T), T, "2024-01-02T15:04:05.123Z", "2024-01-02T16:04:05.123+01:00",
    "2024-01-02T15:04:05.123", "2024-01-02 15:04:05.123+00:00",
])
def test_datetime_from_epoch_ms_and_iso(value: Any) -> None:
    assert both_canon(DATETIME, value) == (str(T), str(T))


@pytest.mark.parametrize("when", [
    dt.datetime(1971, 5, 20, 8, 30, tzinfo=UTC),
    dt.datetime(1969, 12, 31, 23, 0, tzinfo=UTC),
    dt.datetime(1968, 1, 12, 12, 0, tzinfo=UTC),
])
def test_datetime_from_hubspot_epoch_ms_near_1970(when: dt.datetime) -> None:
    wire = str(int(when.timestamp() * 1000))
    assert DATETIME.hub_canon(wire) == wire


@given(st.datetimes(min_value=dt.datetime(1900, 1, 1), max_value=dt.datetime(2200, 1, 1))
       .map(lambda d: d.replace(microsecond=d.microsecond // 1000 * 1000, tzinfo=UTC)))
@example(dt.datetime(2004, 4, 2, 3, 13, 14, 968000, tzinfo=UTC))
def test_datetime_objects_read_like_their_iso_text(when: dt.datetime) -> None:
    """An app column holding a datetime object (millisecond precision) reads as the same
    canonical value as its ISO text (what HubSpot sends)."""
    assert DATETIME.app_canon(when) == DATETIME.hub_canon(when.isoformat())


def test_datetime_writes_iso_utc() -> None:
    assert DATETIME.to_hub(str(T)) == "2024-01-02T15:04:05.123Z"
    assert DATETIME.to_app(str(T)) == "2024-01-02T15:04:05.123Z"
    assert DATETIME.to_hub(None) == ""


@pytest.mark.parametrize("value", ["yesterday", "2024-01-02T25:00:00Z"])
def test_datetime_rejects_non_times(value: Any) -> None:
    with pytest.raises(InvalidValue):
        DATETIME.hub_canon(value)


# --- enum -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("app", "hub"), [
    ("Gold", "gold"), ("GOLD", "gold"), ("gold", "gold"), ("Bronze Plus", "bronze_plus"),
    ("bronze plus", "bronze_plus"), (None, None), ("", None),
])
def test_enum_reads_app_values_through_the_option_map(app: Any, hub: Any) -> None:
    assert ENUM.app_canon(app) == hub


def test_enum_writes_through_the_option_map() -> None:
    assert ENUM.hub_canon("silver") == "silver"
    assert ENUM.to_hub("silver") == "silver"
    assert ENUM.to_app("silver") == "Silver"
    assert ENUM.to_app("bronze_plus") == "Bronze Plus"


def test_enum_rejects_unmapped_options() -> None:
    with pytest.raises(InvalidValue):
        ENUM.app_canon("Platinum")
    with pytest.raises(InvalidValue):
        ENUM.to_app("platinum")  # a HubSpot option with no app value


# --- multi-select ---------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "canon"), [
    ("red;blue", "blue;red"), ("blue;red", "blue;red"), ("red;red", "red"),
    (" red ; blue ;", "blue;red"), (";;", None), ("", None), (None, None),
])
def test_multiselect_hub_values_joined_with_semicolons(value: Any, canon: Any) -> None:
    assert MULTI_SEMI.hub_canon(value) == canon
    assert MULTI_COMMA.hub_canon(value) == canon  # HubSpot always uses ";"


@pytest.mark.parametrize(("value", "canon"), [
    ("red,blue", "blue;red"), ("blue, red", "blue;red"), (["red", "blue"], "blue;red"),
    (("blue",), "blue"), ([], None),
])
def test_multiselect_app_values_with_their_own_separator(value: Any, canon: Any) -> None:
    assert MULTI_COMMA.app_canon(value) == canon


def test_multiselect_writes() -> None:
    assert MULTI_COMMA.to_hub("blue;red") == "blue;red"
    assert MULTI_COMMA.to_app("blue;red") == "blue,red"
    assert MULTI_SEMI.to_app("blue;red") == "blue;red"


# --- round trips: to_hub then hub_canon, to_app then app_canon give back the canonical value ---


def assert_round_trip(t: Transform, canon: Any) -> None:
    assert t.hub_canon(t.to_hub(canon)) == canon, f"hub: {t.to_hub(canon)!r}"
    assert t.app_canon(t.to_app(canon)) == canon, f"app: {t.to_app(canon)!r}"


@given(st.one_of(st.none(), st.text(min_size=1)))
def test_string_round_trips(canon: Any) -> None:
    assert_round_trip(STRING, canon)


@given(st.decimals(min_value=-(10**20), max_value=10**20, allow_nan=False,
                   allow_infinity=False))
@example(Decimal("-0.0"))  # an app's float -0.0 reaches HubSpot as "-0"
def test_number_round_trips(value: Decimal) -> None:
    canon = NUMBER.hub_canon(str(value))
    assert_round_trip(NUMBER, canon)


@given(st.sampled_from([None, "true", "false"]))
def test_bool_round_trips(canon: Any) -> None:
    assert_round_trip(BOOL, canon)


@given(st.one_of(st.none(), st.dates().map(dt.date.isoformat)))
def test_date_round_trips(canon: Any) -> None:
    assert_round_trip(DATE, canon)


@given(st.one_of(st.none(), st.integers(ms(1900, 1, 1), ms(2200, 1, 1)).map(str)))
def test_datetime_round_trips(canon: Any) -> None:
    assert_round_trip(DATETIME, canon)


@given(st.one_of(st.none(), st.sampled_from(sorted(OPTIONS.values()))))
def test_enum_round_trips(canon: Any) -> None:
    assert_round_trip(ENUM, canon)


OPTION = st.text(st.characters(codec="utf-8", exclude_characters=";,|"), min_size=1,
                 max_size=8).map(str.strip).filter(bool)


@given(st.lists(OPTION, min_size=1, max_size=5), st.sampled_from([";", ",", "|"]))
def test_multiselect_round_trips(options: list[str], separator: str) -> None:
    # Options that contain the app's separator cannot survive any join; they are not drawn.
    t = multiselect_transform(separator)
    canon = ";".join(sorted(set(options)))
    assert t.hub_canon(canon) == canon  # the canonical form
    assert_round_trip(t, canon)
