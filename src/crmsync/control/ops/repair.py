"""`crmsync ctl resync`, `restore-deleted` and `deletes`: what an operator does to put records
right. Each waits for the object sync's own workers to do the work (through the lock queue, so
the same rules apply as to the daemon's own syncs) and is cut short with `not_running` if the
connection stops meanwhile."""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING

from crmsync.config.model import ObjectSync
from crmsync.control.ops.lookup import (
    OperationError,
    find_record,
    object_sync,
    object_syncs,
    store_of,
)
from crmsync.control.ops.records import record_view
from crmsync.control.ops.running import submit_wait, while_running
from crmsync.control.views import (
    MAX_PAGE,
    DeletesView,
    ParkedView,
    RestoreRowView,
    RestoreView,
    ResyncResultView,
    ResyncView,
    ReviewRowView,
    ReviewView,
)
from crmsync.records import Side
from crmsync.runtime.context import sync_id_of
from crmsync.runtime.object_sync import ObjectSyncHandle
from crmsync.runtime.restore import RestoreCandidate, RestoreResult
from crmsync.store import items as store_items
from crmsync.store import reports
from crmsync.store.items import Item

if TYPE_CHECKING:  # types only: the control server passes the daemon in
    from crmsync.daemon.main import Daemon

# How many records a restore / resync handles per step.
STEP = 100


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

            async def one(h: ObjectSyncHandle, it: Item = it) -> int:
                await submit_wait(h, [_key(it)])
                return 1

            n = await while_running(daemon, connection, s, one)
            after = await store.read(store_items.get_item, it.item_id)
            views = [record_view(after, connection, s.hub_object)] if after else []
            mode = "record"
        elif failed:
            async def all_failed(h: ObjectSyncHandle, sid: str = sid) -> int:
                n, after = 0, 0
                while True:
                    page = await store.read(store_items.list_items, sid, "failed", None, STEP,
                                            after)
                    if not page:
                        return n
                    after = page[-1].item_id
                    await submit_wait(h, [_key(it) for it in page])
                    n += len(page)

            n = await while_running(daemon, connection, s, all_failed)
            views, mode = [], "failed"
        else:
            n = await while_running(daemon, connection, s, lambda h: h.reconcile())
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

    async def work(h: ObjectSyncHandle) -> RestoreView:
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
            plan = await h.plan_restore(side_to, batch)
            seen += len(plan)
            restorable += sum(c.restorable for c in plan)
            results: list[RestoreResult | None] = [None] * len(plan)
            if yes and any(c.restorable for c in plan):
                done = await h.apply_restore(plan)
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

    async def work(h: ObjectSyncHandle) -> ReviewView:
        rows: list[ReviewRowView] = []
        handled: set[int] = set()
        while True:
            # Refused and failed ones stay parked: go on past them.
            parked = [p for p in await store.read(reports.parked, sid, ids)
                      if p.item.item_id not in handled][:STEP]
            if not parked:
                break
            results = await h.resolve_parked(parked, action == "approve")
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
