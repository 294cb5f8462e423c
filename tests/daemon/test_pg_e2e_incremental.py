"""Incremental sync end to end with a PostgreSQL app: app changes arrive through the change
log (woken by NOTIFY, well before the poll interval), hub changes through webhooks, deletes
follow `on_delete`, a transaction of many changes arrives whole."""

from __future__ import annotations

import trio

from crmsync.runtime.object_sync import Timing

from .harness import contacts_sync
from .pg_harness import running_pg
from .test_e2e_incremental import CUSTOMERS, HUB, hub_id

# A poll interval no wait in these tests reaches: what arrives, arrives by notification.
NOTIFY_ONLY = Timing(hub_poll_interval=10_000, app_poll_interval=10_000)


async def test_app_changes_arrive_through_the_change_log_at_once(tmp_path, pg_db):
    async with running_pg(tmp_path, pg_db, customers=CUSTOMERS, hub_contacts=HUB,
                          timing=NOTIFY_ONLY) as env:
        await env.wait_ready()
        await polled_once(env)
        env.app_exec("UPDATE customers SET job_title = 'CTO' WHERE email = 'c1@example.com'")
        env.app_exec("INSERT INTO customers (email, first_name) VALUES ('new@example.com', 'New')")
        await env.eventually(lambda: env.hub_by_email().get("c1@example.com", {}).get(
            "properties", {}).get("jobtitle") == "CTO", timeout=30)
        await env.eventually(lambda: "new@example.com" in env.hub_by_email(), timeout=30)
        assert len(env.hub()) == 6
        # Acknowledged by the next read once synced: the log does not grow.
        env.daemon.handle("shop", "contacts").poll_now()
        await env.eventually(lambda: pg_db.execute(
            "SELECT count(*) FROM crmsync.changelog WHERE origin IS NULL") == [(0,)],
            timeout=30)


async def polled_once(env) -> None:
    """Until the app poller's first poll is over: from then on only a notification brings a
    change before the (unreachable) poll interval."""
    status = env.daemon.connections["shop"].status.objects["contacts"]
    await env.eventually(lambda: status.last_app_poll is not None, timeout=30)


async def test_hub_change_arrives_through_a_webhook(tmp_path, pg_db):
    async with running_pg(tmp_path, pg_db, customers=CUSTOMERS, hub_contacts=HUB,
                          timing=NOTIFY_ONLY) as env:
        await env.wait_ready()
        env.emu.update_record("contacts", hub_id(env, "c2@example.com"), {"phone": "+1 555"})
        env.emu.add_records("contacts", [{"email": "fresh@example.com", "firstname": "F"}])
        await env.eventually(lambda: env.app_by_email()["c2@example.com"]["phone"] == "+1 555",
                             timeout=30)
        await env.eventually(lambda: "fresh@example.com" in env.app_by_email(), timeout=30)
        assert env.daemon.webhooks.accepted > 0


async def test_many_changes_in_one_transaction_all_arrive(tmp_path, pg_db):
    customers = [{"email": f"m{i}@example.com", "first_name": "Old"} for i in range(300)]
    hub = [{"email": f"m{i}@example.com", "firstname": "Old"} for i in range(300)]
    async with running_pg(tmp_path, pg_db, customers=customers, hub_contacts=hub,
                          timing=NOTIFY_ONLY) as env:
        await env.wait_ready()
        await polled_once(env)
        env.app_exec("UPDATE customers SET first_name = 'New' || id")
        await env.eventually(lambda: all(
            c["properties"]["firstname"].startswith("New") for c in env.hub()), timeout=120)
        assert len(env.hub()) == 300


async def test_delete_marked_by_default(tmp_path, pg_db):
    async with running_pg(tmp_path, pg_db, customers=CUSTOMERS, hub_contacts=HUB,
                          timing=NOTIFY_ONLY) as env:
        await env.wait_ready()
        env.app_exec("DELETE FROM customers WHERE email = 'c4@example.com'")
        with trio.fail_after(30):
            while (await env.counts())["deleted"] != 1:
                await trio.sleep(0.1)
        assert "c4@example.com" in env.hub_by_email()
        (deleted,) = await env.items(state="deleted")
        assert deleted.deleted_side == "app"


async def test_delete_propagated(tmp_path, pg_db):
    async with running_pg(tmp_path, pg_db, syncs=contacts_sync(on_delete="propagate"),
                          customers=CUSTOMERS, hub_contacts=HUB, timing=NOTIFY_ONLY) as env:
        await env.wait_ready()
        env.emu.archive_record("contacts", hub_id(env, "c2@example.com"))
        await env.eventually(lambda: "c2@example.com" not in env.app_by_email(), timeout=30)
        assert len(env.app_rows()) == 4


async def test_without_notifications_the_poll_finds_changes(tmp_path, pg_db, monkeypatch):
    # Every notification lost: the listener hears nothing. The poll still finds the change.
    from crmsync.connectors.postgres import PostgresAppConnector

    async def deaf(self, wake, *, task_status=trio.TASK_STATUS_IGNORED):
        task_status.started()
        await trio.sleep_forever()

    monkeypatch.setattr(PostgresAppConnector, "watch_changes", deaf)
    timing = Timing(hub_poll_interval=10_000, app_poll_interval=1)
    async with running_pg(tmp_path, pg_db, customers=CUSTOMERS, hub_contacts=HUB,
                          timing=timing) as env:
        await env.wait_ready()
        env.app_exec("UPDATE customers SET phone = '42' WHERE email = 'c0@example.com'")
        await env.eventually(lambda: env.hub_by_email()["c0@example.com"]["properties"]
                             .get("phone") == "42", timeout=30)
