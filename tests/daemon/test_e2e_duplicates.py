"""Duplicates stay out of the sync on every path (issue 10 item 1, issue 17 items 2 and 5).

A record failed as `duplicate` is matched again whenever it is synced (poll, webhook,
reconcile, resync): while another record holds its key it stays `failed: duplicate` and nothing
is created for it; once its key is free it is matched against the other side first (the hub
may hold a record crmsync has not seen). A link never moves onto a failed duplicate.
Companies: HubSpot lets two companies share a domain, so nothing on the hub stops a second one
(HubSpot knowledge base, "Deduplication of records": companies are deduplicated by domain only
by HubSpot's own tools, not on create through the API).
"""

from __future__ import annotations

import time

import trio

from crmsync.connectors.base import ConnectorError
from crmsync.control.ops import repair
from crmsync.emulators.hubspot import HubSpotEmulator
from crmsync.runtime import processor as processor_module
from crmsync.runtime.object_sync import Timing

from .harness import TOKEN, companies_sync, running, wait_for

TIMING = Timing(hub_poll_interval=10_000, app_poll_interval=2)
ORGS = [{"name": "Acme Ltd", "domain": "acme.example"},
        {"name": "Acme Holdings", "domain": "acme.example"},  # a duplicate by domain
        {"name": "Globex", "domain": "globex.example"},
        {"name": "Globex Japan", "domain": "globex.example"}]  # a duplicate by domain


def hub_domains(env) -> list[str]:
    return sorted(str(r["properties"].get("domain")) for r in env.hub("companies"))


async def failed(env) -> dict[str, str]:
    return {i.app_id or i.hub_id: i.category for i in await env.items("companies", "failed")}


async def failures_are(env, expected: dict[str, str]) -> bool:
    return await failed(env) == expected


def no_failures(env):
    return lambda: failures_are(env, {})


async def test_resync_keeps_duplicates_out_and_matches_a_freed_one_on_the_hub_first(
        tmp_path, slow_autojump):
    async with running(tmp_path, syncs=companies_sync(), organisations=ORGS, webhooks=False,
                       timing=TIMING) as env:
        await env.wait_ready(["companies"])
        assert hub_domains(env) == ["acme.example", "globex.example"]
        assert await failed(env) == {"2": "duplicate", "4": "duplicate"}

        # Following the old hint (resync) made HubSpot hold "Acme Holdings" beside "Acme Ltd".
        for kwargs in ({"failed": True}, {}, {"record": "app:2", "side": ""}):
            view = await repair.resync(env.daemon, "shop", "companies", **kwargs)
            assert hub_domains(env) == ["acme.example", "globex.example"], kwargs
            assert await failed(env) == {"2": "duplicate", "4": "duplicate"}, kwargs
        assert "still failed as duplicate" in view.objects[0].message

        # The duplicate's key changes in the app: it syncs by itself on the next poll.
        env.app_exec("UPDATE organisations SET domain = 'holdings.example' WHERE id = 2")
        await env.eventually(lambda: "holdings.example" in hub_domains(env), timeout=120)
        await wait_for(lambda: failures_are(env, {"4": "duplicate"}), timeout=120)

        # The holder's key changes (the link carries it to the hub), which frees the key;
        # meanwhile someone made "Globex Japan" on the hub, unseen by crmsync (no webhooks,
        # no hub poll yet). The resync pairs with it instead of making a second one.
        env.app_exec("UPDATE organisations SET domain = 'globex.com' WHERE id = 3")
        await env.eventually(lambda: "globex.com" in hub_domains(env), timeout=120)
        (made,) = env.emu.add_records("companies", [{"name": "Globex Japan",
                                                     "domain": "globex.example"}])
        await repair.resync(env.daemon, "shop", "companies", failed=True)
        assert hub_domains(env) == ["acme.example", "globex.com", "globex.example",
                                    "holdings.example"]
        assert await failed(env) == {}
        (item,) = [i for i in await env.items("companies") if i.app_id == "4"]
        assert item.hub_id == made and item.state == "syncing"


async def test_a_hub_duplicate_is_never_created_in_the_app_until_its_key_changes(
        tmp_path, slow_autojump):
    async with running(tmp_path, syncs=companies_sync(), organisations=ORGS[:1],
                       webhooks=False, timing=TIMING) as env:
        await env.wait_ready(["companies"])
        handle = env.daemon.handle("shop", "companies")
        (dup,) = env.emu.add_records("companies", [{"name": "Acme Holdings",
                                                    "domain": "acme.example"}])
        handle.poll_now()
        await trio.sleep(30)
        assert await failed(env) == {dup: "duplicate"}

        def org_names() -> list[str]:
            return sorted(r["name"] for r in env.app_rows("organisations"))

        # Every later path brings it through matching again: an edit seen by the poll, a
        # reconciliation, a resync of failed records.
        env.emu.update_record("companies", dup, {"city": "Leeds"})
        handle.poll_now()
        await trio.sleep(30)
        await repair.resync(env.daemon, "shop", "companies")
        await repair.resync(env.daemon, "shop", "companies", failed=True)
        assert org_names() == ["Acme Ltd"]
        assert await failed(env) == {dup: "duplicate"}

        # Its key changes on the hub: it is a record of its own now.
        env.emu.update_record("companies", dup, {"domain": "holdings.example"})
        handle.poll_now()
        await wait_for(lambda: org_names() == ["Acme Holdings", "Acme Ltd"], timeout=120)
        await wait_for(no_failures(env), timeout=120)  # committed after the app's write


async def test_a_retried_create_never_pairs_with_a_failed_duplicate(tmp_path, slow_autojump,
                                                                     monkeypatch):
    # "Initech" on the hub was failed as a duplicate (its name is held by the linked
    # "Initech" of initech.com) and shares initech.example with a new app company. That
    # company's create lands on the hub but is cut short before its commit; the retry looks
    # for what it made (once HubSpot's search shows it) and must take its own record, not
    # the failed duplicate, which would leave the record it made unlinked.
    emu = HubSpotEmulator(tokens=(TOKEN,), tier="unlimited", seed=0, clock=trio.current_time,
                          search_index_delay=30.0)
    emu.add_records("companies", [{"name": "Initech", "domain": "initech.com"}])
    (dup,) = emu.add_records("companies", [{"name": "Initech", "domain": "initech.example"}])
    original = processor_module.Processor._write
    cut: list[str] = []

    async def write_then_crash(self, works):
        out = await original(self, works)
        made = [rid for w in works for rid in w.created.values()]
        if made and not cut:
            cut.extend(made)
            # Cut short the way a sync is in production: the connection drops after the
            # writes were sent (an error of one record would fail that record instead).
            raise ConnectorError("transient", "api_unavailable",
                                 "simulated: connection reset after the writes, before the commit")
        return out

    start = time.time() - trio.current_time()
    monkeypatch.setattr(processor_module, "wall_clock", lambda: start + trio.current_time())
    # The daemon allows more lag than the emulator has: the heal's wait is measured from
    # before the create was sent, and on this test's clock the create may reach the hub a
    # few (virtual) seconds later.
    async with running(tmp_path, syncs=companies_sync(), webhooks=False, emulator=emu,
                       hub_index_lag=60.0, timing=TIMING,
                       organisations=[{"name": "Initech", "domain": "initech.com"}]) as env:
        await env.wait_ready(["companies"], timeout=3000)
        assert await failed(env) == {dup: "duplicate"}

        monkeypatch.setattr(processor_module.Processor, "_write", write_then_crash)
        env.app_exec("INSERT INTO organisations (name, domain) VALUES "
                     "('Initech Europe', 'initech.example')")
        await env.eventually(lambda: bool(cut), timeout=600)
        europe = next(r["id"] for r in env.app_rows("organisations")
                      if r["name"] == "Initech Europe")

        async def linked() -> bool:
            return any(i.app_id == str(europe) and i.state == "syncing"
                       for i in await env.items("companies"))

        with trio.fail_after(3000):
            while not await linked():
                await trio.sleep(1)
        env.daemon.handle("shop", "companies").poll_now()
        await trio.sleep(60)
        (item,) = [i for i in await env.items("companies") if i.app_id == str(europe)]
        assert item.hub_id == cut[0]
        assert await failed(env) == {dup: "duplicate"}
        # Nothing was copied: the app holds its two companies, the hub the three it had.
        assert sorted(r["name"] for r in env.app_rows("organisations")) == [
            "Initech", "Initech Europe"]
        assert len(env.hub("companies")) == 3
