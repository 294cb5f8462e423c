"""A poller as an actor: polls when it starts, then at its interval or at once when asked;
sends the changed records to the lock queue and commits its cursor only once their syncs are
done (a cursor never ahead of what was applied)."""

from __future__ import annotations

import trio
import trio.testing

from crmsync.runtime.lock_queue import RecordLockQueue
from crmsync.runtime.pollers import Poller
from crmsync.runtime.requests import ask, open_request_channel
from crmsync.store import cursors as store_cursors

from .rig import rig


async def cursor(ctx) -> str | None:
    return await ctx.store.read(store_cursors.get_cursor, ctx.sync_id, "hub")


async def start_cursor(ctx) -> str:
    """A cursor from now on (as the initial sync leaves it)."""
    start = (await ctx.hub.changes_since("contacts", None, ctx.hub_properties)).cursor
    await ctx.store.call(store_cursors.set_cursor, ctx.sync_id, "hub", start)
    await trio.sleep(1)
    return start


async def test_the_cursor_moves_only_after_the_syncs_it_covers(tmp_path, slow_autojump):
    async with rig(tmp_path) as r:
        start = await start_cursor(r.ctx)
        r.emu.add_records("contacts", [{"email": "ann@example.com"}])
        queue = RecordLockQueue(workers=1)
        ends = queue.worker_ends()
        _, requests = open_request_channel()
        poller = Poller(r.ctx, "hub", interval=300)
        async with trio.open_nursery() as nursery:
            await nursery.start(queue.run)
            await nursery.start(poller.run, queue.changes(), requests)
            with trio.fail_after(120):
                batch = await ends.__anext__()
            assert [k for k, _ in batch.keys] == ["hub"]
            await trio.sleep(10)
            # The change is being synced: the poll waits for it, its cursor not committed.
            assert await cursor(r.ctx) == start and poller.polls == 0
            await ends.done(batch)
            with trio.fail_after(120):
                while poller.polls == 0:
                    await trio.sleep(0.1)
            assert await cursor(r.ctx) != start
            nursery.cancel_scope.cancel()


async def test_it_polls_at_its_interval_or_at_once_when_asked(tmp_path, slow_autojump):
    async with rig(tmp_path) as r:
        await start_cursor(r.ctx)
        queue = RecordLockQueue(workers=1)
        ends = queue.worker_ends()
        ask_tx, requests = open_request_channel()
        poller = Poller(r.ctx, "hub", interval=300)
        async with trio.open_nursery() as nursery:
            await nursery.start(queue.run)

            async def worker():
                async for batch in ends:
                    await ends.done(batch)

            nursery.start_soon(worker)
            start = trio.current_time()
            await nursery.start(poller.run, queue.changes(), requests)
            await trio.sleep(1)
            assert poller.polls == 1  # once when it starts
            r.emu.add_records("contacts", [{"email": "bob@example.com"}])
            await trio.sleep(1)
            # The first request wakes it; the second waits for the poll it started (a
            # change may have come after that poll began); the third is covered by it.
            for _ in range(3):
                ask(ask_tx)
            await trio.sleep(10)
            assert poller.polls == 3
            assert trio.current_time() - start < 300
            assert queue.statistics().submitted == 1  # bob, brought by the asked poll
            await trio.sleep(300)
            assert poller.polls == 4  # then its interval again
            nursery.cancel_scope.cancel()


async def test_a_poll_syncs_its_pages_together_up_to_a_thousand_records(tmp_path, slow_autojump,
                                                                        monkeypatch):
    # HubSpot answers changes a search page (200) at a time (runtime/paging.py calls again);
    # the poller gathers the pages of up to POLL_BATCH_RECORDS records before it awaits their
    # syncs and commits the cursor once for them, so workers get full batches.
    commits: list[str] = []
    real = store_cursors.set_cursor

    def counted(conn, sync_id, side, value):  # type: ignore[no-untyped-def]
        commits.append(value)
        return real(conn, sync_id, side, value)

    monkeypatch.setattr(store_cursors, "set_cursor", counted)
    async with rig(tmp_path) as r:
        await start_cursor(r.ctx)
        r.emu.add_records("contacts", [{"email": f"p{i}@example.com"} for i in range(450)])
        await trio.sleep(60)  # past the search index lag
        commits.clear()
        queue = RecordLockQueue(workers=1)
        ends = queue.worker_ends()
        synced: list[int] = []
        poller = Poller(r.ctx, "hub", interval=300)
        async with trio.open_nursery() as nursery:
            await nursery.start(queue.run)

            async def worker():
                async for batch in ends:
                    synced.append(len(batch.keys))
                    await ends.done(batch)

            nursery.start_soon(worker)
            with trio.fail_after(120):
                assert await poller.poll_once(queue.changes()) == 450
            nursery.cancel_scope.cancel()
    assert sum(synced) == 450
    assert len(commits) == 1
