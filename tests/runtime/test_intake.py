"""The webhook intake as an actor: reads its inbox source, sends change events to the lock
queue with each event's inbox id riding along, collapses several events of one record into one
sync, drops an event that names no record, wakes at once when asked, and under a burst leaves
the backlog in the durable inbox (the queue's full lane makes it wait)."""

from __future__ import annotations

import json

import trio
import trio.testing
from structlog.testing import capture_logs

from crmsync.runtime.intake import IDLE_POLL_SECONDS, Intake, inbox_id_of
from crmsync.runtime.lock_queue import RecordLockQueue
from crmsync.runtime.requests import ask, open_request_channel
from crmsync.store import inbox as store_inbox

from .rig import rig

SOURCE = "app:shop:contacts"


def parse(payload: bytes) -> list[tuple[str, str]]:
    body = json.loads(payload)
    return [("app", str(r)) for r in body["records"]]


def event(*records: int) -> bytes:
    return json.dumps({"records": list(records)}).encode()


async def store_events(ctx, *payloads: bytes) -> None:
    await ctx.store.call(store_inbox.add_events, SOURCE,
                         [(f"k{i}-{trio.current_time()}", p) for i, p in enumerate(payloads)])


async def pending(ctx) -> int:
    return len(await ctx.store.read(store_inbox.pending_events, SOURCE, 0, 100_000))


async def test_events_become_change_events_with_their_inbox_ids(tmp_path, slow_autojump):
    async with rig(tmp_path) as r:
        queue = RecordLockQueue(workers=1)
        ends = queue.worker_ends()
        _wake_tx, wake_rx = open_request_channel()
        intake = Intake(r.ctx, SOURCE, parse)
        async with trio.open_nursery() as nursery:
            await nursery.start(queue.run)
            # Two events of record 7 and one of record 8, and one naming nothing useful.
            await store_events(r.ctx, event(7), event(8), event(7), b"not json")
            with capture_logs() as logs:
                await nursery.start(intake.run, queue.changes(), wake_rx)
                with trio.fail_after(120):
                    batch = await ends.__anext__()
            assert [k for k, _ in batch.units] == [("app", "7"), ("app", "8")]
            ids = {k: [inbox_id_of(p) for p in pl] for k, pl in batch.units}
            assert len(ids[("app", "7")]) == 2 and len(ids[("app", "8")]) == 1
            assert [e["event"] for e in logs if e["log_level"] == "warning"] == [
                "webhook event dropped: it names no record"]
            # The dropped event is done; the others wait for the sync that records them.
            assert await pending(r.ctx) == 3
            nursery.cancel_scope.cancel()


async def test_a_wake_makes_it_read_at_once(tmp_path, slow_autojump):
    async with rig(tmp_path) as r:
        queue = RecordLockQueue(workers=1)
        ends = queue.worker_ends()
        wake_tx, wake_rx = open_request_channel()
        async with trio.open_nursery() as nursery:
            await nursery.start(queue.run)
            await nursery.start(Intake(r.ctx, SOURCE, parse).run, queue.changes(), wake_rx)
            await trio.testing.wait_all_tasks_blocked()
            start = trio.current_time()
            await store_events(r.ctx, event(1))
            ask(wake_tx)  # what the webhook server does once it stored the event
            with trio.fail_after(120):
                batch = await ends.__anext__()
            assert batch.keys == [("app", "1")]
            assert trio.current_time() - start < IDLE_POLL_SECONDS
            nursery.cancel_scope.cancel()


async def test_an_event_about_several_records_is_done_once_all_synced(tmp_path,
                                                                      slow_autojump):
    async with rig(tmp_path) as r:
        queue = RecordLockQueue(workers=1, batch_size=1)
        ends = queue.worker_ends()
        _wake_tx, wake_rx = open_request_channel()
        async with trio.open_nursery() as nursery:
            await nursery.start(queue.run)
            await store_events(r.ctx, event(1, 2))
            await nursery.start(Intake(r.ctx, SOURCE, parse).run, queue.changes(), wake_rx)
            first = await ends.__anext__()
            await ends.done(first)
            await trio.sleep(1)
            assert await pending(r.ctx) == 1, "one of its two records is not synced yet"
            second = await ends.__anext__()
            await ends.done(second)
            with trio.fail_after(120):
                while await pending(r.ctx):
                    await trio.sleep(0.1)
            nursery.cancel_scope.cancel()


async def test_a_burst_stays_in_the_inbox_not_in_memory(tmp_path, slow_autojump):
    # No worker takes anything: the queue holds at most `max_waiting` records, the intake
    # waits on the full lane, and the rest of 5,000 events stays in the inbox.
    async with rig(tmp_path) as r:
        queue = RecordLockQueue(workers=1, max_waiting=200)
        _wake_tx, wake_rx = open_request_channel()
        await store_events(r.ctx, *[event(i) for i in range(5000)])
        intake = Intake(r.ctx, SOURCE, parse)
        async with trio.open_nursery() as nursery:
            await nursery.start(queue.run)
            await nursery.start(intake.run, queue.changes(), wake_rx)
            await trio.sleep(60)
            stats = queue.statistics()
            # The table takes an event (a page of up to 500 records) while fewer than 200
            # wait; one worker's batch (100) is out.
            assert stats.ready <= 199 + 500 and stats.running <= 100
            # Read from the inbox: that, the event its lane's admission holds, the lane's
            # buffer of 4 and the page the intake waits to send.
            assert intake.events <= 199 + 500 + 100 + 500 + 4 * 500 + 500
            assert await pending(r.ctx) == 5000
            nursery.cancel_scope.cancel()
