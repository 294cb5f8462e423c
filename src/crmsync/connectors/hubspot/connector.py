"""`HubSpotConnector`: the hub side of every object sync, on HubSpot's CRM API v3/v4.

It implements `Connector`, `SupportsPipelines`, `SupportsAssociations` and
`SupportsEventIntake` of `crmsync.connectors.base`. Every call goes through `HubSpotHttp`
(shared rate budget, per-request deadline, table-driven retries). Paths and shapes follow
`reference/hubspot-api.md` (the fact sheet); section numbers below refer to it.

Writes never lose a batch and never duplicate a record:
- batch create sends an `objectWriteTraceId` per input so a 207 names the failed inputs (§1.2);
- a 409 "Contact already exists. Existing ID: N" fails a whole batch create naming only the
  first conflict (§4): the connector reports the batch refused (`whole_batch`); the runtime
  finds every input whose unique key (email / unique property) already exists, fails each
  as `RecordError("conflict", existing_id=...)` and creates the rest;
- a whole-batch 4xx it cannot attribute is split in halves until each failure has its input;
- a create whose outcome is unknown (timeout, dropped connection, 5xx) is never repeated:
  it is reported as such (`RecordError.unknown`), and the runtime (`runtime.create_healing`)
  reconciles it by the key `create_keys` names — a consistent batch read by `idProperty`
  (contact email, custom unique properties) or a search (company domain / name, waiting out
  the search index lag) — and sends again only the inputs that are certainly absent.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx
import msgspec
import structlog
import trio

from crmsync.connectors.base import (
    AppEvent,
    AssociationChange,
    Capabilities,
    Changes,
    Connector,
    ConnectorError,
    CreateKey,
    FieldInfo,
    ObjectInfo,
    Page,
    PipelineInfo,
    PropertyValue,
    Record,
    RecordError,
    StageInfo,
    SupportsAssociations,
    SupportsCreateHealing,
    SupportsEventIntake,
    SupportsFindMany,
    SupportsIndexedRead,
    SupportsPipelines,
    SupportsPropertyHistory,
    SupportsScanAssociations,
    WriteResult,
)
from crmsync.connectors.batches import bisect
from crmsync.connectors.hubspot.account import list_owners
from crmsync.connectors.hubspot.cursor import ChangesCursor, decode_cursor, encode_cursor
from crmsync.connectors.hubspot.http import HUBSPOT_RETRY_POLICY, HubSpotHttp, decode
from crmsync.connectors.hubspot.objects import (
    ASSOCIATION_READ_BATCH,
    ASSOCIATION_TYPE_IDS,
    ASSOCIATION_WRITE_BATCH,
    LIST_PAGE_SIZE,
    OBJECT_BATCH_SIZE,
    SEARCH_PAGE_SIZE,
    last_modified_property,
)
from crmsync.connectors.hubspot.objects import (
    object_name as resolve_object,
)
from crmsync.connectors.ratelimit import RateBudget
from crmsync.connectors.retry import HttpFailure, RetryPolicy

log = structlog.get_logger("crmsync.connectors.hubspot")

_EXISTING_ID = re.compile(r"Existing ID:\s*(\d+)")

# HubSpot error `category` (of a 207 entry or an error body) → DESIGN.md category.
_CATEGORIES: dict[str, str] = {
    "VALIDATION_ERROR": "invalid_value",
    "OBJECT_NOT_FOUND": "not_found",
    "CONFLICT": "conflict",
    "OBJECT_ALREADY_EXISTS": "conflict",
    "MISSING_SCOPES": "permission_denied",
    "INVALID_AUTHENTICATION": "permission_denied",
    "EXPIRED_AUTHENTICATION": "permission_denied",
    "RATE_LIMIT": "rate_limited",
    "RATE_LIMITS": "rate_limited",
    "LOCKED": "api_unavailable",
    "INTERNAL_ERROR": "api_unavailable",
    "SERVICE_UNAVAILABLE": "api_unavailable",
    "TIMEOUT": "api_unavailable",
}
_RETRYABLE = frozenset({"rate_limited", "api_unavailable"})

# HubSpot property type → FieldInfo.type.
_FIELD_TYPES = {
    "string": "string", "phone_number": "string", "number": "number", "bool": "bool",
    "date": "date", "datetime": "datetime", "enumeration": "enumeration",
}

# The longest `properties` query value (URL-encoded) put in a list URL. HubSpot documents no
# limit; third parties saw 414 URI Too Long from about 8 KB (airweave) and 16.2k characters
# (PostHog) (hubspot-onboarding.md §7): below both.
MAX_PROPERTIES_QUERY = 6_000
# Room for the `properties` list (JSON) in a search body of at most 3,000 characters (fact
# sheet §2), beside the filters, sort and paging of a change scan.
SEARCH_PROPERTIES_CHARS = 2_200
# A search request body may hold at most 3,000 characters (fact sheet §2).
SEARCH_BODY_CHARS = 3_000
# Values per IN filter: HubSpot documents no limit of its own [INF]; the body limit binds first
# for ids and emails.
SEARCH_IN_VALUES = 100

# Filter groups per search (fact sheet §2: 5 groups, at most 18 filters in all).
SEARCH_FILTER_GROUPS = 5

PROPERTIES_CACHE_SECONDS = 600.0
OWNERS_REFRESH_SECONDS = 30.0


def _to_ms(value: Any) -> int | None:
    """Epoch ms from HubSpot's ISO 8601 strings or epoch-ms strings/numbers."""
    if value is None or value == "":
        return None
    if isinstance(value, int | float):
        return int(value)
    text = str(value).strip()
    if text.isdigit():
        return int(text)
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1000)


def _ms_iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


def _record(obj: Mapping[str, Any], updated_property: str | None = None) -> Record:
    props = obj.get("properties") or {}
    updated = None
    if updated_property:
        updated = _to_ms(props.get(updated_property))
    if updated is None:
        updated = _to_ms(obj.get("updatedAt")) or 0
    archived = bool(obj.get("archived"))
    return Record(id=str(obj["id"]), properties=dict(props), updated_at=updated,
                  archived=archived)


def _associations_of(results: Sequence[Mapping[str, Any]],
                     wanted: Mapping[str, str]) -> dict[str, dict[str, list[str]]]:
    """Per record of a list page, the associated ids per object asked for (`wanted`: HubSpot
    name → the name asked with). HubSpot leaves out a type without association; a type with
    `paging` holds only its first results and is left out here (read whole elsewhere)."""
    out: dict[str, dict[str, list[str]]] = {}
    for r in results:
        # HubSpot names line items "line items" there (a space), `line_items` elsewhere.
        got = {str(k).replace(" ", "_"): v for k, v in (r.get("associations") or {}).items()}
        mine: dict[str, list[str]] = {}
        for name, asked in wanted.items():
            entry = got.get(name) or {}
            if entry.get("paging"):
                continue
            # One entry per association type (a labelled pair is listed twice).
            mine[asked] = list(dict.fromkeys(str(a.get("id")) for a in
                                             entry.get("results") or []))
        out[str(r.get("id"))] = mine
    return out


def _compact(value: Any) -> bytes:
    """`value` as a request body carries it (http.py encodes with msgspec: compact JSON)."""
    return msgspec.json.encode(value)


def _chunks(seq: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for i in range(0, len(seq), size):
        yield seq[i:i + size]


def record_error(entry: Mapping[str, Any]) -> RecordError:
    """A RecordError from one entry of a 207's `errors[]` or an error body."""
    code = str(entry.get("category") or "")
    message = str(entry.get("message") or code or "failed")
    category = _CATEGORIES.get(code, "internal")
    existing = _EXISTING_ID.search(message)
    return RecordError(category=category, message=message, retryable=category in _RETRYABLE,
                       existing_id=existing.group(1) if existing else None)


def _unknown(sent_at: int, wait: float) -> WriteResult:
    """A create whose answer was lost: it may have been made (the runtime heals it)."""
    return WriteResult(ok=False, error=RecordError(
        category="api_unavailable", message="HubSpot did not confirm this create",
        retryable=True, unknown=True, sent_at=sent_at, retry_after=wait or None))


def _fail(results: list[WriteResult | None], index: int, exc: HttpFailure) -> None:
    results[index] = WriteResult(ok=False, error=_failure_error(exc))


def _failure_error(exc: HttpFailure) -> RecordError:
    if exc.body and isinstance(exc.body, dict) and exc.body.get("category"):
        err = record_error(exc.body)
        if err.category != "internal":
            return err
    return RecordError(category=exc.category, message=exc.message,
                       retryable=exc.kind in ("transient", "rate_limited"))


def _context_values(entry: Mapping[str, Any], *keys: str) -> list[str]:
    ctx = entry.get("context") or {}
    out: list[str] = []
    if isinstance(ctx, dict):
        for key in keys:
            values = ctx.get(key)
            if isinstance(values, list):
                out.extend(str(v) for v in values)
            elif values is not None:
                out.append(str(values))
    return out


def _all_context_values(entry: Mapping[str, Any]) -> list[str]:
    ctx = entry.get("context") or {}
    if not isinstance(ctx, dict):
        return []
    return [str(v) for values in ctx.values()
            for v in (values if isinstance(values, list) else [values])]


class _Item:
    """One input of a write, with its position in the caller's list."""

    __slots__ = ("id", "index", "properties")

    def __init__(self, index: int, properties: Mapping[str, Any], id: str | None = None) -> None:
        self.index = index
        self.properties = properties
        self.id = id

    @property
    def trace_id(self) -> str:
        return str(self.index)


class HubSpotConnector:
    """The HubSpot side. See the module docstring; all methods may raise ConnectorError.

    `client` is an `httpx.AsyncClient` with HubSpot's base URL and auth (tests inject
    `httpx.MockTransport` / `httpx.ASGITransport`); `budget` is the account's shared rate
    budget (`search_budget`, if given, limits search calls instead of `budget`). Every request
    runs under `trio.fail_after(request_timeout)`. `index_lag` is how far behind the search
    index may be: `changes_since` never moves its cursor past (now − index_lag).
    `wall_clock` gives the current epoch time in seconds (HubSpot's timestamps are wall-clock).
    """

    capabilities = Capabilities(
        webhooks=True, change_log=False, polling=True,
        write_batch_size=OBJECT_BATCH_SIZE, read_batch_size=OBJECT_BATCH_SIZE,
        pipelines=True, associations=True, events=True,
    )

    def __init__(
        self,
        client: httpx.AsyncClient,
        budget: RateBudget,
        *,
        search_budget: RateBudget | None = None,
        request_timeout: float = 30.0,
        index_lag: float = 30.0,
        name: str = "hub",
        retry_policy: RetryPolicy = HUBSPOT_RETRY_POLICY,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.name = name
        self.index_lag = index_lag
        self.wall_clock = wall_clock
        self.http = HubSpotHttp(client, budget, search_budget=search_budget,
                                request_timeout=request_timeout, policy=retry_policy)
        self._properties: dict[str, tuple[float, list[dict[str, Any]]]] = {}
        self._pipelines: dict[str, tuple[float, list[PipelineInfo]]] = {}
        self._owners: tuple[float, list[tuple[str, str]]] | None = None
        self._owned_client: httpx.AsyncClient | None = None

    @property
    def client(self) -> httpx.AsyncClient:
        return self.http.client

    @property
    def budget(self) -> RateBudget:
        return self.http.budget

    async def aclose(self) -> None:
        """Close the client if `build_hub_connector` made it (an injected one stays open)."""
        if self._owned_client is not None:
            await self._owned_client.aclose()

    def _now_ms(self) -> int:
        return int(self.wall_clock() * 1000)

    # --- describe / properties -------------------------------------------------------------------

    async def properties(self, object_name: str) -> list[dict[str, Any]]:
        """`GET /crm/v3/properties/{object}` (cached for 10 minutes)."""
        obj = resolve_object(object_name)
        cached = self._properties.get(obj)
        now = trio.current_time()
        if cached and now - cached[0] < PROPERTIES_CACHE_SECONDS:
            return cached[1]
        body = await self.http.json("GET", f"/crm/v3/properties/{obj}")
        results = list(body.get("results") or [])
        self._properties[obj] = (now, results)
        return results

    def invalidate_caches(self) -> None:
        """Forget the cached properties, pipelines and owners (`crmsync doctor
        --create-properties` reads the properties again after creating some)."""
        self._properties.clear()
        self._pipelines.clear()
        self._owners = None

    async def describe(self, object_name: str) -> ObjectInfo:
        obj = resolve_object(object_name)
        fields = []
        for p in await self.properties(obj):
            meta = p.get("modificationMetadata") or {}
            fields.append(FieldInfo(
                name=str(p["name"]),
                type=_FIELD_TYPES.get(str(p.get("type")), "string"),
                read_only=bool(meta.get("readOnlyValue")) or bool(p.get("calculated")),
                unique=bool(p.get("hasUniqueValue")),
                options=tuple(str(o.get("value")) for o in p.get("options") or []),
            ))
        return ObjectInfo(name=obj, fields=tuple(fields),
                          updated_at_field=last_modified_property(obj))

    async def check_properties(self, object_name: str, names: Iterable[str], *,
                               write: bool = False) -> list[str]:
        """Problems with mapping `names`: unknown properties, and read-only ones for writes."""
        info = {f.name: f for f in (await self.describe(object_name)).fields}
        problems = []
        for name in names:
            f = info.get(name)
            if f is None:
                problems.append(f"{object_name}: unknown HubSpot property {name!r}")
            elif write and f.read_only:
                problems.append(f"{object_name}: HubSpot property {name!r} is read-only")
        return problems

    async def check_values(self, object_name: str,
                           values: Mapping[str, Any]) -> dict[str, str]:
        """Values HubSpot would refuse, by property: unknown enumeration options (multi-select
        values joined with ';'), non-numbers for number properties, non-booleans for bool."""
        info = {f.name: f for f in (await self.describe(object_name)).fields}
        problems: dict[str, str] = {}
        for name, value in values.items():
            f = info.get(name)
            if f is None or value is None or value == "":
                continue
            text = str(value)
            if f.type == "enumeration" and f.options:
                bad = [v for v in text.split(";") if v not in f.options]
                if bad:
                    problems[name] = f"{bad[0]!r} is not an option of {name}"
            elif f.type == "number":
                try:
                    float(text)
                except ValueError:
                    problems[name] = f"{text!r} is not a number"
            elif f.type == "bool" and text.lower() not in ("true", "false"):
                problems[name] = f"{text!r} is not true or false"
        return problems

    async def check_stage(self, object_name: str, pipeline_id: str,
                          stage_id: str) -> str | None:
        """None if the stage exists in the pipeline, else what is wrong."""
        for p in await self.pipelines(object_name):
            if p.id == pipeline_id:
                if any(s.id == stage_id for s in p.stages):
                    return None
                return f"stage {stage_id!r} is not in pipeline {p.label!r} ({p.id})"
        return f"pipeline {pipeline_id!r} does not exist"

    async def _unique_properties(self, obj: str) -> list[str]:
        return [f.name for f in (await self.describe(obj)).fields
                if f.unique and f.name != "hs_object_id"]

    # --- owners ---------------------------------------------------------------------------------

    async def owners(self, *, refresh: bool = False) -> list[tuple[str, str]]:
        """HubSpot's live owners as (owner id, email) from `GET /crm/v3/owners` (all pages),
        cached for 10 minutes. `refresh` reads them again, unless they were read less than
        `OWNERS_REFRESH_SECONDS` ago (a record naming an owner nobody knows must not cost a
        listing each time). A 403 raises ConnectorError(kind="config",
        category="permission_denied")."""
        now = trio.current_time()
        cached = self._owners
        if cached is not None:
            age = now - cached[0]
            if age < (OWNERS_REFRESH_SECONDS if refresh else PROPERTIES_CACHE_SECONDS):
                return cached[1]
        owners = [(o.id, o.email) for o in await list_owners(self.http)]
        self._owners = (now, owners)
        return owners

    # --- pipelines ------------------------------------------------------------------------------

    async def pipelines(self, object_name: str) -> list[PipelineInfo]:
        """`GET /crm/v3/pipelines/{object}`, live pipelines and stages by display order
        (cached for 10 minutes). A 403 raises ConnectorError(kind="config",
        category="permission_denied")."""
        obj = resolve_object(object_name)
        cached = self._pipelines.get(obj)
        now = trio.current_time()
        if cached and now - cached[0] < PROPERTIES_CACHE_SECONDS:
            return cached[1]
        body = await self.http.json("GET", f"/crm/v3/pipelines/{obj}")

        def order(x: Mapping[str, Any]) -> tuple[int, str]:
            return (int(x.get("displayOrder") or 0), str(x.get("label") or ""))

        out = []
        for p in sorted((p for p in body.get("results") or [] if not p.get("archived")),
                        key=order):
            stages = tuple(StageInfo(id=str(s["id"]), label=str(s.get("label") or ""))
                           for s in sorted((s for s in p.get("stages") or []
                                            if not s.get("archived")), key=order))
            out.append(PipelineInfo(id=str(p["id"]), label=str(p.get("label") or ""),
                                    stages=stages))
        self._pipelines[obj] = (now, out)
        return out

    # --- reading --------------------------------------------------------------------------------

    async def scan(self, object_name: str, cursor: str | None,
                   properties: Sequence[str]) -> Page:
        """One page (≤100) of the live records, in id order, from HubSpot's `after` cursor."""
        return await self._list_page(resolve_object(object_name), cursor, properties,
                                     archived=False)

    async def scan_associated(self, object_name: str, cursor: str | None,
                              properties: Sequence[str], to_objects: Sequence[str]) -> Page:
        """`scan` with `associations=` (fact sheet §1.1: on list, not on batch read): each
        record comes with its associated ids (SimplePublicObjectWithAssociations, §1.2). A
        type whose list HubSpot cut short (`paging` on it: past 100) is left out for that
        record, to be read with the v4 batch read."""
        return await self._list_page(resolve_object(object_name), cursor, properties,
                                     archived=False, to_objects=to_objects)

    async def _list_page(self, obj: str, after: str | None, properties: Sequence[str], *,
                         archived: bool, to_objects: Sequence[str] = ()) -> Page:
        """One list page. A property list too long for a URL (HubSpot answers 414 past some
        8–16k characters, hubspot-onboarding.md §7) is not put in the query: the page lists
        the ids with the object's default properties, and one batch read (its property list
        in the POST body) brings the page's records with every property, as every client
        that met the limit does. A record the batch read no longer finds was archived in
        between and is left out (archived pages are read whole)."""
        joined = ",".join(properties)
        too_long = len(quote(joined, safe="")) > MAX_PROPERTIES_QUERY
        params: dict[str, str | int] = {"limit": LIST_PAGE_SIZE,
                                        "archived": "true" if archived else "false"}
        if properties and not too_long:
            params["properties"] = joined
        if after:
            params["after"] = after
        wanted = {resolve_object(t): t for t in to_objects}
        if wanted:
            params["associations"] = ",".join(wanted)
        body = await self.http.json("GET", f"/crm/v3/objects/{obj}", params=params)
        results = body.get("results") or []
        records = [_record(r) for r in results]
        associations = _associations_of(results, wanted) if wanted else None
        if too_long and records and not archived:
            got = {r.id: r for r in await self._batch_read(obj, [r.id for r in records],
                                                           properties)}
            records = [got[r.id] for r in records if r.id in got]
        nxt = ((body.get("paging") or {}).get("next") or {}).get("after")
        return Page(records=records, next_cursor=str(nxt) if nxt else None,
                    associations=associations)

    async def read(self, object_name: str, ids: Sequence[str],
                   properties: Sequence[str]) -> dict[str, Record]:
        """Batch read (chunks of 100); unknown and archived ids are absent from the result."""
        obj = resolve_object(object_name)
        unique_ids = list(dict.fromkeys(str(i) for i in ids))
        out: dict[str, Record] = {}
        for chunk in _chunks(unique_ids, OBJECT_BATCH_SIZE):
            for r in await self._batch_read(obj, chunk, properties):
                out[r.id] = r
        return out

    async def _batch_read(self, obj: str, values: Sequence[str], properties: Sequence[str],
                          id_property: str | None = None) -> list[Record]:
        body: dict[str, Any] = {"properties": list(properties),
                                "inputs": [{"id": v} for v in values]}
        if id_property:
            body["idProperty"] = id_property
        answer = await self.http.json("POST", f"/crm/v3/objects/{obj}/batch/read", json=body)
        return [_record(r) for r in answer.get("results") or []]

    async def read_history(self, object_name: str, ids: Sequence[str],
                           properties: Sequence[str]) -> dict[str, dict[str, list[PropertyValue]]]:
        """Batch read with `propertiesWithHistory` (fact sheet §1.1; chunks of 100): per
        record, each property's values newest first (sorted here, whatever order HubSpot
        answers in). Unknown and archived ids are absent."""
        obj = resolve_object(object_name)
        out: dict[str, dict[str, list[PropertyValue]]] = {}
        for chunk in _chunks(list(dict.fromkeys(str(i) for i in ids)), OBJECT_BATCH_SIZE):
            body = {"properties": [], "propertiesWithHistory": list(properties),
                    "inputs": [{"id": v} for v in chunk]}
            answer = await self.http.json("POST", f"/crm/v3/objects/{obj}/batch/read",
                                          json=body)
            for r in answer.get("results") or []:
                history = r.get("propertiesWithHistory") or {}
                out[str(r["id"])] = {
                    name: sorted((PropertyValue(value=str(e.get("value") or ""), at=at,
                                                source=str(e.get("sourceType") or ""))
                                  for e in entries if isinstance(e, dict)
                                  and (at := _to_ms(e.get("timestamp"))) is not None),
                                 key=lambda v: v.at, reverse=True)
                    for name, entries in history.items() if isinstance(entries, list)}
        return out

    async def read_indexed(self, object_name: str, ids: Sequence[str],
                           properties: Sequence[str]) -> dict[str, Record]:
        """Records by id through search (`hs_object_id IN`, one IN filter of at most 100 ids
        per filter group, up to 5 groups, pages of 200, a body of at most 3,000 characters;
        fact sheet §2): up to 200 records a request where a batch read takes 100 (§1.3). The
        answer is the search index's: a record written in the last seconds may be absent or
        show its older version (§2, index lag). With more properties than fit in a search
        body, a batch read (consistent) answers instead."""
        obj = resolve_object(object_name)
        props = list(properties)
        if len(json.dumps(props)) > SEARCH_PROPERTIES_CHARS:
            return await self.read(object_name, ids, properties)
        out: dict[str, Record] = {}
        for groups in self._id_groups(list(dict.fromkeys(str(i) for i in ids)), props):
            after: str | None = None
            while True:
                body = self._indexed_body(groups, props, after)
                answer = await self.http.json("POST", f"/crm/v3/objects/{obj}/search",
                                              json=body, kind="search")
                for r in answer.get("results") or []:
                    rec = _record(r)
                    out[rec.id] = rec
                after = ((answer.get("paging") or {}).get("next") or {}).get("after")
                if not after:
                    break
        return out

    @staticmethod
    def _indexed_body(groups: list[list[str]], properties: list[str],
                      after: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "filterGroups": [{"filters": [{"propertyName": "hs_object_id", "operator": "IN",
                                           "values": g}]} for g in groups],
            "properties": properties,
            "limit": SEARCH_PAGE_SIZE,
        }
        if after:
            body["after"] = after
        return body

    @classmethod
    def _id_groups(cls, ids: list[str], properties: list[str]) -> Iterable[list[list[str]]]:
        """`ids` split into searches: at most a page of them each (one request answers), in
        filter groups of at most SEARCH_IN_VALUES, the body (with room for a paging cursor)
        under SEARCH_BODY_CHARS."""
        # Sizes as sent (compact JSON, http.py), with room for a paging cursor.
        room = SEARCH_BODY_CHARS - len(_compact(cls._indexed_body([], properties, "1" * 12)))
        group = len(_compact(cls._indexed_body([[]], properties))) - len(
            _compact(cls._indexed_body([], properties))) + 1
        groups: list[list[str]] = []
        count = used = 0
        for i in ids:
            # A value costs its quotes and separator; a new group its filter's JSON.
            cost = len(_compact(i)) + 1
            new_group = not groups or len(groups[-1]) >= SEARCH_IN_VALUES
            if new_group:
                cost += group
            if groups and (count >= SEARCH_PAGE_SIZE or used + cost > room
                           or (new_group and len(groups) >= SEARCH_FILTER_GROUPS)):
                yield groups
                groups, count, used = [], 0, 0
                cost = len(_compact(i)) + 1 + group
                new_group = True
            if new_group:
                groups.append([])
            groups[-1].append(i)
            count += 1
            used += cost
        if groups:
            yield groups

    async def find(self, object_name: str, field: str, value: str,
                   properties: Sequence[str]) -> list[Record]:
        """Records whose `field` equals `value`. Contact email and unique properties are read
        by `idProperty` (consistent at once); other fields through search (EQ, case-insensitive,
        subject to the search index lag)."""
        obj = resolve_object(object_name)
        if (obj == "contacts" and field == "email") or field in await self._unique_properties(
                obj):
            props = list(dict.fromkeys([*properties, field]))
            return await self._batch_read(obj, [value], props, id_property=field)
        return await self._search_eq(obj, field, value, properties)

    async def find_many(self, object_name: str, field: str, values: Sequence[str],
                        properties: Sequence[str]) -> dict[str, list[Record]]:
        """`find` for many values: up to 100 per batch read by `idProperty` (contact email,
        unique properties; fact sheet §1.1, §1.3), else searches with an `IN` filter (§2:
        string values lowercase, a body of at most 3,000 characters, pages of 200), which see
        a record only once the search index has caught up with its write."""
        obj = resolve_object(object_name)
        wanted: dict[str, list[str]] = {}
        for v in values:
            if v not in (None, ""):
                wanted.setdefault(str(v).strip().lower(), []).append(v)
        props = list(dict.fromkeys([*properties, field]))
        found: list[Record] = []
        if (obj == "contacts" and field == "email") or field in await self._unique_properties(
                obj):
            # The values as given: a unique property's look-up may be case-sensitive.
            exact = list(dict.fromkeys(str(v) for vs in wanted.values() for v in vs))
            for chunk in _chunks(exact, OBJECT_BATCH_SIZE):
                found += await self._batch_read(obj, chunk, props, id_property=field)
        else:
            for chunk in self._in_chunks(list(wanted), props):
                found += await self._search_in(obj, field, chunk, props)
        out: dict[str, list[Record]] = {}
        for rec in found:
            got = rec.properties.get(field)
            for v in wanted.get(str(got).strip().lower() if got is not None else "", []):
                if all(r.id != rec.id for r in out.get(v, [])):
                    out.setdefault(v, []).append(rec)
        return out

    @staticmethod
    def _in_chunks(values: list[str], properties: Sequence[str]) -> Iterable[list[str]]:
        """Values split so that each search body stays under HubSpot's 3,000 characters."""
        room = SEARCH_BODY_CHARS - 200 - sum(len(p) + 3 for p in properties)
        chunk: list[str] = []
        used = 0
        for v in values:
            cost = len(v) + 3
            if chunk and (used + cost > room or len(chunk) >= SEARCH_IN_VALUES):
                yield chunk
                chunk, used = [], 0
            chunk.append(v)
            used += cost
        if chunk:
            yield chunk

    # The two look-up searches below page inside the connector, not in the runtime
    # (runtime.paging): they answer `find` / `find_many`, "which records hold this key",
    # whose answer must be whole (a partial one would let a create make a duplicate) and is
    # small (a key is held by one record, or a few, so one page nearly always); a paged
    # look-up protocol would only move HubSpot's search filters into the runtime.
    async def _search_in(self, obj: str, field: str, values: list[str],
                         properties: Sequence[str]) -> list[Record]:
        out: list[Record] = []
        after: str | None = None
        while True:
            body: dict[str, Any] = {
                "filterGroups": [{"filters": [
                    {"propertyName": field, "operator": "IN", "values": values}]}],
                "properties": list(properties),
                "limit": SEARCH_PAGE_SIZE,
            }
            if after:
                body["after"] = after
            answer = await self.http.json("POST", f"/crm/v3/objects/{obj}/search", json=body,
                                          kind="search")
            out.extend(_record(r) for r in answer.get("results") or [])
            after = ((answer.get("paging") or {}).get("next") or {}).get("after")
            if not after:
                return out

    async def _search_eq(self, obj: str, field: str, value: str,
                         properties: Sequence[str], limit: int = 1000) -> list[Record]:
        out: list[Record] = []
        after: str | None = None
        while len(out) < limit:
            body: dict[str, Any] = {
                "filterGroups": [{"filters": [
                    {"propertyName": field, "operator": "EQ", "value": value}]}],
                "properties": list(dict.fromkeys([*properties, field])),
                "limit": SEARCH_PAGE_SIZE,
            }
            if after:
                body["after"] = after
            answer = await self.http.json("POST", f"/crm/v3/objects/{obj}/search", json=body,
                                          kind="search")
            out.extend(_record(r) for r in answer.get("results") or [])
            after = ((answer.get("paging") or {}).get("next") or {}).get("after")
            if not after:
                break
        return out

    async def _search(self, obj: str, filters: list[dict[str, Any]], sort: str,
                      properties: Sequence[str]) -> list[dict[str, Any]]:
        body = {
            "filterGroups": [{"filters": filters}],
            "sorts": [{"propertyName": sort, "direction": "ASCENDING"}],
            "properties": list(properties),
            "limit": SEARCH_PAGE_SIZE,
        }
        answer = await self.http.json("POST", f"/crm/v3/objects/{obj}/search", json=body,
                                      kind="search")
        return list(answer.get("results") or [])

    # --- incremental changes --------------------------------------------------------------------

    def start_cursor(self) -> str:
        """A cursor meaning "changes from now on" (allowing for the index lag)."""
        start = self._now_ms() - int(self.index_lag * 1000)
        return encode_cursor(ChangesCursor(ts=start, arch_ts=start))

    async def changes_since(self, object_name: str, cursor: str | None,
                            properties: Sequence[str]) -> Changes:
        """One page of the records changed after `cursor`, oldest first, then of newly
        archived ones; `more=True` until the pass has reached (now − index_lag). The runtime
        calls again while `more` (`runtime.paging.change_pages`).

        A page is one search sorted ascending on the last-modified property with the filter
        moved forward (never deep paging, so the 10,000-result cap is never reached); records
        sharing one timestamp are paged by `hs_object_id` (the cursor's tie mode). Once the
        search has caught up, archived records come from the archived list (`archivedAt`)
        with `archived=True`, a list page per call (a call whose search caught up also reads
        the archived list's first page, so a quiet poll stays one call).
        """
        obj = resolve_object(object_name)
        if cursor is None:
            return Changes(records=[], cursor=self.start_cursor(), more=False)
        try:
            cur = decode_cursor(cursor)
        except ValueError as exc:
            raise ConnectorError("record", "internal", str(exc)) from None
        upper = self._now_ms() - int(self.index_lag * 1000)
        records: list[Record] = []
        # While a pass over the archived list runs, its pages come first; the search goes on
        # after it.
        searching = cur.arch_upper is None
        if searching and not await self._changed_page(obj, cur, upper, properties, records):
            return Changes(records=records, cursor=encode_cursor(cur), more=True)
        more = await self._archived_page(obj, cur, upper, properties, records)
        return Changes(records=records, cursor=encode_cursor(cur), more=more)

    async def _changed_page(self, obj: str, cur: ChangesCursor, upper: int,
                            properties: Sequence[str], records: list[Record]) -> bool:
        """One search page of changed records into `records`, moving `cur`; True once the
        search has caught up with `upper`."""
        lastmod = last_modified_property(obj)
        props = list(dict.fromkeys([*properties, lastmod, "hs_object_id"]))
        # A search body holds at most 3,000 characters (fact sheet §2): with more properties
        # than fit, the search finds the changed records and a batch read brings them whole.
        fill = len(json.dumps(props)) > SEARCH_PROPERTIES_CHARS
        if fill:
            props = [lastmod, "hs_object_id"]
        found: list[Record] = []
        caught_up = False
        if cur.tie:
            page = await self._search(obj, [
                {"propertyName": lastmod, "operator": "EQ", "value": str(cur.ts)},
                {"propertyName": "hs_object_id", "operator": "GT",
                 "value": str(cur.after_id)},
            ], "hs_object_id", props)
            seen = set(cur.seen)
            for r in page:
                rec = _record(r, lastmod)
                if rec.id not in seen:
                    found.append(rec)
                cur.after_id = max(cur.after_id, int(rec.id))
            if len(page) < SEARCH_PAGE_SIZE:
                # The tie is read: the search goes on after it on the next call.
                cur.tie = False
                cur.after_id = 0
                cur.seen = []
        elif cur.ts >= upper:
            caught_up = True
        else:
            page = await self._search(obj, [
                {"propertyName": lastmod, "operator": "GT", "value": str(cur.ts)},
                {"propertyName": lastmod, "operator": "LTE", "value": str(upper)},
            ], lastmod, props)
            found = [_record(r, lastmod) for r in page]
            if len(page) < SEARCH_PAGE_SIZE:
                caught_up = True
                if found:
                    cur.ts = max(cur.ts, found[-1].updated_at)
                    cur.seen = []
            else:
                # A full page: records at its last timestamp may continue beyond it. Page
                # them by id (any number of them), skipping the ones this page returned.
                last_ts = found[-1].updated_at
                cur.ts = last_ts
                cur.tie = True
                cur.after_id = 0
                cur.seen = [r.id for r in found if r.updated_at == last_ts]
        if fill and found:
            found = await self._whole(obj, found, properties)
        records.extend(found)
        return caught_up

    async def _whole(self, obj: str, records: list[Record],
                     properties: Sequence[str]) -> list[Record]:
        """`records` (found by a search with few properties) with every property, by batch
        read, keeping the version the search saw (the cursor moved by it). One archived in
        between is left out: the archived pass reports it."""
        got: dict[str, Record] = {}
        for chunk in _chunks(list(dict.fromkeys(r.id for r in records)), OBJECT_BATCH_SIZE):
            got.update((r.id, r) for r in await self._batch_read(obj, chunk, properties))
        return [Record(id=r.id, properties=got[r.id].properties, updated_at=r.updated_at)
                for r in records if r.id in got]

    async def _archived_page(self, obj: str, cur: ChangesCursor, upper: int,
                             properties: Sequence[str], records: list[Record]) -> bool:
        """One page of the pass over the archived list into `records`; True if the pass is
        not finished."""
        if cur.arch_upper is None:
            if upper <= cur.arch_ts:
                return False
            cur.arch_upper = upper
            cur.arch_after = None
        params: dict[str, str | int] = {"limit": LIST_PAGE_SIZE, "archived": "true"}
        joined = ",".join(properties)
        # An archived record is reported as archived whatever it held: a list too long
        # for the URL is left out (see _list_page).
        if properties and len(quote(joined, safe="")) <= MAX_PROPERTIES_QUERY:
            params["properties"] = joined
        if cur.arch_after:
            params["after"] = cur.arch_after
        body = await self.http.json("GET", f"/crm/v3/objects/{obj}", params=params)
        for r in body.get("results") or []:
            at = _to_ms(r.get("archivedAt")) or _to_ms(r.get("updatedAt")) or 0
            if cur.arch_ts < at <= cur.arch_upper:
                rec = _record(r)
                records.append(Record(id=rec.id, properties=rec.properties, updated_at=at,
                                      archived=True))
        nxt = ((body.get("paging") or {}).get("next") or {}).get("after")
        if not nxt:
            cur.arch_ts = cur.arch_upper
            cur.arch_upper = None
            cur.arch_after = None
            return False
        cur.arch_after = str(nxt)
        return True

    # --- writing --------------------------------------------------------------------------------

    async def create(self, object_name: str,
                     inputs: Sequence[Mapping[str, Any]]) -> list[WriteResult]:
        """Batch create (chunks of 100), one result per input in input order.

        A conflict (the unique key exists) is `RecordError("conflict", existing_id=...)`; a
        409 refusing a batch of several inputs (it names only the first, §4) is
        `RecordError("conflict", whole_batch=True)` for each. A create whose answer was lost
        is `RecordError("api_unavailable", unknown=True, sent_at=...)`, never sent again
        here: the runtime heals both (`runtime.create_healing`, through `create_keys`).
        """
        obj = resolve_object(object_name)
        results: list[WriteResult | None] = [None] * len(inputs)
        items = [_Item(i, props) for i, props in enumerate(inputs)]
        for chunk in _chunks(items, OBJECT_BATCH_SIZE):
            await self._create_items(obj, list(chunk), results)
        return [r if r is not None else WriteResult(ok=False, error=RecordError(
            "internal", "no result for this input")) for r in results]

    async def _create_items(self, obj: str, items: list[_Item],
                            results: list[WriteResult | None]) -> None:
        if not items:
            return
        body = {"inputs": [{"properties": dict(it.properties), "objectWriteTraceId": it.trace_id}
                           for it in items]}
        sent_at = self._now_ms()
        try:
            response = await self.http.request("POST", f"/crm/v3/objects/{obj}/batch/create",
                                               json=body, idempotent=False)
        except HttpFailure as exc:
            if exc.ambiguous:
                log.warning("hubspot_create_outcome_unknown", object=obj, inputs=len(items),
                            error=exc.message)
                wait = max(exc.resolution.min_wait, exc.retry_after or 0.0)
                for it in items:
                    results[it.index] = _unknown(sent_at, wait)
                return
            if exc.kind != "record":
                raise
            if exc.status == 409:
                existing = _EXISTING_ID.search(exc.detail.message)
                err = RecordError(category="conflict", message=exc.detail.message or exc.message,
                                  existing_id=existing.group(1) if existing else None)
                if len(items) > 1:
                    # Which inputs exist, the answer does not say: the runtime finds them.
                    err = RecordError(category="conflict", message=err.message,
                                      whole_batch=True)
                for it in items:
                    results[it.index] = WriteResult(ok=False, error=err)
                return
            await self._split(obj, items, results, exc)
            return
        answer = decode(response)
        unresolved = self._apply_results(items, answer, results)
        if unresolved:
            log.warning("hubspot_create_unattributed", object=obj, inputs=len(unresolved))
            for it in unresolved:
                results[it.index] = _unknown(sent_at, 0.0)

    def _apply_results(self, items: list[_Item], answer: Mapping[str, Any],
                       results: list[WriteResult | None]) -> list[_Item]:
        """Fill `results` from a 200/201/207 batch answer; return the items it says nothing of.

        Results are matched by `objectWriteTraceId` (creates) or id (updates); errors by their
        `context.objectWriteTraceId` / `context.ids`.
        """
        by_trace: dict[str, _Item] = {it.trace_id: it for it in items}
        by_id: dict[str, _Item] = {it.id: it for it in items if it.id is not None}
        done: set[int] = set()
        untraced: list[Mapping[str, Any]] = []
        for r in answer.get("results") or []:
            it = by_trace.get(str(r.get("objectWriteTraceId")))
            if it is None and by_id:
                it = by_id.get(str(r.get("id")))
            if it is None or it.index in done:
                untraced.append(r)
                continue
            results[it.index] = WriteResult(ok=True, record=_record(r))
            done.add(it.index)
        unattributed: list[Mapping[str, Any]] = []
        for e in answer.get("errors") or []:
            targets = [by_trace[t] for t in _context_values(e, "objectWriteTraceId")
                       if t in by_trace]
            targets += [by_id[i] for i in _context_values(e, "ids", "id") if i in by_id]
            if not targets:
                unattributed.append(e)
            err = record_error(e)
            for it in targets:
                if it.index not in done:
                    results[it.index] = WriteResult(ok=False, error=err)
                    done.add(it.index)
        rest = [it for it in items if it.index not in done]
        if rest and untraced and len(untraced) == len(rest) and not unattributed:
            # No trace ids in the answer: HubSpot answers in input order.
            for it, r in zip(rest, untraced, strict=True):
                results[it.index] = WriteResult(ok=True, record=_record(r))
            return []
        if rest and unattributed and not untraced and len(unattributed) == len(rest):
            for it, e in zip(rest, unattributed, strict=True):
                results[it.index] = WriteResult(ok=False, error=record_error(e))
            return []
        return rest

    async def _split(self, obj: str, items: list[_Item], results: list[WriteResult | None],
                     exc: HttpFailure) -> None:
        """A whole-batch refusal: a single input gets the error, a batch is halved."""
        await bisect(items, exc, lambda half: self._create_items(obj, half, results),
                     lambda it, e: _fail(results, it.index, e))

    # --- what the runtime heals creates with (SupportsCreateHealing) ------------------------------

    created_at_field = "createdate"

    @property
    def retry_policy(self) -> RetryPolicy:
        return self.http.policy

    def created_at(self, record: Record) -> int | None:
        return _to_ms(record.properties.get("createdate"))

    async def create_keys(self, object_name: str, inputs: Sequence[Mapping[str, Any]]
                          ) -> list[CreateKey | None]:
        """Per input, what finds its record: contact email, else a unique property (both read
        by `idProperty`, consistent at once, §1.1), else company domain or name (a search,
        which lags behind writes by up to `index_lag`)."""
        obj = resolve_object(object_name)
        unique: list[str] | None = None
        out: list[CreateKey | None] = []
        for props in inputs:
            candidates: list[tuple[str, bool]] = []
            if obj == "contacts":
                candidates.append(("email", True))
            if obj != "contacts" or not props.get("email"):
                if unique is None:
                    unique = await self._unique_properties(obj)
                candidates += [(u, True) for u in unique]
            if obj == "companies":
                candidates += [("domain", False), ("name", False)]
            key: CreateKey | None = None
            for prop, consistent in candidates:
                value = props.get(prop)
                if value not in (None, ""):
                    key = CreateKey(prop, str(value), consistent)
                    break
            out.append(key)
        return out

    async def update(self, object_name: str, inputs: Sequence[tuple[str, Mapping[str, Any]]],
                     expected: Sequence[Record | None] | None = None) -> list[WriteResult]:
        """Batch update (chunks of 100, an id at most once per request); one result per input.
        An unknown id is `RecordError("not_found")`. HubSpot has no conditional update
        (`capabilities.conditional_update` is off): `expected` must be None or all None."""
        if expected is not None and any(e is not None for e in expected):
            raise ValueError("HubSpot cannot make an update conditional on the values read")
        obj = resolve_object(object_name)
        results: list[WriteResult | None] = [None] * len(inputs)
        chunk: list[_Item] = []
        ids: set[str] = set()
        for i, (rid, props) in enumerate(inputs):
            rid = str(rid)
            if len(chunk) >= OBJECT_BATCH_SIZE or rid in ids:
                await self._update_items(obj, chunk, results)
                chunk, ids = [], set()
            chunk.append(_Item(i, props, rid))
            ids.add(rid)
        await self._update_items(obj, chunk, results)
        return [r if r is not None else WriteResult(ok=False, error=RecordError(
            "internal", "no result for this input")) for r in results]

    async def _update_items(self, obj: str, items: list[_Item],
                            results: list[WriteResult | None]) -> None:
        if not items:
            return
        body = {"inputs": [{"id": it.id, "properties": dict(it.properties)} for it in items]}
        try:
            response = await self.http.request("POST", f"/crm/v3/objects/{obj}/batch/update",
                                               json=body)
        except HttpFailure as exc:
            if exc.kind != "record":
                raise
            await bisect(items, exc, lambda half: self._update_items(obj, half, results),
                         lambda it, e: _fail(results, it.index, e))
            return
        rest = self._apply_results(items, decode(response), results)
        for it in rest:
            results[it.index] = WriteResult(ok=False, error=RecordError(
                category="api_unavailable", retryable=True,
                message="HubSpot's answer did not mention this update"))

    async def upsert(self, object_name: str, id_property: str,
                     inputs: Sequence[Mapping[str, Any]]) -> list[WriteResult]:
        """Batch upsert by `id_property` (contact `email` or a unique property; chunks of 100):
        each input's value of `id_property` identifies the record; created or updated."""
        obj = resolve_object(object_name)
        results: list[WriteResult | None] = [None] * len(inputs)
        items = [_Item(i, props) for i, props in enumerate(inputs)]
        for chunk in _chunks(items, OBJECT_BATCH_SIZE):
            await self._upsert_items(obj, id_property, list(chunk), results)
        return [r if r is not None else WriteResult(ok=False, error=RecordError(
            "internal", "no result for this input")) for r in results]

    async def _upsert_items(self, obj: str, id_property: str, items: list[_Item],
                            results: list[WriteResult | None]) -> None:
        if not items:
            return
        missing = [it for it in items if not it.properties.get(id_property)]
        for it in missing:
            results[it.index] = WriteResult(ok=False, error=RecordError(
                "missing_required_field", f"an upsert needs a value of {id_property}"))
        items = [it for it in items if it.properties.get(id_property)]
        if not items:
            return
        body = {"inputs": [{"id": str(it.properties[id_property]), "idProperty": id_property,
                            "properties": dict(it.properties)} for it in items]}
        try:
            response = await self.http.request("POST", f"/crm/v3/objects/{obj}/batch/upsert",
                                               json=body)
        except HttpFailure as exc:
            if exc.kind != "record":
                raise
            await bisect(items, exc,
                         lambda half: self._upsert_items(obj, id_property, half, results),
                         lambda it, e: _fail(results, it.index, e))
            return
        answer = decode(response)
        by_value = {str(it.properties[id_property]).strip().lower(): it for it in items}
        for r in answer.get("results") or []:
            v = (r.get("properties") or {}).get(id_property)
            match = by_value.get(str(v).strip().lower()) if v is not None else None
            if match is not None:
                results[match.index] = WriteResult(ok=True, record=_record(r))
        errors = list(answer.get("errors") or [])
        for it in items:
            if results[it.index] is None:
                results[it.index] = WriteResult(ok=False, error=record_error(errors[0]) if errors
                                                else RecordError("api_unavailable",
                                                                 "no result for this upsert",
                                                                 retryable=True))

    async def archive(self, object_name: str, ids: Sequence[str]) -> list[WriteResult]:
        """Batch archive (chunks of 100). Archiving an unknown or archived id succeeds."""
        obj = resolve_object(object_name)
        results: list[WriteResult | None] = [None] * len(ids)
        items = [_Item(i, {}, str(rid)) for i, rid in enumerate(ids)]
        for chunk in _chunks(items, OBJECT_BATCH_SIZE):
            await self._archive_items(obj, list(chunk), results)
        return [r or WriteResult(ok=True) for r in results]

    async def _archive_items(self, obj: str, items: list[_Item],
                             results: list[WriteResult | None]) -> None:
        if not items:
            return
        body = {"inputs": [{"id": it.id} for it in dict((it.id, it) for it in items).values()]}
        try:
            await self.http.request("POST", f"/crm/v3/objects/{obj}/batch/archive", json=body)
        except HttpFailure as exc:
            if exc.kind != "record":
                raise

            def alone(it: _Item, e: HttpFailure) -> None:
                # Archiving a record that is gone already is done.
                if e.category == "not_found":
                    results[it.index] = WriteResult(ok=True)
                else:
                    _fail(results, it.index, e)

            await bisect(items, exc, lambda half: self._archive_items(obj, half, results), alone)
            return
        for it in items:
            results[it.index] = WriteResult(ok=True)

    # --- associations (v4) --------------------------------------------------------------------

    async def read_associations(self, from_object: str, to_object: str,
                                ids: Sequence[str]) -> dict[str, list[str]]:
        """For each id, the associated `to_object` ids (batch read ≤1,000 inputs, following
        each input's paging)."""
        frm, to = resolve_object(from_object), resolve_object(to_object)
        out: dict[str, list[str]] = {str(i): [] for i in ids}
        seen: dict[str, set[str]] = {i: set() for i in out}
        todo: list[dict[str, str]] = [{"id": i} for i in out]
        while todo:
            nxt: list[dict[str, str]] = []
            for chunk in _chunks(todo, ASSOCIATION_READ_BATCH):
                answer = await self.http.json(
                    "POST", f"/crm/v4/associations/{frm}/{to}/batch/read",
                    json={"inputs": list(chunk)})
                for r in answer.get("results") or []:
                    fid = str((r.get("from") or {}).get("id"))
                    if fid not in out:
                        continue
                    for t in r.get("to") or []:
                        tid = str(t.get("toObjectId"))
                        if tid not in seen[fid]:
                            seen[fid].add(tid)
                            out[fid].append(tid)
                    after = ((r.get("paging") or {}).get("next") or {}).get("after")
                    if after:
                        nxt.append({"id": fid, "after": str(after)})
            todo = nxt
        return out

    async def write_associations(self, from_object: str, to_object: str,
                                 changes: Sequence[AssociationChange]) -> list[WriteResult]:
        """Create associations (HubSpot-defined type id of the pair, else the default type)
        and remove them (batch archive); one result per change."""
        frm, to = resolve_object(from_object), resolve_object(to_object)
        results: list[WriteResult | None] = [None] * len(changes)
        adds = [(i, c) for i, c in enumerate(changes) if not c.removed]
        removes = [(i, c) for i, c in enumerate(changes) if c.removed]
        for chunk in _chunks(adds, ASSOCIATION_WRITE_BATCH):
            await self._associate(frm, to, list(chunk), results)
        for chunk in _chunks(removes, ASSOCIATION_WRITE_BATCH):
            await self._dissociate(frm, to, list(chunk), results)
        return [r or WriteResult(ok=True) for r in results]

    async def _associate(self, frm: str, to: str, items: list[tuple[int, AssociationChange]],
                         results: list[WriteResult | None]) -> None:
        if not items:
            return
        type_id = ASSOCIATION_TYPE_IDS.get((frm, to))
        if type_id is not None:
            path = f"/crm/v4/associations/{frm}/{to}/batch/create"
            inputs = [{"from": {"id": c.from_id}, "to": {"id": c.to_id},
                       "types": [{"associationCategory": "HUBSPOT_DEFINED",
                                  "associationTypeId": type_id}]} for _, c in items]
        else:
            path = f"/crm/v4/associations/{frm}/{to}/batch/associate/default"
            inputs = [{"from": {"id": c.from_id}, "to": {"id": c.to_id}} for _, c in items]
        try:
            answer = await self.http.json("POST", path, json={"inputs": inputs})
        except HttpFailure as exc:
            if exc.kind != "record":
                raise

            def alone(it: tuple[int, AssociationChange], e: HttpFailure) -> None:
                results[it[0]] = WriteResult(ok=False, error=RecordError(
                    "association_failed", e.message))

            await bisect(items, exc, lambda half: self._associate(frm, to, half, results), alone)
            return
        done: set[tuple[str, str]] = set()
        for r in answer.get("results") or []:
            f = r.get("fromObjectId", (r.get("from") or {}).get("id"))
            t = r.get("toObjectId", (r.get("to") or {}).get("id"))
            done.add((str(f), str(t)))
        errors = list(answer.get("errors") or [])
        for i, c in items:
            if (c.from_id, c.to_id) in done or not errors:
                results[i] = WriteResult(ok=True)
                continue
            mine = [e for e in errors if {c.from_id, c.to_id} & set(_all_context_values(e))]
            e = (mine or errors)[0]
            results[i] = WriteResult(ok=False, error=RecordError(
                "association_failed", str(e.get("message") or "association failed")))

    async def _dissociate(self, frm: str, to: str, items: list[tuple[int, AssociationChange]],
                          results: list[WriteResult | None]) -> None:
        grouped: dict[str, list[str]] = {}
        for _, c in items:
            grouped.setdefault(c.from_id, []).append(c.to_id)
        inputs = [{"from": {"id": f}, "to": [{"id": t} for t in ts]} for f, ts in grouped.items()]
        try:
            await self.http.request("POST", f"/crm/v4/associations/{frm}/{to}/batch/archive",
                                    json={"inputs": inputs})
        except HttpFailure as exc:
            if exc.kind != "record":
                raise
            for i, _ in items:
                results[i] = WriteResult(ok=False, error=RecordError(
                    "association_failed", exc.message))
            return
        for i, _ in items:
            results[i] = WriteResult(ok=True)

    # --- events ---------------------------------------------------------------------------------

    async def send_events(self, events: Sequence[tuple[str, AppEvent]]) -> list[WriteResult]:
        """`POST /events/v3/send` per event (custom behavioral events on the contact). Each
        carries a `uuid` derived from the app's event id, so a resend is recognised."""
        results: list[WriteResult | None] = [None] * len(events)
        limiter = trio.CapacityLimiter(4)
        fatal: list[ConnectorError] = []

        async def send(i: int, contact_id: str, event: AppEvent,
                       cancel: trio.CancelScope) -> None:
            async with limiter:
                body: dict[str, Any] = {
                    "eventName": event.name,
                    "objectId": str(contact_id),
                    "occurredAt": _ms_iso(event.occurred_at),
                    "properties": dict(event.properties),
                    "uuid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"crmsync:{event.event_id}")),
                }
                if event.contact_key:
                    body["email"] = event.contact_key
                try:
                    await self.http.request("POST", "/events/v3/send", json=body)
                except HttpFailure as exc:
                    if exc.kind == "record":
                        results[i] = WriteResult(ok=False, error=_failure_error(exc))
                    else:
                        # A failure of the whole connection: stop sending, raise it once.
                        fatal.append(exc)
                        cancel.cancel()
                    return
                results[i] = WriteResult(ok=True)

        async with trio.open_nursery() as nursery:
            for i, (contact_id, event) in enumerate(events):
                nursery.start_soon(send, i, contact_id, event, nursery.cancel_scope)
        if fatal:
            raise fatal[0]
        return [r or WriteResult(ok=False, error=RecordError("internal", "not sent"))
                for r in results]


if TYPE_CHECKING:
    def _implements(c: HubSpotConnector) -> tuple[Connector, SupportsPipelines,
                                                  SupportsAssociations, SupportsEventIntake,
                                                  SupportsPropertyHistory, SupportsFindMany,
                                                  SupportsIndexedRead, SupportsCreateHealing,
                                                  SupportsScanAssociations]:
        return c, c, c, c, c, c, c, c, c


__all__ = ["HubSpotConnector", "record_error"]
