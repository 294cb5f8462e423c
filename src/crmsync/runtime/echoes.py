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

from crmsync.engine import reported_unchanged
from crmsync.runtime.context import ObjectSyncContext
from crmsync.runtime.encoding import decode_snapshot
from crmsync.runtime.intake import Reported
from crmsync.store import associations as store_assoc
from crmsync.store import items as store_items
from crmsync.store.items import Item


def _in_sync(it: Item | None) -> bool:
    # Not `queued`: that state is left by this very sync's commit, which would not come.
    return (it is not None and it.snapshot is not None and it.linked
            and it.state == "syncing" and it.intent is None
            and not it.creating and not it.deleted_side)


async def echoes(ctx: ObjectSyncContext, said: Sequence[tuple[int, Reported]]) -> set[int]:
    """The inbox ids among `said` whose event brings nothing: about a hub record linked and in
    sync, its creation (synced since), a property value its snapshot holds
    (`engine.reported_unchanged`: our own write, or a property the sync does not read), an
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
    # Per record, the property values its events report; a property reported with two
    # values is left out (which is newer is not known here), so no echo is told from it.
    values: dict[str, dict[str, set[str | None]]] = {}
    for _, r in said:
        if r.kind == "propertyChange" and r.property is not None:
            values.setdefault(r.record_id, {}).setdefault(r.property, set()).add(r.value)
    reported = {rid: {p: next(iter(v)) for p, v in props.items() if len(v) == 1}
                for rid, props in values.items()}
    out: set[int] = set()
    for inbox_id, r in said:
        it = items.get(r.record_id)
        if not _in_sync(it):
            continue
        assert it is not None
        snap = decode_snapshot(it.snapshot)
        if snap is None:
            continue
        if r.kind == "creation":
            out.add(inbox_id)
        elif r.kind == "propertyChange" and r.property is not None:
            if reported_unchanged(ctx.rules, snap, r.property, reported[r.record_id]):
                out.add(inbox_id)
        elif (r.kind == "associationChange" and r.partner_object in seen
                and r.partner_id is not None):
            held = r.partner_id in seen[r.partner_object or ""].get(r.record_id, set())
            if held != r.removed:
                out.add(inbox_id)
    return out
