"""Turning record keys into Work: the items, both sides' current records, and partners found
by match key for records seen for the first time.

The worker never trusts an event's payload: it reads both sides' current records (in batches)
and compares them with the link's snapshot.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, cast

import msgspec

from crmsync.engine.matching import Duplicate
from crmsync.engine.outcome import record_keys
from crmsync.engine.pairing import Met, Paired, merge_fresh, pair_fresh, unlinked_side
from crmsync.engine.types import Snapshot
from crmsync.records import Record, Side, other
from crmsync.runtime.context import ObjectSyncContext
from crmsync.runtime.encoding import decode_snapshot
from crmsync.runtime.processor import Work
from crmsync.runtime.reads import hub_unchanged, read_records, reads_hub_from_index
from crmsync.store import items as store_items
from crmsync.store.items import Item

RecordKey = tuple[Side, str]
# An item no record id names any more (its app id let go of by `detach_reused` before a hub id
# was known: a create in the hub under way), synced by its item id: ("item", "<item id>").
ITEM = "item"


def item_key(item_id: int) -> tuple[str, str]:
    """The key that syncs this item by its id (see ITEM)."""
    return (ITEM, str(item_id))


class StoreView:
    """The store reads a load decided on, with their answers. A worker holding the item gate
    reads them again: another batch may have committed in between (its sync ended before
    this one entered the gate), and a decision on what the store no longer holds would
    create a record that is linked already."""

    def __init__(self) -> None:
        self._reads: list[tuple[Callable[..., Any], tuple[Any, ...], Any]] = []

    def run(self, conn: Any, fn: Callable[..., Any], *args: Any) -> Any:
        """`fn(conn, *args)`, remembered with its answer."""
        got = fn(conn, *args)
        self._reads.append((fn, args, _as_decided(got)))
        return got

    async def changed(self, ctx: ObjectSyncContext) -> bool:
        """Whether any of the reads answers differently now, in what a decision reads: an
        item shown `queued` meanwhile (another change of it came while it was being synced,
        store_items.mark_queued) is not a change — it is synced once more after this sync
        anyway — and reading both sides again for it cost HubSpot requests for nothing: a
        record much changed at once (a company as its contacts link) was read tens of
        times (issue 16)."""
        reads = list(self._reads)

        def again(conn: Any) -> bool:
            return any(_as_decided(fn(conn, *args)) != got for fn, args, got in reads)

        return bool(reads) and await ctx.store.read(again)


def _as_decided(answer: Any) -> Any:
    """A store answer without what no decision reads: an item's `queued` display state and
    the time it was set (see StoreView.changed)."""
    if isinstance(answer, Item):
        if answer.state == "queued" or answer.state == "syncing":
            return msgspec.structs.replace(answer, state="syncing", updated_at=0.0)
        return answer
    if isinstance(answer, dict):
        return {k: _as_decided(v) for k, v in answer.items()}
    if isinstance(answer, list):
        return [_as_decided(v) for v in answer]
    return answer


def _reader(view: StoreView | None) -> Callable[..., Any]:
    if view is None:
        return lambda conn, fn, *args: fn(conn, *args)
    return view.run


def keys_of(ctx: ObjectSyncContext, side: Side, rec: Record) -> tuple[str, ...]:
    """The match keys `rec` holds (`engine.outcome.record_keys`)."""
    return record_keys(ctx.rules, side, rec)


def _merge_fresh(works: list[Work]) -> list[Work]:
    """Two records first seen in one batch, one per side, with a match key in common are one
    pair (`engine.pairing.merge_fresh`): the hub record's work takes the app record (decided
    as a first pairing), so neither is created on the other side."""
    met = [Met(w.key_side, w.record_id(w.key_side), w.keys)
           if w.item is None and w.key_side is not None and w.record(w.key_side) is not None
           else None for w in works]
    merged = merge_fresh(met)
    if not merged:
        return works
    for i, j in merged.items():
        partner, w = works[j], works[i]
        assert w.app is not None
        partner.set_record("app", w.app)
        partner.payload.extend(w.payload)
        partner.paired_keys = w.keys
    return [w for i, w in enumerate(works) if i not in merged]


async def pair_new(ctx: ObjectSyncContext, works: list[Work],
                   view: StoreView | None = None) -> list[Work]:
    """Records not linked yet — first seen (no item) or seen before and never linked (a
    failed duplicate, a record excluded or failed before) — are matched again by the match
    keys they hold now (`engine.pairing.pair_fresh`): against the other records of this
    batch, then the index. A duplicate stays a duplicate whichever path brings it (poll,
    webhook, reconcile, resync) until its key changes; an unpaired partner pairs. Returns the
    works to sync."""
    works = _merge_fresh(works)
    for w in works:
        side = unlinked_side(w.item, w.hub is not None, w.app is not None)
        if side is not None:
            rec = w.record(side)
            assert rec is not None
            w.keys, w.key_side, w.rekey_own = keys_of(ctx, side, rec), side, True
    fresh = [w for w in works if (w.item is None or w.rekey_own) and w.keys
             and w.key_side is not None and (w.hub is None or w.app is None)]
    if not fresh:
        return works
    all_keys = list({k for w in fresh for k in w.keys})

    read = _reader(view)

    def lookup(conn: Any) -> tuple[dict[str, Item], dict[str, Item]]:
        return (read(conn, store_items.key_holders, ctx.sync_id, "hub", all_keys),
                read(conn, store_items.key_holders, ctx.sync_id, "app", all_keys))

    hub_holders, app_holders = await ctx.store.read(lookup)
    met = [Met(w.key_side, w.record_id(w.key_side), w.keys) for w in fresh
           if w.key_side is not None]
    items = {it.item_id: it for h in (hub_holders, app_holders) for it in h.values()}
    need: dict[Side, list[str]] = {"hub": [], "app": []}
    partners: list[tuple[Work, Item]] = []
    for w, found in zip(fresh, pair_fresh(met, hub_holders, app_holders), strict=True):
        if isinstance(found, Duplicate):
            w.duplicate_of = found.of
            w.keys = ()
        elif isinstance(found, Paired):
            partner = items[found.item_id]
            partners.append((w, partner))
            pid = partner.record_id(other(w.key_side))  # type: ignore[arg-type]
            if pid:
                need[other(w.key_side)].append(pid)  # type: ignore[arg-type]
    if not partners:
        return works
    recs = {s: await read_records(ctx, s, ids) for s, ids in need.items() if ids}
    for w, partner in partners:
        side = other(w.key_side)  # type: ignore[arg-type]
        pid = partner.record_id(side)
        rec = recs.get(side, {}).get(pid or "")
        if rec is None:
            if partner.creating != w.key_side or partner.intent is None:
                continue
            # The partner's record is gone, and a create from it to this side was cut short:
            # this record may be the one it made. Its sync decides (engine
            # effective_snapshot) whether it is, and then the pair's deletion; never a copy
            # of it made back where its source was deleted.
            w.item = partner
            if side == "hub":
                w.hub_id = pid
            else:
                w.app_id = pid
            continue
        w.item = partner
        w.set_record(side, rec)
    return works


async def detach_reused(ctx: ObjectSyncContext, items: Sequence[Item],
                        app_records: dict[str, Record]) -> dict[int, Item | None]:
    """Items whose app id now names another record than theirs (same id, another
    incarnation: the app deleted their record and gave its id to a new one) let go of that
    id, committed at once, so the record holding it goes through matching as a new record
    (connectors/base.py, "Record identity"). Returns them by item id: the item without its
    app record, whose sync decides the deletion, or None when there is nothing to decide
    (no hub record left in it nor one it may have created there, or already deleted)."""
    reused: dict[int, Item] = {}
    for it in items:
        rec = app_records.get(it.app_id or "")
        if (rec is not None and it.app_incarnation is not None
                and rec.incarnation != it.app_incarnation):
            reused[it.item_id] = it
    if not reused:
        return {}
    def commit(conn: Any) -> None:
        store_items.detach_app_records(conn, ctx.sync_id, list(reused))
        if ctx.associations is not None:
            # The record now holding the id has associations of its own, none seen yet.
            ctx.associations.forget_app_records(
                conn, [it.app_id for it in reused.values() if it.app_id])

    if ctx.associations is not None:
        async with ctx.associations.held():
            await ctx.store.call(commit)
    else:
        await ctx.store.call(commit)
    for it in reused.values():
        ctx.log.info("app record deleted, its id reused: the link ends", item_id=it.item_id,
                     hub_id=it.hub_id, app_id=it.app_id)
    return {i: (msgspec.structs.replace(it, app_id=None, app_incarnation=None)
                if (it.hub_id is not None or it.creating == "hub") and it.state != "deleted"
                else None)
            for i, it in reused.items()}


async def load(ctx: ObjectSyncContext, keys: Sequence[RecordKey | tuple[str, str]],
               payloads: Sequence[list[Any]] | None = None,
               view: StoreView | None = None,
               carried: list[int] | None = None) -> list[Work]:
    """Work for each key: its item and both records, read now. `view` collects the store
    reads it decided on.

    `carried` (item ids, kept by a caller that loads the same keys again): the items whose
    app id a load let go of (`detach_reused`, committed at once) are added to it, and every
    load syncs them too. Their app id no longer leads to them, and that very commit makes the
    load's view stale: without it, the load read again would leave their deletion undecided."""
    carried = carried if carried is not None else []
    by_side: dict[Side, list[str]] = {"hub": [], "app": []}
    named: list[tuple[RecordKey, list[Any]]] = []  # record keys, with their payloads
    by_item: dict[int, list[Any]] = {}  # payloads of keys naming an item (ITEM)
    for i, (side, rid) in enumerate(keys):
        payload = payloads[i] if payloads is not None else []
        if side != ITEM:
            rside = cast(Side, side)
            by_side[rside].append(rid)
            named.append(((rside, rid), payload))
        else:  # ITEM
            if int(rid) not in carried:
                carried.append(int(rid))
            by_item.setdefault(int(rid), []).extend(payload)
    read = _reader(view)

    def lookup(conn: Any) -> tuple[dict[Side, dict[str, Item]], list[Item]]:
        found = {s: read(conn, store_items.find_items, ctx.sync_id, s, ids)
                 for s, ids in by_side.items() if ids}
        return found, [k for i in carried
                       if (k := read(conn, store_items.get_item, i)) is not None]

    items, kept = await ctx.store.read(lookup)
    # One work per item even if both of its records were named.
    works: dict[Any, Work] = {}
    ids: dict[Side, list[str]] = {"hub": [], "app": []}
    for k in kept:
        if k.hub_id:
            ids["hub"].append(k.hub_id)
        if k.app_id:
            ids["app"].append(k.app_id)
    plan: list[tuple[RecordKey, Item | None, list[Any]]] = []
    # Linked hub records whose sync no hub event asked for (an app-side change): the
    # hub side is read from the search index where that is safe (reads.hub_unchanged).
    quiet: dict[str, Snapshot] = {}
    for (side, rid), payload in named:
        it = items.get(side, {}).get(rid)
        plan.append(((side, rid), it, payload))
        if it is not None:
            if it.hub_id:
                ids["hub"].append(it.hub_id)
            if it.app_id:
                ids["app"].append(it.app_id)
            if side == "app" and it.linked and it.hub_id and it.intent is None \
                    and not it.creating and not it.deleted_side:
                snap = decode_snapshot(it.snapshot)
                if snap is not None:
                    quiet[it.hub_id] = snap
        else:
            ids[side].append(rid)
    for hub_id in [*by_side["hub"], *(k.hub_id for k in kept if k.hub_id)]:
        quiet.pop(hub_id, None)
    recs: dict[Side, dict[str, Record]] = {}
    recs["hub"] = (await hub_unchanged(ctx, quiet)
                   if quiet and reads_hub_from_index(ctx) else {})
    recs["hub"].update(await read_records(ctx, "hub", [i for i in ids["hub"]
                                                       if i not in recs["hub"]]))
    recs["app"] = await read_records(ctx, "app", ids["app"])
    detached = await detach_reused(ctx, [it for side_items in items.values()
                                         for it in side_items.values()], recs["app"])
    carried.extend(i for i, gone in detached.items() if gone is not None and i not in carried)
    for k in kept:
        if k.item_id not in detached:
            works[("item", k.item_id)] = Work(item=k, hub=recs["hub"].get(k.hub_id or ""),
                                              app=recs["app"].get(k.app_id or ""),
                                              payload=list(by_item.get(k.item_id, ())))
    for (side, rid), it, payload in plan:
        if it is not None and it.item_id in detached:
            gone = detached[it.item_id]
            if gone is not None:
                # The item's own sync decides that its app record was deleted.
                w = works.get(("item", gone.item_id))
                if w is None:
                    w = works[("item", gone.item_id)] = Work(
                        item=gone, hub=recs["hub"].get(gone.hub_id or ""))
                if side == "hub":
                    w.payload.extend(payload)
                    continue
            if side == "hub":
                continue
            it = None  # the app id names a new record now
        if it is not None:
            key: Any = ("item", it.item_id)
            w = works.get(key)
            if w is None:
                w = works[key] = Work(item=it, hub=recs["hub"].get(it.hub_id or ""),
                                      app=recs["app"].get(it.app_id or ""))
            w.payload.extend(payload)
            continue
        rec = recs[side].get(rid)
        key = (side, rid)
        if rec is None:
            # Gone before we ever saw it: nothing to sync, but its events are handled.
            w = works.setdefault(key, Work(item=None))
            w.payload.extend(payload)
            continue
        w = works.get(key) or Work(item=None, keys=keys_of(ctx, side, rec), key_side=side)
        w.set_record(side, rec)
        w.payload.extend(payload)
        works[key] = w
    return await pair_new(ctx, list(works.values()), view)


def gate_ids(ctx: ObjectSyncContext, works: Sequence[Work]) -> set[Any]:
    """What a batch holds in the item gate: its items, and the match keys of every record it
    read. A record made by one batch (created from its partner, so with the partner's keys)
    can reach another batch before the first committed its link: the keys make the second
    wait for the first."""
    ids: set[Any] = {w.item.item_id for w in works if w.item is not None}
    sides: tuple[Side, Side] = ("hub", "app")
    for w in works:
        ids.update(("key", k) for k in w.keys)
        for side in sides:
            rec = w.record(side)
            if rec is not None:
                ids.update(("key", k) for k in keys_of(ctx, side, rec))
    return ids
