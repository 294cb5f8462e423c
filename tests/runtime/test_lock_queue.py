"""The record lock queue: one sync of a record at a time, waiting keys shown as queued,
collapsing of repeated submissions, failures reaching the waiters; and, as an actor on
channels: a full table makes its producers wait, pages run in order with their keys locked,
and the workers' iteration ends when the producers are gone."""

from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing

from crmsync.runtime.lock_queue import Batch, RecordLockQueue, SyncFailed


@asynccontextmanager
async def running(**kwargs):
    """A queue with one producer end and one worker end, started."""
    kwargs.setdefault("workers", 1)
    q = RecordLockQueue(**kwargs)
    send, ends = q.changes(), q.worker_ends()
    q.close()
    async with trio.open_nursery() as nursery:
        await nursery.start(q.run)
        async with send, ends:
            yield q, send, ends
        nursery.cancel_scope.cancel()


async def take(ends) -> Batch:
    with trio.fail_after(5):
        return await ends.__anext__()


async def nothing_handed_out(ends, seconds=1.0) -> bool:
    with trio.move_on_after(seconds):
        await ends.__anext__()
        return False
    return True


async def test_a_key_never_runs_twice_at_once_and_waiters_are_queued(autojump_clock):
    queued: list[object] = []

    async def on_queued(keys):
        queued.extend(keys)

    async with running(on_queued=on_queued, workers=2) as (q, send, ends):
        t1 = await send.submit(["a", "b"])
        batch = await take(ends)
        assert batch.keys == ["a", "b"]
        # "a" changes again while its sync runs: it waits behind it and shows as queued.
        t2 = await send.submit(["a"])
        await trio.testing.wait_all_tasks_blocked()
        assert queued == ["a"]
        assert q.statistics().queued == 1
        assert await nothing_handed_out(ends), "a running key must not be handed out again"
        await ends.done(batch)
        await t1.wait()
        assert not t2.done
        again = await take(ends)
        assert again.keys == ["a"]
        await ends.done(again)
        await t2.wait()


async def test_repeated_submissions_collapse_into_one_run(autojump_clock):
    async with running(workers=1) as (q, send, ends):
        blocker = await send.submit(["busy"])
        first = await take(ends)  # the only worker is busy: the others wait in the table
        await send.submit(["x"], {"x": [1]})
        await send.submit(["x"], {"x": [2]})
        await send.submit(["x"], {"x": [3]})
        await trio.testing.wait_all_tasks_blocked()  # all three in the table
        await ends.done(first)
        await blocker.wait()
        batch = await take(ends)
        assert batch.units == [("x", [1, 2, 3])]
        assert q.statistics().collapsed == 2


async def test_keys_waiting_behind_a_run_collapse_and_keep_their_payloads(autojump_clock):
    async with running() as (_q, send, ends):
        await send.submit(["x"])
        first = await take(ends)
        t2 = await send.submit(["x"], {"x": ["e2"]})
        t3 = await send.submit(["x"], {"x": ["e3"]})
        await trio.testing.wait_all_tasks_blocked()
        await ends.done(first)
        second = await take(ends)
        assert second.units == [("x", ["e2", "e3"])]
        await ends.done(second)
        await t2.wait()
        await t3.wait()


async def test_a_failed_sync_raises_in_its_waiters(autojump_clock):
    async with running() as (_q, send, ends):
        t = await send.submit(["k"])
        batch = await take(ends)
        await ends.done(batch, RuntimeError("API down"))
        with pytest.raises(SyncFailed, match="API down"):
            await t.wait()


async def test_a_batch_lingers_to_fill_but_a_full_one_goes_at_once(autojump_clock):
    async with running(batch_size=10, linger=0.05) as (_q, send, ends):
        start = trio.current_time()
        await send.submit(["a"])

        async def late():
            await trio.sleep(0.02)
            await send.submit(["b"])

        async with trio.open_nursery() as n:
            n.start_soon(late)
            batch = await take(ends)
        assert batch.keys == ["a", "b"]
        assert trio.current_time() - start == pytest.approx(0.05)
        await ends.done(batch)

        start = trio.current_time()
        await send.submit([f"k{i}" for i in range(10)])
        batch = await take(ends)
        assert len(batch.keys) == 10
        assert trio.current_time() == start


async def test_every_worker_gets_work_and_no_worker_gets_two_batches(autojump_clock):
    q = RecordLockQueue(workers=2, batch_size=1)
    got: list[object] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(q.run)

        async def worker(ends):
            async with ends:
                async for batch in ends:
                    got.extend(batch.keys)
                    await trio.sleep(1)
                    await ends.done(batch)

        async with q.changes() as send:
            q.close()
            for _ in range(2):
                nursery.start_soon(worker, q.worker_ends())
            await trio.testing.wait_all_tasks_blocked()
            await send.submit(["a", "b", "c"])
            await trio.sleep(0.5)
            # Two workers, one batch each: "c" waits in the table for a free worker.
            assert sorted(got) == ["a", "b"]
            assert q.statistics().ready == 1
            await trio.sleep(1)
            assert sorted(got) == ["a", "b", "c"]
    # The producer closed its end: the queue ran out of work and the workers' loops ended.


async def test_a_full_table_makes_its_producers_wait(autojump_clock):
    # The one worker is busy with the first record: after `max_waiting` records wait (and
    # what the lane buffers), a producer's send waits; once the worker takes the next batch,
    # the lane moves again.
    async with running(max_waiting=10, batch_size=10) as (q, send, ends):
        sent = 0
        with trio.move_on_after(10):
            while True:
                await send.submit([f"k{sent}"])
                sent += 1
        first = await take(ends)
        assert first.keys == ["k0"]
        assert q.statistics().ready == 10
        assert sent < 20  # the table and a lane of a few events; the rest waited
        await ends.done(first)
        batch = await take(ends)
        assert len(batch.keys) == 10
        with trio.fail_after(1):
            await send.submit(["more"])


async def test_a_hold_waits_for_the_running_sync_and_keeps_workers_off_until_released(
        autojump_clock):
    async with running() as (q, send, ends):
        operator = q.operator()
        await send.submit(["a"])
        running_a = await take(ends)  # a worker is syncing "a"
        await send.submit(["b"], {"b": ["ev"]})  # "b" waits its turn, not taken yet
        held = trio.Event()
        release = trio.Event()

        async def repair():
            async with operator.hold(["a", "b"]):
                held.set()
                await release.wait()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(repair)
            await trio.sleep(1)
            assert not held.is_set(), "the hold must wait for the running sync of a"
            await ends.done(running_a)
            await held.wait()
            # While held, neither key is handed out, and a new request waits (queued).
            t = await send.submit(["a"])
            await trio.testing.wait_all_tasks_blocked()
            assert q.statistics().queued == 2
            assert await nothing_handed_out(ends), "a held key must not go to a worker"
            release.set()
        # After the hold: both run once more, "b" with the payload it was submitted with.
        after = await take(ends)
        assert sorted(after.units) == [("a", []), ("b", ["ev"])]
        await ends.done(after)
        await t.wait()
        await operator.aclose()


async def test_pages_run_in_order_with_their_keys_locked(autojump_clock):
    q = RecordLockQueue(workers=1, page_workers=2)
    order: list[str] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(q.run)
        pages, send, ends = q.pages(), q.changes(), q.worker_ends()
        q.close()

        async def page_worker(jobs):
            async with jobs:
                async for job in jobs:
                    await job.run()
                    await jobs.done(job)

        for _ in range(2):
            nursery.start_soon(page_worker, q.page_worker_ends())
        async with pages, send, ends:
            await send.submit(["x"])
            busy = await take(ends)  # a worker syncs "x"

            def job(name, seconds):
                async def run():
                    order.append(f"{name} start")
                    await trio.sleep(seconds)
                    order.append(f"{name} end")
                return run

            first = await pages.run_job(["x", "y"], job("p1", 1))
            second = await pages.run_job(["z"], job("p2", 1))
            await trio.sleep(5)
            # p1 waits for the sync of x; p2 does not overtake it.
            assert order == []
            t = await send.submit(["y"])  # behind p1: not queued in the store, not handed out
            await ends.done(busy)
            await first.wait()
            await second.wait()
            assert sorted(order[:2]) == ["p1 start", "p2 start"]  # together, once x is free
            # y ran only after the page that held it.
            again = await take(ends)
            assert again.keys == ["y"]
            await ends.done(again)
            await t.wait()


async def test_pause_holds_batches_back_and_drain_waits_for_work_out(autojump_clock):
    async with running() as (q, send, ends):
        await send.submit(["a"])
        out = await take(ends)
        paused = trio.Event()

        async def pause():
            await q.pause()
            paused.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(pause)
            await trio.sleep(1)
            assert not paused.is_set(), "pause returns once the batch out is done"
            await ends.done(out)
        await send.submit(["b"])
        assert await nothing_handed_out(ends)
        await q.resume()
        b = await take(ends)
        drained = trio.Event()

        async def drain():
            await q.drain()
            drained.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(drain)
            await trio.sleep(1)
            assert not drained.is_set()
            await send.submit(["c"])
            await ends.done(b)
        assert await nothing_handed_out(ends), "a drained queue hands out nothing"
