"""Records sent again only because an association of theirs waited for a partner (issue 16).

A partner's link commit sends such a record again (`AssociationSyncer.release_pending`, with
`ASSOCIATION_WAIT` riding along). Both ends of an association often wait for each other
while their object syncs link them at once; whichever is synced first decides the
association on both sides and answers the other's wait. So when such a record's turn comes:

- its wait was answered meanwhile (or the partner is not linked after all) and the record is
  in sync otherwise: nothing to do — no read of the record on both sides to decide a no-op;
- it still waits for a partner linked now and is in sync otherwise: only its associations
  are synced (`sync_links_only`), not its fields, which nothing said changed (a write that
  fails: synced whole, which reads it first and records the failure);
- anything else (it failed, is not linked, shows `queued` for another reason): synced whole.

A record shown `queued` only because this request came while a sync of it ran (linked, no
failure recorded, nothing under way, queued since this object sync started) counts as in
sync: that state says a sync is due, and this is the one.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Hashable, Sequence
from typing import TYPE_CHECKING

from crmsync.runtime.associations import ASSOCIATION_WAIT
from crmsync.runtime.context import ObjectSyncContext
from crmsync.store import items as store_items
from crmsync.store.items import Item

if TYPE_CHECKING:
    from crmsync.runtime.worker import ItemGate  # worker imports this module


def _in_sync(ctx: ObjectSyncContext, it: Item | None) -> bool:
    """In sync otherwise, or `queued` only for the request at hand (see the module doc)."""
    if it is None or not it.linked or it.snapshot is None or it.intent is not None:
        return False
    if it.creating or it.deleted_side:
        return False
    return it.state == "syncing" or queued_here(ctx, it)


def queued_here(ctx: ObjectSyncContext, it: Item) -> bool:
    """`queued` by a request of this process that came while a sync of the record ran, with
    no failure recorded: the sync it asked for is the one at hand. One queued before this
    object sync started is a sync that was due when the daemon stopped: it must run."""
    return it.state == "queued" and not it.category and it.updated_at >= ctx.started_at


def _items_of(conn: sqlite3.Connection, sync_id: str,
              keys: Sequence[Hashable]) -> dict[Hashable, Item]:
    """The items of these record keys ((side, id) each), by key; missing ones left out."""
    out: dict[Hashable, Item] = {}
    for side in ("hub", "app"):
        ids = [str(k[1]) for k in keys if isinstance(k, tuple) and k[0] == side]
        for rid, it in store_items.find_items(conn, sync_id, side, ids).items():
            out[(side, rid)] = it
    return out


async def sort_waits(ctx: ObjectSyncContext, units: Sequence[tuple[Hashable, list[object]]],
                     asked: set[Hashable]
                     ) -> tuple[set[Hashable], dict[Hashable, set[str]]]:
    """Of the keys in `units` sent for an association wait and nothing else asked for:
    (those to sync whole, those whose associations alone to sync, with the partner objects
    they wait for). The rest need no sync; those among them shown `queued` for this
    request are in sync again."""
    waits = [k for k, pl in units if k not in asked and any(p is ASSOCIATION_WAIT for p in pl)]
    if not waits:
        return set(), {}
    if ctx.associations is None:
        return set(waits), {}
    answerable = await ctx.associations.answerable(waits)

    def sort(conn: sqlite3.Connection) -> tuple[set[Hashable], dict[Hashable, set[str]]]:
        whole: set[Hashable] = set()
        links: dict[Hashable, set[str]] = {}
        back: list[int] = []
        found = _items_of(conn, ctx.sync_id, waits)
        for key in waits:
            it = found.get(key)
            if not _in_sync(ctx, it):
                whole.add(key)
            elif key in answerable:
                links[key] = answerable[key]
            elif it is not None and it.state == "queued":
                back.append(it.item_id)
        store_items.unqueue(conn, back)
        return whole, links

    return await ctx.store.call(sort)


async def sync_links_only(ctx: ObjectSyncContext, waits: dict[Hashable, set[str]],
                          gate: ItemGate) -> list[Hashable]:
    """Sync the associations of these records (from `sort_waits`: keys, with the partner
    objects whose associations to sync), not their fields, holding the item gate for their
    items. Returns the keys to sync whole after all: the record changed since `sort_waits`
    looked, or an association write of it failed."""
    keys = sorted(waits)  # type: ignore[type-var]

    def look(conn: sqlite3.Connection) -> dict[Hashable, Item]:
        return _items_of(conn, ctx.sync_id, keys)

    while True:
        items = await ctx.store.read(look)
        ids: set[Hashable] = {it.item_id for it in items.values()}
        busy = gate.busy(ids)
        if not busy:
            break
        for ev in busy:
            await ev.wait()
    gate.enter(ids)
    try:
        # Read again inside the gate: another worker's sync of one may have committed.
        items = await ctx.store.read(look)
        whole = [k for k in keys if not _in_sync(ctx, items.get(k))]
        todo = {k: it for k, it in items.items() if k not in whole}
        linked = list(dict.fromkeys((str(it.hub_id), str(it.app_id)) for it in todo.values()))
        incarnations = {str(it.app_id): it.app_incarnation for it in todo.values()
                        if it.app_incarnation is not None}
        only = {obj for k in todo for obj in waits[k]}
        failed = (await ctx.associations.sync_links(linked, incarnations, only=only)
                  if linked else {})

        # An association write refused: the record is synced whole, which reads it on both
        # sides first (the app may have given its id to another record since, which only a
        # read tells) and records the failure as a whole sync does.
        whole += [k for k, it in todo.items() if str(it.hub_id) in failed]
        await ctx.store.call(store_items.unqueue, [it.item_id for it in todo.values()
                                                   if str(it.hub_id) not in failed])
    finally:
        gate.leave(ids)
    return whole
