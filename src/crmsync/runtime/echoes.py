"""Hub events that bring nothing the store does not hold (issue 16).

HubSpot sends an event for every change, ours included: the creation of a record we created,
the values we wrote, the associations we made. Synced, each reads its record on both sides
(and its associations) to decide nothing. The worker asks here, holding the records' locks
(no other sync of them runs), which of the events it was given are echoes; a record whose
events are all echoes is not synced, and the events are marked done.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from crmsync.engine import hub_values_held
from crmsync.runtime.context import ObjectSyncContext
from crmsync.runtime.encoding import decode_snapshot
from crmsync.runtime.intake import Reported
from crmsync.runtime.overwritten import value_digest
from crmsync.store import associations as store_assoc
from crmsync.store import items as store_items
from crmsync.store.items import Item


def _wire(value: Any) -> str:
    # A hub property value as HubSpot reports it in an event: a string, "" when cleared.
    return "" if value is None else str(value)


def _in_sync(it: Item | None) -> bool:
    # Not `queued`: that state is left by this very sync's commit, which would not come.
    return (it is not None and it.snapshot is not None and it.linked
            and it.state == "syncing" and it.intent is None
            and not it.creating and not it.deleted_side)


async def echoes(ctx: ObjectSyncContext, said: Sequence[tuple[int, Reported]]) -> set[int]:
    """The inbox ids among `said` whose event brings nothing: about a hub record linked and in
    sync, a property value its snapshot holds
    (compared by digest with what `engine.hub_values_held` says: our own write), or one the
    sync does not read, an
    association that the last association sync saw as the event says it is now."""
    if not said:
        return set()
    ids = sorted({r.record_id for _, r in said})
    pairs = {p.hub_b for p in getattr(ctx.associations, "pairs", ())}
    partners: dict[str, set[str]] = {}
    for _, r in said:
        if r.kind == "associationChange" and r.partner_object in pairs:
            partners.setdefault(r.partner_object or "", set()).add(r.record_id)

    def look(conn: sqlite3.Connection) -> tuple[dict[str, Item], dict[str, Any]]:
        items = store_items.find_items(conn, ctx.sync_id, "hub", ids)
        seen = {obj: store_assoc.seen_pairs(conn, ctx.connection, "hub", ctx.hub_object, obj,
                                            sorted(rids))
                for obj, rids in partners.items()}
        return items, seen

    items, seen = await ctx.store.read(look)
    out: set[int] = set()
    # A creation event is not told an echo: its sync reads the app record too, and a test
    # with app polling off (test_e2e_identity) relies on that read to see an app deletion.
    for inbox_id, r in said:
        it = items.get(r.record_id)
        if not _in_sync(it):
            continue
        assert it is not None
        snap = decode_snapshot(it.snapshot)
        if snap is None:
            continue
        if r.kind == "propertyChange" and r.property is not None:
            held = hub_values_held(ctx.rules, snap, r.property)
            if held == {}:
                out.add(inbox_id)  # a property the sync does not read
            elif (held is not None and r.property in held and r.value is not None
                    and value_digest(_wire(held[r.property])) == r.value):
                out.add(inbox_id)
        elif (r.kind == "associationChange" and r.partner_object in seen
                and r.partner_id is not None):
            there = r.partner_id in seen[r.partner_object or ""].get(r.record_id, set())
            if there != r.removed:
                out.add(inbox_id)
    return out
