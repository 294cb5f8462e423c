"""Filters (issue 2 §3): EQ, NEQ, LT, LTE, GT, GTE, IN, NOT_IN, HAS_PROPERTY,
NOT_HAS_PROPERTY, CONTAINS. Values compare as numbers when both read as numbers, else as
case-insensitive text; a missing value fails every operator but NEQ, NOT_IN and
NOT_HAS_PROPERTY (crmsync.engine.filters)."""

from __future__ import annotations

from typing import Any

import pytest

from crmsync.config.model import Filter, ObjectSync
from crmsync.engine import compile_rules
from crmsync.engine.filters import CompiledFilter, first_mismatch, matches


def f(op: str, value: str | None = None, values: tuple[str, ...] = ()) -> CompiledFilter:
    return CompiledFilter("hub", "p", op, value, values)


def check(op: str, raw: Any, value: str | None = None, values: tuple[str, ...] = ()) -> bool:
    props = {} if raw is MISSING else {"p": raw}
    return matches(f(op, value, values), props)


MISSING = object()


@pytest.mark.parametrize(("op", "raw", "value", "expected"), [
    # numbers compare as numbers
    ("EQ", "10", "10.0", True), ("EQ", 10, "10", True), ("EQ", "10", "9", False),
    ("NEQ", "10", "10.0", False), ("NEQ", "10", "9", True),
    ("LT", "9", "10", True), ("LT", "10", "9", False), ("LT", "10", "10", False),
    ("LTE", "10", "10.00", True), ("LTE", "11", "10", False), ("LTE", "-1", "0", True),
    ("GT", "100", "20", True), ("GT", "20", "100", False), ("GT", 2.5, "2", True),
    ("GTE", "20", "20", True), ("GTE", "19.99", "20", False), ("GTE", "1e3", "999", True),
    # text compares case-insensitively
    ("EQ", "Acme", "acme", True), ("EQ", "Acme", "Globex", False),
    ("NEQ", "Acme", "ACME", False), ("NEQ", "Acme", "Globex", True),
    ("LT", "apple", "Banana", True), ("GT", "cherry", "banana", True),
    ("LTE", "apple", "APPLE", True), ("GTE", "apple", "banana", False),
    # dates as ISO text order like dates
    ("LT", "2023-12-31", "2024-01-01", True), ("GTE", "2024-06-01", "2024-01-01", True),
    # a number against text compares as text
    ("EQ", "10", "ten", False),
    # booleans
    ("EQ", True, "true", True), ("EQ", False, "true", False), ("EQ", "false", "FALSE", True),
    ("CONTAINS", "Acme Corporation", "corp", True), ("CONTAINS", "Acme", "globex", False),
    ("CONTAINS", "jane@EXAMPLE.com", "@example.com", True),
])
def test_operators(op: str, raw: Any, value: str, expected: bool) -> None:
    assert check(op, raw, value) is expected


@pytest.mark.parametrize(("op", "raw", "values", "expected"), [
    ("IN", "Gold", ("gold", "silver"), True), ("IN", "bronze", ("gold", "silver"), False),
    ("IN", "10.0", ("10", "20"), True), ("IN", 20, ("10", "20"), True),
    ("NOT_IN", "bronze", ("gold", "silver"), True), ("NOT_IN", "GOLD", ("gold",), False),
    ("NOT_IN", "10", ("10.00",), False),
])
def test_in_and_not_in(op: str, raw: Any, values: tuple[str, ...], expected: bool) -> None:
    assert check(op, raw, values=values) is expected


@pytest.mark.parametrize(("raw", "present"), [
    ("x", True), (0, True), ("0", True), (False, True), ("", False), ("   ", False),
    (None, False), (MISSING, False),
])
def test_has_property(raw: Any, present: bool) -> None:
    assert check("HAS_PROPERTY", raw) is present
    assert check("NOT_HAS_PROPERTY", raw) is not present


@pytest.mark.parametrize("raw", [MISSING, None, ""])
@pytest.mark.parametrize(("op", "value", "values", "expected"), [
    ("EQ", "x", (), False), ("NEQ", "x", (), True), ("LT", "10", (), False),
    ("LTE", "10", (), False), ("GT", "10", (), False), ("GTE", "10", (), False),
    ("IN", None, ("x",), False), ("NOT_IN", None, ("x",), True),
    ("CONTAINS", "x", (), False),
])
def test_a_missing_value(raw: Any, op: str, value: str | None, values: tuple[str, ...],
                         expected: bool) -> None:
    assert check(op, raw, value, values) is expected


def test_first_mismatch_only_looks_at_its_side() -> None:
    filters = (
        CompiledFilter("hub", "lifecyclestage", "EQ", "customer"),
        CompiledFilter("app", "status", "NEQ", "archived"),
    )
    hub_ok = {"lifecyclestage": "Customer"}
    assert first_mismatch(filters, "hub", hub_ok) is None
    assert first_mismatch(filters, "hub", {"lifecyclestage": "lead"}) == filters[0]
    assert first_mismatch(filters, "app", {"status": "active"}) is None
    assert first_mismatch(filters, "app", {"status": "Archived"}) == filters[1]


def test_every_configured_filter_compiles() -> None:
    """Every operator the config accepts is one the engine evaluates."""
    ops = ["EQ", "NEQ", "LT", "LTE", "GT", "GTE", "IN", "NOT_IN", "HAS_PROPERTY",
           "NOT_HAS_PROPERTY", "CONTAINS"]
    sync = ObjectSync(
        connection="shop", hub_object="contacts", app_object="customers",
        filters=[Filter(side="hub", property="email", operator=op,  # type: ignore[arg-type]
                        value="x", values=["x"]) for op in ops])
    rules = compile_rules(sync)
    assert [c.operator for c in rules.filters] == ops
    for c in rules.filters:
        matches(c, {"email": "x"})  # no "unknown operator"
