"""Races and interruptions found in review: a person created on both sides at once, a match
key that moved to another record, and a create cut short before its link while HubSpot's
search still lags behind the write."""

import time

import trio

from crmsync.emulators.hubspot import HubSpotEmulator
from crmsync.runtime import processor as processor_module
from crmsync.runtime.object_sync import Timing

from .harness import TOKEN, companies_sync, running, wait_for

CUSTOMERS = [{"email": f"c{i}@example.com", "first_name": f"C{i}"} for i in range(3)]
HUB = [{"email": f"c{i}@example.com", "firstname": f"C{i}"} for i in range(3)]


async def test_a_person_new_on_both_sides_at_once_is_paired_not_copied(tmp_path,
                                                                         slow_autojump):
    timing = Timing(hub_poll_interval=10_000, app_poll_interval=10_000)
    async with running(tmp_path, customers=CUSTOMERS, hub_contacts=HUB, webhooks=False,
                       timing=timing) as env:
        await env.wait_ready()
        env.emu.add_records("contacts", [{"email": "dup@example.com", "firstname": "Hub"}])
        env.app_exec("INSERT INTO customers (email, first_name) VALUES "
                     "('dup@example.com', 'App')")
        env.daemon.handle("shop", "contacts").poll_now()
        await trio.sleep(60)
        app = [r for r in env.app_rows() if r["email"] == "dup@example.com"]
        hub = [r for r in env.hub() if r["properties"].get("email") == "dup@example.com"]
        assert len(app) == 1 and len(hub) == 1
        # One item links them; the hub (the winner) gave its first name.
        linked = [i for i in await env.items() if i.hub_id == hub[0]["id"]]
        assert len(linked) == 1 and linked[0].app_id == str(app[0]["id"])
        assert linked[0].state == "syncing"
        assert app[0]["first_name"] == "Hub"


async def test_a_person_new_on_both_sides_seen_in_two_batches_is_paired_not_copied(
        tmp_path, slow_autojump):
    # The hub's webhook brings the new contact at once; the app's row with the same email is
    # already in the app database but its change is read only at the next app poll, so
    # matching cannot see it yet. The create on the app looks first and pairs with it.
    timing = Timing(hub_poll_interval=10_000, app_poll_interval=10_000)
    async with running(tmp_path, customers=CUSTOMERS, hub_contacts=HUB, webhooks=True,
                       timing=timing) as env:
        await env.wait_ready()
        env.app_exec("INSERT INTO customers (email, first_name) VALUES "
                     "('both@example.com', 'App')")
        env.emu.add_records("contacts", [{"email": "both@example.com", "firstname": "Hub"}])
        (hub,) = [r for r in env.hub() if r["properties"].get("email") == "both@example.com"]
        await env.eventually(lambda: env.app_by_email()["both@example.com"]["first_name"]
                             == "Hub", timeout=120)
        (app,) = [r for r in env.app_rows() if r["email"] == "both@example.com"]

        async def committed() -> bool:  # the link is committed after the app's write
            return any(i.hub_id == hub["id"] for i in await env.items())

        await wait_for(committed, timeout=120)
        linked = [i for i in await env.items() if i.hub_id == hub["id"]]
        assert len(linked) == 1 and linked[0].app_id == str(app["id"])
        # The app's own change, read later, finds the pair made and changes nothing more.
        env.daemon.handle("shop", "contacts").poll_now()
        await trio.sleep(60)
        assert [r["id"] for r in env.app_rows() if r["email"] == "both@example.com"] == \
            [app["id"]]
        assert [i for i in await env.items() if i.state == "failed"] == []
        assert len([i for i in await env.items() if i.app_id == str(app["id"])]) == 1


async def test_a_match_key_that_moved_does_not_make_its_next_holder_a_duplicate(
        tmp_path, slow_autojump):
    timing = Timing(hub_poll_interval=10_000, app_poll_interval=2)
    async with running(tmp_path, customers=CUSTOMERS, hub_contacts=HUB, webhooks=False,
                       timing=timing) as env:
        await env.wait_ready()
        env.app_exec("UPDATE customers SET email = 'moved@example.com' "
                     "WHERE email = 'c0@example.com'")
        await env.eventually(lambda: "moved@example.com" in env.hub_by_email(), timeout=120)
        env.app_exec("INSERT INTO customers (email, first_name) VALUES ('c0@example.com', 'New')")
        await env.eventually(lambda: "c0@example.com" in env.hub_by_email(), timeout=120)
        assert [i for i in await env.items() if i.state == "failed"] == []
        assert env.hub_by_email()["c0@example.com"]["properties"]["firstname"] == "New"


async def test_a_create_cut_short_is_healed_even_while_search_lags(tmp_path, slow_autojump,
                                                                    monkeypatch):
    # HubSpot's search sees a company 30 s after it is written; the daemon knows it (its
    # index lag). The first create's outcome is never committed (a crash between the write
    # and the commit); the retry must find the company it made, not make a second one.
    emu = HubSpotEmulator(tokens=(TOKEN,), tier="unlimited", seed=0, clock=trio.current_time,
                          search_index_delay=30.0)
    original = processor_module.Processor._write
    cut = {"done": False}

    async def write_then_crash(self, works):
        out = await original(self, works)
        if any(w.created for w in works) and not cut["done"]:
            cut["done"] = True
            raise RuntimeError("simulated crash after the writes, before the commit")
        return out

    monkeypatch.setattr(processor_module.Processor, "_write", write_then_crash)
    # The emulator's search lag runs on the virtual clock: so must the intent's time.
    start = time.time() - trio.current_time()
    monkeypatch.setattr(processor_module, "wall_clock", lambda: start + trio.current_time())
    async with running(tmp_path, syncs=companies_sync(), webhooks=False, emulator=emu,
                       hub_index_lag=30.0,
                       timing=Timing(hub_poll_interval=10_000, app_poll_interval=2),
                       organisations=[{"name": "Acme", "domain": "acme.example"}]) as env:
        await env.wait_ready(("companies",), timeout=3000)
        names = [r["properties"].get("name") for r in env.hub("companies")]
        assert cut["done"] and names == ["Acme"]
        (item,) = await env.items("companies")
        assert item.state == "syncing" and item.hub_id and item.creating == ""
