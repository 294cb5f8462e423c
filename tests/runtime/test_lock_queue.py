"""The record lock queue: one sync of a record at a time, waiting keys shown as queued,
collapsing of repeated submissions, failures reaching the waiters."""

import pytest
import trio
import trio.testing

from crmsync.runtime.lock_queue import RecordLockQueue, SyncFailed


async def test_a_key_never_runs_twice_at_once_and_waiters_are_queued():
    queued: list[object] = []

    async def on_queued(keys):
        queued.extend(keys)

    q = RecordLockQueue(on_queued=on_queued)
    t1 = await q.submit(["a", "b"])
    batch = await q.take(10)
    assert [k for k, _ in batch] == ["a", "b"]
    # "a" changes again while its sync runs: it waits behind it and shows as queued.
    t2 = await q.submit(["a"])
    assert queued == ["a"]
    assert q.statistics().queued == 1
    with trio.move_on_after(0.01):
        await q.take(10)
        pytest.fail("a running key must not be handed out again")
    q.done(["a", "b"])
    await t1.wait()
    assert not t2.done
    again = await q.take(10)
    assert [k for k, _ in again] == ["a"]
    q.done(["a"])
    await t2.wait()


async def test_repeated_submissions_collapse_into_one_run():
    q = RecordLockQueue()
    await q.submit(["x"], {"x": 1})
    await q.submit(["x"], {"x": 2})
    await q.submit(["x"], {"x": 3})
    batch = await q.take(10)
    assert batch == [("x", [1, 2, 3])]
    assert q.statistics().collapsed == 2


async def test_keys_waiting_behind_a_run_collapse_and_keep_their_payloads():
    q = RecordLockQueue()
    await q.submit(["x"])
    await q.take(1)
    t2 = await q.submit(["x"], {"x": "e2"})
    t3 = await q.submit(["x"], {"x": "e3"})
    q.done(["x"])
    assert await q.take(1) == [("x", ["e2", "e3"])]
    q.done(["x"])
    await t2.wait()
    await t3.wait()


async def test_a_failed_sync_raises_in_its_waiters():
    q = RecordLockQueue()
    t = await q.submit(["k"])
    await q.take(1)
    q.done(["k"], error=RuntimeError("API down"))
    with pytest.raises(SyncFailed, match="API down"):
        await t.wait()


async def test_take_lingers_to_fill_a_batch_but_never_delays_a_full_one(autojump_clock):
    q = RecordLockQueue()
    await q.submit(["a"])
    start = trio.current_time()

    async def late():
        await trio.sleep(0.02)
        await q.submit(["b"])

    async with trio.open_nursery() as n:
        n.start_soon(late)
        batch = await q.take(10, linger=0.05)
    assert [k for k, _ in batch] == ["a", "b"]
    assert trio.current_time() - start == pytest.approx(0.05)

    await q.submit(["c", "d"])
    start = trio.current_time()
    batch = await q.take(2, linger=10)
    assert [k for k, _ in batch] == ["c", "d"]
    assert trio.current_time() == start


async def test_workers_blocked_in_take_all_wake_up():
    q = RecordLockQueue()
    got: list[object] = []

    async def worker():
        for k, _ in await q.take(1):
            got.append(k)

    async with trio.open_nursery() as n:
        n.start_soon(worker)
        n.start_soon(worker)
        await trio.testing.wait_all_tasks_blocked()
        await q.submit(["a"])
        await trio.testing.wait_all_tasks_blocked()
        await q.submit(["b"])
    assert sorted(got) == ["a", "b"]


async def test_a_hold_waits_for_the_running_sync_and_keeps_workers_off_until_released(
        autojump_clock):
    q = RecordLockQueue()
    await q.submit(["a"])
    assert await q.take(10) == [("a", [])]  # a worker is syncing "a"
    await q.submit(["b"], {"b": "ev"})  # "b" waits its turn, not taken yet
    held = trio.Event()
    release = trio.Event()

    async def operator():
        async with q.hold(["a", "b"]):
            held.set()
            await release.wait()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(operator)
        await trio.sleep(1)
        assert not held.is_set(), "the hold must wait for the running sync of a"
        q.done(["a"])
        await held.wait()
        # While held, neither key is handed out, and a new request waits (queued).
        t = await q.submit(["a"])
        assert q.statistics().queued == 2
        with trio.move_on_after(1):
            await q.take(10)
            pytest.fail("a held key must not be handed to a worker")
        release.set()
    # After the hold: both run once more, "b" with the payload it was submitted with.
    assert sorted(await q.take(10)) == [("a", []), ("b", ["ev"])]
    q.done(["a", "b"])
    await t.wait()
