"""Sync workers: receive batches of free record keys from the lock queue, load, decide, write
(through the batch writers), commit, and report each batch done to the queue. Webhook inbox
ids riding along with a key are marked done in the transaction that records its sync. A
sweeper sends records that failed for a transient reason (rate limit, API outage) again after
a backoff that grows with their attempts."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Hashable, Sequence

import structlog
import trio

from crmsync.runtime.association_waits import queued_here, sort_waits, sync_links_only
from crmsync.runtime.context import ObjectSyncContext
from crmsync.runtime.echoes import echoes
from crmsync.runtime.intake import Mark, SeenChange, inbox_id_of
from crmsync.runtime.isolation import fail_record, isolate
from crmsync.runtime.loader import RecordKey, StoreView, gate_ids, item_key, load
from crmsync.runtime.lock_queue import Batch, ChangeSender, WorkerEnds
from crmsync.runtime.processor import TRANSIENT_CATEGORIES, Processor, Work
from crmsync.store import inbox as store_inbox
from crmsync.store import items as store_items

# Records per batch a worker receives, and how long the lock queue lets a partial batch
# fill up before handing it out (batching across producers). 200: what one HubSpot search
# reads (pages of 200, fact sheet §2), where a batch read or write takes 100 (§1.3); the
# batch writers and `read_records` split a batch into the API's batches (issue 16).
BATCH = 200
LINGER = 0.05
RETRY_BASE_SECONDS = 30.0
RETRY_CAP_SECONDS = 1800.0
SWEEP_SECONDS = 60.0
# A record whose commit conflicts (another batch committed it first) is synced again at
# once, at most this many times in a row.
MAX_RERUNS = 3


class ItemGate:
    """One sync of an item at a time across workers. The lock queue locks record keys; an
    item has two (its hub and its app record), which can arrive through different feeds
    (a hub webhook and the app's change log) and reach two workers at once. Every record is
    gated by its match keys too (`loader.gate_ids`), so a new hub record and a new app
    record of one person never reach two workers that would each create the other, and a
    record just created by one batch waits for that batch's commit."""

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


async def load_gated(ctx: ObjectSyncContext, gate: ItemGate, keys: list[Hashable],
                     payloads: list[list[Mark]],
                     carried: list[int] | None = None) -> tuple[list[Work], set[Hashable]]:
    """Load the works of `keys` and enter the gate for them; returns the works and what the
    gate holds for them (the caller leaves it). What the load read from the store is read
    again inside the gate: a batch that synced one of these records may have committed
    (and left the gate) while this load was reading the sides, and its commit is then
    seen here, not decided over. `carried` collects the items a load let go of an app id
    of (see `load`)."""
    carried = carried if carried is not None else []
    while True:
        view = StoreView()
        works = await load(ctx, keys, payloads, view, carried)  # type: ignore[arg-type]
        ids = gate_ids(ctx, works)
        waits = gate.busy(ids)
        if waits:
            # Another worker is syncing one of these items: wait, then read again.
            for ev in waits:
                await ev.wait()
            continue
        gate.enter(ids)
        try:
            stale = await view.changed(ctx)
        except BaseException:
            gate.leave(ids)
            raise
        if not stale:
            return works, ids
        gate.leave(ids)
        # Read again, with every record this load decided on: a load that ended a link (an
        # app id reused, loader.detach_reused) committed that at once, and the item it took
        # the id from is named by no key any more; its deletion must still be decided.
        for w in works:
            k = w.key()
            if k is not None and k not in keys:
                keys = [*keys, k]
                payloads = [*payloads, []]


def _again(works: list[Work]) -> tuple[list[Hashable], list[list[Mark]]]:
    """The record keys (and inbox ids) of works to sync once more."""
    keys: list[Hashable] = []
    payloads: list[list[Mark]] = []
    for w in works:
        key = w.key()
        if key is not None:
            keys.append(key)
            payloads.append([p for p in w.payload if inbox_id_of(p) is not None])
    return keys, payloads


async def _give_up(ctx: ObjectSyncContext, works: list[Work]) -> None:
    """Records whose commit kept conflicting: failed (`conflict`) rather than retried for
    ever, their events acknowledged; the next change or a resync tries them again."""
    ctx.log.error("sync keeps conflicting with other syncs of the same record; failed",
                  records=[(w.hub_id, w.app_id) for w in works], detail=works[0].conflict)

    def commit(conn: sqlite3.Connection) -> None:
        store_items.set_state(conn, [w.item.item_id for w in works if w.item is not None],
                              "failed", "conflict",
                              f"other syncs of this record kept committing first: "
                              f"{works[0].conflict}")
        store_inbox.mark_done(conn, [i for w in works for p in w.payload
                                     if (i := inbox_id_of(p)) is not None])

    await ctx.store.call(commit)


# One record to sync: its key and the webhook inbox ids that ride along with it.
Unit = tuple[RecordKey, list[Mark]]


async def sync_units(ctx: ObjectSyncContext, processor: Processor, gate: ItemGate,
                     units: Sequence[Unit], *, plan_only: bool = False,
                     detached: list[int] | None = None) -> None:
    """Load, decide, write and commit these records, their inbox ids marked done in the same
    transaction. A record whose commit broke a unique index (another batch committed it
    first) is loaded and synced again, up to MAX_RERUNS times, then failed (`conflict`).
    With `plan_only` (an initial sync in preview) nothing is written: the plan is recorded.
    Raises whatever the batch raised (see `isolation.isolate`). `detached` collects the
    items whose app id a load let go of (their sync is part of these records')."""
    todo: list[Hashable] = [k for k, _ in units]
    payloads = [ids for _, ids in units]
    conflicted: list[Work] = []
    for _ in range(MAX_RERUNS + 1):
        carried: list[int] = []
        try:
            works, held = await load_gated(ctx, gate, todo, payloads, carried)
        finally:
            if detached is not None:
                detached.extend(i for i in carried if i not in detached)

        def extra(conn: sqlite3.Connection, works: list[Work] = works) -> None:
            # A record whose commit conflicted keeps its events until it is synced.
            ids = [i for w in works if not w.conflict for p in w.payload
                   if (i := inbox_id_of(p)) is not None]
            if ids:
                store_inbox.mark_done(conn, ids)

        todo_works = works
        if ctx.preview and not plan_only:
            # The initial sync waits in preview: linked records keep syncing; the
            # others are left to the approved initial sync, which reads every record.
            todo_works = [w for w in works if w.item is not None and w.item.linked]
        try:
            await processor.run(todo_works, extra=extra, look_before_create=not plan_only,
                                preview=plan_only)
        finally:
            gate.leave(held)
        conflicted = [w for w in works if w.conflict]
        if not conflicted:
            return
        todo, payloads = _again(conflicted)
    await _give_up(ctx, conflicted)


async def _without_echoes(ctx: ObjectSyncContext, units: Sequence[Unit],
                          asked: set[Hashable]) -> list[Unit]:
    """`units` but the hub records whose webhook events are all echoes of what the store
    holds (runtime/echoes.py) and whose sync nothing else asked for (`asked`): those events
    are marked done, the records not synced."""
    if ctx.preview:
        return list(units)
    said = [(m.inbox_id, m.reported) for (side, _), marks in units
            if side == "hub" and marks and (side, _) not in asked
            for m in marks if isinstance(m, SeenChange) and m.reported is not None]
    if not said:
        return list(units)
    gone = await echoes(ctx, said)
    if not gone:
        return list(units)
    keep: list[Unit] = []
    done: list[int] = []
    dropped: list[str] = []
    for unit in units:
        ids = [inbox_id_of(m) for m in unit[1]]
        if unit[1] and unit[0] not in asked and all(i in gone for i in ids):
            done.extend(i for i in ids if i is not None)
            dropped.append(str(unit[0][1]))
        else:
            keep.append(unit)
    if done:
        def commit(conn: sqlite3.Connection) -> None:
            store_inbox.mark_done(conn, done)
            # Shown `queued` because these events came while a sync of it ran: in sync.
            store_items.unqueue(conn, [it.item_id for it in store_items.find_items(
                conn, ctx.sync_id, "hub", dropped).values() if queued_here(ctx, it)])

        await ctx.store.call(commit)
    return keep


def record_label(key: Hashable) -> str:
    """How a record key appears in logs (`record`): side and id."""
    if isinstance(key, tuple) and len(key) == 2:
        return f"{key[0]}:{key[1]}"
    return str(key)


async def sync_batch(ctx: ObjectSyncContext, processor: Processor, gate: ItemGate,
                     batch: Batch) -> None:
    """Sync one batch from the lock queue, isolating failures to their records (a record
    that fails alone is recorded as failed, its log lines naming it as `record`)."""
    # Which records need no sync (an association wait answered meanwhile, events that are
    # echoes) is a saving, never a condition: if telling fails, they are all synced.
    asked = set(batch.asked)
    try:
        whole, links = await sort_waits(ctx, batch.units, asked)
        for k, pl in batch.units:
            if k in links and any(inbox_id_of(p) is not None for p in pl):
                # Synced whole with its events: asked for, so that the echo check below
                # cannot drop it with them (its wait would be left unanswered).
                del links[k]
                whole.add(k)
        if links:
            whole.update(await sync_links_only(ctx, links, gate))
        asked |= whole
    except Exception as exc:
        ctx.log.warning("association waits not checked; syncing", error=repr(exc)[:300])
        asked = {k for k, _ in batch.units}
    # Inbox ids ride along, as they are or with what their event says changed.
    units: list[Unit] = [(k, [p for p in pl if inbox_id_of(p) is not None])  # type: ignore[misc]
                         for k, pl in batch.units
                         if k in asked or any(inbox_id_of(p) is not None for p in pl)]
    try:
        units = await _without_echoes(ctx, units, asked)
    except Exception as exc:
        ctx.log.warning("webhook echoes not checked; syncing", error=repr(exc)[:300])
    if not units:
        return

    detached: list[int] = []

    async def run(part: Sequence[Unit]) -> None:
        if len(part) == 1:
            with structlog.contextvars.bound_contextvars(record=record_label(part[0][0])):
                await sync_units(ctx, processor, gate, part, detached=detached)
        else:
            await sync_units(ctx, processor, gate, part, detached=detached)

    async def fail(unit: Unit, exc: Exception) -> None:
        with structlog.contextvars.bound_contextvars(record=record_label(unit[0])):
            await fail_record(ctx, unit[0], [i for p in unit[1]
                                             if (i := inbox_id_of(p)) is not None], exc)

    await isolate(units, run, fail)
    # An item whose app id a load let go of (committed at once, the item `queued`) is named
    # by no key any more: its sync rode with the load that let go of it, and a part of the
    # batch that failed, and was synced again without it, left it undecided. Synced here
    # by its item key, or failed alone.
    left = await ctx.store.read(store_items.still_queued, ctx.sync_id, detached)
    if left:
        again: list[Unit] = [(item_key(i), []) for i in left]  # type: ignore[misc]
        await isolate(again, run, fail)


async def run_worker(ctx: ObjectSyncContext, ends: WorkerEnds, processor: Processor,
                     gate: ItemGate | None = None, *,
                     task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """Sync the batches the lock queue hands this worker, until its iteration ends (the
    queue closed) or it is cancelled. A record whose sync fails is recorded as failed and the
    rest of its batch syncs (`isolation`); only an error that concerns the connection ends
    the worker (and its object sync, for the supervisor to handle), its batch's waiters
    told."""
    gate = gate or ItemGate()
    async with ends:
        task_status.started()
        async for batch in ends:
            try:
                await sync_batch(ctx, processor, gate, batch)
            except Exception as exc:
                await ends.done(batch, exc)
                raise
            await ends.done(batch)


async def run_page_worker(ends: WorkerEnds, *,
                          task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """Run the initial sync's page jobs the lock queue hands this page worker (their records
    locked meanwhile), until its iteration ends or it is cancelled. A page's error ends the
    object sync: pages isolate their records' failures themselves (initial_sync.py)."""
    async with ends:
        task_status.started()
        async for job in ends:
            try:
                await job.run()
            except Exception as exc:
                await ends.done(job, exc)
                raise
            await ends.done(job)


def retry_delay(attempts: int) -> float:
    return min(RETRY_CAP_SECONDS, RETRY_BASE_SECONDS * 2 ** max(0, attempts - 1))


async def run_retry_sweeper(ctx: ObjectSyncContext, changes: ChangeSender,
                            interval: float = SWEEP_SECONDS, *,
                            task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                            ) -> None:
    """Every `interval`, send the records failed for a transient reason whose backoff is
    over to the lock queue, and wait for their syncs; and those left `queued` for an
    interval or more."""
    seen_queued: dict[int, float] = {}  # item id -> its updated_at, at the last pass
    async with changes:
        task_status.started()
        while True:
            await trio.sleep(interval)
            now = time.time()
            due: list[Hashable] = []
            for category in sorted(TRANSIENT_CATEGORIES):
                for it in await ctx.store.read(store_items.list_items, ctx.sync_id, "failed",
                                               category, 1000):
                    if now - it.updated_at >= retry_delay(it.attempts):
                        due.append(("hub", it.hub_id) if it.hub_id
                                   else ("app", it.app_id) if it.app_id
                                   else item_key(it.item_id))
            # Items left `queued` with no sync of theirs to come: a path that ends a record's
            # link where no key names its item any more (an app id let go of when a create's
            # heal found the id given to the record it made) leaves it so until a restart's
            # sweep. One found queued, unchanged, a whole interval after the last pass saw it
            # so is sent again (the store's clock is not the sweeper's, which tests run
            # virtual); one really waiting behind a running sync of itself merges into that
            # wait (the lock queue collapses it).
            queued = {it.item_id: it for it in await ctx.store.read(
                store_items.list_items, ctx.sync_id, "queued", None, 1000)}
            stuck = [("hub", it.hub_id) if it.hub_id
                     else ("app", it.app_id) if it.app_id
                     else item_key(it.item_id)
                     for i, it in queued.items() if seen_queued.get(i) == it.updated_at]
            seen_queued = {i: it.updated_at for i, it in queued.items()}
            if stuck:
                ctx.log.info("syncing records left queued", records=len(stuck))
                await changes.submit(stuck)
            if due:
                ctx.log.info("retrying records after transient failures", records=len(due))
                await changes.sync(due)
