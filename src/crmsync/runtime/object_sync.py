"""One object sync's actors: batch writers, the initial sync, then workers behind the record
lock queue, the hub and app pollers, the webhook intake and the periodic reconciliation."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field

import trio

from crmsync.config.model import ObjectSync
from crmsync.connectors.base import (
    Connector,
    ConnectorError,
    SupportsPipelines,
)
from crmsync.engine.owners import OwnerDirectory
from crmsync.engine.rules import compile_rules
from crmsync.engine.stages import StageMap, auto_map, known_stages
from crmsync.records import Side
from crmsync.runtime.batch_writer import BatchWriter
from crmsync.runtime.context import ObjectSyncContext
from crmsync.runtime.events import EventSync
from crmsync.runtime.initial_sync import InitialSyncActor, Notify
from crmsync.runtime.intake import Describe, Intake, Parser
from crmsync.runtime.lock_queue import RecordLockQueue
from crmsync.runtime.mapping_check import MappingCheck, wait_until_mappings_fit
from crmsync.runtime.owners import OwnerSync
from crmsync.runtime.pollers import Poller
from crmsync.runtime.processor import Processor
from crmsync.runtime.reconcile import reconcile_once
from crmsync.runtime.status import ObjectStatus
from crmsync.runtime.worker import ItemGate, run_retry_sweeper, run_worker
from crmsync.store import Store
from crmsync.store import items as store_items
from crmsync.store import reconciles as store_reconciles
from crmsync.store import restores as store_restores


@dataclass
class Timing:
    hub_poll_interval: float = 300.0
    # None: the connection's own poll interval.
    app_poll_interval: float | None = None
    reconcile_interval: float = 86400.0
    workers: int = 2
    # Workers already hand over whole batches; lingering only delays them.
    writer_linger: float = 0.0
    # How often an app whose change feed misses deletes is swept for them (pollers.py).
    delete_sweep_interval: float = 21600.0


@dataclass
class IntakeSource:
    """An inbox source feeding this object sync, and how to read its payloads."""

    source: str
    parse: Parser
    describe: Describe | None = None


@dataclass
class ObjectSyncHandle:
    """What the daemon and the control server may poke while the actor runs."""

    ctx: ObjectSyncContext | None = None
    queue: RecordLockQueue | None = None
    hub_poller: Poller | None = None
    app_poller: Poller | None = None
    initial: InitialSyncActor | None = None
    intakes: list[Intake] = field(default_factory=list)
    events: EventSync | None = None
    ready: trio.Event = field(default_factory=trio.Event)
    # Set to check a paused object sync's mappings again at once.
    recheck: trio.Event = field(default_factory=trio.Event)

    async def pause(self, seconds: float) -> None:
        """Sleep up to `seconds`, or until `recheck` is set."""
        with trio.move_on_after(seconds):
            await self.recheck.wait()
        self.recheck = trio.Event()
    # Rung when a reconciliation was asked for in the store (store/reconciles.py).
    reconcile_wake: trio.Event = field(default_factory=trio.Event)

    def poll_now(self) -> None:
        for p in (self.hub_poller, self.app_poller):
            if p is not None:
                p.request_poll()
        if self.events is not None:
            self.events.wake.set()

    def ring(self) -> None:
        for i in self.intakes:
            i.ring()

    def reconcile_now(self) -> None:
        """A reconciliation was asked for in the store: run it without waiting for its time
        (once the initial sync is complete)."""
        self.reconcile_wake.set()

    def close(self) -> None:
        if self.ctx is not None:
            self.ctx.draining.set()
        if self.queue is not None:
            self.queue.close()

    async def wait_idle(self) -> None:
        """Until no batch and no initial-sync page is in flight (after `close`)."""
        if self.initial is not None and self.ctx is not None and not self.ready.is_set():
            await self.initial.quiet.wait()
        if self.queue is not None:
            await self.queue.wait_idle()

    def approve(self) -> None:
        if self.initial is not None:
            self.initial.approved.set()

    async def resync(self, keys: list[tuple[Side, str]]) -> None:
        if self.queue is None:
            raise RuntimeError("the object sync is not running yet")
        ticket = await self.queue.submit(keys)
        await ticket.wait()


async def build_stage_map(sync: ObjectSync, hub: Connector, app: Connector,
                          log: object) -> StageMap:
    """The stage map of a deals sync: configured entries, plus auto-mapped ones by label when
    `auto_map_stages`; unmapped stages are reported in the log."""
    entries = [((e.hub_pipeline, e.hub_stage), (e.app_pipeline, e.app_stage))
               for e in sync.stage_map]
    hub_pipes = app_pipes = None
    hub_denied = False
    if isinstance(hub, SupportsPipelines):
        try:
            hub_pipes = await hub.pipelines(sync.hub_object)
        except ConnectorError as exc:
            if exc.category != "permission_denied":
                raise
            hub_denied = True
    if isinstance(app, SupportsPipelines):
        app_pipes = await app.pipelines(sync.app_object)
    unmapped_hub: list[tuple[tuple[str, str], str]] = []
    unmapped_app: list[tuple[tuple[str, str], str]] = []
    if sync.auto_map_stages and hub_pipes is not None and app_pipes is not None:
        result = auto_map(hub_pipes, app_pipes, entries)
        entries = list(result.entries)
        unmapped_hub, unmapped_app = list(result.unmapped_hub), list(result.unmapped_app)
    else:
        mapped_h = {h for h, _ in entries}
        mapped_a = {a for _, a in entries}
        if hub_pipes is not None:
            unmapped_hub = [(p, lbl) for p, lbl in known_stages(hub_pipes).items()
                            if p not in mapped_h]
        if app_pipes is not None:
            unmapped_app = [(p, lbl) for p, lbl in known_stages(app_pipes).items()
                            if p not in mapped_a]
    if unmapped_hub or unmapped_app:
        log.warning(  # type: ignore[attr-defined]
            "unmapped deal stages: deals in them are excluded",
            hub=[f"{p}/{s} ({lbl})" for (p, s), lbl in unmapped_hub],
            app=[f"{p}/{s} ({lbl})" for (p, s), lbl in unmapped_app])
    return StageMap(entries,
                    hub_stages=known_stages(hub_pipes) if hub_pipes is not None else None,
                    app_stages=known_stages(app_pipes) if app_pipes is not None else None,
                    hub_permission_denied=hub_denied)


async def make_context(connection: str, connector_type: str, sync: ObjectSync, store: Store,
                       hub: Connector, app: Connector, status: ObjectStatus,
                       timing: Timing, app_pipeline_field: str = "pipeline",
                       app_stage_field: str = "") -> ObjectSyncContext:
    import structlog

    log = structlog.get_logger("crmsync.sync").bind(connection=connection,
                                                    object=sync.hub_object)
    info = await app.describe(sync.app_object)
    columns = [f.name for f in info.fields] or None
    stage_map = (await build_stage_map(sync, hub, app, log)
                 if sync.hub_object == "deals" else None)
    owners = OwnerDirectory()
    rules = compile_rules(sync, connector_type, columns, stage_map, app_pipeline_field,
                          app_stage_field, owners)
    hub_writer = BatchWriter(hub, sync.hub_object, hub.capabilities.write_batch_size,
                             timing.writer_linger)
    app_writer = BatchWriter(app, sync.app_object, app.capabilities.write_batch_size,
                             timing.writer_linger)
    return ObjectSyncContext(connection=connection, sync=sync, rules=rules, store=store,
                             hub=hub, app=app, hub_writer=hub_writer, app_writer=app_writer,
                             status=status, log=log,
                             owners=OwnerSync.for_rules(rules, owners, sync.mappings, hub, app))


async def run_object_sync(ctx: ObjectSyncContext, handle: ObjectSyncHandle, timing: Timing,
                          intakes: list[IntakeSource], notify: Notify | None = None,
                          app_polling: bool = True, mappings: MappingCheck | None = None, *,
                          task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """Run one object sync until cancelled. Errors propagate to the supervisor. With
    `mappings`, it first waits (paused) until its mappings fit both sides."""
    processor = Processor(ctx)

    async def on_queued(keys: list[Hashable]) -> None:
        by_side: dict[str, list[str]] = {"hub": [], "app": []}
        for key in keys:
            assert isinstance(key, tuple)
            by_side[str(key[0])].append(str(key[1]))

        def mark(conn: sqlite3.Connection) -> None:
            ids: list[int] = []
            for side, rids in by_side.items():
                if rids:
                    ids.extend(it.item_id for it in store_items.find_items(
                        conn, ctx.sync_id, side, rids).values())
            store_items.mark_queued(conn, ids)

        await ctx.store.call(mark)

    queue = RecordLockQueue(on_queued=on_queued)
    ctx.restore = await ctx.store.read(store_restores.catching_up, ctx.sync_id)
    if ctx.restore is not None:
        ctx.log.warning("catching up after a restore: creates look for an existing record "
                        "first, conflicts that may postdate the backup are held",
                        backup_taken_at=ctx.restore.backup_taken_at)
    handle.ctx = ctx
    handle.queue = queue
    handle.hub_poller = Poller(ctx, queue, "hub", timing.hub_poll_interval)
    handle.app_poller = (Poller(ctx, queue, "app", timing.app_poll_interval or 5.0,
                                sweep_interval=timing.delete_sweep_interval)
                         if app_polling else None)
    handle.intakes = [Intake(ctx, queue, i.source, i.parse, i.describe) for i in intakes]
    async with trio.open_nursery() as nursery:
        await nursery.start(ctx.hub_writer.run)
        await nursery.start(ctx.app_writer.run)
        feeds = _Feeds(nursery, ctx, handle, queue, processor, timing.workers)
        handle.initial = InitialSyncActor(ctx, processor, notify, feeds=feeds)
        task_status.started()
        if mappings is not None:
            await wait_until_mappings_fit(ctx, mappings, handle.pause)
        ctx.status.phase = "initial sync"
        await handle.initial.run()
        ctx.status.phase = "complete"
        await feeds.resume()
        # Records whose sync was due when the daemon stopped, which no source brings again.
        queued = await ctx.store.read(store_items.queued_records, ctx.sync_id)
        if queued:
            await queue.submit(queued)
        await nursery.start(run_retry_sweeper, ctx, queue)
        nursery.start_soon(_reconcile_loop, ctx, queue, timing.reconcile_interval, handle)
        if ctx.restore is not None:
            nursery.start_soon(_catch_up, ctx, queue)
        if ctx.sync.event_sync:
            handle.events = EventSync(ctx, timing.app_poll_interval or 5.0)
            await nursery.start(handle.events.run)
        handle.ready.set()


class _Feeds:
    """The workers and change feeds (webhook intake, pollers) of one object sync, started
    once: when the initial sync is complete, or earlier while it waits in preview, when the
    workers keep linked records syncing (and leave the others to the approved initial sync).
    Paused while an approved initial sync runs its passes, which sync every record."""

    def __init__(self, nursery: trio.Nursery, ctx: ObjectSyncContext, handle: ObjectSyncHandle,
                 queue: RecordLockQueue, processor: Processor, workers: int) -> None:
        self.nursery = nursery
        self.ctx = ctx
        self.handle = handle
        self.queue = queue
        self.processor = processor
        self.workers = workers
        self.started = False

    async def resume(self) -> None:
        if not self.started:
            self.started = True
            gate = ItemGate()
            for _ in range(self.workers):
                await self.nursery.start(run_worker, self.ctx, self.queue, self.processor, gate)
            for intake in self.handle.intakes:
                await self.nursery.start(intake.run)
            assert self.handle.hub_poller is not None
            await self.nursery.start(self.handle.hub_poller.run)
            if self.handle.app_poller is not None:
                await self.nursery.start(self.handle.app_poller.run)
        self.queue.resume()

    async def pause(self) -> None:
        if self.started:
            self.queue.pause()
            await self.queue.wait_idle()


async def _reconcile_loop(ctx: ObjectSyncContext, queue: RecordLockQueue,
                          interval: float, handle: ObjectSyncHandle) -> None:
    """A reconciliation every `interval`, and one as soon as one is asked for in the store
    (a change feed found a gap); the request is cleared only once its reconciliation ran."""
    due = trio.current_time() + interval
    while True:
        asked = await ctx.store.read(store_reconciles.pending, ctx.sync_id)
        if asked is None and trio.current_time() < due:
            with trio.move_on_at(due):
                await handle.reconcile_wake.wait()
            handle.reconcile_wake = trio.Event()
            continue
        reason = asked.reason if asked is not None else "periodic"
        ctx.log.info("reconciliation started", reason=reason)
        started = time.perf_counter()
        n = await reconcile_once(ctx, queue)
        if asked is not None:
            await ctx.store.call(store_reconciles.clear, ctx.sync_id, asked)
        ctx.status.last_reconcile = time.time()
        ctx.status.last_reconcile_reason = reason
        ctx.log.info("reconciliation done", records=n, reason=reason,
                     duration_ms=round((time.perf_counter() - started) * 1000))
        due = trio.current_time() + interval


async def _catch_up(ctx: ObjectSyncContext, queue: RecordLockQueue) -> None:
    """After a restore: one full reconciliation brings every record the backup knew, and every
    record it did not, through the workers (events acknowledged after the backup are lost,
    and cursors moved back re-read only what changed). Then the object sync has caught up:
    recorded, so a restart does not do it again."""
    mark = ctx.restore
    assert mark is not None
    started = time.perf_counter()
    n = await reconcile_once(ctx, queue)
    await ctx.store.call(store_restores.caught_up, mark.restore_id, ctx.sync_id)
    ctx.restore = None
    ctx.status.last_reconcile = time.time()
    ctx.status.last_reconcile_reason = "restore"
    ctx.log.info("caught up after a restore", records=n,
                 duration_ms=round((time.perf_counter() - started) * 1000))


NotifyFn = Callable[[ObjectSyncContext, dict[str, int]], Awaitable[None]]
