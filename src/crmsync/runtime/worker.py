"""Sync workers: take free record keys from the lock queue in batches, load, decide, write,
commit. Webhook inbox ids attached to a key are marked done in the transaction that records
its sync. A sweeper submits records that failed for a transient reason (rate limit, API
outage) again after a backoff that grows with their attempts."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Hashable, Sequence

import trio

from crmsync.runtime.context import ObjectSyncContext
from crmsync.runtime.isolation import fail_record, isolate
from crmsync.runtime.loader import RecordKey, load
from crmsync.runtime.lock_queue import RecordLockQueue
from crmsync.runtime.processor import TRANSIENT_CATEGORIES, Processor
from crmsync.store import inbox as store_inbox
from crmsync.store import items as store_items

BATCH = 100
LINGER = 0.05
RETRY_BASE_SECONDS = 30.0
RETRY_CAP_SECONDS = 1800.0
SWEEP_SECONDS = 60.0


class ItemGate:
    """One sync of an item at a time across workers. The lock queue locks record keys; an
    item has two (its hub and its app record), which can arrive through different feeds
    (a hub webhook and the app's change log) and reach two workers at once. Records first
    seen are gated by their match keys, so a new hub record and a new app record of one
    person never reach two workers that would each create the other."""

    def __init__(self) -> None:
        self._active: dict[Hashable, trio.Event] = {}

    def busy(self, item_ids: set[Hashable]) -> list[trio.Event]:
        return [self._active[i] for i in item_ids if i in self._active]

    def enter(self, item_ids: set[Hashable]) -> None:
        for i in item_ids:
            self._active[i] = trio.Event()

    def leave(self, item_ids: set[Hashable]) -> None:
        for i in item_ids:
            ev = self._active.pop(i, None)
            if ev is not None:
                ev.set()


# One record to sync: its key and the webhook inbox ids that ride along with it.
Unit = tuple[RecordKey, list[int]]


async def sync_units(ctx: ObjectSyncContext, processor: Processor, gate: ItemGate,
                     units: Sequence[Unit]) -> None:
    """Load, decide, write and commit these records, their inbox ids marked done in the same
    transaction. Raises whatever the batch raised (see `isolation.isolate`)."""
    keys = [k for k, _ in units]
    payloads = [ids for _, ids in units]
    inbox_ids = [i for ids in payloads for i in ids]
    held: set[Hashable] = set()
    try:
        while True:
            works = await load(ctx, keys, payloads)
            ids: set[Hashable] = {w.item.item_id for w in works if w.item is not None}
            ids |= {("key", k) for w in works if w.item is None for k in w.keys}
            waits = gate.busy(ids)
            if not waits:
                break
            # Another worker is syncing one of these items: wait, then read again.
            for ev in waits:
                await ev.wait()
        gate.enter(ids)
        held = ids

        def extra(conn: sqlite3.Connection, ids: list[int] = inbox_ids) -> None:
            if ids:
                store_inbox.mark_done(conn, ids)

        await processor.run(works, extra=extra, look_before_create=True)
    finally:
        gate.leave(held)


async def run_worker(ctx: ObjectSyncContext, queue: RecordLockQueue, processor: Processor,
                     gate: ItemGate | None = None, *,
                     task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """Sync batches from the queue until cancelled. A record whose sync fails is recorded as
    failed and the rest of its batch syncs (`isolation`); only an error that concerns the
    connection ends the worker (and its object sync, for the supervisor to handle)."""
    gate = gate or ItemGate()
    task_status.started()

    async def run(part: Sequence[Unit]) -> None:
        await sync_units(ctx, processor, gate, part)

    async def fail(unit: Unit, exc: Exception) -> None:
        await fail_record(ctx, unit[0], unit[1], exc)

    while True:
        batch = await queue.take(BATCH, linger=LINGER)
        keys: list[Hashable] = [k for k, _ in batch]
        units: list[Unit] = [(k, [p for p in pl if isinstance(p, int)])  # type: ignore[misc]
                             for k, pl in batch]
        try:
            await isolate(units, run, fail)
        except BaseException as exc:
            queue.done(keys, error=exc)
            raise
        queue.done(keys)


def retry_delay(attempts: int) -> float:
    return min(RETRY_CAP_SECONDS, RETRY_BASE_SECONDS * 2 ** max(0, attempts - 1))


async def run_retry_sweeper(ctx: ObjectSyncContext, queue: RecordLockQueue,
                            interval: float = SWEEP_SECONDS, *,
                            task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                            ) -> None:
    task_status.started()
    while True:
        await trio.sleep(interval)
        now = time.time()
        due: list[Hashable] = []
        for category in sorted(TRANSIENT_CATEGORIES):
            for it in await ctx.store.read(store_items.list_items, ctx.sync_id, "failed",
                                           category, 1000):
                if now - it.updated_at >= retry_delay(it.attempts):
                    due.append(("hub", it.hub_id) if it.hub_id else ("app", it.app_id))
        if due:
            ctx.log.info("retrying records after transient failures", records=len(due))
            ticket = await queue.submit(due)
            await ticket.wait()
