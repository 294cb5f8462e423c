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

from crmsync.engine import KeyProblem, match_keys
from crmsync.engine.stages import StageProblem
from crmsync.engine.transforms import InvalidValue
from crmsync.engine.types import FieldChange, Snapshot
from crmsync.records import Record, Side, other
from crmsync.runtime.context import ObjectSyncContext
from crmsync.runtime.loader import read_records
from crmsync.runtime.processor import decode_snapshot
from crmsync.store import deletes as store_deletes
from crmsync.store import items as store_items
from crmsync.store.items import KEEP, HistoryEntry, Item, Outcome
from crmsync.store.reports import ParkedDelete

_changes_enc = msgspec.json.Encoder()


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


def can_write(ctx: ObjectSyncContext, side: str) -> bool:
    return ctx.rules.can_write_hub if side == "hub" else ctx.rules.can_write_app


def restore_values(ctx: ObjectSyncContext, to: Side, source: Record | None,
                   snapshot: Snapshot | None) -> tuple[dict[str, Any], list[FieldChange]]:
    """The properties to create on `to`: per mapped field, the surviving record's value where
    the field may flow to `to`, else (or when it is empty) the value the deleted record held
    according to the snapshot."""
    src = other(to)
    held = (snapshot.hub if to == "hub" else snapshot.app) if snapshot is not None else {}
    values: dict[str, Any] = {}
    changes: list[FieldChange] = []
    for r in ctx.rules.fields:
        flows = r.to_hub if to == "hub" else r.to_app
        value = None
        winner: Side = to
        if flows and source is not None:
            try:
                value = (r.read_hub if src == "hub" else r.read_app)(source.properties)
                winner = src
            except (InvalidValue, StageProblem):
                value = None
        if value is None:
            value = held.get(r.name)
            winner = to
        if value is None:
            continue
        try:
            values.update(r.write_hub(value) if to == "hub" else r.write_app(value))
        except (InvalidValue, StageProblem):
            continue
        changes.append(FieldChange(r.name, to, None, value, winner, "new_record"))
    return values, changes


async def plan_restore(ctx: ObjectSyncContext, to: Side,
                       items: Sequence[Item]) -> list[RestoreCandidate]:
    """What restoring `items` on `to` would do (reads the surviving records; writes nothing)."""
    src = other(to)
    source_ids = [i for it in items if (i := it.record_id(src))]
    survivors = await read_records(ctx, src, source_ids)
    out: list[RestoreCandidate] = []
    for it in items:
        sid = it.record_id(src)

        def no(reason: str, it: Item = it, sid: str | None = sid) -> RestoreCandidate:
            return RestoreCandidate(item=it, to=to, restorable=False, reason=reason,
                                    source_id=sid)

        if it.state != "deleted":
            out.append(no(f"not deleted (state {it.state})"))
        elif it.deleted_side == "both":
            out.append(no("deleted on both sides: no record left to restore from"))
        elif it.deleted_side != to:
            out.append(no(f"deleted on {it.deleted_side or 'an unknown side'}, not on {to}"))
        elif not can_write(ctx, to):
            out.append(no(f"the object sync's direction ({ctx.rules.direction}) never writes "
                          f"to {to}"))
        elif sid is None and it.snapshot is not None:
            # A linked app record deleted too, its id since given to another record.
            out.append(no(f"the {src} record is gone too"))
        elif sid is None:
            out.append(no(f"it never had a {src} record to restore from"))
        elif sid not in survivors:
            out.append(no(f"the {src} record {sid} is gone too"))
        elif src == "app" and it.app_incarnation not in (None,
                                                         survivors[sid].incarnation):
            # The app gave the id of a deleted record to a new one (connectors/base.py).
            out.append(no(f"the {src} record {sid} was deleted; its id names another record"))
        else:
            values, changes = restore_values(ctx, to, survivors[sid],
                                             decode_snapshot(it.snapshot))
            if not values:
                out.append(no("no mapped value to restore"))
            else:
                out.append(RestoreCandidate(item=it, to=to, restorable=True, source_id=sid,
                                            values=values, changes=changes))
    return out


def _keys(ctx: ObjectSyncContext, side: Side, props: dict[str, Any]) -> tuple[str, ...]:
    try:
        return match_keys(ctx.rules, side, props)
    except KeyProblem:
        return ()


async def _find_existing(ctx: ObjectSyncContext, side: Side,
                         values: dict[str, Any]) -> Record | None:
    """A record on `side` holding the match key of `values` and linked to nothing: where an
    earlier restore's create landed although its answer was lost."""
    names = ctx.rules.hub_key_props if side == "hub" else ctx.rules.app_key_fields
    # Companies: domain before name (the stronger key), as the processor heals.
    for name in reversed(names) if ctx.rules.match == "company" else names:
        v = values.get(name)
        if v in (None, ""):
            continue
        for rec in await ctx.connector(side).find(ctx.object_name(side), name, str(v),
                                                  ctx.properties(side)):
            held = await ctx.store.read(store_items.find_item, ctx.sync_id, side, rec.id)
            if held is None or held.record_id(other(side)) is None:
                return rec
        return None
    return None


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
    """Steps 2-4 for candidates whose records are held: returns the records made (or found
    from an earlier attempt) per item id, and those found."""
    # 2. heal an earlier attempt, then commit the intents.
    found: dict[int, Record] = {}
    for c in todo:
        if c.item.creating == to:
            rec = await _find_existing(ctx, to, c.values)
            if rec is not None:
                found[c.item.item_id] = rec
    intents = [Outcome(item_id=c.item.item_id, state=c.item.state, category=c.item.category,
                       detail=c.item.detail, deleted_side=c.item.deleted_side, creating=to)
               for c in todo if c.item.item_id not in found]
    if intents:
        await ctx.store.call(store_items.apply_outcomes, ctx.sync_id, intents)
    # 3. create.
    creates = [c for c in todo if c.item.item_id not in found]
    made: dict[int, Record] = dict(found)
    errors: dict[int, tuple[str, str]] = {}
    if creates:
        written = await ctx.writer(to).create([c.values for c in creates])
        for c, res in zip(creates, written, strict=True):
            if res.ok and res.record is not None:
                made[c.item.item_id] = res.record
                continue
            err = res.error
            if err is not None and err.existing_id:
                holder = await ctx.store.read(store_items.find_item, ctx.sync_id, to,
                                              err.existing_id)
                if holder is None or holder.record_id(other(to)) is None:
                    got = await read_records(ctx, to, [err.existing_id])
                    if err.existing_id in got:
                        made[c.item.item_id] = got[err.existing_id]
                        found[c.item.item_id] = got[err.existing_id]
                        continue
                errors[c.item.item_id] = ("duplicate", f"{to} record {err.existing_id} has the "
                                                       "same match key and is linked already")
                continue
            errors[c.item.item_id] = ((err.category, err.message) if err is not None
                                      else ("internal", "the create failed without an error"))
    # 4. commit ids, keys, history; unpark.
    outcomes: list[Outcome] = []
    releases: list[str] = []
    unpark: list[int] = []
    for c in todo:
        iid = c.item.item_id
        old_id = c.item.record_id(to)
        if iid in made:
            rec = made[iid]
            new_keys = _keys(ctx, to, rec.properties) or _keys(ctx, to, c.values)
            how = "linked to the existing" if iid in found else "re-created as"
            detail = f"restored on {to}: {how} {to} record {rec.id}"
            if old_id:
                releases.append(old_id)
            hub_id = rec.id if to == "hub" else c.item.hub_id
            app_id = rec.id if to == "app" else c.item.app_id
            outcomes.append(Outcome(
                item_id=iid, state="pending", detail=detail,
                hub_id=rec.id if to == "hub" else KEEP, app_id=rec.id if to == "app" else KEEP,
                claim=tuple((to, k, rec.id) for k in new_keys),
                history=HistoryEntry("restore", _changes_enc.encode(c.changes), detail,
                                     hub_id, app_id)))
            unpark.append(iid)
        else:
            cat, msg = errors.get(iid, ("internal", "not created"))
            outcomes.append(Outcome(
                item_id=iid, state=c.item.state, category=c.item.category,
                detail=c.item.detail, deleted_side=c.item.deleted_side,
                history=HistoryEntry("fail", b"[]", f"restore on {to} failed: {cat}: {msg}",
                                     c.item.hub_id, c.item.app_id)))
            results[iid] = RestoreResult(item_id=iid, outcome="failed",
                                         detail=f"{cat}: {msg}")

    def commit(conn: sqlite3.Connection) -> None:
        for rid in releases:
            store_items.release_keys(conn, ctx.sync_id, to, rid)
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
            detail = f"deleted on {p.deleted_side}; kept on {target} after review"
            outcomes.append(Outcome(
                item_id=p.item.item_id, state="deleted", detail=detail,
                deleted_side=p.deleted_side,
                history=HistoryEntry("ignore_delete", b"[]", detail, p.item.hub_id,
                                     p.item.app_id)))
            done.append(p.item.item_id)
            results[p.item.item_id] = ReviewResult(item_id=p.item.item_id, outcome="kept",
                                                   detail=detail)
        elif not can_write(ctx, target):
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
                detail = f"deleted on {p.deleted_side}; deleted on {gone_side} too after review"
                outcomes.append(Outcome(
                    item_id=iid, state="deleted", category="propagated", detail=detail,
                    deleted_side="both",
                    history=HistoryEntry("delete", b"[]", detail, p.item.hub_id,
                                         p.item.app_id)))
                done.append(iid)
                results[iid] = ReviewResult(item_id=iid, outcome="deleted", detail=detail)
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
