"""Incremental sync end to end: changes on either side arrive on the other through the app's
change log, HubSpot webhooks or hub polling; conflicts go to the winner; deletes follow
`on_delete`; duplicated and reordered webhooks change nothing twice."""

import trio

from crmsync.runtime.object_sync import Timing
from crmsync.store import deletes as store_deletes

from .harness import contacts_sync, running

CUSTOMERS = [{"email": f"c{i}@example.com", "first_name": f"C{i}", "last_name": "App"}
             for i in range(5)]
HUB = [{"email": f"c{i}@example.com", "firstname": f"C{i}", "lastname": "App"}
       for i in range(5)]


def hub_id(env, email):
    return env.hub_by_email()[email]["id"]


def app_id(env, email):
    return next(r["id"] for r in env.app_rows() if r["email"] == email)


async def test_app_change_arrives_through_the_change_log(tmp_path, slow_autojump):
    async with running(tmp_path, customers=CUSTOMERS, hub_contacts=HUB) as env:
        await env.wait_ready()
        env.app_exec("UPDATE customers SET job_title = 'CTO' WHERE email = 'c1@example.com'")
        env.app_exec("INSERT INTO customers (email, first_name) VALUES ('new@example.com', 'New')")
        await env.eventually(lambda: env.hub_by_email().get("c1@example.com", {}).get(
            "properties", {}).get("jobtitle") == "CTO")
        await env.eventually(lambda: "new@example.com" in env.hub_by_email())
        assert len(env.hub()) == 6


async def test_hub_change_arrives_through_a_webhook(tmp_path, slow_autojump):
    # Polling every 10,000 s: only the webhook can bring the change within the wait.
    timing = Timing(hub_poll_interval=10_000, app_poll_interval=2)
    async with running(tmp_path, customers=CUSTOMERS, hub_contacts=HUB, timing=timing) as env:
        await env.wait_ready()
        start = trio.current_time()
        env.emu.update_record("contacts", hub_id(env, "c2@example.com"), {"phone": "+1 555"})
        env.emu.add_records("contacts", [{"email": "fresh@example.com", "firstname": "F"}])
        await env.eventually(lambda: env.app_by_email()["c2@example.com"]["phone"] == "+1 555",
                             step=0.1)
        await env.eventually(lambda: "fresh@example.com" in env.app_by_email(), step=0.1)
        assert trio.current_time() - start < 100
        assert env.daemon.webhooks.accepted > 0


async def test_hub_change_arrives_through_polling_without_webhooks(tmp_path, slow_autojump):
    timing = Timing(hub_poll_interval=60, app_poll_interval=2)
    async with running(tmp_path, customers=CUSTOMERS, hub_contacts=HUB, webhooks=False,
                       timing=timing) as env:
        await env.wait_ready()
        start = trio.current_time()
        env.emu.update_record("contacts", hub_id(env, "c3@example.com"), {"lastname": "Polled"})
        await env.eventually(lambda: env.app_by_email()["c3@example.com"]["last_name"] == "Polled")
        # Found by the next poll, not before.
        assert 0 < trio.current_time() - start <= 61 + 5
        status = env.daemon.connections["shop"].status.objects["contacts"]
        assert status.last_poll is not None


async def test_conflict_goes_to_the_winner_and_an_empty_winner_keeps_the_other(
        tmp_path, slow_autojump):
    timing = Timing(hub_poll_interval=10_000, app_poll_interval=10_000)
    async with running(tmp_path, customers=CUSTOMERS, hub_contacts=HUB, webhooks=False,
                       timing=timing) as env:
        await env.wait_ready()
        # Both sides change c0's last name, and c1's: the hub clears it, the app changes it.
        env.emu.update_record("contacts", hub_id(env, "c0@example.com"), {"lastname": "Hub"})
        env.app_exec("UPDATE customers SET last_name = 'AppSide' WHERE email = 'c0@example.com'")
        env.emu.update_record("contacts", hub_id(env, "c1@example.com"), {"lastname": ""})
        env.app_exec("UPDATE customers SET last_name = 'Kept' WHERE email = 'c1@example.com'")
        env.daemon.handle("shop", "contacts").poll_now()
        await env.eventually(lambda: env.app_by_email()["c0@example.com"]["last_name"] == "Hub")
        await env.eventually(lambda: env.hub_by_email()["c1@example.com"]["properties"].get(
            "lastname") == "Kept")
        assert env.hub_by_email()["c0@example.com"]["properties"]["lastname"] == "Hub"
        assert env.app_by_email()["c1@example.com"]["last_name"] == "Kept"
        items = {i.app_id: i for i in await env.items()}
        from crmsync.store import items as store_items
        history = await env.daemon.store.read(
            store_items.history_for, "shop/contacts",
            items[str(app_id(env, "c0@example.com"))].item_id)
        assert b"conflict_winner" in history[0][4]


async def test_delete_marked_by_default(tmp_path, slow_autojump):
    async with running(tmp_path, customers=CUSTOMERS, hub_contacts=HUB) as env:
        await env.wait_ready()
        env.app_exec("DELETE FROM customers WHERE email = 'c4@example.com'")
        with trio.fail_after(600):
            while (await env.counts())["deleted"] != 1:
                await trio.sleep(0.5)
        assert "c4@example.com" in env.hub_by_email()  # nothing deleted in the hub
        (deleted,) = await env.items(state="deleted")
        assert deleted.deleted_side == "app"


async def test_delete_propagated(tmp_path, slow_autojump):
    async with running(tmp_path, syncs=contacts_sync(on_delete="propagate"),
                       customers=CUSTOMERS, hub_contacts=HUB) as env:
        await env.wait_ready()
        env.emu.archive_record("contacts", hub_id(env, "c2@example.com"))
        await env.eventually(lambda: "c2@example.com" not in env.app_by_email())
        assert len(env.app_rows()) == 4


async def test_delete_parked_for_review(tmp_path, slow_autojump):
    async with running(tmp_path, syncs=contacts_sync(on_delete="review"),
                       customers=CUSTOMERS, hub_contacts=HUB) as env:
        await env.wait_ready()
        env.app_exec("DELETE FROM customers WHERE email = 'c3@example.com'")
        with trio.fail_after(600):
            while not await env.daemon.store.read(store_deletes.parked, "shop/contacts"):
                await trio.sleep(0.5)
        ((_item, side, record_id, _),) = await env.daemon.store.read(
            store_deletes.parked, "shop/contacts")
        assert side == "app" and record_id
        assert "c3@example.com" in env.hub_by_email()


async def test_a_reviewed_delete_is_not_parked_again_by_later_syncs(tmp_path, slow_autojump):
    # An operator ignored the app's delete (the hub contact is kept). Later syncs of the
    # record (a hub edit, a poll, a reconciliation) find the app row still gone: that delete
    # was decided already and must not come back for review, nor be approved by a later
    # `deletes approve --all`.
    from crmsync.control.ops import repair

    async with running(tmp_path, syncs=contacts_sync(on_delete="review"),
                       customers=CUSTOMERS, hub_contacts=HUB) as env:
        await env.wait_ready()
        env.app_exec("DELETE FROM customers WHERE email = 'c3@example.com'")
        with trio.fail_after(600):
            while not await env.daemon.store.read(store_deletes.parked, "shop/contacts"):
                await trio.sleep(0.5)
        await repair.resolve_deletes(env.daemon, "shop", "contacts", "ignore", every=True)
        assert await env.daemon.store.read(store_deletes.parked, "shop/contacts") == []
        hid = hub_id(env, "c3@example.com")
        env.emu.update_record("contacts", hid, {"lastname": "Kept"})
        handle = env.daemon.handle("shop", "contacts")
        await handle.resync([("hub", hid)])
        handle.poll_now()
        await trio.sleep(60)
        assert await env.daemon.store.read(store_deletes.parked, "shop/contacts") == []
        (item,) = [i for i in await env.items() if i.hub_id == hid]
        assert item.state == "deleted" and "kept on hub" in item.detail
        assert "c3@example.com" in env.hub_by_email()


async def test_duplicated_and_reordered_webhooks_converge(tmp_path, slow_autojump):
    timing = Timing(hub_poll_interval=10_000, app_poll_interval=2)

    def configure(emu):
        emu.webhook_options(duplicate_rate=1.0, reorder=True)

    async with running(tmp_path, customers=CUSTOMERS, hub_contacts=HUB, timing=timing,
                       configure=configure) as env:
        await env.wait_ready()
        hid = hub_id(env, "c1@example.com")
        for n in range(10):
            env.emu.update_record("contacts", hid, {"lastname": f"v{n}"})
            await trio.sleep(0.01)
        await env.eventually(lambda: env.app_by_email()["c1@example.com"]["last_name"] == "v9")
        # Late, duplicated deliveries of older events change nothing: the worker re-reads.
        await trio.sleep(120)
        assert env.app_by_email()["c1@example.com"]["last_name"] == "v9"
        assert len(env.app_rows()) == 5 and len(env.hub()) == 5
        dupes = [d for d in env.emu.dispatcher.deliveries if d.duplicate]
        assert dupes, "the emulator was told to duplicate deliveries"


async def test_reconciliation_recovers_a_change_every_feed_missed(tmp_path, slow_autojump):
    # No webhooks, polling once a day, reconciliation every hour: a hub change made while
    # the hub's change feed is blind to it (its cursor already past it) is found by the
    # reconciliation's full re-read.
    timing = Timing(hub_poll_interval=86_400, app_poll_interval=86_400,
                    reconcile_interval=3_600)
    async with running(tmp_path, customers=CUSTOMERS, hub_contacts=HUB, webhooks=False,
                       timing=timing) as env:
        await env.wait_ready()
        start = trio.current_time()
        env.emu.update_record("contacts", hub_id(env, "c0@example.com"), {"phone": "missed"})
        env.app_exec("UPDATE customers SET job_title = 'also missed' "
                     "WHERE email = 'c4@example.com'")
        await env.eventually(lambda: env.app_by_email()["c0@example.com"]["phone"] == "missed",
                             timeout=10_000, step=30)
        await env.eventually(lambda: env.hub_by_email()["c4@example.com"]["properties"].get(
            "jobtitle") == "also missed", timeout=10_000, step=30)
        # Not before the reconciliation ran (nothing else could have brought it).
        assert trio.current_time() - start >= 3_600
        status = env.daemon.connections["shop"].status.objects["contacts"]
        # The reconciliation is marked done once its last page was synced, after the changes
        # it brought back.
        await env.eventually(lambda: status.last_reconcile is not None, timeout=600, step=1)
