"""Pollers: ask a side for records changed since a cursor, sync them through the lock queue,
then commit the cursor. The cursor is committed only after every change it covers has been
synced, so it is never ahead of what was durably applied; a crash re-reads a little (harmless:
decisions are idempotent)."""

from __future__ import annotations

import time

import trio

from crmsync.records import Side
from crmsync.runtime.context import ObjectSyncContext
from crmsync.runtime.lock_queue import RecordLockQueue
from crmsync.store import cursors as store_cursors


class Poller:
    def __init__(self, ctx: ObjectSyncContext, queue: RecordLockQueue, side: Side,
                 interval: float) -> None:
        self.ctx = ctx
        self.queue = queue
        self.side = side
        self.interval = interval
        self.poll_now = trio.Event()
        self.polls = 0

    def request_poll(self) -> None:
        self.poll_now.set()

    async def poll_once(self) -> int:
        """One poll (all pages of it); returns how many changed records it synced."""
        ctx = self.ctx
        cursor = await ctx.store.read(store_cursors.get_cursor, ctx.sync_id, self.side)
        total = 0
        while True:
            changes = await ctx.connector(self.side).changes_since(
                ctx.object_name(self.side), cursor, ctx.properties(self.side))
            keys = [(self.side, r.id) for r in changes.records]
            if keys:
                ticket = await self.queue.submit(keys)
                await ticket.wait()
            if changes.cursor != cursor:
                await ctx.store.call(store_cursors.set_cursor, ctx.sync_id, self.side,
                                     changes.cursor)
            cursor = changes.cursor
            total += len(keys)
            if not changes.more:
                break
        self.polls += 1
        now = time.time()
        if self.side == "hub":
            ctx.status.last_poll = now
        else:
            ctx.status.last_app_poll = now
        if total:
            ctx.log.info("poll", side=self.side, changed=total)
        return total

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            await self.poll_once()
            with trio.move_on_after(self.interval):
                await self.poll_now.wait()
            self.poll_now = trio.Event()
