"""The Pipedrive connector against the Pipedrive emulator in process (`httpx.ASGITransport`),
on Trio's MockClock: the emulator's clocks and the connector's wall clock follow trio's.

Facts the expectations rest on are in shared/reference/pipedrive-api.md (A.x) and the
emulator's README ([INF] choices): token costs per operation (A.1), cursor paging with
`limit` ≤ 500 (A.2), `emails` / `phones` arrays with one primary entry (A.3), no domain on
organizations (A.3), custom fields under 40-hex keys nested in `custom_fields` (A.3), strict v2
validation (A.3), `updated_since` / `updated_until` at the second (A.4, emulator [INF]), the
daily token budget and the 2-second burst window with 429s (A.6).
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import trio

from crmsync.config.model import (
    PipedriveApiToken,
    PipedriveConnection,
    PipedriveOAuth,
    PipedriveWebhooks,
)
from crmsync.connectors.base import AssociationChange, ConnectorError
from crmsync.connectors.pipedrive import PipedriveConnector
from crmsync.connectors.ratelimit import RateBudget
from crmsync.emulators.pipedrive import PipedriveEmulator
from crmsync.emulators.pipedrive.faults import Faults
from crmsync.runtime.create_healing import create_healed

from ..emulators.conftest import EPOCH_MS, TrioWallClock

TOKEN = "pd-test-token"
BASE = "http://pipedrive.test"


class Clocks:
    """One wall clock for the emulator (ms) and the connector (s), following trio's."""

    def __init__(self) -> None:
        self.ms = TrioWallClock()

    def seconds(self) -> float:
        return self.ms() / 1000


def settings(**kw: Any) -> PipedriveConnection:
    kw.setdefault("auth", PipedriveApiToken(token_env="CRMSYNC_TEST_PD_TOKEN"))
    return PipedriveConnection(name="pd", base_url=BASE, **kw)


def make(plan: str = "unlimited", **emu_kw: Any) -> tuple[PipedriveEmulator, Clocks]:
    clocks = Clocks()
    emu = PipedriveEmulator(tokens=(TOKEN,), plan=plan, clock=trio.current_time,
                            now_ms=clocks.ms, **emu_kw)
    return emu, clocks


def connector(emu: PipedriveEmulator, clocks: Clocks, monkeypatch: pytest.MonkeyPatch,
              **kw: Any) -> PipedriveConnector:
    monkeypatch.setenv("CRMSYNC_TEST_PD_TOKEN", TOKEN)
    s = kw.pop("settings", None) or settings(plan=emu.rate_limiter.plan)
    return PipedriveConnector(s, transport=httpx.ASGITransport(app=emu.app),
                              wall_clock=clocks.seconds, **kw)


def calls(emu: PipedriveEmulator, method: str = "", path: str = "") -> list[tuple[Any, ...]]:
    return [r for r in emu.request_log if r[0].startswith(method) and r[1].startswith(path)]


# --- records -------------------------------------------------------------------------------


async def test_primary_email_and_phone_are_the_single_values_and_others_are_kept(
        autojump_clock, monkeypatch):
    emu, clocks = make()
    (pid,) = emu.add_records("persons", [{
        "name": "Ada Lovelace",
        "emails": [{"value": "ada.home@example.com", "label": "home"},
                   {"value": "ada@example.com", "primary": True, "label": "work"}],
        "phones": [{"value": "+1 555 0100"}]}])
    async with connector(emu, clocks, monkeypatch).open() as c:
        rec = (await c.read("persons", [str(pid)], ["email", "phone"]))[str(pid)]
        # The primary entry, wherever it is; the only entry is primary (A.3).
        assert rec.properties["email"] == "ada@example.com"
        assert rec.properties["phone"] == "+1 555 0100"
        assert rec.properties["emails"] == "ada.home@example.com; ada@example.com"
        (res,) = await c.update("persons", [(str(pid), {"email": "ada@new.example",
                                                        "phone": None})])
        assert res.ok, res.error
    (p,) = emu.records("persons")
    # The primary value replaced; the other entry, its label and place kept; the phone gone.
    assert p["emails"] == [{"value": "ada.home@example.com", "primary": False, "label": "home"},
                           {"value": "ada@new.example", "primary": True, "label": "work"}]
    assert p["phones"] == []


async def test_a_person_without_a_name_is_named_after_its_email(autojump_clock, monkeypatch):
    emu, clocks = make()
    async with connector(emu, clocks, monkeypatch).open() as c:
        ok, bad = await c.create("persons", [{"email": "nameless@example.com"},
                                             {"first_name": None}])
    assert ok.ok and ok.record is not None
    assert ok.record.properties["name"] == "nameless@example.com"
    # Pipedrive requires a name (A.3): with nothing to name it after, the record fails.
    assert not bad.ok and bad.error is not None and bad.error.category == "invalid_value"
    assert "needs a name" in bad.error.message


async def test_organization_domain_comes_from_the_website_or_a_custom_field(
        autojump_clock, monkeypatch):
    emu, clocks = make()
    emu.add_custom_field("organizations", "Primary domain", "varchar")
    (acme, beta) = emu.add_records("organizations", [
        {"name": "Acme", "website": "https://www.Acme.example:8443/about?x=1"},
        {"name": "Beta", "website": "beta.example"}])
    async with connector(emu, clocks, monkeypatch).open() as c:
        recs = await c.read("organizations", [str(acme), str(beta)], ["domain"])
        assert recs[str(acme)].properties["domain"] == "acme.example"
        assert recs[str(beta)].properties["domain"] == "beta.example"
        (made,) = await c.create("organizations", [{"domain": "gamma.example"}])
        assert made.ok and made.record is not None
        # No name: the domain names it; the domain lands in the website (A.3: no domain field).
        assert made.record.properties["name"] == "gamma.example"
        assert made.record.properties["website"] == "gamma.example"
    s = settings(plan="unlimited", organization_domain_field="primary DOMAIN")
    async with connector(emu, clocks, monkeypatch, settings=s).open() as c:
        (res,) = await c.update("organizations", [(str(acme), {"domain": "acme.test"})])
        assert res.ok and res.record is not None
        assert res.record.properties["domain"] == "acme.test"
        assert res.record.properties["website"] == "https://www.Acme.example:8443/about?x=1"


async def test_custom_fields_by_label_with_option_labels_and_strict_numbers(
        autojump_clock, monkeypatch):
    emu, clocks = make()
    tier = emu.add_custom_field("persons", "Customer tier", "enum", ["Gold", "Silver"])
    tags = emu.add_custom_field("persons", "Interests", "set", ["CRM", "Sync", "Data"])
    score = emu.add_custom_field("persons", "Score", "double")
    budget = emu.add_custom_field("persons", "Budget", "monetary")
    async with connector(emu, clocks, monkeypatch).open() as c:
        (res,) = await c.create("persons", [{
            "name": "Grace", "customer tier": "silver", "Interests": "Sync;CRM",
            "Score": "12.50", "Budget": "1000"}])
        assert res.ok, res.error
        assert res.record is not None
        props = res.record.properties
        assert (props["Customer tier"], props["Interests"], props["Score"], props["Budget"]) \
            == ("Silver", "CRM;Sync", 12.5, 1000)
        # An option that does not exist fails the record, naming the options.
        (bad,) = await c.update("persons", [(res.record.id, {"Customer tier": "Platinum"})])
        assert not bad.ok and bad.error is not None and bad.error.category == "invalid_value"
        assert "Gold, Silver" in bad.error.message
        # A mapped field the account does not have stops the object sync with its name.
        with pytest.raises(ConnectorError) as info:
            await c.scan("persons", None, ["Customer tier", "Tier level"])
        assert info.value.kind == "config" and "'Tier level'" in info.value.message
    (p,) = emu.records("persons")
    # On the wire: option ids, numbers as numbers, money with the account's currency.
    cf = p["custom_fields"]
    silver = next(o["id"] for o in emu.state.registry("persons").get(tier).options or []
                  if o["label"] == "Silver")
    assert cf[tier] == silver and cf[score] == 12.5
    assert cf[budget] == {"value": 1000, "currency": "USD"}
    assert len(cf[tags]) == 2


async def test_a_label_two_custom_fields_share_must_be_named_by_key(autojump_clock,
                                                                   monkeypatch):
    emu, clocks = make()
    first = emu.add_custom_field("persons", "Region", "varchar")
    emu.add_custom_field("persons", "region", "varchar")
    async with connector(emu, clocks, monkeypatch).open() as c:
        with pytest.raises(ConnectorError, match="ambiguous"):
            await c.scan("persons", None, ["Region"])
        page = await c.scan("persons", None, [first])
        assert page.records == []


async def test_a_closed_deal_is_in_its_pipelines_won_or_lost_stage(autojump_clock,
                                                                  monkeypatch):
    emu, clocks = make()
    stages = {s["name"]: s["id"] for s in emu.records("stages")}
    (deal,) = emu.add_records("deals", [{"title": "D", "stage_id": stages["Demo Scheduled"]}])
    async with connector(emu, clocks, monkeypatch).open() as c:
        (pipe,) = await c.pipelines("deals")
        assert [s.label for s in pipe.stages][-2:] == ["Won", "Lost"]
        rec = (await c.read("deals", [str(deal)], ["stage"]))[str(deal)]
        assert rec.properties["stage"] == stages["Demo Scheduled"]
        (res,) = await c.update("deals", [(str(deal), {"pipeline_id": pipe.id, "stage": "won"})])
        assert res.ok and res.record is not None and res.record.properties["stage"] == "won"
        assert emu.records("deals")[0]["status"] == "won"
        assert emu.records("deals")[0]["stage_id"] == stages["Demo Scheduled"]
        (res,) = await c.update("deals", [(str(deal), {"pipeline_id": pipe.id,
                                                       "stage": str(stages["Qualified"])})])
        assert res.ok, res.error
    d = emu.records("deals")[0]
    assert (d["status"], d["stage_id"]) == ("open", stages["Qualified"])


# --- tokens, paging, the burst window -------------------------------------------------------


async def test_every_call_is_charged_its_token_cost_before_it_is_sent(autojump_clock,
                                                                      monkeypatch):
    emu, clocks = make(plan="essential")
    emu.seed({"generate": {"persons": 600}, "seed": 1})
    c = connector(emu, clocks, monkeypatch)
    async with c.open():
        page = await c.scan("persons", None, ["email"])  # fields 10 + list 10
        assert len(page.records) == 500 and page.next_cursor
        page2 = await c.scan("persons", page.next_cursor, ["email"])  # 10
        assert len(page2.records) == 100 and page2.next_cursor is None
        ids = [r.id for r in page.records]
        await c.read("persons", ids[:3], ["email"])  # 3 gets: 3 x 1
        await c.read("persons", ids[:150], ["email"])  # ids= lists of 100: 2 x 10
        made = await c.create("persons", [{"name": f"N{i}"} for i in range(4)])  # 4 x 5
        await c.update("persons", [(made[0].record.id, {"name": "M"})])  # type: ignore[union-attr]
        await c.archive("persons", [made[1].record.id])  # type: ignore[union-attr]  # 3
        await c.find("persons", "email", ids[0] + "@nowhere.example", ["email"])  # search 20
    # users/me 2, then the calls above in order.
    expected = 2 + 10 + 10 + 10 + 3 + 20 + 20 + 5 + 3 + 20
    assert emu.tokens_used_today() == expected
    assert c.budget.statistics().daily_used == expected
    assert [r for r in emu.request_log if r[2] == 429] == []
    assert sorted(calls(emu, "GET", "/api/v2/persons/")[:3]) == [
        ("GET", f"/api/v2/persons/{i}", 200, 1) for i in ids[:3]]


async def test_writes_run_concurrently_paced_by_the_burst_window(autojump_clock, monkeypatch):
    """No batch writes in v2 (A.1): 100 creates go one request each, several at once, and the
    budget keeps them inside 20 requests per 2 s (essential plan, A.6) without a 429."""
    emu, clocks = make(plan="essential")
    c = connector(emu, clocks, monkeypatch)
    async with c.open():
        t0 = trio.current_time()
        results = await c.create("persons", [{"name": f"P{i}"} for i in range(100)])
        elapsed = trio.current_time() - t0
    assert all(r.ok for r in results)
    assert [r.record.properties["name"] for r in results if r.record] == \
        [f"P{i}" for i in range(100)]
    assert [r for r in emu.request_log if r[2] == 429] == []
    # 100 requests at 20 per 2 s take at least 4 windows beyond the first.
    assert elapsed >= 8.0
    assert c.budget.statistics().waits > 0


async def test_a_429_waits_for_the_window_and_retries(autojump_clock, monkeypatch):
    emu, clocks = make(plan="essential")
    c = connector(emu, clocks, monkeypatch)
    async with c.open():
        emu.faults = Faults(rate_limit_storm_seconds=3.0)
        page = await c.scan("persons", None, [])
    assert page.records == []
    statuses = [r[2] for r in calls(emu, "GET", "/api/v2/")]
    assert statuses[-1] == 200 and 429 in statuses
    # It waited out each refusal instead of hammering (at most one per window of the storm).
    assert statuses.count(429) <= 2
    assert c.budget.statistics().rate_limited == statuses.count(429)


async def test_the_block_page_after_hammering_stops_calls_for_a_while(autojump_clock,
                                                                      monkeypatch):
    """After too many 429s Pipedrive answers 403 with an HTML page (A.6): that is a rate
    limit (wait, then call again), not a permission problem."""
    emu, clocks = make(plan="essential", hammer_limit=1, block_seconds=30.0)
    c = connector(emu, clocks, monkeypatch)
    async with c.open():
        emu.faults = Faults(rate_limit_storm_seconds=1.0)
        await c.scan("persons", None, [])
    statuses = [r[2] for r in calls(emu, "GET", "/api/v2/")]
    # Refused (429), blocked (403: waited out, not taken for a permission problem), then in.
    assert statuses == [429, 403, 200, 200]


async def test_a_spent_daily_budget_pauses_and_a_new_day_resumes(autojump_clock, monkeypatch):
    emu, clocks = make(plan="essential")
    s = settings(plan="essential", budget_probe_interval_seconds=600)
    c = connector(emu, clocks, monkeypatch, settings=s)
    async with c.open():
        emu.rate_limiter.set_tokens_used(30_000 - 14, emu.clock.now_ms())
        await c.read("persons", ["1"], [])  # fields 10 + get 1: the API says 3 left
        before = len(emu.request_log)
        with pytest.raises(ConnectorError) as info:
            await c.create("persons", [{"name": "A"}, {"name": "B"}])
        err = info.value
        # Known locally: nothing was sent; the connection is to pause and look again later.
        assert len(emu.request_log) == before
        assert err.kind == "rate_limited" and err.pause and err.retry_after == 600
        assert "29,997 of 30,000 tokens used today" in err.message
        stats = c.budget.statistics()
        assert stats.daily_remaining == 3 and stats.daily_resets_in is not None
    # Pipedrive's day begins again; the next open probes (users/me) and resumes.
    emu.rate_limiter.set_tokens_used(0, emu.clock.now_ms())
    c2 = connector(emu, clocks, monkeypatch, settings=s, budget=c.budget)
    async with c2.open():
        (res,) = await c2.create("persons", [{"name": "A"}])
    assert res.ok
    # users/me 2, the fields 10 (a new connector reads them again), the create 5.
    assert c.budget.statistics().daily_remaining == 30_000 - 2 - 10 - 5


async def test_a_probe_without_daily_headers_still_sees_the_new_day(autojump_clock,
                                                                   monkeypatch):
    """The daily headers are undocumented and sometimes missing (A.6 UNVERIFIED): a probe
    that goes through although the local count says the day is spent starts a new count."""
    emu, clocks = make(plan="essential")
    budget = RateBudget(per_window=20, window_seconds=2.0, daily=100)
    emu.faults = Faults(daily_headers_missing_rate=1.0)
    c = connector(emu, clocks, monkeypatch, budget=budget)
    async with c.open():
        await c.scan("persons", None, [])
        budget.note_rate_limited("daily")
        with pytest.raises(ConnectorError):
            await c.scan("persons", None, [])
    async with connector(emu, clocks, monkeypatch, budget=budget).open() as c2:
        await c2.scan("persons", None, [])
    # The probe's users/me went through: counted from zero since, fields 10 + list 10.
    assert budget.statistics().daily_used == 20


async def test_changes_are_read_once_each_over_closed_seconds(autojump_clock, monkeypatch):
    emu, clocks = make()
    pids = emu.add_records("persons", [{"name": f"P{i}"} for i in range(3)])
    async with connector(emu, clocks, monkeypatch).open() as c:
        await trio.sleep(5)
        start = await c.changes_since("persons", None, [])
        assert start.records == []
        emu.update_record("persons", pids[0], {"name": "First"})
        # The second of that change is not over (plus the lag): not read yet.
        again = await c.changes_since("persons", start.cursor, [])
        assert again.records == []
        await trio.sleep(1)
        emu.update_record("persons", pids[0], {"name": "Second"})  # maybe the same second
        await trio.sleep(3)
        got = await c.changes_since("persons", again.cursor, [])
        assert [r.id for r in got.records] == [str(pids[0])]
        assert got.records[0].properties["name"] == "Second"
        assert (await c.changes_since("persons", got.cursor, [])).records == []
        emu.delete_record("persons", pids[1])
        await trio.sleep(3)
        # Lists leave deleted persons out (emulator README): the runtime sweeps for them.
        assert (await c.changes_since("persons", got.cursor, [])).records == []
        assert c.capabilities.deletes_in_changes is False


async def test_changes_since_answers_one_list_page_per_call(autojump_clock, monkeypatch):
    # A page-level operation: one list request (500, A.2) per call and `more` while the pass
    # goes on; the runtime calls again (runtime/paging.py).
    emu, clocks = make()
    async with connector(emu, clocks, monkeypatch).open() as c:
        start = await c.changes_since("persons", None, [])
        await trio.sleep(3)
        emu.add_records("persons", [{"name": f"P{i}"} for i in range(700)])
        await trio.sleep(3)
        before = len(calls(emu, "GET", "/api/v2/persons"))
        got = await c.changes_since("persons", start.cursor, [])
        assert len(got.records) == 500 and got.more
        assert len(calls(emu, "GET", "/api/v2/persons")) == before + 1
        rest = await c.changes_since("persons", got.cursor, [])
        assert len(rest.records) == 200 and not rest.more


async def test_changes_page_on_and_deleted_deals_come_archived(autojump_clock, monkeypatch):
    emu, clocks = make()
    async with connector(emu, clocks, monkeypatch).open() as c:
        start = await c.changes_since("deals", None, [])
        await trio.sleep(3)
        ids = emu.add_records("deals", [{"title": f"D{i}"} for i in range(1200)])
        emu.delete_record("deals", ids[0])
        await trio.sleep(3)
        seen: list[str] = []
        cursor = start.cursor
        archived: list[str] = []
        while True:
            got = await c.changes_since("deals", cursor, [])
            seen += [r.id for r in got.records]
            archived += [r.id for r in got.records if r.archived]
            cursor = got.cursor
            if not got.more:
                break
    assert sorted(seen, key=int) == [str(i) for i in ids]
    assert archived == [str(ids[0])]


# --- lost answers, OAuth, webhooks, associations -------------------------------------------


async def test_a_create_whose_answer_is_lost_is_found_not_repeated(autojump_clock,
                                                                   monkeypatch):
    emu, clocks = make()
    s = settings(plan="unlimited", request_timeout_seconds=5)
    async with connector(emu, clocks, monkeypatch, settings=s).open() as c:
        emu.faults = Faults(hang_after_apply_rate=1.0)
        # The runtime settles the lost answer, as the batch writer does for every create.
        results = await create_healed(c, "persons", [{"name": "Lost Answer",
                                                      "email": "lost@example.com"}])
        emu.faults = Faults()
    (res,) = results
    assert res.ok and res.record is not None
    assert [p["id"] for p in emu.records("persons")] == [int(res.record.id)]
    assert calls(emu, "GET", "/api/v2/persons/search")


async def test_oauth_refreshes_and_hands_over_a_rotated_refresh_token(autojump_clock,
                                                                     monkeypatch):
    emu, clocks = make(oauth_clients={"cid": ("csecret", "refresh-1")},
                       rotate_refresh_tokens=True)
    monkeypatch.setenv("PD_SECRET", "csecret")
    monkeypatch.setenv("PD_REFRESH", "refresh-1")
    saved: list[str] = []

    async def save(token: str) -> None:
        saved.append(token)

    s = settings(plan="unlimited", auth=PipedriveOAuth(
        client_id="cid", client_secret_env="PD_SECRET", refresh_token_env="PD_REFRESH",
        token_url=f"{BASE}/oauth/token"))
    async with connector(emu, clocks, monkeypatch, settings=s,
                         on_refresh_token=save).open() as c:
        await c.scan("persons", None, [])
        emu.expire_access_tokens()
        await c.scan("persons", None, [])  # 401, one refresh, sent again
    assert emu.auth.refresh_count == 2
    assert len(saved) == 2 and saved[-1] != "refresh-1"


async def test_webhooks_are_registered_once_and_removed(autojump_clock, monkeypatch):
    emu, clocks = make()
    monkeypatch.setenv("PD_HOOK", "hook-password")
    s = settings(plan="unlimited", webhooks=PipedriveWebhooks(user="u", password_env="PD_HOOK"))
    url = "https://crmsync.example.com/webhooks/pd"
    async with connector(emu, clocks, monkeypatch, settings=s, webhook_url=url).open() as c:
        first = await c.register_webhooks()
        again = await c.register_webhooks()
        assert sorted(h.entity for h in first) == ["deal", "organization", "person"]
        assert sorted(h.id for h in again) == sorted(h.id for h in first)
        hooks = list(emu.webhooks.hooks.values())
        assert {(h.subscription_url, h.http_auth_user, h.http_auth_password, h.version)
                for h in hooks} == {(url, "u", "hook-password", "2.0")}
        # A new URL replaces them.
        moved = await c.register_webhooks("https://other.example.com/webhooks/pd")
        assert len(emu.webhooks.hooks) == 3 and {h.url for h in moved} == {
            "https://other.example.com/webhooks/pd"}
        removed = await c.remove_webhooks()
        assert len(removed) == 3 and emu.webhooks.hooks == {}


async def test_associations_are_the_records_foreign_keys(autojump_clock, monkeypatch):
    emu, clocks = make()
    o1, o2 = emu.add_records("organizations", [{"name": "O1"}, {"name": "O2"}])
    p1, p2 = emu.add_records("persons", [{"name": "P1", "org_id": o1}, {"name": "P2"}])
    async with connector(emu, clocks, monkeypatch).open() as c:
        assert await c.read_associations("persons", "organizations",
                                         [str(p1), str(p2)]) == {str(p1): [str(o1)], str(p2): []}
        assert await c.read_associations("organizations", "persons", [str(o1)]) == {
            str(o1): [str(p1)]}
        res = await c.write_associations("persons", "organizations", [
            AssociationChange(str(p2), str(o2)),
            AssociationChange(str(p1), str(o2), removed=True),  # p1 holds o1: left alone
        ])
        assert all(r.ok for r in res)
        assert await c.read_associations("persons", "organizations", [str(p1), str(p2)]) == {
            str(p1): [str(o1)], str(p2): [str(o2)]}
        (res1,) = await c.write_associations("persons", "organizations", [
            AssociationChange(str(p1), str(o1), removed=True)])
        assert res1.ok
    assert {p["id"]: p["org_id"] for p in emu.records("persons")} == {p1: None, p2: o2}


async def test_find_by_email_name_and_website_domain(autojump_clock, monkeypatch):
    emu, clocks = make()
    emu.add_records("persons", [{"name": "A", "emails": [{"value": "Same@Example.com"}]},
                                {"name": "B", "emails": [{"value": "x@example.com"},
                                                         {"value": "same@example.com"}]}])
    (org,) = emu.add_records("organizations", [{"name": "Acme", "website": "http://acme.io/"}])
    async with connector(emu, clocks, monkeypatch).open() as c:
        found = await c.find("persons", "email", "same@example.com", ["email"])
        # Only the primary email is the `email` field.
        assert [r.properties["name"] for r in found] == ["A"]
        by_domain = await c.find("organizations", "domain", "https://www.acme.io", ["domain"])
        assert [r.id for r in by_domain] == [str(org)]
        assert await c.find("organizations", "name", "ACME", []) == by_domain


async def test_epoch_of_the_wall_clock_is_shared(autojump_clock):
    # The helper the tests rely on: the emulator and the connector read one wall clock.
    clocks = Clocks()
    assert clocks.ms() == EPOCH_MS and clocks.seconds() == EPOCH_MS / 1000
