"""The state database stops growing: decision history past `daemon.history_retention_days`
and webhook events synced more than 48 hours ago are pruned at start and every hour, in
chunks; history still within its retention and events not synced yet are kept."""

from __future__ import annotations

import time

import trio

from crmsync.daemon import housekeeping
from crmsync.runtime.object_sync import Timing
from crmsync.store import Store
from crmsync.store import inbox as store_inbox

from .harness import running

DAY = 86400.0
S = "shop/contacts"


def add_history(conn, ages_days: list[float]) -> None:
    now = time.time()
    conn.executemany(
        "INSERT INTO history (sync_id, item_id, at, action, changes) VALUES (?, 1, ?, 'update', "
        "x'5b5d')", [(S, now - age * DAY) for age in ages_days])


def add_inbox(conn, rows: list[tuple[str, float, int]]) -> None:
    """(event key, age in hours, done) rows."""
    now = time.time()
    conn.executemany(
        "INSERT INTO inbox (source, event_key, received_at, payload, done) VALUES (?,?,?,?,?)",
        [("hub:shop:contacts", key, now - age * 3600, b"{}", done) for key, age, done in rows])


def history_ages(conn) -> list[int]:
    now = time.time()
    return [round((now - at) / DAY) for (at,) in conn.execute("SELECT at FROM history ORDER BY id")]


def inbox_keys(conn) -> list[str]:
    return [k for (k,) in conn.execute("SELECT event_key FROM inbox ORDER BY id")]


async def test_a_pass_deletes_what_is_past_retention_in_chunks_and_keeps_the_rest(tmp_path,
                                                                                 monkeypatch):
    monkeypatch.setattr(housekeeping, "CHUNK_ROWS", 100)
    with trio.fail_after(60):
        async with Store.open(tmp_path / "crmsync.db") as store:
            # 250 entries past 90 days (three chunks), then newer ones.
            await store.call(add_history, [120.0] * 250 + [91.0, 89.0, 1.0])
            await store.call(add_inbox, [("old-done", 49, 1), ("old-pending", 200, 0),
                                         ("new-done", 47, 1), ("new-pending", 1, 0)])
            deleted = await housekeeping.prune_once(store, 90)
            assert deleted == {"history": 251, "inbox": 1}
            assert await store.read(history_ages) == [89, 1]
            # An event not synced yet stays however old it is; a synced one stays 48 hours,
            # so that HubSpot's redeliveries (up to 24 hours) are still recognised.
            assert await store.read(inbox_keys) == ["old-pending", "new-done", "new-pending"]
            assert await store.call(store_inbox.add_events, "hub:shop:contacts",
                                    [("new-done", b"{}")]) == 0
            # A shorter retention takes more at the next pass.
            assert (await housekeeping.prune_once(store, 30))["history"] == 1
            assert await store.read(history_ages) == [1]


async def test_the_daemon_prunes_at_start_and_every_hour(tmp_path, slow_autojump):
    # Pollers that wait past the hour: the virtual clock jumps in few steps.
    timing = Timing(hub_poll_interval=100_000, app_poll_interval=100_000)
    async with running(tmp_path, customers=[{"email": "a@example.com"}], timing=timing) as env:
        store = env.daemon.store
        assert store is not None
        with trio.fail_after(housekeeping.INTERVAL_SECONDS + 600):
            await store.call(add_history, [100.0])
            start = trio.current_time()
            # Not before the hour is over...
            await trio.sleep(housekeeping.INTERVAL_SECONDS - 60)
            assert 100 in await store.read(history_ages)
            # ... then gone, and nothing within the retention went with it.
            while 100 in await store.read(history_ages):
                await trio.sleep(10)
            assert trio.current_time() - start >= housekeeping.INTERVAL_SECONDS - 60
            assert await store.read(history_ages)  # the initial sync's own decisions stay
