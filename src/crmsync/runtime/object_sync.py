"""One object sync's actors, wired by channels (docs/architecture.md draws the graph):

```
intakes (one per inbox source) ─┐
hub poller, app poller ─────────┤
reconciler, retry sweeper ──────┼─▶ [changes lane] ─▶ record lock queue ─▶ [batches] ─▶ workers ─┐
operators (the handle) ─────────┘                          │                                     │
initial-sync indexer ───────────▶ [pages lane] ────────────┘─▶ [jobs] ─▶ page workers ───────────┤
                                                                                                 ▼
                                   hub batch writer ◀─ [write requests] ─ processor ─▶ app batch writer
```

`run_object_sync` sets everything up (the app's description, the stage map, the rules, the
lock queue, the batch writers, the page workers) and only then reports itself started, with
its handle; then it checks its mappings (paused while they do not fit), runs the initial
sync, and starts its feeds (workers, intakes, pollers) — in preview already while the
preview waits — the retry sweeper, the reconciler and the event sync. Operations reach it
through its `ObjectSyncHandle` only.
"""

from __future__ import annotations

import dataclasses
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import msgspec
import structlog
import trio

from crmsync.config.model import ObjectSync
from crmsync.connectors.base import (
    Connector,
    ConnectorError,
    SupportsPipelines,
)
from crmsync.engine.owners import OwnerDirectory
from crmsync.engine.rules import SyncRules, compile_rules
from crmsync.engine.stages import StageMap, auto_map, known_stages
from crmsync.records import Side
from crmsync.runtime.batch_writer import BatchWriter, BatchWriterStatistics
from crmsync.runtime.context import ObjectSyncContext, sync_id_of
from crmsync.runtime.events import EventSync
from crmsync.runtime.initial_order import InitialOrder
from crmsync.runtime.initial_sync import PIPELINE_DEPTH, InitialSyncActor, Notify
from crmsync.runtime.intake import Describe, Intake, Parser, Report
from crmsync.runtime.loader import ITEM
from crmsync.runtime.lock_queue import (
    ChangeSender,
    LockQueueStatistics,
    Operator,
    QueueStopped,
    RecordLockQueue,
)
from crmsync.runtime.mapping_check import MappingCheck, wait_until_mappings_fit
from crmsync.runtime.owners import OwnerSync
from crmsync.runtime.pollers import Poller, PollerStatistics
from crmsync.runtime.processor import Processor
from crmsync.runtime.reconcile import reconcile_once, run_reconciler
from crmsync.runtime.record_values import RecordValues, field_names, read_values
from crmsync.runtime.requests import RequestSender, ask, open_request_channel
from crmsync.runtime.restore import (
    RestoreCandidate,
    RestoreResult,
    ReviewResult,
    apply_restore,
    plan_restore,
    resolve_parked,
)
from crmsync.runtime.status import ObjectStatus
from crmsync.runtime.worker import (
    BATCH,
    LINGER,
    ItemGate,
    run_page_worker,
    run_retry_sweeper,
    run_worker,
)
from crmsync.store import Store
from crmsync.store import items as store_items
from crmsync.store import restores as store_restores
from crmsync.store.items import Item
from crmsync.store.reports import ParkedDelete


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
    report: Report | None = None  # tells echoes of our own writes (intake.py)


@dataclass(frozen=True)
class ObjectSyncSetup:
    """What starting an object sync needs besides the store and the two connectors."""

    connection: str
    connector_type: str
    sync: ObjectSync
    timing: Timing
    intakes: Sequence[IntakeSource] = ()
    notify: Notify | None = None
    app_polling: bool = True
    # With a check, the object sync first waits (paused) until its mappings fit both sides.
    mappings: MappingCheck | None = None
    app_pipeline_field: str = "pipeline"
    app_stage_field: str = ""
    # Builds what keeps the object's associations, when it has any to keep.
    associations: Callable[[ObjectSyncContext], Any] | None = None
    # HubSpot's property-change events reach this sync (ObjectSyncContext.hub_events).
    hub_events: bool = False
    # The connection's initial syncs in turn (runtime/initial_order.py), shared by its
    # object syncs, and those whose initial sync this one's app pass waits for.
    initial_order: InitialOrder | None = None
    earlier_syncs: Sequence[str] = ()


class NotRunning(Exception):
    """The object sync cannot take the request: it has not started syncing (its initial sync
    runs, or it is paused), or it stopped. `phase` says where it is."""

    def __init__(self, message: str, phase: str) -> None:
        super().__init__(message)
        self.phase = phase


class ObjectSyncStopped(NotRunning):
    """The object sync stopped (its connection stopped or restarts) during the request."""


class ObjectSyncStatistics(msgspec.Struct, frozen=True):
    status: ObjectStatus  # a copy, taken when the statistics were
    running: bool  # initial sync complete, workers and feeds running
    queue: LockQueueStatistics
    hub_poller: PollerStatistics | None = None
    app_poller: PollerStatistics | None = None
    hub_writer: BatchWriterStatistics | None = None
    app_writer: BatchWriterStatistics | None = None
    # A hub poll reads changes up to (now - this): the hub's search index lags behind.
    hub_index_lag: float = 0.0


class ObjectSyncHandle:
    """What the daemon and operations may do with one running object sync: its statistics,
    asking it to poll or read its inbox now, syncing records again, holding records for a
    repair, the repairs themselves, and `running()`, a scope for a request that is cancelled
    when the object sync stops. Made by `run_object_sync`; usable once it started."""

    def __init__(self, ctx: ObjectSyncContext, queue: RecordLockQueue,
                 hub_poller: Poller, app_poller: Poller | None) -> None:
        self._ctx = ctx
        self._queue = queue
        self._hub_poller = hub_poller
        self._app_poller = app_poller
        self._changes: ChangeSender = queue.changes()
        self._operator: Operator = queue.operator()
        self._poll_requests: dict[Side, RequestSender] = {}
        self._events_requests: RequestSender | None = None
        self._intake_wakes: dict[str, RequestSender] = {}
        self._approvals: RequestSender | None = None
        self._reconcile_requests: RequestSender | None = None
        self._running = trio.Event()
        self._stopped = trio.Event()
        self._scopes: set[trio.CancelScope] = set()

    @property
    def connection(self) -> str:
        return self._ctx.connection

    @property
    def hub_object(self) -> str:
        return self._ctx.hub_object

    @property
    def app_object(self) -> str:
        return self._ctx.app_object

    @property
    def rules(self) -> SyncRules:
        """The rules compiled from the object sync's settings (engine values)."""
        return self._ctx.rules

    # --- state -------------------------------------------------------------------------------

    @property
    def is_running(self) -> bool:
        """Initial sync complete, workers and feeds running."""
        return self._running.is_set() and not self._stopped.is_set()

    async def wait_running(self) -> None:
        """Until the object sync runs (initial sync complete); raises ObjectSyncStopped if
        it stops first."""
        if not self._running.is_set():
            async with trio.open_nursery() as nursery:
                async def stopped() -> None:
                    await self._stopped.wait()
                    nursery.cancel_scope.cancel()

                nursery.start_soon(stopped)
                await self._running.wait()
                nursery.cancel_scope.cancel()
        if self._stopped.is_set():
            raise ObjectSyncStopped(f"{self._ctx.sync_id} stopped", "stopped")

    def statistics(self) -> ObjectSyncStatistics:
        ctx = self._ctx
        return ObjectSyncStatistics(
            status=dataclasses.replace(ctx.status), running=self.is_running,
            queue=self._queue.statistics(), hub_poller=self._hub_poller.statistics(),
            app_poller=self._app_poller.statistics() if self._app_poller else None,
            hub_writer=ctx.hub_writer.statistics(), app_writer=ctx.app_writer.statistics(),
            hub_index_lag=float(getattr(ctx.hub, "index_lag", 0.0) or 0.0))

    # --- asking it to act now ------------------------------------------------------------------

    def poll_now(self, sides: Sequence[Side] = ("hub", "app"), events: bool = True) -> None:
        """Ask the pollers of `sides` (and the event sync) to poll at once; returns at once."""
        for side in sides:
            if (req := self._poll_requests.get(side)) is not None:
                ask(req)
        if events and self._events_requests is not None:
            ask(self._events_requests)

    def wake_intake(self, source: str) -> bool:
        """An event of `source` was stored in the inbox: its intake reads it now. False if
        no intake of this object sync reads that source."""
        req = self._intake_wakes.get(source)
        if req is None:
            return False
        ask(req)
        return True

    def reconcile_now(self) -> None:
        """A reconciliation was asked for in the store (a change feed found a gap): run it
        without waiting for its time (once the initial sync is complete)."""
        if self._reconcile_requests is not None:
            ask(self._reconcile_requests)

    def approve(self) -> None:
        """A preview was approved (in the store): the initial sync looks now."""
        if self._approvals is not None:
            ask(self._approvals)

    # --- records ---------------------------------------------------------------------------------

    async def resync(self, keys: Sequence[tuple[Side, str]]) -> None:
        """Sync these records once more and wait for it (SyncFailed if a sync failed)."""
        if keys:
            try:
                await self._changes.sync(keys)
            except QueueStopped:
                raise self._stopped_error() from None

    async def resubmit(self, keys: Sequence[tuple[Side, str]],
                       payloads: Mapping[Hashable, Sequence[Any]] | None = None) -> None:
        """Sync these records again, without waiting and without waiting for room (a worker
        of this connection asks: its own queue's room must never hold it up). `payloads`
        ride along as with `ChangeSender.submit`."""
        try:
            await self._operator.submit(keys, payloads)
        except QueueStopped:
            pass  # stopped: it reads them again when it starts

    @asynccontextmanager
    async def hold(self, keys: Sequence[tuple[Side, str]]) -> AsyncIterator[None]:
        """Keep workers off these records while the body runs (see `Operator.hold`)."""
        try:
            async with self._operator.hold(keys):
                yield
        except QueueStopped:
            raise self._stopped_error() from None

    async def reconcile(self) -> int:
        """A reconciliation now: both sides re-read in full, every record synced again."""
        return await reconcile_once(self._ctx, self._changes)

    async def plan_restore(self, to: Side, items: Sequence[Item]) -> list[RestoreCandidate]:
        return await plan_restore(self._ctx, to, items)

    async def apply_restore(self, plan: Sequence[RestoreCandidate]) -> list[RestoreResult]:
        return await apply_restore(self._ctx, self, plan)

    async def resolve_parked(self, parked: Sequence[ParkedDelete],
                             approve: bool) -> list[ReviewResult]:
        return await resolve_parked(self._ctx, parked, approve)

    async def read_values(self, items: Sequence[Item]
                          ) -> tuple[dict[int, RecordValues], list[str]]:
        """The items' mapped values read now from one side, and the mapped fields' names."""
        return await read_values(self._ctx, items), field_names(self._ctx)

    # --- requests ------------------------------------------------------------------------------

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """A scope for a request to the object sync: raises NotRunning at once if it does
        not run (yet); the body is cancelled, and ObjectSyncStopped raised, when the object
        sync stops meanwhile."""
        self._check_running()
        with trio.CancelScope() as scope:
            self._scopes.add(scope)
            try:
                yield
            finally:
                self._scopes.discard(scope)
        if scope.cancelled_caught:
            raise self._stopped_error()

    def _check_running(self) -> None:
        if self._stopped.is_set():
            raise self._stopped_error()
        if not self._running.is_set():
            phase = self._ctx.status.phase
            raise NotRunning(f"{self._ctx.sync_id} is in its initial sync (phase {phase}); "
                             "try again once it is complete", phase)

    def _stopped_error(self) -> ObjectSyncStopped:
        return ObjectSyncStopped(f"{self._ctx.sync_id} stopped", "stopped")

    async def drain(self) -> None:
        """Hand out no more work; returns once the batches and pages out are done."""
        try:
            await self._queue.drain()
        except QueueStopped:
            pass

    def _stop(self) -> None:
        self._stopped.set()
        for scope in list(self._scopes):
            scope.cancel()


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
    """The object sync's shared context: the app's fields (described), the stage map of a
    deals sync, the compiled rules, the two batch writers (not running yet)."""
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
                             timing.writer_linger, side="hub")
    app_writer = BatchWriter(app, sync.app_object, app.capabilities.write_batch_size,
                             timing.writer_linger, side="app")
    return ObjectSyncContext(connection=connection, sync=sync, rules=rules, store=store,
                             hub=hub, app=app, hub_writer=hub_writer, app_writer=app_writer,
                             status=status, log=log,
                             owners=OwnerSync.for_rules(rules, owners, sync.mappings, hub, app))


def _mark_queued(ctx: ObjectSyncContext) -> Callable[[list[Hashable]], Awaitable[None]]:
    async def on_queued(keys: list[Hashable]) -> None:
        by_side: dict[str, list[str]] = {"hub": [], "app": []}
        named: list[int] = []  # item keys (loader.ITEM)
        for key in keys:
            assert isinstance(key, tuple)
            if key[0] == ITEM:
                named.append(int(key[1]))
            else:
                by_side[str(key[0])].append(str(key[1]))

        def mark(conn: sqlite3.Connection) -> None:
            ids: list[int] = list(named)
            for side, rids in by_side.items():
                if rids:
                    ids.extend(it.item_id for it in store_items.find_items(
                        conn, ctx.sync_id, side, rids).values())
            store_items.mark_queued(conn, ids)

        await ctx.store.call(mark)

    return on_queued


async def run_object_sync(setup: ObjectSyncSetup, store: Store, hub: Connector, app: Connector,
                          status: ObjectStatus, *,
                          task_status: trio.TaskStatus[ObjectSyncHandle]
                          = trio.TASK_STATUS_IGNORED) -> None:
    """Run one object sync until cancelled; report started, with its handle, once its
    resources are set up (an error before that comes out of `nursery.start`). Later errors
    propagate to the supervisor."""
    with structlog.contextvars.bound_contextvars(connection=setup.connection,
                                                 object=setup.sync.hub_object):
        try:
            ctx = await make_context(setup.connection, setup.connector_type, setup.sync,
                                     store, hub, app, status, setup.timing,
                                     setup.app_pipeline_field, setup.app_stage_field)
            ctx.hub_events = setup.hub_events
            if setup.associations is not None:
                ctx.associations = setup.associations(ctx)
            await _run(ctx, setup, task_status)
        except Exception:
            if setup.initial_order is not None:
                # Failed: no initial sync waits for it any more, restarted or not.
                setup.initial_order.set(sync_id_of(setup.connection, setup.sync.hub_object),
                                        "failed")
            raise
        finally:
            if setup.initial_order is not None:
                # Stopped: no initial sync waits for it.
                setup.initial_order.set(sync_id_of(setup.connection, setup.sync.hub_object),
                                        "done")


async def _run(ctx: ObjectSyncContext, setup: ObjectSyncSetup,
               task_status: trio.TaskStatus[ObjectSyncHandle]) -> None:
    timing = setup.timing
    order = setup.initial_order
    processor = Processor(ctx)
    queue = RecordLockQueue(workers=timing.workers, page_workers=PIPELINE_DEPTH,
                            batch_size=BATCH, linger=LINGER, on_queued=_mark_queued(ctx))
    hub_poller = Poller(ctx, "hub", timing.hub_poll_interval)
    app_poller = (Poller(ctx, "app", timing.app_poll_interval or 5.0,
                         sweep_interval=timing.delete_sweep_interval)
                  if setup.app_polling else None)
    handle = ObjectSyncHandle(ctx, queue, hub_poller, app_poller)
    ctx.restore = await ctx.store.read(store_restores.catching_up, ctx.sync_id)
    if ctx.restore is not None:
        ctx.log.warning("catching up after a restore: creates look for an existing record "
                        "first, conflicts that may postdate the backup are held",
                        backup_taken_at=ctx.restore.backup_taken_at)
    approvals_tx, approvals_rx = open_request_channel()
    handle._approvals = approvals_tx
    reconcile_tx, reconcile_rx = open_request_channel()
    handle._reconcile_requests = reconcile_tx
    feeds = _Feeds(ctx, queue, processor, timing.workers)
    for source in setup.intakes:
        wake_tx, wake_rx = open_request_channel()
        handle._intake_wakes[source.source] = wake_tx
        feeds.intakes.append((Intake(ctx, source.source, source.parse, source.describe,
                                     source.report),
                              wake_rx))
    for side, poller in (("hub", hub_poller), ("app", app_poller)):
        if poller is not None:
            req_tx, req_rx = open_request_channel()
            handle._poll_requests[side] = req_tx  # type: ignore[index]
            feeds.pollers.append((poller, req_rx))
    try:
        async with (handle._changes, handle._operator, approvals_tx, approvals_rx,
                    reconcile_tx, reconcile_rx,
                    ctx.hub_writer, ctx.app_writer, trio.open_nursery() as nursery):
            await nursery.start(queue.run)
            # No batch is handed out before the feeds start (their workers take them): a key
            # another object sync sends meanwhile (an association wait) would otherwise
            # count as running with no worker to run it, and an initial-sync page holding
            # that key would wait for it for ever. The feeds resume it.
            await queue.pause()
            await nursery.start(ctx.hub_writer.run)
            await nursery.start(ctx.app_writer.run)
            for _ in range(PIPELINE_DEPTH):
                await nursery.start(run_page_worker, queue.page_worker_ends())
            feeds.nursery = nursery
            task_status.started(handle)
            if setup.mappings is not None:
                async def paused(seconds: float) -> None:
                    if order is not None:
                        order.set(ctx.sync_id, "idle")  # no initial sync waits for it
                    await trio.sleep(seconds)

                await wait_until_mappings_fit(ctx, setup.mappings, paused)
            ctx.status.phase = "initial sync"
            async with queue.pages() as pages:
                initial = InitialSyncActor(ctx, processor, pages, setup.notify, feeds=feeds,
                                           approvals=approvals_rx, order=order,
                                           earlier=setup.earlier_syncs)
                await initial.run()
            ctx.status.phase = "complete"
            await feeds.resume()
            # Records whose sync was due when the daemon stopped, which no source brings
            # again: sent to the queue like any change (not waited for).
            queued: list[Any] = await ctx.store.read(store_items.queued_records, ctx.sync_id)
            if ctx.associations is not None:
                # And those whose associations wait for a partner that may have been linked
                # just before the daemon stopped (AssociationSyncer.waiting).
                queued += [k for k in await ctx.associations.waiting() if k not in queued]
            if queued:
                async with queue.changes() as changes:
                    # Not those with a sync waiting in the queue already (sent while the
                    # initial sync held them): asked again, their sync could no longer be
                    # skipped where it turns out to need none (runtime/worker.py).
                    await changes.submit(queued, absent_only=True)
            await nursery.start(run_retry_sweeper, ctx, queue.changes())
            await nursery.start(run_reconciler, ctx, queue.changes(), timing.reconcile_interval,
                                reconcile_rx)
            if ctx.restore is not None:
                nursery.start_soon(_catch_up, ctx, queue.changes())
            if ctx.sync.event_sync:
                events_tx, events_rx = open_request_channel()
                handle._events_requests = events_tx
                await nursery.start(EventSync(ctx, timing.app_poll_interval or 5.0).run,
                                    events_rx)
            handle._running.set()
    finally:
        handle._stop()
        for req in [*handle._intake_wakes.values(), *handle._poll_requests.values()]:
            req.close()
        if handle._events_requests is not None:
            handle._events_requests.close()


@dataclass
class _Feeds:
    """The workers and change feeds (webhook intakes, pollers) of one object sync, started
    once: when the initial sync is complete, or earlier while it waits in preview, when the
    workers keep linked records syncing (and leave the others to the approved initial sync).
    Paused while an approved initial sync runs its passes, which sync every record."""

    ctx: ObjectSyncContext
    queue: RecordLockQueue
    processor: Processor
    workers: int
    intakes: list[tuple[Intake, Any]] = field(default_factory=list)
    pollers: list[tuple[Poller, Any]] = field(default_factory=list)
    nursery: trio.Nursery | None = None
    started: bool = False

    async def resume(self) -> None:
        if not self.started:
            assert self.nursery is not None
            self.started = True
            gate = ItemGate()
            for _ in range(self.workers):
                await self.nursery.start(run_worker, self.ctx, self.queue.worker_ends(),
                                         self.processor, gate)
            for intake, wake in self.intakes:
                await self.nursery.start(intake.run, self.queue.changes(), wake)
            for poller, requests in self.pollers:
                await self.nursery.start(poller.run, self.queue.changes(), requests)
        await self.queue.resume()

    async def pause(self) -> None:
        if self.started:
            await self.queue.pause()


async def _catch_up(ctx: ObjectSyncContext, changes: ChangeSender) -> None:
    """After a restore: one full reconciliation brings every record the backup knew, and every
    record it did not, through the workers (events acknowledged after the backup are lost,
    and cursors moved back re-read only what changed). Then the object sync has caught up:
    recorded, so a restart does not do it again."""
    mark = ctx.restore
    assert mark is not None
    async with changes:
        started = time.perf_counter()
        n = await reconcile_once(ctx, changes)
    await ctx.store.call(store_restores.caught_up, mark.restore_id, ctx.sync_id)
    ctx.restore = None
    ctx.status.last_reconcile = time.time()
    ctx.status.last_reconcile_reason = "restore"
    ctx.log.info("caught up after a restore", records=n,
                 duration_ms=round((time.perf_counter() - started) * 1000))
