"""Operator repairs of deleted records: `restore-deleted` and the review of parked deletes.

Restore re-creates a record on the side it was deleted from, with the values of the surviving
record on the other side (where the mapping lets them flow there) completed by the values the
deleted record held in the link's snapshot, then relinks the pair:

1. plan: for each deleted item, read the surviving record and compute the values (`plan_restore`
   — what `crmsync ctl restore-deleted` lists without `--yes`);
2. commit a create intent (`creating = side`) before sending the creates, so a crash between a
   create and the commit of its id is healed by matching on the match key, never by a second
   create (the same rule as the processor's);
3. create through the object sync's batch writer (a 409 "exists" pairs with that record unless
   another link holds it);
4. commit the new id in place of the deleted one — the link and its snapshot stay, so the
   pair goes on as a linked pair (filters, which only decide a record's first inclusion, do
   not apply again) — with the new record's match keys and a `restore` history entry, and
   unpark a parked delete;
5. submit the pair to the record lock queue and wait: a worker syncs it through the ordinary
   decision (snapshot vs both sides), so every rule (direction, winner) applies and the item
   ends `syncing`.

Steps 2-4 run under a hold of both records in the record lock queue: no worker syncs them
while their ids change, and a candidate whose item changed since the plan (linked again,
restored by someone else) is skipped. A change to the surviving record meanwhile waits
(`queued`) and is synced after the hold, re-reading both sides like the sync of step 5.

Parked deletes (`on_delete = "review"`) are approved (deleted on the other side where the
direction allows, state `deleted` on both sides) or ignored (the other side is left alone; the
item stays `deleted` on its side, restorable).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

import msgspec

from crmsync.engine.restore import (
    can_write,
    delete_approved,
    delete_kept,
    restore_failed,
    restored,
)
from crmsync.engine.restore import plan_restore as rules_plan
from crmsync.engine.types import FieldChange
from crmsync.records import Record, Side, other
from crmsync.runtime import processor, write_plan
from crmsync.runtime.context import ObjectSyncContext
from crmsync.runtime.encoding import decode_snapshot, store_outcome
from crmsync.runtime.reads import read_records
from crmsync.runtime.write_plan import PlannedCreate
from crmsync.store import deletes as store_deletes
from crmsync.store import items as store_items
from crmsync.store.items import Item, Outcome
from crmsync.store.reports import ParkedDelete


class RestoreCandidate(msgspec.Struct, frozen=True, kw_only=True):
    """One deleted item and what restoring it would do."""

    item: Item
    to: str
    restorable: bool
    reason: str = ""  # why not, when not restorable
    source_id: str | None = None  # the surviving record on the other side
    values: dict[str, Any] = {}  # what would be written on `to`
    changes: list[FieldChange] = []


class RestoreResult(msgspec.Struct, frozen=True, kw_only=True):
    item_id: int
    # restored (created) | relinked (an existing record with the match key) | failed | skipped
    outcome: str
    new_id: str | None = None
    detail: str = ""
    state: str = ""  # the item's state once the restore's sync ran


async def plan_restore(ctx: ObjectSyncContext, to: Side,
                       items: Sequence[Item]) -> list[RestoreCandidate]:
    """What restoring `items` on `to` would do (reads the surviving records; writes nothing).
    Which items can be restored, and with which values, is the engine's rule
    (`engine.restore.plan_restore`)."""
    src = other(to)
    source_ids = [i for it in items if (i := it.record_id(src))]
    survivors = await read_records(ctx, src, source_ids)
    out: list[RestoreCandidate] = []
    for it in items:
        sid = it.record_id(src)
        p = rules_plan(ctx.rules, it, to, survivors.get(sid) if sid else None,
                       decode_snapshot(it.snapshot))
        out.append(RestoreCandidate(item=it, to=to, restorable=p.restorable, reason=p.reason,
                                    source_id=sid, values=p.values, changes=p.changes))
    return out


class RecordLocks(Protocol):
    """How a restore keeps workers off its records and has them synced (the object sync's
    handle, through its lock queue)."""

    def hold(self, keys: Sequence[tuple[Side, str]]) -> AbstractAsyncContextManager[None]: ...

    async def resync(self, keys: Sequence[tuple[Side, str]]) -> None: ...


async def apply_restore(ctx: ObjectSyncContext, locks: RecordLocks,
                        candidates: Sequence[RestoreCandidate]) -> list[RestoreResult]:
    """Re-create and relink the restorable candidates (see the module docstring); returns one
    result per candidate. A failure of a whole API call propagates (the create intents stay
    committed, so trying again heals by matching)."""
    results: dict[int, RestoreResult] = {}
    todo = [c for c in candidates if c.restorable]
    for c in candidates:
        if not c.restorable:
            results[c.item.item_id] = RestoreResult(item_id=c.item.item_id, outcome="skipped",
                                                    detail=c.reason)
    if not todo:
        return [results[c.item.item_id] for c in candidates]
    to: Side = "hub" if todo[0].to == "hub" else "app"
    # Steps 2-4 under a hold of both records: no worker syncs them while their ids change.
    hold_keys: list[tuple[Side, str]] = []
    for c in todo:
        if (old := c.item.record_id(to)) is not None:
            hold_keys.append((to, old))
        if c.source_id is not None:
            hold_keys.append((other(to), c.source_id))
    made: dict[int, Record] = {}
    found: dict[int, Record] = {}
    async with locks.hold(hold_keys):
        fresh = {it.item_id: it for it in await ctx.store.read(
            _items_by_id, [c.item.item_id for c in todo])}
        for c in todo:
            if not _unchanged(c.item, fresh.get(c.item.item_id)):
                results[c.item.item_id] = RestoreResult(
                    item_id=c.item.item_id, outcome="skipped",
                    detail="the record changed since the restore was planned; "
                           "run restore-deleted again")
        todo = [c for c in todo if _unchanged(c.item, fresh.get(c.item.item_id))]
        if todo:
            made, found = await _restore_held(ctx, to, todo, results)
    # 5. relink through the ordinary sync.
    keys: list[tuple[Side, str]] = [(to, made[c.item.item_id].id) for c in todo
                                    if c.item.item_id in made]
    if keys:
        await locks.resync(keys)
    after = {it.item_id: it for it in await ctx.store.read(
        _items_by_id, [c.item.item_id for c in todo if c.item.item_id in made])}
    for c in todo:
        iid = c.item.item_id
        if iid in made:
            it = after.get(iid)
            results[iid] = RestoreResult(
                item_id=iid, outcome="relinked" if iid in found else "restored",
                new_id=made[iid].id, detail=it.detail if it is not None else "",
                state=it.state if it is not None else "")
    return [results[c.item.item_id] for c in candidates]


def _unchanged(planned: Item, now: Item | None) -> bool:
    """The item is as the plan saw it (a sync asked for meanwhile may have marked it queued:
    that sync runs after the restore)."""
    def core(it: Item) -> tuple[Any, ...]:
        return (it.hub_id, it.app_id, it.snapshot, it.deleted_side, it.creating)
    return now is not None and core(now) == core(planned) and now.state in (planned.state,
                                                                            "queued")


async def _restore_held(ctx: ObjectSyncContext, to: Side, todo: list[RestoreCandidate],
                        results: dict[int, RestoreResult]
                        ) -> tuple[dict[int, Record], dict[int, Record]]:
    """Steps 2-4 for candidates whose records are held, through the write-plan executor
    (runtime/write_plan.py): returns the records made (or found from an earlier attempt) per
    item id, and those found."""
    plans = {c.item.item_id: PlannedCreate(to, c.values, item=c.item) for c in todo}
    # 2. heal an earlier attempt, then commit the intents.
    await write_plan.heal(ctx, "restore", list(plans.values()), lambda: processor.wall_clock())
    found: dict[int, Record] = {iid: p.record for iid, p in plans.items()
                                if p.taken and p.record is not None}
    intents = [Outcome(item_id=c.item.item_id, state=c.item.state, category=c.item.category,
                       detail=c.item.detail, deleted_side=c.item.deleted_side, creating=to)
               for c in todo if c.item.item_id not in found]
    if intents:
        await write_plan.commit_intents(ctx, intents)
    # 3. create (a create refused because the record exists takes it, unless it is linked).
    await write_plan.send_creates(ctx, "restore", to, [plans[c.item.item_id] for c in todo
                                                       if c.item.item_id not in found])
    made: dict[int, Record] = dict(found)
    errors: dict[int, tuple[str, str]] = {}
    for c in todo:
        p = plans[c.item.item_id]
        if c.item.item_id in found:
            continue
        if p.record is not None:
            made[c.item.item_id] = p.record
            if p.taken:
                found[c.item.item_id] = p.record
        else:
            errors[c.item.item_id] = p.error or ("internal", "not created")
    # 4. commit ids, keys, history; unpark.
    outcomes: list[Outcome] = []
    unpark: list[int] = []
    for c in todo:
        iid = c.item.item_id
        if iid in made:
            outcomes.append(store_outcome(restored(ctx.rules, c.item, to, made[iid], c.values,
                                                   iid in found, c.changes)))
            unpark.append(iid)
        else:
            cat, msg = errors.get(iid, ("internal", "not created"))
            outcomes.append(store_outcome(restore_failed(c.item, to, cat, msg)))
            results[iid] = RestoreResult(item_id=iid, outcome="failed",
                                         detail=f"{cat}: {msg}")

    def commit(conn: sqlite3.Connection) -> None:
        store_items.apply_outcomes(conn, ctx.sync_id, outcomes)
        for iid in unpark:
            store_deletes.unpark(conn, ctx.sync_id, iid)

    await ctx.store.call(commit)
    ctx.log.info("records restored", side=to, restored=len(made), failed=len(errors),
                 action="restore")
    return made, found


def _items_by_id(conn: sqlite3.Connection, item_ids: list[int]) -> list[Item]:
    return [it for i in item_ids if (it := store_items.get_item(conn, i)) is not None]


class ReviewResult(msgspec.Struct, frozen=True, kw_only=True):
    item_id: int
    # deleted (on the other side too) | kept (ignored) | refused | failed
    outcome: str
    detail: str = ""


async def resolve_parked(ctx: ObjectSyncContext, parked: Sequence[ParkedDelete],
                         approve: bool) -> list[ReviewResult]:
    """Approve parked deletes (delete the other side's record where the direction allows)
    or ignore them (leave it); either way the delete leaves the review list."""
    results: dict[int, ReviewResult] = {}
    outcomes: list[Outcome] = []
    done: list[int] = []
    to_delete: dict[str, list[ParkedDelete]] = {"hub": [], "app": []}
    for p in parked:
        target: Side = other("hub" if p.deleted_side == "hub" else "app")
        if not approve:
            kept = delete_kept(p.item, p.deleted_side, target)
            outcomes.append(store_outcome(kept))
            done.append(p.item.item_id)
            results[p.item.item_id] = ReviewResult(item_id=p.item.item_id, outcome="kept",
                                                   detail=kept.detail)
        elif not can_write(ctx.rules, target):
            results[p.item.item_id] = ReviewResult(
                item_id=p.item.item_id, outcome="refused",
                detail=f"the object sync's direction ({ctx.rules.direction}) never writes to "
                       f"{target}: ignore the delete instead")
        elif not p.other_id:
            results[p.item.item_id] = ReviewResult(
                item_id=p.item.item_id, outcome="refused",
                detail=f"no {target} record is known for this item")
        else:
            to_delete[target].append(p)
    for gone_side, group in to_delete.items():
        if not group:
            continue
        written = await ctx.writer(gone_side).archive([p.other_id for p in group])
        for p, res in zip(group, written, strict=True):
            iid = p.item.item_id
            if res.ok or (res.error is not None and res.error.category == "not_found"):
                approved = delete_approved(p.item, p.deleted_side, gone_side)  # type: ignore[arg-type]
                outcomes.append(store_outcome(approved))
                done.append(iid)
                results[iid] = ReviewResult(item_id=iid, outcome="deleted",
                                            detail=approved.detail)
            else:
                err = res.error
                msg = f"{err.category}: {err.message}" if err is not None else "failed"
                results[iid] = ReviewResult(item_id=iid, outcome="failed", detail=msg)

    def commit(conn: sqlite3.Connection) -> None:
        store_items.apply_outcomes(conn, ctx.sync_id, outcomes)
        for iid in done:
            store_deletes.unpark(conn, ctx.sync_id, iid)

    if outcomes or done:
        await ctx.store.call(commit)
    ctx.log.info("parked deletes reviewed", approve=approve,
                 resolved=len(done), action="delete" if approve else "ignore_delete")
    return [results[p.item.item_id] for p in parked]
