"""Operator actions on a running daemon: what `crmsync ctl` asks for through the control socket.

Each function takes the `Daemon` and plain arguments and returns a frozen view
(control/views.py), or raises `OperationError` with a code and a
message for the operator. Reads come from the store and the actors' live status; actions go
through the object syncs' handles (lock queue, pollers, initial sync) and the supervisor, so
they follow the same rules as the daemon's own work.
"""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING, Any, Literal

from crmsync.config import ConfigError
from crmsync.config.model import ObjectSync
from crmsync.control.ops.lookup import (
    OperationError,
    check_connection,
    find_record,
    object_sync,
    object_syncs,
    store_of,
)
from crmsync.control.ops.records import record_view
from crmsync.control.ops.running import ready_handle, stop_gently, submit_wait, while_running
from crmsync.control.views import (
    MAX_PAGE,
    ConnectionStateView,
    DeletesView,
    DeleteSyncView,
    FootprintView,
    ParkedView,
    PollNowView,
    ReloadView,
    RestoreRowView,
    RestoreView,
    ResyncResultView,
    ResyncView,
    ReviewRowView,
    ReviewView,
)
from crmsync.records import Side
from crmsync.runtime.context import ObjectSyncContext, sync_id_of
from crmsync.runtime.lock_queue import RecordLockQueue
from crmsync.runtime.reconcile import reconcile_once
from crmsync.runtime.restore import (
    RestoreCandidate,
    RestoreResult,
    apply_restore,
    plan_restore,
    resolve_parked,
)
from crmsync.store import connections as store_connections
from crmsync.store import items as store_items
from crmsync.store import reports
from crmsync.store.items import Item

if TYPE_CHECKING:  # types only: the control server passes the daemon in
    from crmsync.daemon.main import Daemon


# How many records a restore / resync handles per step.
STEP = 100

State = Literal["pending", "syncing", "failed", "excluded", "queued", "deleted"]


# --- resync -----------------------------------------------------------------------------------


def _key(it: Item) -> tuple[Side, str]:
    return ("hub", it.hub_id) if it.hub_id else ("app", it.app_id or "")


async def resync(daemon: Daemon, connection: str, obj: str = "", failed: bool = False,
                 record: str = "", side: str = "") -> ResyncView:
    """Sync records again now and wait for it: one record, every failed record, or (neither)
    every record of the object sync (a reconciliation: both sides re-read in full)."""
    if failed and record:
        raise OperationError("invalid", "give either --failed or --record, not both")
    if record and not obj:
        raise OperationError("invalid", "--record needs the OBJECT")
    syncs = object_syncs(daemon, connection, obj)
    store = store_of(daemon)
    out = []
    for s in syncs:
        sid = sync_id_of(connection, s.hub_object)
        if record:
            it = await find_record(daemon, s, record, side)

            async def one(ctx: ObjectSyncContext, queue: RecordLockQueue,
                          it: Item = it) -> int:
                await submit_wait(queue, [_key(it)])
                return 1

            n = await while_running(daemon, connection, s, one)
            after = await store.read(store_items.get_item, it.item_id)
            views = [record_view(after, connection, s.hub_object)] if after else []
            mode = "record"
        elif failed:
            async def all_failed(ctx: ObjectSyncContext, queue: RecordLockQueue,
                                 sid: str = sid) -> int:
                n, after = 0, 0
                while True:
                    page = await store.read(store_items.list_items, sid, "failed", None, STEP,
                                            after)
                    if not page:
                        return n
                    after = page[-1].item_id
                    await submit_wait(queue, [_key(it) for it in page])
                    n += len(page)

            n = await while_running(daemon, connection, s, all_failed)
            views, mode = [], "failed"
        else:
            async def everything(ctx: ObjectSyncContext, queue: RecordLockQueue) -> int:
                return await reconcile_once(ctx, queue)

            n = await while_running(daemon, connection, s, everything)
            views, mode = [], "all"
        counts = await store.read(store_items.counts, sid)
        message = (f"reconciled: {n} records read on both sides and synced again"
                   if mode == "all" else f"{n} record(s) synced again")
        dupes = await store.read(store_items.count_of, sid, "failed", "duplicate")
        if dupes:
            # A resync re-runs duplicate detection; it cannot resolve a duplicate itself.
            message += (f"; {dupes} still failed as duplicate(s): change or remove their key, "
                        "or merge them into the record holding it (see `crmsync ctl records "
                        f"{connection} {s.hub_object} --state failed`)")
        out.append(ResyncResultView(hub_object=s.hub_object, mode=mode, submitted=n,
                                    counts=counts, records=views, message=message))
    return ResyncView(connection=connection, objects=out)


# --- restore-deleted ----------------------------------------------------------------------------


def _restore_row(c: RestoreCandidate, r: RestoreResult | None = None) -> RestoreRowView:
    it = c.item
    return RestoreRowView(
        item_id=it.item_id, hub_id=it.hub_id, app_id=it.app_id, match_key=it.match_key,
        restorable=c.restorable, reason=c.reason, source_id=c.source_id, values=c.values,
        outcome=r.outcome if r else "", new_id=r.new_id if r else None,
        state=r.state if r else "", detail=r.detail if r else "")


async def restore_deleted(daemon: Daemon, connection: str, obj: str, to: str,
                          record: str = "", side: str = "", yes: bool = False,
                          limit: int = 100) -> RestoreView:
    """Records deleted on `to` and what restoring them would write (without `yes`); with
    `yes`, re-create each on `to` from the snapshot and the other side's current values and
    relink it (see runtime/restore.py). `limit` bounds the rows listed, not the work done."""
    if to not in ("hub", "app"):
        raise OperationError("invalid", f"--to must be hub or app, not {to!r}")
    side_to: Side = "hub" if to == "hub" else "app"
    sync = object_sync(daemon, connection, obj)
    sid = sync_id_of(connection, sync.hub_object)
    store = store_of(daemon)
    limit = max(0, min(limit, MAX_PAGE))
    single: Item | None = await find_record(daemon, sync, record, side) if record else None

    async def work(ctx: ObjectSyncContext, queue: RecordLockQueue) -> RestoreView:
        rows: list[RestoreRowView] = []
        seen = restorable = restored = failed = 0
        after: int | None = 0
        while after is not None:
            if single is not None:
                batch, after = [single], None
            else:
                batch, after = await store.read(reports.deleted_on, sid, to, after, STEP)
            if not batch:
                continue
            plan = await plan_restore(ctx, side_to, batch)
            seen += len(plan)
            restorable += sum(c.restorable for c in plan)
            results: list[RestoreResult | None] = [None] * len(plan)
            if yes and any(c.restorable for c in plan):
                done = await apply_restore(ctx, queue, plan)
                results = list(done)
                restored += sum(r.outcome in ("restored", "relinked") for r in done)
                failed += sum(r.outcome == "failed" for r in done)
            for c, r in zip(plan, results, strict=True):
                if yes and r is None:
                    r = RestoreResult(item_id=c.item.item_id, outcome="skipped",
                                      detail=c.reason)
                if len(rows) < limit:
                    rows.append(_restore_row(c, r))
        return RestoreView(connection=connection, hub_object=sync.hub_object, to=to,
                           applied=yes, candidates=seen, restorable=restorable,
                           restored=restored, failed=failed, records=rows,
                           truncated=seen > len(rows))

    return await while_running(daemon, connection, sync, work)


# --- parked deletes -----------------------------------------------------------------------------


def _writable(sync: ObjectSync, side: str) -> bool:
    return sync.direction in ("both", f"to_{side}")


async def deletes(daemon: Daemon, connection: str, obj: str, limit: int = 100) -> DeletesView:
    """Deletes parked for review (`on_delete = "review"`), oldest first."""
    sync = object_sync(daemon, connection, obj)
    sid = sync_id_of(connection, sync.hub_object)

    def read(conn: sqlite3.Connection) -> tuple[list[reports.ParkedDelete], int]:
        return (reports.parked(conn, sid, limit=max(0, min(limit, MAX_PAGE))),
                reports.parked_count(conn, sid))

    parked, total = await store_of(daemon).read(read)
    return DeletesView(
        connection=connection, hub_object=sync.hub_object, app_object=sync.app_object,
        on_delete=sync.on_delete, total=total,
        parked=[ParkedView(item_id=p.item.item_id, deleted_side=p.deleted_side,
                           hub_id=p.item.hub_id, app_id=p.item.app_id,
                           match_key=p.item.match_key, other_id=p.other_id,
                           parked_at=p.parked_at,
                           can_delete_other=_writable(sync, "app" if p.deleted_side == "hub"
                                                      else "hub"))
                for p in parked])


async def resolve_deletes(daemon: Daemon, connection: str, obj: str, action: str,
                          record: str = "", side: str = "", every: bool = False) -> ReviewView:
    """Approve (delete the other side's record too, where the direction allows) or ignore
    (keep it) parked deletes: one (`record`) or all of them (`every`)."""
    if action not in ("approve", "ignore"):
        raise OperationError("invalid", f"action must be approve or ignore, not {action!r}")
    if bool(record) == bool(every):
        raise OperationError("invalid", "give either --record ID or --all")
    sync = object_sync(daemon, connection, obj)
    sid = sync_id_of(connection, sync.hub_object)
    store = store_of(daemon)
    ids: list[int] | None = None
    if record:
        ids = [(await find_record(daemon, sync, record, side)).item_id]

    async def work(ctx: ObjectSyncContext, queue: RecordLockQueue) -> ReviewView:
        rows: list[ReviewRowView] = []
        handled: set[int] = set()
        while True:
            # Refused and failed ones stay parked: go on past them.
            parked = [p for p in await store.read(reports.parked, sid, ids)
                      if p.item.item_id not in handled][:STEP]
            if not parked:
                break
            results = await resolve_parked(ctx, parked, action == "approve")
            by_id = {p.item.item_id: p.item for p in parked}
            handled.update(by_id)
            rows.extend(ReviewRowView(item_id=r.item_id, hub_id=by_id[r.item_id].hub_id,
                                      app_id=by_id[r.item_id].app_id, outcome=r.outcome,
                                      detail=r.detail) for r in results)
        if ids is not None and not rows:
            raise OperationError("not_found", f"record {record!r} has no parked delete")
        return ReviewView(connection=connection, hub_object=sync.hub_object, action=action,
                          results=rows)

    return await while_running(daemon, connection, sync, work)


# --- connections --------------------------------------------------------------------------------


async def _restart(daemon: Daemon, connection: str) -> None:
    await stop_gently(daemon, connection)
    await daemon.start_connection(connection)


def _state_view(daemon: Daemon, connection: str, changed: bool,
                message: str) -> ConnectionStateView:
    rt = daemon.connections.get(connection)
    return ConnectionStateView(connection=connection,
                               state=rt.status.state if rt else "stopped",
                               reason=rt.status.reason if rt else "", changed=changed,
                               message=message)


async def disable(daemon: Daemon, connection: str, reason: str = "") -> ConnectionStateView:
    """Stop a connection and keep it stopped across restarts (persisted in the store)."""
    check_connection(daemon, connection)
    store = store_of(daemon)
    was = await store.read(store_connections.disabled)
    why = reason or "disabled by operator"
    await store.call(store_connections.set_disabled, connection, True, why)
    if connection in was and (rt := daemon.connections.get(connection)) is not None \
            and rt.status.state == "disabled":
        return _state_view(daemon, connection, False, "already disabled")
    await _restart(daemon, connection)
    return _state_view(daemon, connection, True, "disabled: its object syncs are stopped")


async def enable(daemon: Daemon, connection: str) -> ConnectionStateView:
    """Start a disabled connection again (it resumes where it stopped)."""
    check_connection(daemon, connection)
    store = store_of(daemon)
    was = await store.read(store_connections.disabled)
    if connection not in was:
        return _state_view(daemon, connection, False, "not disabled")
    await store.call(store_connections.set_disabled, connection, False, "")
    await _restart(daemon, connection)
    return _state_view(daemon, connection, True, "enabled: its object syncs start")


DELETED_REASON = ("sync deleted by operator: remove the connection from the configuration, "
                  "or enable it to start over with a new initial sync")


async def delete_sync(daemon: Daemon, connection: str, yes: bool = False) -> DeleteSyncView:
    """Forget everything crmsync keeps for a connection's object syncs (index, links and
    snapshots, states, history, cursors, initial-sync checkpoints and plans, parked deletes);
    the connection stays disabled. Never touches either side's data. Without `yes`, only
    reports what would be dropped."""
    check_connection(daemon, connection)
    store = store_of(daemon)
    configured = [sync_id_of(connection, s.hub_object) for s in daemon.cfg.syncs
                  if s.connection == connection]

    def survey(conn: sqlite3.Connection) -> list[FootprintView]:
        ids = sorted(set(configured) | set(reports.sync_ids_of(conn, connection)))
        return [FootprintView(sync_id=i, rows=reports.footprint(conn, i)) for i in ids]

    before = await store.read(survey)
    if not yes:
        return DeleteSyncView(connection=connection, deleted=False, syncs=before,
                              message="nothing deleted: add --yes to delete")
    await store.call(store_connections.set_disabled, connection, True, DELETED_REASON)
    # Stopped (and restarted disabled) before dropping: no worker writes after the drop.
    await _restart(daemon, connection)

    def drop(conn: sqlite3.Connection) -> None:
        for i in sorted(set(configured) | set(reports.sync_ids_of(conn, connection))):
            store_items.drop_sync(conn, i)

    await store.call(drop)
    daemon_log().warning("object syncs deleted", connection=connection,
                         syncs=[f.sync_id for f in before],
                         items=sum(f.rows.get("items", 0) for f in before))
    return DeleteSyncView(connection=connection, deleted=True, syncs=before,
                          message="deleted; the connection stays disabled")


def daemon_log() -> Any:
    import structlog

    return structlog.get_logger("crmsync.control")


async def reload(daemon: Daemon) -> ReloadView:
    """Re-read the configuration (as SIGHUP does); an invalid one is refused and the daemon
    keeps running on the old one."""
    try:
        changes = await daemon.reload()
    except ConfigError as exc:
        raise OperationError("config", "the configuration is not valid; nothing changed:\n"
                             + "\n".join(f"  {p}" for p in exc.problems)) from exc
    except Exception as exc:
        raise OperationError("config", f"reload failed; nothing changed: {exc}") from exc
    return ReloadView(changes=changes)


async def poll_now(daemon: Daemon, connection: str, obj: str = "") -> PollNowView:
    """Ask the pollers of one object sync (or all of the connection) to poll at once, and
    return without waiting for them. The reply says what those polls cannot see yet: HubSpot's
    search index lags behind its writes, so a hub poll reads changes up to
    `search_index_lag_seconds` ago and leaves younger ones to the first poll after that."""
    syncs = object_syncs(daemon, connection, obj)
    polled: list[str] = []
    lag = 0.0
    intervals: list[float] = []
    for s in syncs:
        _, h = ready_handle(daemon, connection, s)
        h.poll_now()
        polled.append(s.hub_object)
        if h.ctx is not None:
            lag = max(lag, float(getattr(h.ctx.hub, "index_lag", 0.0) or 0.0))
        if h.hub_poller is not None:
            intervals.append(h.hub_poller.interval)
    interval = max(intervals) if intervals else None
    message = f"polling {', '.join(polled)} now"
    if lag > 0:
        then = (f"the first hub poll after that (hub polls run every {interval:g} s)"
                if interval is not None else "a later hub poll")
        message += (f". HubSpot's search index lags behind its writes, so a hub poll reads "
                    f"changes up to {lag:g} s old (search_index_lag_seconds): a HubSpot change "
                    f"made in the last {lag:g} s is not seen by this poll but by {then}. "
                    "Hub webhooks, where configured, bring changes at once; app changes are "
                    "read now")
    return PollNowView(connection=connection, objects=polled, hub_index_lag_seconds=lag,
                       hub_poll_interval_seconds=interval, message=message)
