"""Carrying out a batch's creates, for the processor (records synced to the other side) and
for restore (records an operator restores), in one order:

1. **intent** — before a create is sent, its item records that it creates on that side
   (`creating`), with what the sync is about to write; committed first, so that a crash
   between the create and the commit of its id is healed by matching, never by a second
   create (DESIGN.md "Durability and restarts");
2. **heal** — a create whose item says an earlier attempt created on that side looks for that
   record by the match key it was sent with before anything is sent again;
3. **create** — through the object sync's batch writer;
4. **conflict handling** — a create refused because the record exists there (HubSpot's 409
   with the existing id) takes that record, or fails as a duplicate;
5. **commit** — the caller commits its outcomes (the processor with the decisions' snapshots
   and history, restore with the relinked ids).

Which found or existing record a create may take is the engine's rule
(`engine.matching.may_take_found` / `refuse_existing`), which depends on who creates.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import trio

from crmsync.connectors.base import CreateKey, WriteResult
from crmsync.engine.matching import (
    Creator,
    Holder,
    existing_unreadable,
    may_take_found,
    refuse_existing,
    search_key,
)
from crmsync.records import Record, Side, other
from crmsync.runtime.context import ObjectSyncContext
from crmsync.runtime.create_healing import find_by_keys, index_lag
from crmsync.runtime.encoding import decode_intent
from crmsync.runtime.reads import read_records
from crmsync.store import items as store_items
from crmsync.store.items import Item, Outcome

T = TypeVar("T")


@dataclass(eq=False)
class PlannedCreate:
    """One create of a batch and what became of it."""

    side: Side
    values: dict[str, Any]
    # The item it creates for (None: a record first seen, its item made by the intent).
    item: Item | None = None
    # The record it is created from (None for a restore: it restores a deleted one).
    own_id: str | None = None
    # Whether a refusal naming an existing record may take it (a sync takes it once).
    take_existing: bool = True
    # --- what became of it
    record: Record | None = None
    # The record was there already: an earlier attempt's (heal) or the one the create was
    # refused for.
    taken: bool = False
    error: tuple[str, str] | None = None


def holder_of(it: Item | None, side: Side, record_id: str) -> Holder | None:
    """The record `record_id` of `side` as matching sees it through its item."""
    if it is None:
        return None
    return Holder(record_id, it.record_id(other(side)), it.state, it.category)


async def find_created(ctx: ObjectSyncContext, side: Side, values: dict[str, Any],
                       accept: Callable[[Holder | None], bool]) -> Record | None:
    """A record of `side` holding the match key of `values` (`engine.matching.search_key`)
    that `accept` takes, judged by its item. An item holding the id of a found app record
    of another incarnation lets go of the id first (`detach_reused`)."""
    key = search_key(ctx.rules, side, values)
    if key is None:
        return None
    found = await ctx.connector(side).find(ctx.object_name(side), key[0], key[1],
                                           ctx.properties(side))
    for rec in found:
        held = await ctx.store.read(store_items.find_item, ctx.sync_id, side, rec.id)
        if side == "app" and held is not None and await detach_reused(ctx, held, rec):
            held = None
        if accept(holder_of(held, side, rec.id)):
            return rec
    return None


async def detach_reused(ctx: ObjectSyncContext, held: Item, rec: Record) -> bool:
    """Whether `held`, the item holding app record `rec`'s id, held a record the app deleted
    and whose id it gave to `rec` (another incarnation; it may be the record a create of ours
    made). Then that item lets go of the id, committed at once (queued until its deletion is
    decided, `store.items.detach_app_records`), and `rec` is new to the sync, as
    `loader.detach_reused` does in a load: without it, the commit linking `rec` to our create
    is refused and the create sent a second time."""
    if held.app_incarnation is None or held.app_incarnation == rec.incarnation:
        return False
    await ctx.store.call(store_items.detach_app_records, ctx.sync_id, [held.item_id])
    ctx.log.info("app record deleted, its id reused: the link ends", item_id=held.item_id,
                 hub_id=held.hub_id, app_id=held.app_id)
    return True


async def find_many_created(ctx: ObjectSyncContext, side: Side,
                            wanted: Sequence[dict[str, Any]],
                            accept: Callable[[Holder | None], bool]) -> list[Record | None]:
    """`find_created` for many creates at once, per entry of `wanted`: a connector that looks
    many values up in one call (`SupportsFindMany`) is asked once per key field, any other
    once per value (`create_healing.find_by_keys`); their items are read in one store call
    (issue 16 item 2)."""
    keys = [search_key(ctx.rules, side, values) for values in wanted]
    hits = await find_by_keys(ctx.connector(side), ctx.object_name(side),
                              [CreateKey(k[0], k[1]) for k in keys if k is not None],
                              ctx.properties(side))
    seen = list(dict.fromkeys(r.id for recs in hits.values() for r in recs))
    items = (await ctx.store.read(store_items.find_items, ctx.sync_id, side, seen)
             if seen else {})
    out: list[Record | None] = []
    detached: set[str] = set()
    for key in keys:
        pick = None
        for rec in hits.get(key, []) if key is not None else []:
            # An item holding the id of a found app record of another incarnation lets go of
            # the id first (`detach_reused`, as in `find_created`).
            held = None if rec.id in detached else items.get(rec.id)
            if side == "app" and held is not None and await detach_reused(ctx, held, rec):
                detached.add(rec.id)
                held = None
            if accept(holder_of(held, side, rec.id)):
                pick = rec
                break
        out.append(pick)
    return out


async def heal(ctx: ObjectSyncContext, creator: Creator, creates: Sequence[PlannedCreate],
               wall_clock: Callable[[], float]) -> None:
    """Step 2: a create whose item records an earlier attempt's create on its side takes the
    record that attempt made, if it is found (`record`, `taken`). `wall_clock`: epoch
    seconds, the clock intents are stamped with. All of them are looked up together, per
    side: one wait for the index lag, one look-up per key field (`find_many_created`)."""
    by_side: dict[Side, list[PlannedCreate]] = {"hub": [], "app": []}
    for c in creates:
        if c.item is not None and c.item.creating == c.side:
            by_side[c.side].append(c)
    for side, todo in by_side.items():
        if not todo:
            continue
        intents = [decode_intent(c.item.intent) if c.item is not None
                   and c.item.intent is not None else None for c in todo]
        # A search only sees a record some time after it was written (HubSpot's index
        # lags): look only once that time has passed since the last of these creates was
        # sent (+1 s: the intent's time was taken just before the create was sent).
        lag = index_lag(ctx.connector(side))
        sent_at = [i.at for i in intents if i is not None]
        if sent_at and lag > 0:
            wait = max(sent_at) + lag + 1.0 - wall_clock()
            if wait > 0:
                await trio.sleep(wait)
        # By the key the create was sent with (the source record's key may have changed
        # since), then by the key it would be sent with now.
        rounds: list[list[tuple[PlannedCreate, dict[str, Any]]]] = [
            [(c, i.create_keys) for c, i in zip(todo, intents, strict=True)
             if i is not None and i.create_keys],
            [(c, c.values) for c in todo]]
        for entries in rounds:
            entries = [(c, v) for c, v in entries if not c.taken]
            if not entries:
                continue
            found = await find_many_created(ctx, side, [v for _, v in entries],
                                            lambda h: may_take_found(creator, h))
            for (c, _), rec in zip(entries, found, strict=True):
                if rec is not None:
                    c.record, c.taken = rec, True


async def commit_intents(ctx: ObjectSyncContext, outcomes: Sequence[Outcome],
                         marks: Sequence[tuple[int, bytes | None, str]] = (),
                         then: Callable[[sqlite3.Connection], T] | None = None
                         ) -> tuple[dict[int, str], T | None]:
    """Step 1, in one transaction: `outcomes` (items made for records first seen, or items
    recorded whole), each left out if it breaks a unique constraint (its record has an item
    now: nothing may be sent for it), then `marks` (item id, intent, creating side) and
    `then(conn)`. Returns the left-out outcomes' positions with the reason, and `then`'s
    answer."""

    def commit(conn: sqlite3.Connection) -> tuple[dict[int, str], T | None]:
        refused = (store_items.apply_outcomes_apart(conn, ctx.sync_id, outcomes)
                   if outcomes else {})
        if marks:
            store_items.set_intents(conn, marks)
        return refused, then(conn) if then is not None else None

    return await ctx.store.call(commit)


async def send_creates(ctx: ObjectSyncContext, creator: Creator, side: Side,
                       creates: Sequence[PlannedCreate]) -> None:
    """Steps 3 and 4: send `creates` on `side` through its batch writer; each ends with the
    record made (`record`), the existing record it takes (`record`, `taken`) or an error."""
    if not creates:
        return
    results = await ctx.writer(side).create([c.values for c in creates])
    for c, res in zip(creates, results, strict=True):
        if res.ok and res.record is not None:
            c.record = res.record
            continue
        err = res.error
        if err is None or not err.existing_id or not c.take_existing:
            c.error = _error(res)
            continue
        eid = err.existing_id
        it = await ctx.store.read(store_items.find_item, ctx.sync_id, side, eid)
        own_item = (c.item is not None and it is not None and it.item_id == c.item.item_id)
        refusal = refuse_existing(creator, side, eid, c.own_id, holder_of(it, side, eid),
                                  own_item)
        if refusal is not None:
            c.error = refusal
            continue
        rec = (await read_records(ctx, side, [eid])).get(eid)
        if rec is None:
            # Gone again before it could be read.
            c.error = existing_unreadable(creator, side, eid, _error(res))
            continue
        c.record, c.taken = rec, True


def _error(res: WriteResult) -> tuple[str, str]:
    if res.error is None:
        return ("internal", "the write failed without an error")
    return (res.error.category, res.error.message)
