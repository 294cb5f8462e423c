"""Reconciliation: re-read both sides in full and send every record to the lock queue, so
a change that webhooks and polling both missed is recovered by comparing with the snapshots.
Page by page, so memory stays bounded whatever the size of the sides."""

from __future__ import annotations

import time
from contextlib import aclosing

import trio

from crmsync.records import Side
from crmsync.runtime.context import ObjectSyncContext
from crmsync.runtime.lock_queue import ChangeSender
from crmsync.runtime.paging import scan_pages
from crmsync.runtime.requests import RequestReceiver, wait_asked
from crmsync.store import items as store_items
from crmsync.store import reconciles as store_reconciles


async def reconcile_once(ctx: ObjectSyncContext, changes: ChangeSender) -> int:
    """Send every record of both sides (and every linked one) to the lock queue, a page at a
    time, waiting for each page's syncs; returns how many records the sides listed."""
    seen = 0
    sides: tuple[Side, Side] = ("hub", "app")
    for side in sides:
        pages = scan_pages(ctx.connector(side), ctx.object_name(side), ctx.properties(side))
        async with aclosing(pages):
            async for page in pages:
                keys: list[tuple[Side, str]] = [(side, r.id) for r in page.records]
                if keys:
                    await changes.sync(keys)
                seen += len(keys)
    # Linked records gone from a side without any event (deleted while we were down and
    # missed by both change feeds) are found through the store.
    after = 0
    while True:
        items = await ctx.store.read(store_items.list_items, ctx.sync_id, "syncing", None, 500,
                                     after)
        if not items:
            break
        after = items[-1].item_id
        await changes.sync([("hub", it.hub_id) for it in items if it.hub_id])
    return seen


async def run_reconciler(ctx: ObjectSyncContext, changes: ChangeSender, interval: float,
                         requests: RequestReceiver, *,
                         task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """A reconciliation every `interval` seconds, and one as soon as one is asked for in the
    store (a change feed found a gap; `requests` says when to look); the store's request is
    cleared only once its reconciliation ran. Until cancelled."""
    async with changes, requests:
        task_status.started()
        due = trio.current_time() + interval
        while True:
            asked = await ctx.store.read(store_reconciles.pending, ctx.sync_id)
            if asked is None and trio.current_time() < due:
                if not await wait_asked(requests, due - trio.current_time()):
                    await trio.sleep_until(due)  # nobody can ask any more: time only
                continue
            reason = asked.reason if asked is not None else "periodic"
            ctx.log.info("reconciliation started", reason=reason)
            started = time.perf_counter()
            n = await reconcile_once(ctx, changes)
            if asked is not None:
                await ctx.store.call(store_reconciles.clear, ctx.sync_id, asked)
            ctx.status.last_reconcile = time.time()
            ctx.status.last_reconcile_reason = reason
            ctx.log.info("reconciliation done", records=n, reason=reason,
                         duration_ms=round((time.perf_counter() - started) * 1000))
            due = trio.current_time() + interval
