"""Sync workers: take free record keys from the lock queue in batches, load, decide, write,
commit. Webhook inbox ids attached to a key are marked done in the transaction that records
its sync. Records failing with a transient category are submitted again after a backoff."""

from __future__ import annotations

import sqlite3
from collections.abc import Hashable
from typing import Any

import trio

from crmsync.runtime.context import ObjectSyncContext
from crmsync.runtime.loader import load
from crmsync.runtime.lock_queue import RecordLockQueue
from crmsync.runtime.processor import TRANSIENT_CATEGORIES, Processor
from crmsync.store import inbox as store_inbox

BATCH = 100
LINGER = 0.05
RETRY_BASE_SECONDS = 30.0
RETRY_CAP_SECONDS = 1800.0


async def run_worker(ctx: ObjectSyncContext, queue: RecordLockQueue, processor: Processor,
                     nursery: trio.Nursery, *,
                     task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    task_status.started()
    while True:
        batch = await queue.take(BATCH, linger=LINGER)
        keys: list[Hashable] = [k for k, _ in batch]
        payloads = [[p for p in pl if isinstance(p, int)] for _, pl in batch]
        inbox_ids = [i for pl in payloads for i in pl]
        try:
            works = await load(ctx, keys, payloads)  # type: ignore[arg-type]

            def extra(conn: sqlite3.Connection, ids: list[int] = inbox_ids) -> None:
                if ids:
                    store_inbox.mark_done(conn, ids)

            done = await processor.run(works, extra=extra)
        except BaseException as exc:
            queue.done(keys, error=exc)
            raise
        queue.done(keys)
        for w in done:
            o = w.outcome
            if o is not None and o.state == "failed" and o.category in TRANSIENT_CATEGORIES:
                attempts = (w.item.attempts if w.item is not None else 0) + 1
                delay = min(RETRY_CAP_SECONDS, RETRY_BASE_SECONDS * 2 ** (attempts - 1))
                key = ("hub", w.hub_id) if w.hub_id else ("app", w.app_id)
                nursery.start_soon(_resubmit, queue, key, delay)


async def _resubmit(queue: RecordLockQueue, key: Any, delay: float) -> None:
    await trio.sleep(delay)
    await queue.submit([key])
