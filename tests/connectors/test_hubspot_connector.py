"""HubSpotConnector against a small stateful fake behind httpx.MockTransport, on MockClock.

The fake (`FakeHub`) implements just the fact-sheet behaviour the connector relies on, so the
connector's logic can be driven into corners (409 on a whole batch, 207s, timeouts after the
write applied, 429 storms, outages) deterministically. Creates whose answer is lost and
whole-batch 409s are settled by the runtime (`runtime.create_healing.create_healed`, as the
batch writer sends every create): those tests drive the connector through it. Contract tests
against the real emulator live in test_hubspot_emulator.py.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from contextlib import aclosing
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import trio

from crmsync.connectors.base import (
    AppEvent,
    AssociationChange,
    Connector,
    ConnectorError,
    SupportsAssociations,
    SupportsEventIntake,
    SupportsPipelines,
)
from crmsync.connectors.hubspot import HubSpotConnector
from crmsync.connectors.hubspot.cursor import decode_cursor
from crmsync.connectors.ratelimit import RateBudget
from crmsync.runtime.create_healing import create_healed
from crmsync.runtime.paging import change_pages

BASE = "https://api.hubapi.com"
T0 = 1_700_000_000_000  # the fake's wall clock at the start, epoch ms


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


def err(status: int, category: str, message: str, **extra: Any) -> httpx.Response:
    return httpx.Response(status, json={"status": "error", "message": message,
                                        "correlationId": "c0ffee", "category": category,
                                        **extra})


class FakeHub:
    """A minimal stateful HubSpot: objects, batch endpoints, search, properties, pipelines,
    associations v4, events; every request is logged with its (virtual) time."""

    UNIQUE = {"contacts": "email", "deals": "ext_id"}

    def __init__(self) -> None:
        self.now_ms = T0
        self.next_id = 100
        self.records: dict[str, dict[str, dict[str, Any]]] = {}
        self.assocs: dict[tuple[str, str], set[tuple[str, str]]] = {}
        self.events: list[dict[str, Any]] = []
        self.log: list[tuple[float, str, str, Any]] = []
        self.urls: list[str] = []
        # Faults: `before(request)` may answer instead of the fake; `after(request, response)`
        # runs once the request was applied and may replace or drop (raise) the answer.
        self.before: Callable[[httpx.Request], Awaitable[httpx.Response | None]] | None = None
        self.after: Callable[[httpx.Request, httpx.Response],
                             Awaitable[httpx.Response]] | None = None
        self.pipelines_status = 200

    # --- state helpers ------------------------------------------------------------------------

    def lastmod(self, obj: str) -> str:
        return "lastmodifieddate" if obj == "contacts" else "hs_lastmodifieddate"

    def add(self, obj: str, props: dict[str, str], *, at: int | None = None) -> str:
        rid = str(self.next_id)
        self.next_id += 1
        at = self.now_ms if at is None else at
        rec = {"id": rid, "properties": {**props, "hs_object_id": rid, "createdate": str(at),
                                         self.lastmod(obj): str(at)},
               "createdAt": iso(at), "updatedAt": iso(at), "archived": False}
        self.records.setdefault(obj, {})[rid] = rec
        return rid

    def touch(self, obj: str, rid: str, props: dict[str, str], *, at: int | None = None) -> None:
        at = self.now_ms if at is None else at
        rec = self.records[obj][rid]
        rec["properties"].update(props)
        rec["properties"][self.lastmod(obj)] = str(at)
        rec["updatedAt"] = iso(at)

    def archive(self, obj: str, rid: str, *, at: int | None = None) -> None:
        rec = self.records[obj][rid]
        rec["archived"] = True
        rec["archivedAt"] = iso(self.now_ms if at is None else at)

    def live(self, obj: str) -> list[dict[str, Any]]:
        return [r for r in self.records.get(obj, {}).values() if not r["archived"]]

    def by_unique(self, obj: str, prop: str, value: str) -> dict[str, Any] | None:
        for r in self.live(obj):
            if str(r["properties"].get(prop, "")).lower() == value.lower():
                return r
        return None

    def view(self, rec: dict[str, Any], names: list[str] | None) -> dict[str, Any]:
        props = rec["properties"]
        out = dict(rec)
        out["properties"] = ({n: props[n] for n in names if n in props} if names
                             else dict(props))
        return out

    def count(self, method: str, path_re: str) -> int:
        return sum(1 for _, m, p, _ in self.log if m == method and re.fullmatch(path_re, p))

    # --- HTTP ---------------------------------------------------------------------------------

    async def handler(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else None
        self.log.append((trio.current_time(), request.method, request.url.path, body))
        self.urls.append(str(request.url))
        if self.before is not None:
            early = await self.before(request)
            if early is not None:
                return early
        response = self.route(request, body)
        if self.after is not None:
            response = await self.after(request, response)
        return response

    def route(self, request: httpx.Request, body: Any) -> httpx.Response:
        path, method, q = request.url.path, request.method, request.url.params
        if request.headers.get("Authorization") != "Bearer test-token":
            return err(401, "INVALID_AUTHENTICATION", "Authentication credentials not found.")
        m = re.fullmatch(r"/crm/v3/objects/(\w+)(/.*)?", path)
        if m:
            obj, rest = m.group(1), m.group(2) or ""
            if method == "GET" and not rest:
                return self.list(obj, q)
            if method == "POST":
                handler = {"/batch/read": self.batch_read, "/batch/create": self.batch_create,
                           "/batch/update": self.batch_update,
                           "/batch/archive": self.batch_archive,
                           "/batch/upsert": self.batch_upsert, "/search": self.search}[rest]
                return handler(obj, body, q)
        m = re.fullmatch(r"/crm/v3/properties/(\w+)", path)
        if m:
            return httpx.Response(200, json={"results": self.properties(m.group(1))})
        if path == "/crm/v3/pipelines/deals":
            if self.pipelines_status == 403:
                return err(403, "MISSING_SCOPES", "This app hasn't been granted all required "
                           "scopes to make this call.")
            return httpx.Response(200, json={"results": [
                {"id": "p2", "label": "B", "displayOrder": 1, "archived": False,
                 "stages": [{"id": "s3", "label": "Won", "displayOrder": 1, "archived": False}]},
                {"id": "default", "label": "Sales Pipeline", "displayOrder": 0,
                 "archived": False,
                 "stages": [{"id": "closedwon", "label": "Closed won", "displayOrder": 5,
                             "archived": False},
                            {"id": "appointmentscheduled", "label": "Appointment",
                             "displayOrder": 0, "archived": False},
                            {"id": "gone", "label": "Gone", "displayOrder": 1,
                             "archived": True}]},
                {"id": "old", "label": "Old", "displayOrder": 2, "archived": True,
                 "stages": []},
            ]})
        m = re.fullmatch(r"/crm/v4/associations/(\w+)/(\w+)/batch/(read|create|archive|"
                         r"associate/default)", path)
        if m:
            return self.associations(m.group(1), m.group(2), m.group(3), body)
        if path == "/events/v3/send":
            if not body.get("eventName", "").startswith("pe"):
                return err(400, "VALIDATION_ERROR", "Event name not found")
            self.events.append(body)
            return httpx.Response(204)
        return err(404, "OBJECT_NOT_FOUND", f"no route {method} {path}")

    def list(self, obj: str, q: httpx.QueryParams) -> httpx.Response:
        archived = q.get("archived") == "true"
        names = q.get("properties").split(",") if q.get("properties") else None
        rows = sorted((r for r in self.records.get(obj, {}).values()
                       if r["archived"] == archived), key=lambda r: int(r["id"]))
        after = int(q.get("after") or 0)
        limit = int(q.get("limit") or 10)
        rows = [r for r in rows if int(r["id"]) >= after]
        page = rows[:limit]
        out: dict[str, Any] = {"results": [self.view(r, names) for r in page]}
        if len(rows) > limit:
            out["paging"] = {"next": {"after": rows[limit]["id"], "link": "..."}}
        return httpx.Response(200, json=out)

    def batch_read(self, obj: str, body: Any, q: httpx.QueryParams) -> httpx.Response:
        prop = body.get("idProperty")
        results, errors = [], []
        for inp in body["inputs"]:
            rec = (self.by_unique(obj, prop, inp["id"]) if prop
                   else self.records.get(obj, {}).get(inp["id"]))
            if rec is None or rec["archived"]:
                errors.append({"status": "error", "category": "OBJECT_NOT_FOUND",
                               "message": "Could not get some records",
                               "context": {"ids": [inp["id"]]}})
            else:
                results.append(self.view(rec, body.get("properties") or None))
        out = {"status": "COMPLETE", "results": results}
        if errors:
            return httpx.Response(207, json={**out, "numErrors": len(errors), "errors": errors})
        return httpx.Response(200, json=out)

    def conflict(self, obj: str, props: dict[str, str]) -> dict[str, Any] | None:
        prop = self.UNIQUE.get(obj)
        if prop and props.get(prop):
            return self.by_unique(obj, prop, props[prop])
        return None

    def batch_create(self, obj: str, body: Any, q: httpx.QueryParams) -> httpx.Response:
        for inp in body["inputs"]:
            existing = self.conflict(obj, inp["properties"])
            if existing is not None:
                return err(409, "CONFLICT",
                           f"Contact already exists. Existing ID: {existing['id']}")
        results, errors = [], []
        for inp in body["inputs"]:
            bad = [k for k, v in inp["properties"].items() if k == "amount" and not
                   str(v).replace(".", "").isdigit()]
            if bad:
                errors.append({"status": "error", "category": "VALIDATION_ERROR",
                               "message": "Property values were not valid",
                               "context": {"objectWriteTraceId": [inp["objectWriteTraceId"]]},
                               "errors": [], "links": {}})
                continue
            rid = self.add(obj, inp["properties"])
            results.append({**self.records[obj][rid],
                            "objectWriteTraceId": inp["objectWriteTraceId"]})
        out = {"status": "COMPLETE", "results": results}
        if errors:
            return httpx.Response(207, json={**out, "numErrors": len(errors), "errors": errors})
        return httpx.Response(201, json=out)

    def batch_update(self, obj: str, body: Any, q: httpx.QueryParams) -> httpx.Response:
        ids = [i["id"] for i in body["inputs"]]
        if len(set(ids)) != len(ids):
            return err(400, "VALIDATION_ERROR", "Duplicate IDs found in batch input")
        for inp in body["inputs"]:
            if inp["properties"].get("amount") == "lots":
                return err(400, "VALIDATION_ERROR", "Property values were not valid")
        results, errors = [], []
        for inp in body["inputs"]:
            rec = self.records.get(obj, {}).get(inp["id"])
            if rec is None or rec["archived"]:
                errors.append({"status": "error", "category": "OBJECT_NOT_FOUND",
                               "message": f"Object not found. objectId are usually numeric. "
                               f"{inp['id']}", "context": {"ids": [inp["id"]]}})
                continue
            self.touch(obj, inp["id"], inp["properties"])
            results.append(rec)
        out = {"status": "COMPLETE", "results": results}
        if errors:
            return httpx.Response(207, json={**out, "numErrors": len(errors), "errors": errors})
        return httpx.Response(200, json=out)

    def batch_upsert(self, obj: str, body: Any, q: httpx.QueryParams) -> httpx.Response:
        results = []
        for inp in body["inputs"]:
            rec = self.by_unique(obj, inp["idProperty"], inp["id"])
            if rec is None:
                rid = self.add(obj, {**inp["properties"], inp["idProperty"]: inp["id"]})
                results.append({**self.records[obj][rid], "new": True})
            else:
                self.touch(obj, rec["id"], inp["properties"])
                results.append({**rec, "new": False})
        return httpx.Response(200, json={"status": "COMPLETE", "results": results})

    def batch_archive(self, obj: str, body: Any, q: httpx.QueryParams) -> httpx.Response:
        for inp in body["inputs"]:
            rec = self.records.get(obj, {}).get(inp["id"])
            if rec is not None and not rec["archived"]:
                self.archive(obj, inp["id"])
        return httpx.Response(204)

    def search(self, obj: str, body: Any, q: httpx.QueryParams) -> httpx.Response:
        def num(v: Any) -> Any:
            try:
                return int(v)
            except (TypeError, ValueError):
                return str(v).lower()

        def match(rec: dict[str, Any], f: dict[str, Any]) -> bool:
            v = rec["properties"].get(f["propertyName"])
            if v is None:
                return False
            a, b = num(v), num(f.get("value"))
            if f["operator"] == "IN":  # string values lowercase (fact sheet §2)
                return a in [num(x) for x in f.get("values") or []]
            return {"EQ": a == b, "GT": a > b, "GTE": a >= b, "LT": a < b,
                    "LTE": a <= b}[f["operator"]]

        groups = body.get("filterGroups") or [{"filters": []}]
        rows = [r for r in self.live(obj)
                if any(all(match(r, f) for f in g["filters"]) for g in groups)]
        sorts = body.get("sorts") or []
        if sorts:
            key = sorts[0]["propertyName"]
            # Ties come back in an unspecified order: here, newest id first, to make sure
            # the connector never relies on it.
            rows.sort(key=lambda r: -int(r["id"]))
            rows.sort(key=lambda r: num(r["properties"].get(key)),
                      reverse=sorts[0].get("direction") == "DESCENDING")
        limit = min(int(body.get("limit") or 10), 200)
        after = int(body.get("after") or 0)
        if after + limit > 10_000:
            return err(400, "VALIDATION_ERROR", "paging past 10,000 results")
        page = rows[after:after + limit]
        out: dict[str, Any] = {"total": len(rows),
                               "results": [self.view(r, body.get("properties")) for r in page]}
        if after + limit < len(rows):
            out["paging"] = {"next": {"after": str(after + limit)}}
        return httpx.Response(200, json=out)

    def properties(self, obj: str) -> list[dict[str, Any]]:
        def p(name: str, type_: str = "string", **kw: Any) -> dict[str, Any]:
            return {"name": name, "label": name, "type": type_, "fieldType": "text",
                    "groupName": "info", "description": "", "options": [], **kw}
        return [
            p("email", hasUniqueValue=obj == "contacts"),
            p("firstname"),
            p("amount", "number"),
            p("ext_id", hasUniqueValue=obj == "deals"),
            p("hs_object_id", "number", hasUniqueValue=True,
              modificationMetadata={"readOnlyValue": True}),
            p("lastmodifieddate", "datetime", modificationMetadata={"readOnlyValue": True}),
            p("score", "number", calculated=True),
            p("lifecyclestage", "enumeration", options=[
                {"label": "Lead", "value": "lead", "displayOrder": 0, "hidden": False},
                {"label": "Customer", "value": "customer", "displayOrder": 1,
                 "hidden": False}]),
            p("vip", "bool"),
        ]

    def associations(self, frm: str, to: str, op: str, body: Any) -> httpx.Response:
        pairs = self.assocs.setdefault((frm, to), set())
        if op == "read":
            results = []
            for inp in body["inputs"]:
                targets = sorted((t for f, t in pairs if f == inp["id"]), key=int)
                start = int(inp.get("after") or 0)
                chunk = targets[start:start + 2]  # tiny pages to exercise paging
                if not chunk:
                    continue
                r: dict[str, Any] = {"from": {"id": inp["id"]}, "to": [
                    {"toObjectId": int(t), "associationTypes": [
                        {"category": "HUBSPOT_DEFINED", "typeId": 279, "label": None}]}
                    for t in chunk]}
                if start + 2 < len(targets):
                    r["paging"] = {"next": {"after": str(start + 2)}}
                results.append(r)
            return httpx.Response(200, json={"status": "COMPLETE", "results": results})
        if op in ("create", "associate/default"):
            results, errors = [], []
            for inp in body["inputs"]:
                f, t = inp["from"]["id"], inp["to"]["id"]
                if t not in self.records.get(to, {}):
                    errors.append({"status": "error", "category": "VALIDATION_ERROR",
                                   "message": f"{t} is not a valid {to} id",
                                   "context": {"toObjectId": [t]}})
                    continue
                pairs.add((f, t))
                results.append({"fromObjectTypeId": "0-1", "fromObjectId": int(f),
                                "toObjectTypeId": "0-2", "toObjectId": int(t),
                                "labels": []})
            out = {"status": "COMPLETE", "results": results}
            if errors:
                return httpx.Response(207, json={**out, "numErrors": len(errors),
                                                 "errors": errors})
            return httpx.Response(201 if op == "create" else 200, json=out)
        for inp in body["inputs"]:
            for t in inp["to"]:
                pairs.discard((inp["from"]["id"], t["id"]))
        return httpx.Response(204)


@pytest.fixture
def hub() -> FakeHub:
    return FakeHub()


def make(hub: FakeHub, *, budget: RateBudget | None = None, timeout: float = 30.0,
         index_lag: float = 30.0) -> HubSpotConnector:
    client = httpx.AsyncClient(base_url=BASE, transport=httpx.MockTransport(hub.handler),
                               headers={"Authorization": "Bearer test-token"})
    # The fake's wall clock follows trio's (virtual) clock from T0.
    start = trio.current_time()
    hub_clock = hub

    def wall() -> float:
        return (hub_clock.now_ms + (trio.current_time() - start) * 1000) / 1000

    return HubSpotConnector(client, budget or RateBudget(), request_timeout=timeout,
                            index_lag=index_lag, wall_clock=wall)


# --- protocol ---------------------------------------------------------------------------------

async def test_implements_the_protocols(hub, autojump_clock):
    c = make(hub)
    assert isinstance(c, Connector)
    assert isinstance(c, SupportsPipelines)
    assert isinstance(c, SupportsAssociations)
    assert isinstance(c, SupportsEventIntake)
    assert c.capabilities.write_batch_size == 100


# --- reading ----------------------------------------------------------------------------------

async def test_scan_pages_of_100_with_a_resumable_cursor(hub, autojump_clock):
    for i in range(250):
        hub.add("contacts", {"email": f"c{i}@example.com", "firstname": f"C{i}"})
    c = make(hub)
    with trio.fail_after(30):
        p1 = await c.scan("contacts", None, ["email"])
        assert len(p1.records) == 100 and p1.next_cursor
        # A restart resumes from the persisted cursor.
        p2 = await make(hub).scan("contacts", p1.next_cursor, ["email"])
        p3 = await c.scan("contacts", p2.next_cursor, ["email"])
    assert (len(p2.records), len(p3.records), p3.next_cursor) == (100, 50, None)
    ids = [r.id for p in (p1, p2, p3) for r in p.records]
    assert len(set(ids)) == 250
    assert p1.records[0].properties == {"email": "c0@example.com"}
    assert p1.records[0].updated_at == T0
    assert "limit=100" in hub.urls[0] and "archived=false" in hub.urls[0]


async def test_read_in_chunks_unknown_and_archived_ids_absent(hub, autojump_clock):
    ids = [hub.add("contacts", {"email": f"r{i}@example.com"}) for i in range(150)]
    hub.archive("contacts", ids[0])
    c = make(hub)
    with trio.fail_after(30):
        got = await c.read("contacts", [*ids, "999999", ids[5]], ["email"])
    assert set(got) == set(ids[1:])
    assert got[ids[7]].properties["email"] == "r7@example.com"
    assert hub.count("POST", r"/crm/v3/objects/contacts/batch/read") == 2


async def test_find_by_email_reads_by_id_property_others_search(hub, autojump_clock):
    rid = hub.add("contacts", {"email": "Ann@Example.com", "firstname": "Ann"})
    hub.add("contacts", {"email": "bob@example.com", "firstname": "Ann"})
    c = make(hub)
    with trio.fail_after(30):
        [ann] = await c.find("contacts", "email", "ann@example.com", ["firstname"])
        assert ann.id == rid
        assert await c.find("contacts", "email", "nobody@example.com", []) == []
        both = await c.find("contacts", "firstname", "ann", ["firstname"])
    assert len(both) == 2
    assert hub.count("POST", r".*/search") == 1


# --- writing ----------------------------------------------------------------------------------

async def test_create_in_chunks_with_trace_ids(hub, autojump_clock):
    c = make(hub)
    inputs = [{"email": f"n{i}@example.com"} for i in range(230)]
    with trio.fail_after(30):
        results = await c.create("contacts", inputs)
    assert all(r.ok for r in results)
    assert [r.record.properties["email"] for r in results if r.record] == [
        i["email"] for i in inputs]
    assert hub.count("POST", r".*/batch/create") == 3
    sent = [b for _, m, p, b in hub.log if p.endswith("/batch/create")]
    assert sent[0]["inputs"][0]["objectWriteTraceId"] == "0"
    assert max(len(b["inputs"]) for b in sent) == 100


async def test_207_partial_batch_fails_only_its_inputs(hub, autojump_clock):
    c = make(hub)
    inputs = [{"dealname": f"d{i}", "amount": "x" if i in (3, 7) else "10"} for i in range(10)]
    with trio.fail_after(30):
        results = await c.create("deals", inputs)
    assert [r.ok for r in results] == [i not in (3, 7) for i in range(10)]
    assert results[3].error is not None and results[3].error.category == "invalid_value"
    assert not results[3].error.retryable
    assert len(hub.live("deals")) == 8


async def test_409_names_one_conflict_the_rest_of_the_batch_is_created(hub, autojump_clock):
    existing = {i: hub.add("contacts", {"email": f"dup{i}@example.com"}) for i in (2, 5, 9)}
    c = make(hub)
    inputs = [{"email": f"dup{i}@example.com" if i in existing else f"new{i}@example.com"}
              for i in range(12)]
    with trio.fail_after(30):
        results = await create_healed(c, "contacts", inputs)
    for i, r in enumerate(results):
        if i in existing:
            assert not r.ok and r.error is not None
            assert r.error.category == "conflict"
            assert r.error.existing_id == existing[i]
        else:
            assert r.ok and r.record is not None
    assert len(hub.live("contacts")) == 12
    # One refused create, one read of the keys, one create of the rest.
    assert hub.count("POST", r".*/batch/create") == 2


async def test_single_409_parses_the_existing_id(hub, autojump_clock):
    rid = hub.add("contacts", {"email": "solo@example.com"})
    c = make(hub)
    with trio.fail_after(30):
        [r] = await c.create("contacts", [{"email": "SOLO@example.com"}])
    assert r.error is not None and r.error.existing_id == rid
    assert "Existing ID" in r.error.message


async def test_update_207_unknown_ids_and_whole_batch_400_split(hub, autojump_clock):
    ids = [hub.add("deals", {"dealname": f"d{i}"}) for i in range(6)]
    c = make(hub)
    inputs = [(ids[0], {"dealname": "x"}), ("424242", {"dealname": "y"}),
              (ids[1], {"amount": "lots"}), (ids[2], {"dealname": "z"}),
              (ids[0], {"dealname": "again"})]
    with trio.fail_after(30):
        results = await c.update("deals", inputs)
    assert [r.ok for r in results] == [True, False, False, True, True]
    assert results[1].error is not None and results[1].error.category == "not_found"
    assert results[2].error is not None and results[2].error.category == "invalid_value"
    assert hub.records["deals"][ids[0]]["properties"]["dealname"] == "again"
    assert hub.records["deals"][ids[2]]["properties"]["dealname"] == "z"


async def test_archive_and_upsert(hub, autojump_clock):
    ids = [hub.add("contacts", {"email": f"a{i}@example.com"}) for i in range(3)]
    c = make(hub)
    with trio.fail_after(30):
        results = await c.archive("contacts", [*ids, "777"])
        assert all(r.ok for r in results)
        assert hub.live("contacts") == []
        up = await c.upsert("contacts", "email", [{"email": "u@example.com", "firstname": "U"},
                                                  {"firstname": "no key"}])
    assert up[0].ok and up[0].record is not None
    assert up[1].error is not None and up[1].error.category == "missing_required_field"


# --- describe, pipelines ----------------------------------------------------------------------

async def test_describe_and_validation_helpers(hub, autojump_clock):
    c = make(hub)
    with trio.fail_after(30):
        info = await c.describe("contacts")
        fields = {f.name: f for f in info.fields}
        assert info.updated_at_field == "lastmodifieddate"
        assert fields["email"].unique and fields["lastmodifieddate"].read_only
        assert fields["score"].read_only  # calculated
        assert fields["lifecyclestage"].options == ("lead", "customer")
        problems = await c.check_properties("contacts", ["email", "nope", "score"], write=True)
        assert problems == ["contacts: unknown HubSpot property 'nope'",
                            "contacts: HubSpot property 'score' is read-only"]
        assert await c.check_values("contacts", {
            "lifecyclestage": "lead;vip", "amount": "12.5", "vip": "maybe", "email": "x"}) == {
            "lifecyclestage": "'vip' is not an option of lifecyclestage",
            "vip": "'maybe' is not true or false"}
        await c.describe("contacts")
    assert hub.count("GET", r"/crm/v3/properties/contacts") == 1  # cached


async def test_pipelines_sorted_live_and_cached(hub, autojump_clock):
    c = make(hub)
    with trio.fail_after(30):
        pipelines = await c.pipelines("deals")
        await c.pipelines("deals")
        assert await c.check_stage("deals", "default", "closedwon") is None
        assert "not in pipeline" in (await c.check_stage("deals", "default", "gone") or "")
    assert [p.id for p in pipelines] == ["default", "p2"]
    assert [s.id for s in pipelines[0].stages] == ["appointmentscheduled", "closedwon"]
    assert hub.count("GET", r"/crm/v3/pipelines/deals") == 1


async def test_pipelines_403_is_a_config_error(hub, autojump_clock):
    hub.pipelines_status = 403
    c = make(hub)
    with trio.fail_after(30), pytest.raises(ConnectorError) as info:
        await c.pipelines("deals")
    assert (info.value.kind, info.value.category) == ("config", "permission_denied")
    assert "403 MISSING_SCOPES" in info.value.message


async def test_401_is_a_config_error_with_a_clear_message(hub, autojump_clock):
    client = httpx.AsyncClient(base_url=BASE, transport=httpx.MockTransport(hub.handler),
                               headers={"Authorization": "Bearer wrong"})
    c = HubSpotConnector(client, RateBudget())
    with trio.fail_after(30), pytest.raises(ConnectorError) as info:
        await c.scan("contacts", None, [])
    assert info.value.kind == "config"
    assert info.value.message == ("HubSpot refused the token (401 INVALID_AUTHENTICATION): "
                                  "check hub.auth")
    assert len(hub.log) == 1


# --- associations, events ---------------------------------------------------------------------

async def test_associations_read_with_paging_and_write(hub, autojump_clock):
    contacts = [hub.add("contacts", {"email": f"as{i}@example.com"}) for i in range(2)]
    companies = [hub.add("companies", {"name": f"Co{i}"}) for i in range(5)]
    c = make(hub)
    changes = [AssociationChange(contacts[0], co) for co in companies]
    changes.append(AssociationChange(contacts[1], "999999"))
    with trio.fail_after(30):
        results = await c.write_associations("contacts", "companies", changes)
        assert [r.ok for r in results] == [True] * 5 + [False]
        assert results[5].error is not None
        assert results[5].error.category == "association_failed"
        got = await c.read_associations("contacts", "companies", contacts)
        assert got == {contacts[0]: companies, contacts[1]: []}
        removed = await c.write_associations("contacts", "companies", [
            AssociationChange(contacts[0], companies[1], removed=True)])
        assert removed[0].ok
        got = await c.read_associations("contacts", "companies", contacts[:1])
    assert got[contacts[0]] == [companies[0], *companies[2:]]
    sent = next(b for _, m, p, b in hub.log if p.endswith("/batch/create"))
    assert sent["inputs"][0]["types"] == [{"associationCategory": "HUBSPOT_DEFINED",
                                           "associationTypeId": 279}]


async def test_associations_without_a_known_type_use_default(hub, autojump_clock):
    deal = hub.add("deals", {"dealname": "d"})
    ticket = hub.add("tickets", {"subject": "t"})
    c = make(hub)
    with trio.fail_after(30):
        [r] = await c.write_associations("deals", "tickets", [AssociationChange(deal, ticket)])
    assert r.ok
    assert hub.count("POST", r".*/batch/associate/default") == 1


async def test_send_events(hub, autojump_clock):
    c = make(hub)
    events = [("101", AppEvent("e1", "a@example.com", "pe123_signup", T0, {"plan": "pro"})),
              ("102", AppEvent("e2", "b@example.com", "bogus", T0))]
    with trio.fail_after(30):
        results = await c.send_events(events)
    assert [r.ok for r in results] == [True, False]
    assert results[1].error is not None and results[1].error.category == "invalid_value"
    [sent] = hub.events
    assert sent["objectId"] == "101" and sent["occurredAt"] == "2023-11-14T22:13:20.000Z"
    assert sent["properties"] == {"plan": "pro"} and sent["uuid"]


# --- changes_since ----------------------------------------------------------------------------

async def drain(c: HubSpotConnector, obj: str, cursor: str) -> tuple[list[Any], str, int]:
    records, calls = [], 0
    while True:
        calls += 1
        ch = await c.changes_since(obj, cursor, ["email"])
        records.extend(ch.records)
        cursor = ch.cursor
        if not ch.more:
            return records, cursor, calls


async def test_changes_since_first_call_returns_a_start_cursor(hub, autojump_clock):
    hub.add("contacts", {"email": "old@example.com"}, at=T0 - 3_600_000)
    c = make(hub)
    with trio.fail_after(30):
        ch = await c.changes_since("contacts", None, ["email"])
    assert ch.records == [] and not ch.more
    assert decode_cursor(ch.cursor).ts == T0 - 30_000
    assert hub.log == []


async def test_changes_since_orders_and_never_passes_the_index_lag(hub, autojump_clock):
    c = make(hub, index_lag=30)
    start = c.start_cursor()
    ids = [hub.add("contacts", {"email": f"ch{i}@example.com"}, at=T0 - 20_000 + i)
           for i in range(5)]
    with trio.fail_after(60):
        ch = await c.changes_since("contacts", start, ["email"])
        # Changed 20 s ago: the index may not show them yet, so they are not read.
        assert ch.records == []
        assert decode_cursor(ch.cursor).ts <= T0 - 30_000
        await trio.sleep(15)
        ch = await c.changes_since("contacts", ch.cursor, ["email"])
    assert [r.id for r in ch.records] == ids
    assert decode_cursor(ch.cursor).ts == T0 - 20_000 + 4
    assert ch.records[0].updated_at == T0 - 20_000


async def test_changes_since_many_records_share_one_timestamp(hub, autojump_clock):
    # 10,345 records changed in the same millisecond: beyond the 10,000 search cap and any
    # page size. Ties are paged by id, so every record comes exactly once.
    c = make(hub, index_lag=30)
    cursor = c.start_cursor()
    at = T0 - 25_000
    ids = {hub.add("contacts", {"email": f"t{i}@example.com"}, at=at) for i in range(10_345)}
    later = {hub.add("contacts", {"email": f"l{i}@example.com"}, at=at + 1 + i // 300)
             for i in range(600)}
    await trio.sleep(10)
    with trio.fail_after(120):
        records, cursor, calls = await drain(c, "contacts", cursor)
        again, _, _ = await drain(c, "contacts", cursor)
    got = [r.id for r in records]
    assert len(got) == len(set(got)) == len(ids) + len(later)
    assert set(got) == ids | later
    assert calls > 10  # more=True split the work into calls of a page each
    assert again == []
    searches = [b for _, _, p, b in hub.log if p.endswith("/search")]
    assert all(int(b.get("after") or 0) == 0 for b in searches)  # never deep paging


async def test_changes_since_answers_one_page_per_call(hub, autojump_clock):
    # A page-level operation: one search per call and `more` while the pass goes on; the
    # runtime's change_pages calls again (runtime/paging.py).
    c = make(hub, index_lag=30)
    cursor = c.start_cursor()
    ids = [hub.add("contacts", {"email": f"p{i}@example.com"}, at=T0 - 25_000 + i)
           for i in range(450)]
    await trio.sleep(10)
    with trio.fail_after(60):
        ch = await c.changes_since("contacts", cursor, ["email"])
        assert [r.id for r in ch.records] == ids[:200] and ch.more
        assert [(m, p) for _, m, p, _ in hub.log] == [
            ("POST", "/crm/v3/objects/contacts/search")]
        got: list[str] = []
        pages = change_pages(c, "contacts", cursor, ["email"])
        async with aclosing(pages):
            async for found in pages:
                got += [r.id for r in found.records]
    assert got == ids


async def test_changes_since_cursor_remembers_the_boundary(hub, autojump_clock):
    c = make(hub, index_lag=30)
    cursor = c.start_cursor()
    at = T0 - 29_000
    # A full page (200) ends inside a group of 300 records at one timestamp.
    first = [hub.add("contacts", {"email": f"b{i}@example.com"}, at=at - 1) for i in range(100)]
    tied = [hub.add("contacts", {"email": f"x{i}@example.com"}, at=at) for i in range(300)]
    await trio.sleep(5)
    with trio.fail_after(60):
        records, cursor, _ = await drain(c, "contacts", cursor)
        assert sorted(r.id for r in records) == sorted(first + tied)
        hub.touch("contacts", tied[0], {"email": "moved@example.com"}, at=at + 100)
        await trio.sleep(5)
        records, cursor, _ = await drain(c, "contacts", cursor)
    assert [r.id for r in records] == [tied[0]]


async def test_changes_since_reports_archived_records(hub, autojump_clock):
    c = make(hub, index_lag=30)
    cursor = c.start_cursor()
    ids = [hub.add("contacts", {"email": f"g{i}@example.com"}, at=T0 - 3_600_000)
           for i in range(250)]
    for rid in ids[::2]:
        hub.archive("contacts", rid, at=T0 - 20_000)
    hub.archive("contacts", ids[1], at=T0 - 7_200_000)  # long before the cursor
    await trio.sleep(15)
    with trio.fail_after(60):
        records, cursor, _ = await drain(c, "contacts", cursor)
        again, _, _ = await drain(c, "contacts", cursor)
    assert sorted(r.id for r in records) == sorted(ids[::2])
    assert all(r.archived and r.updated_at == T0 - 20_000 for r in records)
    assert again == []


async def test_changes_since_bad_cursor(hub, autojump_clock):
    c = make(hub)
    with pytest.raises(ConnectorError):
        await c.changes_since("contacts", "not json", [])


# --- faults on MockClock ----------------------------------------------------------------------

def rate_headers(remaining: int, maximum: int = 190) -> dict[str, str]:
    return {"X-HubSpot-RateLimit-Max": str(maximum),
            "X-HubSpot-RateLimit-Remaining": str(remaining),
            "X-HubSpot-RateLimit-Interval-Milliseconds": "10000",
            "X-HubSpot-RateLimit-Daily": "625000",
            "X-HubSpot-RateLimit-Daily-Remaining": "600000"}


async def test_429_storm_no_request_before_the_window_allows(hub, autojump_clock):
    """A 30-second storm of TEN_SECONDLY_ROLLING 429s under 4 concurrent scanners: after
    each 429 the next request waits for the window; afterwards everything completes."""
    for i in range(800):
        hub.add("contacts", {"email": f"s{i}@example.com"})
    start = trio.current_time()
    refused: list[float] = []

    async def storm(request: httpx.Request) -> httpx.Response | None:
        if trio.current_time() - start < 30:
            refused.append(trio.current_time())
            return httpx.Response(429, json={
                "status": "error", "message": "You have reached your ten_secondly_rolling "
                "limit.", "errorType": "RATE_LIMIT", "correlationId": "x",
                "policyName": "TEN_SECONDLY_ROLLING",
                "groupName": "publicapi:private-app-api-ten-secondly:1:2"})
        return None

    hub.before = storm
    budget = RateBudget(per_window=190, window_seconds=10.0, daily=625_000)
    c = make(hub, budget=budget)
    results: list[int] = []

    async def scanner() -> None:
        cursor, n = None, 0
        while True:
            page = await c.scan("contacts", cursor, ["email"])
            n += len(page.records)
            cursor = page.next_cursor
            if cursor is None:
                results.append(n)
                return

    with trio.fail_after(600):
        async with trio.open_nursery() as nursery:
            for _ in range(4):
                nursery.start_soon(scanner)
    assert results == [800] * 4
    sent = [t for t, *_ in hub.log]
    assert len(refused) >= 3
    for t in refused:
        later = [u for u in sent if u > t]
        assert later and min(later) >= t + 10.0 - 1e-9
    assert budget.statistics().rate_limited == len(refused)


async def test_request_rate_never_exceeds_the_window(hub, autojump_clock):
    """The API's own headers report the budget; 600 requests from 8 tasks never put more
    than 100 in any 10 s, and the API never refuses one."""
    for i in range(50):
        hub.add("contacts", {"email": f"w{i}@example.com"})
    sent: list[float] = []

    async def count(request: httpx.Request, response: httpx.Response) -> httpx.Response:
        now = trio.current_time()
        sent.append(now)
        used = sum(1 for t in sent if t > now - 10)
        if used > 100:
            return httpx.Response(429, json={"policyName": "TEN_SECONDLY_ROLLING",
                                             "errorType": "RATE_LIMIT", "message": "limit"})
        await trio.sleep(0.05)  # the answer takes 50 ms
        response.headers.update(rate_headers(100 - used, 100))
        return response

    hub.after = count
    budget = RateBudget(per_window=100, window_seconds=10.0)
    c = make(hub, budget=budget)

    async def worker() -> None:
        for _ in range(75):
            await c.scan("contacts", None, [])

    with trio.fail_after(600):
        async with trio.open_nursery() as nursery:
            for _ in range(8):
                nursery.start_soon(worker)
    assert budget.statistics().rate_limited == 0
    assert len(sent) == 600
    elapsed = sent[-1] - sent[0]
    assert 50 <= elapsed <= 61  # 600 requests at 100 per 10 s


async def test_5xx_outage_then_full_catch_up(hub, autojump_clock):
    c = make(hub, index_lag=30)
    cursor = c.start_cursor()
    outage = {"until": trio.current_time() + 300}

    async def down(request: httpx.Request) -> httpx.Response | None:
        if trio.current_time() < outage["until"]:
            return httpx.Response(503, text="<html>Service Unavailable</html>")
        return None

    hub.before = down
    # Changes keep happening during the outage.
    ids = [hub.add("contacts", {"email": f"o{i}@example.com"}, at=T0 + i * 1000)
           for i in range(250)]
    with trio.fail_after(1200):
        await trio.sleep(40)
        with pytest.raises(ConnectorError) as info:
            await c.changes_since("contacts", cursor, ["email"])
        assert info.value.kind == "transient"
        assert "gave up after" in info.value.message
        await trio.sleep_until(outage["until"])
        # A short outage during a write: retried with backoff, nothing lost or doubled.
        outage["until"] = trio.current_time() + 10
        results = await create_healed(c, "contacts", [{"email": f"late{i}@example.com"}
                                                      for i in range(150)])
        assert all(r.ok for r in results)
        await trio.sleep(60)
        records, cursor, _ = await drain(c, "contacts", cursor)
    assert {r.id for r in records} >= set(ids)
    assert len(records) == 400
    emails = [r["properties"]["email"] for r in hub.live("contacts")]
    assert len(emails) == len(set(emails)) == 400


async def test_timeout_after_apply_creates_no_duplicate(hub, autojump_clock):
    hang = {"n": 1}

    async def hang_after_apply(request: httpx.Request, response: httpx.Response
                               ) -> httpx.Response:
        if request.url.path.endswith("/batch/create") and hang["n"] > 0:
            hang["n"] -= 1
            await trio.sleep_forever()  # applied; the answer never comes
        return response

    hub.after = hang_after_apply
    c = make(hub, timeout=30)
    inputs = [{"email": f"h{i}@example.com"} for i in range(120)]
    with trio.fail_after(600):
        results = await create_healed(c, "contacts", inputs)
    assert all(r.ok for r in results)
    assert [r.record.properties["email"] for r in results if r.record] == [
        i["email"] for i in inputs]
    assert len(hub.live("contacts")) == 120
    # The hung chunk (100) was read back by email, never sent again.
    assert hub.count("POST", r".*/batch/create") == 2


async def test_dropped_connection_before_apply_creates_once(hub, autojump_clock):
    drops = {"n": 2}

    async def drop_before(request: httpx.Request) -> httpx.Response | None:
        if request.url.path.endswith("/batch/create") and drops["n"] > 0:
            drops["n"] -= 1
            raise httpx.RemoteProtocolError("Server disconnected without sending a response.")
        return None

    hub.before = drop_before
    c = make(hub)
    with trio.fail_after(600):
        results = await create_healed(c, "contacts", [{"email": f"d{i}@example.com"} for i in range(5)])
    assert all(r.ok for r in results)
    assert len(hub.live("contacts")) == 5
    assert hub.count("POST", r".*/batch/create") == 3


async def test_companies_reconcile_by_domain_through_search(hub, autojump_clock):
    async def drop_after(request: httpx.Request, response: httpx.Response) -> httpx.Response:
        if request.url.path.endswith("/batch/create"):
            hub.after = None
            raise httpx.ReadError("connection reset by peer")
        return response

    hub.after = drop_after
    c = make(hub)
    inputs = [{"name": "Acme", "domain": "acme.example"}, {"name": "Initech"}]
    with trio.fail_after(600):
        results = await create_healed(c, "companies", inputs)
    assert all(r.ok for r in results)
    assert [r.record.properties.get("domain") or r.record.properties.get("name")
            for r in results if r.record] == ["acme.example", "Initech"]
    assert len(hub.live("companies")) == 2
    assert hub.count("POST", r".*/batch/create") == 1
    assert hub.count("POST", r".*/search") == 2


async def test_reconcile_finds_an_older_record_reports_a_conflict(hub, autojump_clock):
    old = hub.add("companies", {"name": "Anon"}, at=T0 - 3_600_000)

    async def drop_before(request: httpx.Request) -> httpx.Response | None:
        if request.url.path.endswith("/batch/create"):
            hub.before = None
            raise httpx.ReadTimeout("timed out")
        return None

    hub.before = drop_before
    c = make(hub)
    with trio.fail_after(600):
        results = await create_healed(c, "companies", [{"name": "Anon"}, {"name": "Brand new"}])
    assert results[0].error is not None
    assert (results[0].error.category, results[0].error.existing_id) == ("conflict", old)
    assert results[1].ok
    assert sorted(r["properties"]["name"] for r in hub.live("companies")) == ["Anon",
                                                                             "Brand new"]


async def test_unknown_outcome_without_a_match_key_is_not_repeated(hub, autojump_clock):
    async def drop_after(request: httpx.Request, response: httpx.Response) -> httpx.Response:
        if request.url.path.endswith("/batch/create"):
            raise httpx.ReadError("connection reset by peer")
        return response

    hub.after = drop_after
    c = make(hub)
    with trio.fail_after(600):
        [r] = await create_healed(c, "deals", [{"dealname": "no unique key"}])
    assert r.error is not None and r.error.category == "api_unavailable"
    assert "no duplicate" in r.error.message
    assert len(hub.live("deals")) == 1
    assert hub.count("POST", r".*/batch/create") == 1


async def test_daily_429_raises_rate_limited_with_retry_after(hub, autojump_clock):
    async def daily(request: httpx.Request) -> httpx.Response | None:
        return httpx.Response(429, json={"status": "error", "errorType": "RATE_LIMIT",
                                         "message": "You have reached your daily limit.",
                                         "policyName": "DAILY"})

    hub.before = daily
    budget = RateBudget(per_window=190, daily=625_000,
                        seconds_until_daily_reset=lambda: 5 * 3600.0)
    c = make(hub, budget=budget)
    with trio.fail_after(60), pytest.raises(ConnectorError) as info:
        await c.scan("contacts", None, [])
    assert info.value.kind == "rate_limited"
    assert info.value.retry_after == pytest.approx(5 * 3600.0)
    assert len(hub.log) == 1
    assert budget.delay() == pytest.approx(5 * 3600.0)


async def test_search_429_waits_one_second(hub, autojump_clock):
    hub.add("contacts", {"firstname": "Zed", "email": "z@example.com"})
    times: list[float] = []

    async def secondly(request: httpx.Request) -> httpx.Response | None:
        if not request.url.path.endswith("/search"):
            return None
        times.append(trio.current_time())
        if len(times) == 1:
            return httpx.Response(429, json={"status": "error", "errorType": "RATE_LIMIT",
                                             "message": "You have reached your secondly "
                                             "limit.", "policyName": "SECONDLY"})
        return None

    hub.before = secondly
    c = make(hub, budget=RateBudget(per_window=190, search_per_second=5))
    with trio.fail_after(60):
        found = await c.find("contacts", "firstname", "zed", [])
    assert len(found) == 1
    assert times[1] - times[0] >= 1.0
