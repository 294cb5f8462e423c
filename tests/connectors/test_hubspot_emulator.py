"""The HubSpot connector against the HubSpot emulator: in process (ASGITransport, MockClock)
and over real loopback HTTP (hypercorn's trio worker, real clock, fail_after bounds). Creates
that a fault can leave unanswered or refused as a batch go through the runtime's
`create_healed`, as every create of the batch writer does."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
import trio

from crmsync.connectors.base import AppEvent, AssociationChange, ConnectorError
from crmsync.connectors.hubspot import HubSpotConnector, HubSpotOAuth, PrivateAppToken, budget_for
from crmsync.connectors.ratelimit import RateBudget
from crmsync.emulators.hubspot import Faults, HubSpotEmulator
from crmsync.runtime.create_healing import create_healed

BASE = "https://api.hubapi.com"
T0 = 1_700_000_000_000


class Clocks:
    """The emulator's and the connector's clocks, both on trio's (virtual) time."""

    def __init__(self) -> None:
        self.start = trio.current_time()

    def now_ms(self) -> int:
        return T0 + int((trio.current_time() - self.start) * 1000)

    def wall(self) -> float:
        return self.now_ms() / 1000


def in_process(tier: str = "unlimited", **kw: object) -> tuple[HubSpotEmulator, Clocks]:
    clocks = Clocks()
    emu = HubSpotEmulator(tier=tier, clock=trio.current_time, now_ms=clocks.now_ms,
                          **kw)  # type: ignore[arg-type]
    return emu, clocks


def connector(emu: HubSpotEmulator, clocks: Clocks, *, budget: RateBudget | None = None,
              auth: httpx.Auth | None = None, timeout: float = 30.0,
              index_lag: float = 30.0) -> HubSpotConnector:
    client = httpx.AsyncClient(base_url=BASE, transport=httpx.ASGITransport(app=emu.app),
                               auth=auth or PrivateAppToken("test-token"))
    return HubSpotConnector(client, budget or RateBudget(), request_timeout=timeout,
                            index_lag=index_lag, wall_clock=clocks.wall)


# --- in process -------------------------------------------------------------------------------

async def test_scan_read_find(autojump_clock):
    emu, clocks = in_process()
    emu.seed({"generate": {"companies": 20, "contacts": 230}, "seed": 3})
    c = connector(emu, clocks)
    with trio.fail_after(60):
        records, cursor = [], None
        while True:
            page = await c.scan("contacts", cursor, ["email", "firstname"])
            assert len(page.records) <= 100
            records += page.records
            cursor = page.next_cursor
            if cursor is None:
                break
        assert len(records) == 230
        assert {r.id for r in records} == {r["id"] for r in emu.records("contacts")}
        some = [r.id for r in records[:150]]
        got = await c.read("contacts", [*some, "999999999"], ["email"])
        assert set(got) == set(some)
        email = records[7].properties["email"]
        [hit] = await c.find("contacts", "email", email.upper(), ["firstname"])
        assert hit.id == records[7].id
        by_name = await c.find("companies", "domain",
                               emu.records("companies")[0]["properties"]["domain"], [])
        assert len(by_name) == 1


async def test_scan_carries_associations_and_leaves_out_lists_cut_short(autojump_clock):
    """`scan_associated` lists with `associations=` (fact sheet §1.1): each record's associated
    ids come in the same requests as the records; a type HubSpot cut at 100 (`paging` on it)
    is left out for that record, so a caller reads it whole with the v4 batch read."""
    emu, clocks = in_process()
    people = emu.add_records("contacts", [{"email": f"p{i}@example.com"} for i in range(120)])
    [big, small, alone] = emu.add_records("companies", [{"name": n} for n in ("B", "S", "A")])
    for p in people:
        emu.associate("companies", big, "contacts", p)
    emu.associate("companies", small, "contacts", people[3])
    c = connector(emu, clocks)
    with trio.fail_after(60):
        emu.request_log.clear()
        page = await c.scan_associated("companies", None, ["name"], ["contacts", "deals"])
        assert [m for m, _, _ in emu.request_log] == ["GET"]  # one request, nothing else
        assert {r.id for r in page.records} == {big, small, alone}
        assert page.associations == {big: {"deals": []},
                                     small: {"contacts": [people[3]], "deals": []},
                                     alone: {"contacts": [], "deals": []}}
        whole = await c.read_associations("companies", "contacts", [big])
        assert whole[big] == people
        plain = await c.scan("companies", None, ["name"])
        assert plain.associations is None


async def test_property_history(autojump_clock):
    # propertiesWithHistory on batch read (fact sheet §1.1): each property's values, newest
    # first, with when and by whom they were set.
    emu, clocks = in_process()
    (cid,) = emu.add_records("contacts", [{"email": "h@example.com", "firstname": "A"}])
    c = connector(emu, clocks)
    with trio.fail_after(60):
        await trio.sleep(2)
        emu.update_record("contacts", cid, {"firstname": "B"})
        await trio.sleep(3)
        await c.update("contacts", [(cid, {"firstname": "C"})])
        got = await c.read_history("contacts", [cid, "999999"], ["firstname", "lastname"])
    assert list(got) == [cid]
    assert [(v.value, v.at - T0, v.source) for v in got[cid]["firstname"]] == [
        ("C", 5000, "INTEGRATION"), ("B", 2000, "CRM_UI"), ("A", 0, "INTEGRATION")]
    assert "lastname" not in got[cid]


async def test_batch_writes(autojump_clock):
    emu, clocks = in_process()
    c = connector(emu, clocks)
    with trio.fail_after(60):
        created = await c.create("contacts", [
            {"email": f"w{i}@example.com", "firstname": f"W{i}"} for i in range(250)])
        assert all(r.ok for r in created)
        ids = [r.record.id for r in created if r.record]
        assert len(set(ids)) == 250
        updated = await c.update("contacts", [(i, {"lastname": "Updated"}) for i in ids[:120]]
                                 + [("424242424", {"lastname": "x"})])
        assert [r.ok for r in updated] == [True] * 120 + [False]
        assert updated[-1].error is not None and updated[-1].error.category == "not_found"
        bad = await c.create("contacts", [{"email": "ok@example.com"},
                                          {"email": "bad@example.com", "nosuchprop": "1"},
                                          {"email": "also@example.com",
                                           "lifecyclestage": "not-a-stage"}])
        assert [r.ok for r in bad] == [True, False, False]
        assert all(r.error.category == "invalid_value" for r in bad[1:] if r.error)
        archived = await c.archive("contacts", ids[:10])
        assert all(r.ok for r in archived)
        upserted = await c.upsert("contacts", "email", [
            {"email": "w20@example.com", "lastname": "Up"},
            {"email": "fresh@example.com", "lastname": "New"}])
        assert all(r.ok for r in upserted)
    live = {r["id"]: r for r in emu.records("contacts")}
    assert len(live) == 250 - 10 + 1 + 1
    assert live[ids[11]]["properties"]["lastname"] == "Updated"
    assert live[ids[20]]["properties"]["lastname"] == "Up"
    assert len(emu.records("contacts", archived=True)) == 10


async def test_207_partial_batch_and_409_conflict_heal(autojump_clock):
    emu, clocks = in_process()
    existing = emu.add_records("contacts", [{"email": f"taken{i}@example.com"}
                                            for i in range(3)])
    c = connector(emu, clocks)
    emu.faults = Faults(batch_item_failure_rate=0.25, seed=7)
    inputs = [{"email": f"taken{i // 20}@example.com" if i % 20 == 5 and i < 60 else
               f"free{i}@example.com"} for i in range(100)]
    with trio.fail_after(60):
        results = await create_healed(c, "contacts", inputs)
    conflicts = [i for i, r in enumerate(results) if r.error and r.error.category == "conflict"]
    transient = [i for i, r in enumerate(results) if r.error and r.error.retryable]
    ok = [i for i, r in enumerate(results) if r.ok]
    assert conflicts == [5, 25, 45]
    assert [results[i].error.existing_id for i in conflicts] == existing  # type: ignore[union-attr]
    assert transient, "the fault setting fails some inputs with a 207"
    assert all(results[i].error.category == "api_unavailable"  # type: ignore[union-attr]
               for i in transient)
    assert sorted(conflicts + transient + ok) == list(range(100))
    emails = sorted(r["properties"]["email"] for r in emu.records("contacts"))
    assert len(emails) == len(set(emails)) == 3 + len(ok)


async def test_timeout_after_apply_never_duplicates(autojump_clock):
    emu, clocks = in_process()
    emu.faults = Faults(hang_after_apply_rate=0.5, seed=11)
    c = connector(emu, clocks, timeout=10)
    inputs = [{"email": f"h{i}@example.com"} for i in range(500)]
    with trio.fail_after(600):
        results = await create_healed(c, "contacts", inputs)
        companies = await create_healed(c, "companies", [{"name": f"Hang Co {i}",
                                                  "domain": f"hang{i}.example"}
                                                 for i in range(30)])
    assert all(r.ok for r in results)
    assert all(r.ok for r in companies)
    emails = [r["properties"]["email"] for r in emu.records("contacts")]
    assert len(emails) == len(set(emails)) == 500
    assert len(emu.records("companies")) == 30
    # Some answers were lost and healed by reading the records back by their match keys
    # (contacts: batch read by email; companies: search by domain) — never created again.
    creates = [s for m, p, s in emu.request_log if p.endswith("/batch/create")]
    assert len(creates) == 6
    assert any(p.endswith("/batch/read") for _, p, _ in emu.request_log)


async def test_5xx_outage_then_catch_up(autojump_clock):
    emu, clocks = in_process()
    c = connector(emu, clocks)
    emu.faults = Faults(error_rate=0.3, seed=1)
    with trio.fail_after(1200):
        results = await create_healed(c, "contacts", [{"email": f"o{i}@example.com"}
                                              for i in range(300)])
        assert all(r.ok for r in results)
        emu.faults = Faults()
        pages, cursor = 0, None
        while True:
            page = await c.scan("contacts", cursor, [])
            pages += 1
            cursor = page.next_cursor
            if cursor is None:
                break
    emails = [r["properties"]["email"] for r in emu.records("contacts")]
    assert len(emails) == len(set(emails)) == 300
    assert any(s >= 500 for _, _, s in emu.request_log)


async def test_changes_since_beyond_the_search_cap(autojump_clock):
    """10,500 changed contacts — most sharing one millisecond — read incrementally without
    ever paging a search (the 10,000 cap is never reached), then updates and archives."""
    emu, clocks = in_process(search_index_delay=5.0)
    c = connector(emu, clocks, index_lag=30)
    cursor = c.start_cursor()
    ids = emu.add_records("contacts", [{"email": f"big{i}@example.com"} for i in range(10_500)])
    await trio.sleep(31)
    with trio.fail_after(600):
        seen: list[str] = []
        calls = 0
        while True:
            ch = await c.changes_since("contacts", cursor, ["email"])
            calls += 1
            seen += [r.id for r in ch.records]
            cursor = ch.cursor
            if not ch.more:
                break
        assert len(seen) == len(set(seen)) == 10_500
        assert set(seen) == set(ids)
        assert calls >= 10
        # Later changes: updates come once, archived ones come from the archived list.
        for rid in ids[:5]:
            emu.update_record("contacts", rid, {"firstname": "Changed"})
        for rid in ids[100:103]:
            emu.archive_record("contacts", rid)
        await trio.sleep(1)
        ch = await c.changes_since("contacts", cursor, ["email", "firstname"])
        assert ch.records == []  # not yet past the index lag
        await trio.sleep(31)
        ch = await c.changes_since("contacts", ch.cursor, ["email", "firstname"])
    assert sorted((r.id, r.archived) for r in ch.records) == sorted(
        [(i, False) for i in ids[:5]] + [(i, True) for i in ids[100:103]])
    assert all(r.properties.get("firstname") == "Changed" for r in ch.records if not r.archived)
    searches = [s for m, p, s in emu.request_log if p.endswith("/search")]
    assert searches and all(s == 200 for s in searches)


async def test_associations_pipelines_events_describe(autojump_clock):
    emu, clocks = in_process()
    contacts = emu.add_records("contacts", [{"email": f"a{i}@example.com"} for i in range(3)])
    companies = emu.add_records("companies", [{"name": f"Co {i}"} for i in range(3)])
    deals = emu.add_records("deals", [{"dealname": "D", "pipeline": "default",
                                       "dealstage": "appointmentscheduled"}])
    c = connector(emu, clocks)
    with trio.fail_after(60):
        results = await c.write_associations("contacts", "companies", [
            AssociationChange(contacts[0], companies[0]),
            AssociationChange(contacts[0], companies[1]),
            AssociationChange(contacts[1], companies[2])])
        assert all(r.ok for r in results)
        deal_links = await c.write_associations("deals", "contacts", [
            AssociationChange(deals[0], contacts[2])])
        assert deal_links[0].ok
        got = await c.read_associations("contacts", "companies", contacts)
        assert got == {contacts[0]: companies[:2], contacts[1]: [companies[2]],
                       contacts[2]: []}
        removed = await c.write_associations("contacts", "companies", [
            AssociationChange(contacts[0], companies[0], removed=True)])
        assert removed[0].ok
        assert emu.associations("contacts", contacts[0], "companies") == [companies[1]]
        assert emu.associations("contacts", contacts[2], "deals") == [deals[0]]

        pipelines = await c.pipelines("deals")
        default = next(p for p in pipelines if p.id == "default")
        assert default.label == "Sales Pipeline"
        assert [s.id for s in default.stages][:2] == ["appointmentscheduled", "qualifiedtobuy"]
        assert "closedwon" in [s.id for s in default.stages]

        info = await c.describe("contacts")
        fields = {f.name: f for f in info.fields}
        assert fields["email"].unique or fields["email"].type == "string"
        assert fields["hs_object_id"].read_only
        problems = await c.check_properties("contacts", ["email", "nope", "hs_object_id"],
                                            write=True)
        assert len(problems) == 2
        assert await c.check_values("contacts", {"lifecyclestage": "lead"}) == {}
        assert "lifecyclestage" in await c.check_values("contacts",
                                                        {"lifecyclestage": "nope"})

        ev = await c.send_events([
            (contacts[0], AppEvent("e1", "a0@example.com", "pe62515_signup", T0,
                                   {"plan": "pro"})),
            (contacts[0], AppEvent("e1", "a0@example.com", "pe62515_signup", T0,
                                   {"plan": "pro"})),  # a resend: deduplicated by uuid
            ("999999999", AppEvent("e2", "", "pe62515_signup", T0))])
    assert [r.ok for r in ev] == [True, True, False]
    assert len(emu.events) == 1


async def test_429_storm_professional_tier(autojump_clock):
    emu, clocks = in_process(tier="professional")
    emu.add_records("contacts", [{"email": f"s{i}@example.com"} for i in range(300)])
    budget = budget_for("professional")
    c = connector(emu, clocks, budget=budget)
    emu.faults = Faults(rate_limit_storm_seconds=25)
    start = trio.current_time()
    times: list[tuple[float, int]] = []

    async def scan_all() -> int:
        n, cursor = 0, None
        while True:
            page = await c.scan("contacts", cursor, [])
            times.append((trio.current_time(), len(emu.request_log)))
            n += len(page.records)
            cursor = page.next_cursor
            if cursor is None:
                return n

    with trio.fail_after(600):
        counts = []
        async with trio.open_nursery() as nursery:
            for _ in range(3):
                async def one() -> None:
                    counts.append(await scan_all())
                nursery.start_soon(one)
    assert counts == [300] * 3
    refused = [s for _, _, s in emu.request_log if s == 429]
    assert 0 < len(refused) <= 6  # each 429 held everyone back for a full window
    assert trio.current_time() - start >= 25
    assert budget.statistics().rate_limited == len(refused)


async def test_professional_limits_are_never_exceeded(autojump_clock):
    emu, clocks = in_process(tier="professional")
    emu.add_records("contacts", [{"email": f"p{i}@example.com"} for i in range(10)])
    budget = budget_for("professional")
    c = connector(emu, clocks, budget=budget)

    async def worker() -> None:
        for _ in range(100):
            await c.scan("contacts", None, [])
            await c.find("contacts", "firstname", "nobody", [])

    with trio.fail_after(600):
        async with trio.open_nursery() as nursery:
            for _ in range(10):
                nursery.start_soon(worker)
    assert all(s == 200 for _, _, s in emu.request_log)
    assert budget.statistics().rate_limited == 0


async def test_oauth_refresh_against_the_emulator(autojump_clock):
    emu, clocks = in_process(oauth_clients={"cid": ("csecret", "rt-0")},
                             rotate_refresh_tokens=True)
    emu.add_records("contacts", [{"email": "o@example.com"}])
    saved: list[str] = []

    async def save(token: str) -> None:
        saved.append(token)

    auth = HubSpotOAuth(client_id="cid", client_secret="csecret", refresh_token="rt-0",
                        on_refresh_token=save)
    c = connector(emu, clocks, auth=auth)
    with trio.fail_after(4000):
        async with trio.open_nursery() as nursery:
            for _ in range(50):
                nursery.start_soon(c.scan, "contacts", None, [])
        assert emu.auth.refresh_count == 1
        emu.expire_access_tokens()
        async with trio.open_nursery() as nursery:
            for _ in range(50):
                nursery.start_soon(c.scan, "contacts", None, [])
        assert emu.auth.refresh_count == 2
        await trio.sleep(1800)  # past expiry: refreshed before use, no 401
        await c.scan("contacts", None, [])
    assert emu.auth.refresh_count == 3
    assert len(saved) == 3 and len(set(saved)) == 3
    assert 1 <= [s for _, _, s in emu.request_log].count(401) <= 50


async def test_bad_token_pauses_with_a_clear_status(autojump_clock):
    emu, _clocks = in_process()
    client = httpx.AsyncClient(base_url=BASE, transport=httpx.ASGITransport(app=emu.app),
                               auth=PrivateAppToken("pat-wrong"))
    c = HubSpotConnector(client, RateBudget())
    with trio.fail_after(60), pytest.raises(ConnectorError) as info:
        await c.scan("contacts", None, [])
    assert info.value.kind == "config"
    assert info.value.message == ("HubSpot refused the token (401 INVALID_AUTHENTICATION): "
                                  "check hub.auth")


# --- over loopback ----------------------------------------------------------------------------

@asynccontextmanager
async def served(emu: HubSpotEmulator) -> AsyncIterator[str]:
    from hypercorn.config import Config
    from hypercorn.trio import serve

    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    config.errorlog = None
    config.graceful_timeout = 1.0
    async with trio.open_nursery() as nursery:
        shutdown = trio.Event()
        binds = await nursery.start(lambda task_status: serve(
            emu.app, config, shutdown_trigger=shutdown.wait,  # type: ignore[arg-type]
            task_status=task_status))
        try:
            yield binds[0]
        finally:
            shutdown.set()


def loopback_connector(url: str, **kw: object) -> HubSpotConnector:
    client = httpx.AsyncClient(base_url=url, auth=PrivateAppToken("test-token"),
                               timeout=httpx.Timeout(10.0),
                               limits=httpx.Limits(max_connections=8))
    return HubSpotConnector(client, RateBudget(), **kw)  # type: ignore[arg-type]


@pytest.mark.slow
async def test_loopback_scan_writes_conflicts_changes():
    emu = HubSpotEmulator()
    taken = emu.add_records("contacts", [{"email": "taken@example.com"}])
    with trio.fail_after(60):
        async with served(emu) as url:
            c = loopback_connector(url, index_lag=0.0)
            cursor = c.start_cursor()
            results = await create_healed(c, "contacts", [
                {"email": f"l{i}@example.com"} for i in range(150)] + [
                {"email": "taken@example.com"}])
            assert [r.ok for r in results] == [True] * 150 + [False]
            assert results[-1].error is not None
            assert results[-1].error.existing_id == taken[0]
            n, page_cursor = 0, None
            while True:
                page = await c.scan("contacts", page_cursor, ["email"])
                n += len(page.records)
                page_cursor = page.next_cursor
                if page_cursor is None:
                    break
            assert n == 151
            await trio.sleep(0.05)
            changed, more = [], True
            while more:
                ch = await c.changes_since("contacts", cursor, ["email"])
                changed += ch.records
                cursor, more = ch.cursor, ch.more
            assert len(changed) == 150
            assoc = await c.write_associations("contacts", "companies", [
                AssociationChange(changed[0].id, emu.add_records("companies",
                                                                 [{"name": "X"}])[0])])
            assert assoc[0].ok
            assert next(p.id for p in await c.pipelines("deals")) == "default"
            await c.client.aclose()


@pytest.mark.slow
async def test_loopback_hang_after_apply_is_reconciled():
    emu = HubSpotEmulator()
    emu.faults = Faults(hang_after_apply_rate=1.0, seed=1)
    with trio.fail_after(60):
        async with served(emu) as url:
            c = loopback_connector(url, request_timeout=0.5)
            results = await create_healed(c, "contacts", [{"email": f"x{i}@example.com"}
                                                  for i in range(20)])
            await c.client.aclose()
    assert all(r.ok for r in results)
    assert len(emu.records("contacts")) == 20


async def test_find_many_reads_a_hundred_per_request(autojump_clock):
    """Many records looked up by key at once (healing creates, issue 16 item 2): contact
    emails by batch read with idProperty=email, 100 inputs a request (fact sheet §1.1, §1.3);
    company domains by searches with an IN filter whose bodies stay within HubSpot's 3,000
    characters (§2)."""
    emu, clocks = in_process()
    emu.seed({"generate": {"companies": 150, "contacts": 250}, "seed": 5})
    c = connector(emu, clocks)
    contacts = emu.records("contacts")
    emails = [r["properties"]["email"] for r in contacts]
    asked = [e.upper() for e in emails[:240]] + ["nobody@example.com"]
    with trio.fail_after(60):
        emu.request_log.clear()
        got = await c.find_many("contacts", "email", asked, ["firstname"])
        assert [p for _, p, _ in emu.request_log] == ["/crm/v3/objects/contacts/batch/read"] * 3
        assert {v: [r.id for r in recs] for v, recs in got.items()} == {
            e.upper(): [r["id"]] for e, r in zip(emails[:240], contacts, strict=False)}
        companies = emu.records("companies")
        domains = sorted({r["properties"]["domain"] for r in companies})
        emu.request_log.clear()
        got = await c.find_many("companies", "domain", domains, ["name"])
        searches = [s for _, p, s in emu.request_log if p == "/crm/v3/objects/companies/search"]
        assert set(searches) == {200}  # no body over the limit (400)
        assert len(searches) <= 3  # not one look-up per company
        assert {v: sorted(r.id for r in recs) for v, recs in got.items()} == {
            d: sorted(r["id"] for r in companies if r["properties"]["domain"] == d)
            for d in domains}


async def test_read_indexed_reads_two_hundred_records_per_request(autojump_clock):
    """Records by id through search (issue 16 item 1): `hs_object_id IN` filters of at most
    100 values in up to 5 filter groups, pages of 200 (fact sheet §2), so 450 records take
    3 searches where batch reads take 5 (§1.3); no body is over 3,000 characters (400)."""
    emu, clocks = in_process()
    emu.seed({"generate": {"contacts": 450}, "seed": 7})
    c = connector(emu, clocks)
    contacts = {r["id"]: r["properties"].get("firstname") for r in emu.records("contacts")}
    with trio.fail_after(60):
        emu.request_log.clear()
        got = await c.read_indexed("contacts", [*contacts, "999999999"], ["firstname"])
        searches = [s for _, p, s in emu.request_log if p == "/crm/v3/objects/contacts/search"]
        assert searches == [200, 200, 200] and len(emu.request_log) == 3
        assert {i: r.properties.get("firstname") for i, r in got.items()} == contacts


async def test_many_properties_are_read_whole_without_an_overlong_request(autojump_clock):
    """300 properties of 40-odd characters do not fit a list URL (HubSpot answers 414 past
    some 8–16k characters, hubspot-onboarding.md §7) nor a search body (3,000 characters,
    fact sheet §2): scan and changes_since still return every property, through batch reads
    whose property list is in the POST body."""
    emu, clocks = in_process()
    state = emu.state
    names = [f"custom_property_number_{i:03d}_with_a_long_name" for i in range(300)]
    for name in names:
        state.registry.create(state.object_type("contacts"), {
            "name": name, "label": name, "type": "string", "fieldType": "text",
            "groupName": "contactinformation"}, state.now_ms())
    c = connector(emu, clocks, index_lag=0.0)
    props = ["email", *names]
    with trio.fail_after(60):
        start = (await c.changes_since("contacts", None, props)).cursor
        await trio.sleep(1)
        emu.add_records("contacts", [{"email": f"p{i}@example.com", names[i]: f"v{i}",
                                     names[299]: "last"} for i in range(150)])
        await trio.sleep(1)
        emu.request_log.clear()
        records, cursor = [], None
        while True:
            page = await c.scan("contacts", cursor, props)
            records += page.records
            cursor = page.next_cursor
            if cursor is None:
                break
        assert len(records) == 150
        assert all(r.properties[names[299]] == "last" for r in records)
        assert records[7].properties[names[7]] == "v7"
        changes = await c.changes_since("contacts", start, props)
        assert sorted(r.properties["email"] for r in changes.records) == sorted(
            f"p{i}@example.com" for i in range(150))
        assert all(r.properties[names[299]] == "last" for r in changes.records)
        assert {s for _, _, s in emu.request_log} == {200}  # no 414, no 400
