"""`POST /crm/v3/objects/{type}/search`: request validation and evaluation (fact sheet §2)."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .errors import validation_error
from .objects import ObjectType, resolve
from .properties import PropertyDef
from .search_index import Key, PropertyIndex, sort_key, typed
from .state import CrmState, StoredRecord
from .values import parse_instant_ms

MAX_GROUPS = 5
MAX_FILTERS_PER_GROUP = 6
MAX_FILTERS = 18
DEFAULT_LIMIT = 10
MAX_LIMIT = 200
MAX_RESULTS = 10_000
MAX_BODY_CHARS = 3_000

OPERATORS = frozenset(
    {
        "EQ",
        "NEQ",
        "LT",
        "LTE",
        "GT",
        "GTE",
        "BETWEEN",
        "IN",
        "NOT_IN",
        "HAS_PROPERTY",
        "NOT_HAS_PROPERTY",
        "CONTAINS_TOKEN",
        "NOT_CONTAINS_TOKEN",
    }
)
_TOKEN_SPLIT = re.compile(r"[^\w]+")


@dataclass(frozen=True)
class Filter:
    property_name: str
    operator: str
    value: str | None
    high_value: str | None
    values: tuple[str, ...]


@dataclass(frozen=True)
class SearchRequest:
    groups: tuple[tuple[Filter, ...], ...]
    sort_property: str
    descending: bool
    query: str | None
    properties: tuple[str, ...] | None
    limit: int
    after: int


def parse_request(body: Any) -> SearchRequest:
    """Checks a decoded search body against HubSpot's limits; 400 VALIDATION_ERROR otherwise."""
    if not isinstance(body, dict):
        raise validation_error("Invalid input JSON: expected an object")
    raw_groups = body.get("filterGroups") or []
    if not isinstance(raw_groups, list):
        raise validation_error("filterGroups must be a list")
    if len(raw_groups) > MAX_GROUPS:
        raise validation_error(
            f"Too many filter groups: {len(raw_groups)}; the maximum is {MAX_GROUPS}"
        )
    groups: list[tuple[Filter, ...]] = []
    total = 0
    for raw_group in raw_groups:
        raw_filters = raw_group.get("filters") if isinstance(raw_group, dict) else None
        if not isinstance(raw_filters, list):
            raise validation_error("Each filter group needs a list of filters")
        if len(raw_filters) > MAX_FILTERS_PER_GROUP:
            raise validation_error(
                f"Too many filters in a group: {len(raw_filters)}; the maximum is {MAX_FILTERS_PER_GROUP}"
            )
        total += len(raw_filters)
        groups.append(tuple(_parse_filter(f) for f in raw_filters))
    if total > MAX_FILTERS:
        raise validation_error(f"Too many filters: {total}; the maximum is {MAX_FILTERS} in total")

    sorts = body.get("sorts") or []
    if not isinstance(sorts, list):
        raise validation_error("sorts must be a list")
    if len(sorts) > 1:
        raise validation_error("Only one sort is allowed per search")
    sort_property, descending = "createdate", False  # no sort: oldest created first
    if sorts:
        sort = sorts[0]
        if isinstance(sort, str):
            # The string form SDK users send: "-createdate" / "createdate" (nodejs#545).
            descending = sort.startswith("-")
            sort_property = sort.lstrip("-+")
        elif isinstance(sort, dict) and isinstance(sort.get("propertyName"), str):
            sort_property = sort["propertyName"]
            direction = str(sort.get("direction", "ASCENDING")).upper()
            if direction not in ("ASCENDING", "DESCENDING"):
                raise validation_error(f"Unknown sort direction {direction}")
            descending = direction == "DESCENDING"
        else:
            raise validation_error("A sort is a property name or {propertyName, direction}")

    limit = _int(body.get("limit"), DEFAULT_LIMIT, "limit")
    if not 0 < limit <= MAX_LIMIT:
        raise validation_error(f"limit must be between 1 and {MAX_LIMIT}")
    after = _int(body.get("after"), 0, "after")
    if after < 0:
        raise validation_error("after must not be negative")
    if after + limit > MAX_RESULTS:
        # "At most 10,000 results per query; paging past 10,000 returns 400" (fact sheet §2).
        raise validation_error(f"Paging past {MAX_RESULTS} results is not supported")

    properties = body.get("properties")
    if properties is not None and (
        not isinstance(properties, list) or not all(isinstance(p, str) for p in properties)
    ):
        raise validation_error("properties must be a list of property names")
    query = body.get("query")
    return SearchRequest(
        groups=tuple(groups),
        sort_property=sort_property,
        descending=descending,
        query=str(query) if query not in (None, "") else None,
        properties=tuple(properties) if properties else None,
        limit=limit,
        after=after,
    )


def _int(raw: Any, default: int, name: str) -> int:
    if raw in (None, ""):
        return default
    try:
        return int(raw)
    except (TypeError, ValueError) as exc:
        raise validation_error(f"{name} must be a number") from exc


def _parse_filter(raw: Any) -> Filter:
    if not isinstance(raw, dict) or not isinstance(raw.get("propertyName"), str):
        raise validation_error("Each filter needs a propertyName")
    operator = str(raw.get("operator", "EQ"))
    if operator not in OPERATORS:
        raise validation_error(f"Unknown operator {operator}")
    value = raw.get("value")
    high = raw.get("highValue")
    values = raw.get("values") or []
    if operator in ("IN", "NOT_IN"):
        if not isinstance(values, list) or not values:
            raise validation_error(f"{operator} needs a list of values")
    elif operator == "BETWEEN":
        if value is None or high is None:
            raise validation_error("BETWEEN needs value and highValue")
    elif operator not in ("HAS_PROPERTY", "NOT_HAS_PROPERTY") and value is None:
        raise validation_error(f"{operator} needs a value")
    return Filter(
        property_name=raw["propertyName"],
        operator=operator,
        value=_text(value),
        high_value=_text(high),
        values=tuple(str(_text(v)) for v in values) if isinstance(values, list) else (),
    )


def _text(raw: Any) -> str | None:
    if raw is None:
        return None
    if isinstance(raw, bool):
        return "true" if raw else "false"
    return str(raw)


# Operators whose matches are one key range of the property's index (enumerations excluded:
# EQ on one is membership in a `;`-separated set).
_RANGE_OPERATORS = frozenset({"EQ", "GT", "GTE", "LT", "LTE", "BETWEEN", "HAS_PROPERTY"})


def run(state: CrmState, obj: ObjectType, req: SearchRequest) -> tuple[int, list[StoredRecord]]:
    """(total, the requested page) — archived records never appear.

    Order: records with a value for the sort property by that value (ties by id, ascending in
    both directions), then those without one, by id. A search with no filter, or whose only
    filter is a range on the sort property (the change scan: `lastmodifieddate GTE t` sorted by
    it), reads the sort property's index: a page costs what it returns. Other searches evaluate
    their filters once per state of the table and keep the ordered result for the next pages."""
    index = state.search_index
    view = index.view(obj)
    matchers = [[_matcher(state, obj, f) for f in group] for group in req.groups]
    sort_prop = state.registry.get(obj, req.sort_property)
    only = req.groups[0] if len(req.groups) == 1 and len(req.groups[0]) == 1 else ()
    driver = only[0] if only and _drives(only[0], req.sort_property, sort_prop) else None
    if req.query is None and (driver is not None or not req.groups):
        by_sort = index.index(obj, req.sort_property)
        start, stop = _range(by_sort, sort_prop, driver) if driver else (0, len(by_sort.entries))
        # Records without a sort value come last; a range filter excludes them.
        without = 0 if driver else len(view) - len(by_sort.keys)
        ids = by_sort.ids(start, stop, descending=req.descending, skip=req.after, take=req.limit)
        if len(ids) < req.limit and without:
            skip = max(0, req.after - (stop - start))
            rest = index.without(obj, by_sort)
            ids += [i for n, i in enumerate(rest) if n >= skip][: req.limit - len(ids)]
        return stop - start + without, _page(state, obj, view, ids)
    ordered = _ordered_matches(state, obj, req, matchers)
    return len(ordered), _page(state, obj, view, ordered[req.after : req.after + req.limit])


def _drives(f: Filter, sort_property: str, prop: PropertyDef | None) -> bool:
    return (
        f.property_name == sort_property
        and f.operator in _RANGE_OPERATORS
        and prop is not None
        and prop.type != "enumeration"
    )


def _range(index: PropertyIndex, prop: PropertyDef | None, f: Filter) -> tuple[int, int]:
    if f.operator == "HAS_PROPERTY":
        return 0, len(index.entries)

    def key(raw: str | None) -> Key:
        t = typed(prop, raw or "")
        if t is None:
            raise validation_error(
                f"{raw} is not a valid value for {f.property_name}", propertyName=[f.property_name]
            )
        return (0, t)

    low = key(f.value)
    if f.operator == "EQ":
        return index.bounds(low, True, low, True)
    if f.operator == "BETWEEN":
        return index.bounds(low, True, key(f.high_value), True)
    if f.operator in ("GT", "GTE"):
        return index.bounds(low, f.operator == "GTE", None, True)
    return index.bounds(None, True, low, f.operator == "LTE")


def _ordered_matches(
    state: CrmState, obj: ObjectType, req: SearchRequest, matchers: list[list[Matcher]]
) -> list[int]:
    """Every match in search order, kept while the table does not change (paging through one
    search evaluates it once)."""
    index = state.search_index
    names = {f.property_name for group in req.groups for f in group} | {req.sort_property}
    # The result depends on the records (the index version), the request, and the definitions
    # of the properties it names; association filters read the associations, which the version
    # does not follow, so those searches are not kept.
    definitions = tuple(state.registry.get(obj, n) for n in sorted(names))
    keep = not any(n.startswith("associations.") for n in names)
    signature = (obj.name, req.groups, req.sort_property, req.descending, req.query, definitions)
    cached = index.cached_search
    if keep and cached is not None and cached[0] == signature and cached[1] == index.version(obj):
        return cached[2]
    records = state.all_records(obj)
    query_terms = req.query.lower().split() if req.query else []
    sort_prop = state.registry.get(obj, req.sort_property)
    present: list[tuple[Key, int]] = []
    missing: list[int] = []
    for record_id, props in index.view(obj).items():
        rec = records[record_id]
        if matchers and not any(all(m(rec, props) for m in group) for group in matchers):
            continue
        if query_terms and not _query_matches(obj, props, query_terms):
            continue
        value = props.get(req.sort_property)
        if value:
            present.append((sort_key(sort_prop, value), record_id))
        else:
            missing.append(record_id)
    present.sort(key=lambda h: h[1])  # stable tie-break on id
    present.sort(key=lambda h: h[0], reverse=req.descending)
    ordered = [i for _, i in present] + sorted(missing)
    index.cached_search = (signature, index.version(obj), ordered) if keep else None
    return ordered


def _page(
    state: CrmState, obj: ObjectType, view: dict[int, dict[str, str]], ids: list[int]
) -> list[StoredRecord]:
    records = state.all_records(obj)
    return [_as_searched(obj, records[i], view[i]) for i in ids]


def _as_searched(obj: ObjectType, rec: StoredRecord, props: dict[str, str]) -> StoredRecord:
    """The record as the index holds it: its properties and its `updatedAt` are those of the
    version indexed (fact sheet §2), not of a later write still waiting for the index."""
    if props is rec.properties:
        return rec
    indexed = parse_instant_ms(props.get(obj.last_modified) or "")
    return StoredRecord(rec.id, props, rec.created_ms,
                        indexed if indexed is not None else rec.updated_ms)


def _query_matches(obj: ObjectType, props: dict[str, str], terms: list[str]) -> bool:
    text = " ".join(props.get(f, "") for f in obj.query_fields).lower()
    return all(term in text for term in terms)


Matcher = Callable[[StoredRecord, dict[str, str]], bool]


def _matcher(state: CrmState, obj: ObjectType, f: Filter) -> Matcher:
    if f.property_name.startswith("associations."):
        return _association_matcher(state, obj, f)
    prop = state.registry.get(obj, f.property_name)
    if prop is None:
        raise validation_error(
            f"Property {f.property_name} does not exist on {obj.name}",
            propertyName=[f.property_name],
        )
    name, op = f.property_name, f.operator
    enumeration = prop.type == "enumeration"

    def coerce(raw: str | None) -> Any:
        value = typed(prop, raw or "")
        if value is None:
            raise validation_error(f"{raw} is not a valid value for {name}", propertyName=[name])
        return value

    if op == "HAS_PROPERTY":
        return lambda _r, p: bool(p.get(name))
    if op == "NOT_HAS_PROPERTY":
        return lambda _r, p: not p.get(name)
    if op in ("CONTAINS_TOKEN", "NOT_CONTAINS_TOKEN"):
        pattern = (f.value or "").lower()
        negate = op == "NOT_CONTAINS_TOKEN"
        return lambda _r, p: _contains_token(p.get(name, ""), pattern) != negate
    if op in ("IN", "NOT_IN"):
        # IN values for string properties must be lowercase (fact sheet §2): they are compared
        # with the lowercased stored value, so an uppercase value never matches.
        wanted = set(f.values)
        negate = op == "NOT_IN"

        def in_matcher(_r: StoredRecord, p: dict[str, str]) -> bool:
            stored = p.get(name)
            if not stored:
                return negate
            candidates = (
                stored.split(";")
                if enumeration
                else [stored.lower() if prop.type == "string" else stored]
            )
            if prop.type in ("number", "date", "datetime", "bool"):
                hit = any(typed(prop, c) == typed(prop, w) for c in candidates for w in wanted)
            else:
                hit = any(c in wanted for c in candidates)
            return hit != negate

        return in_matcher
    low = coerce(f.value)
    if op == "BETWEEN":
        high = coerce(f.high_value)
        return lambda _r, p: _cmp(prop, p.get(name), lambda v: low <= v <= high)
    if op == "EQ":
        if enumeration:
            return lambda _r, p: f.value in (p.get(name) or "").split(";")
        return lambda _r, p: _cmp(prop, p.get(name), lambda v: v == low)
    if op == "NEQ":
        if enumeration:
            return lambda _r, p: f.value not in (p.get(name) or "").split(";")
        return lambda _r, p: not _cmp(prop, p.get(name), lambda v: v == low)
    comparisons: dict[str, Callable[[Any], bool]] = {
        "LT": lambda v: v < low,
        "LTE": lambda v: v <= low,
        "GT": lambda v: v > low,
        "GTE": lambda v: v >= low,
    }
    test = comparisons[op]
    return lambda _r, p: _cmp(prop, p.get(name), test)


def _cmp(prop: PropertyDef, stored: str | None, test: Callable[[Any], bool]) -> bool:
    if not stored:
        return False
    value = typed(prop, stored)
    if value is None:
        return False
    try:
        return test(value)
    except TypeError:
        return False


def _contains_token(stored: str, pattern: str) -> bool:
    if not stored:
        return False
    stored = stored.lower()
    if "*" in pattern:
        # `*` wildcard, e.g. "*@hubspot.com" (fact sheet §2).
        return fnmatch.fnmatchcase(stored, pattern)
    return pattern == stored or pattern in _TOKEN_SPLIT.split(stored)


def _association_matcher(state: CrmState, obj: ObjectType, f: Filter) -> Matcher:
    # Pseudo-property `associations.{objectType}` filters by associated record (fact sheet §2).
    to_type = resolve(f.property_name.split(".", 1)[1])
    if to_type is None or f.operator not in ("EQ", "IN"):
        raise validation_error(f"Unsupported association filter {f.property_name} {f.operator}")
    wanted = {f.value} if f.operator == "EQ" else set(f.values)

    def matcher(rec: StoredRecord, _p: dict[str, str]) -> bool:
        return any(str(i) in wanted for i in state.associations.targets(obj, rec.id, to_type))

    return matcher
