"""Pollers: ask a side for records changed since a cursor, send them to the lock queue and
wait for their syncs, then commit the cursor. The cursor is committed only after every change
it covers has been synced, so it is never ahead of what was durably applied; a crash re-reads
a little (harmless: decisions are idempotent).

A poller polls once when it starts, then every `interval`, or at once when asked: a message
on its request channel (`crmsync ctl poll-now`, an app's change notification).

Where a side's change feed does not report deletes (`Capabilities.deletes_in_changes` false:
Pipedrive's lists leave deleted persons out), its poller also sweeps for them every
`sweep_interval`: it lists the side's live ids and syncs every linked record not among them,
so a delete whose webhook was lost (a receiver down, a banned webhook) is still found."""

from __future__ import annotations

import time
from contextlib import aclosing

import msgspec
import trio

from crmsync.engine import unchanged_since
from crmsync.records import Record, Side
from crmsync.runtime.context import ObjectSyncContext
from crmsync.runtime.lock_queue import ChangeSender
from crmsync.runtime.paging import change_pages, scan_pages
from crmsync.runtime.processor import decode_snapshot
from crmsync.runtime.requests import RequestReceiver, wait_asked
from crmsync.store import cursors as store_cursors
from crmsync.store import items as store_items

# Changed records a poll reads (over as many pages as that takes) before it syncs them and
# commits the cursor they reach.
POLL_BATCH_RECORDS = 1000


class PollerStatistics(msgspec.Struct, frozen=True):
    side: str
    polls: int
    interval: float
    last_poll: float | None
    sweeps: int = 0


class Poller:
    def __init__(self, ctx: ObjectSyncContext, side: Side, interval: float,
                 sweep_interval: float = 21600.0) -> None:
        self.ctx = ctx
        self.side = side
        self.interval = interval
        self.sweep_interval = sweep_interval
        self.polls = 0
        self.sweeps = 0
        self.last_poll: float | None = None
        self._next_sweep: float | None = None

    async def poll_once(self, changes: ChangeSender) -> int:
        """One poll (all pages of it); returns how many changed records it synced."""
        ctx = self.ctx
        cursor = await ctx.store.read(store_cursors.get_cursor, ctx.sync_id, self.side)
        total = 0
        keys: list[tuple[Side, str]] = []
        read = 0
        reached = cursor

        async def settle() -> None:
            # Sync what the pages so far brought, then commit the cursor they reached.
            nonlocal cursor, keys, read, total
            if keys:
                await changes.sync(keys)
            if reached != cursor:
                await ctx.store.call(store_cursors.set_cursor, ctx.sync_id, self.side, reached)
            cursor = reached
            total += len(keys)
            keys, read = [], 0

        pages = change_pages(ctx.connector(self.side), ctx.object_name(self.side), cursor,
                             ctx.properties(self.side))
        async with aclosing(pages):
            async for found in pages:
                keys += [(self.side, r.id) for r in await self._news(found.records)]
                read += len(found.records)
                reached = found.cursor
                # Pages are gathered up to POLL_BATCH_RECORDS before their syncs are
                # awaited, so the workers get full batches, not one page's worth at a time.
                if read >= POLL_BATCH_RECORDS:
                    await settle()
        await settle()
        self.polls += 1
        now = self.last_poll = time.time()
        if self.side == "hub":
            ctx.status.last_poll = now
        else:
            ctx.status.last_app_poll = now
        if total:
            ctx.log.info("poll", side=self.side, changed=total)
        return total

    async def _news(self, records: list[Record]) -> list[Record]:
        """The polled records that may bring something: not those of linked records that
        still hold, in every mapped field, what their snapshot says this side held (the echo
        of our own writes, or a change of unmapped fields). Syncing those would read the other
        side to decide a no-op, spending API budget (issue 16); a later change of one moves
        its version past this poll's cursor, so the next poll brings it. Where the object sync
        keeps associations, a poll also reports a record whose associations changed, which its
        fields do not show: such a record is left out only when this side's associations
        are what the last association sync saw (read in one batch for the records left)."""
        ctx = self.ctx
        items = await ctx.store.read(store_items.find_items, ctx.sync_id, self.side,
                                     [r.id for r in records])
        echoes: set[str] = set()
        for rec in records:
            it = items.get(rec.id)
            snap = decode_snapshot(it.snapshot) if it is not None else None
            if (it is not None and snap is not None and it.linked
                    # `queued`: another sync of it is due anyway (lock_queue.py).
                    and it.state in ("syncing", "queued")
                    and it.intent is None and not it.creating and not it.deleted_side
                    and (self.side == "hub" or it.app_incarnation is None
                         or rec.incarnation == it.app_incarnation)
                    and unchanged_since(ctx.rules, self.side, rec, snap)):
                echoes.add(rec.id)
        if echoes and ctx.associations is not None and ctx.associations.pairs:
            echoes = await ctx.associations.as_seen(self.side, sorted(echoes))
        return [rec for rec in records if rec.id not in echoes]

    @property
    def sweeps_deletes(self) -> bool:
        return not self.ctx.connector(self.side).capabilities.deletes_in_changes

    async def sweep_deleted(self, changes: ChangeSender) -> int:
        """Sync every linked record whose id this side no longer lists (the worker re-reads
        it: gone is a delete, present a no-op). Returns how many were sent."""
        ctx = self.ctx
        conn = ctx.connector(self.side)
        live: set[str] = set()
        pages = scan_pages(conn, ctx.object_name(self.side), ctx.properties(self.side))
        async with aclosing(pages):
            async for page in pages:
                live.update(r.id for r in page.records)
        submitted = 0
        after = 0
        while True:
            items = await ctx.store.read(store_items.list_items, ctx.sync_id, "syncing", None,
                                         500, after)
            if not items:
                break
            after = items[-1].item_id
            keys: list[tuple[Side, str]] = [
                (self.side, rid) for it in items
                if (rid := it.record_id(self.side)) is not None and rid not in live]
            if keys:
                await changes.sync(keys)
                submitted += len(keys)
        self.sweeps += 1
        ctx.log.info("delete sweep", side=self.side, live=len(live), gone=submitted)
        return submitted

    async def run(self, changes: ChangeSender, requests: RequestReceiver, *,
                  task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Poll until cancelled (or until every sender of `requests` is closed)."""
        async with changes, requests:
            task_status.started()
            while True:
                await self.poll_once(changes)
                if self.sweeps_deletes:
                    now = trio.current_time()
                    if self._next_sweep is None:
                        self._next_sweep = now + self.sweep_interval
                    elif now >= self._next_sweep:
                        await self.sweep_deleted(changes)
                        self._next_sweep = trio.current_time() + self.sweep_interval
                if not await wait_asked(requests, self.interval):
                    return

    def statistics(self) -> PollerStatistics:
        return PollerStatistics(self.side, self.polls, self.interval, self.last_poll,
                                self.sweeps)

