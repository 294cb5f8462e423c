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
from datetime import UTC, date, datetime, time
from typing import Any

from crmsync.engine import hub_values_held
from crmsync.runtime.association_waits import queued_here
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


def wire_forms(value: Any) -> set[str]:
    """The strings HubSpot may report for a value we wrote: the value itself, and for a date
    (written as YYYY-MM-DD or midnight-UTC epoch ms; fact sheet §7: "Dates are midnight-UTC
    epoch ms or ISO") its other renderings, since HubSpot stores a date as an instant and
    reports that (the emulator: ISO 8601 with milliseconds)."""
    text = _wire(value)
    out = {text}
    day: date | None = None
    try:
        if len(text) == 10 and text[4] == "-" and text[7] == "-":
            day = date.fromisoformat(text)
        elif text.isdigit() and len(text) >= 12:
            instant = datetime.fromtimestamp(int(text) / 1000, tz=UTC)
            if instant.time() == time(0):
                day = instant.date()
    except (ValueError, OverflowError, OSError):
        return out
    if day is not None:
        midnight = datetime(day.year, day.month, day.day, tzinfo=UTC)
        out |= {day.isoformat(), f"{day.isoformat()}T00:00:00Z",
                f"{day.isoformat()}T00:00:00.000Z", str(int(midnight.timestamp() * 1000))}
    return out


def _in_sync(ctx: ObjectSyncContext, it: Item | None) -> bool:
    # `queued` by these very events, which came while a sync of the record ran
    # (`queued_here`; the worker puts it back in sync when it drops them). One queued after a
    # failure, or before this process started, still needs its sync.
    return (it is not None and it.snapshot is not None and it.linked
            and (it.state == "syncing" or queued_here(ctx, it))
            and it.intent is None and not it.creating and not it.deleted_side)


async def echoes(ctx: ObjectSyncContext, said: Sequence[tuple[int, Reported]]) -> set[int]:
    """The inbox ids among `said` whose event brings nothing: about a hub record linked and in
    sync, its creation, a property value its snapshot holds
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
        for obj, rids in partners.items():
            # An association write of a sync not committed yet (its intent recorded): what
            # was seen is about to change, so an event of that pair is no echo of it.
            for intent in store_assoc.intents_of(conn, ctx.connection, ctx.hub_object, obj,
                                                 "hub", sorted(rids)):
                seen[obj].pop(intent[1], None)
        return items, seen

    items, seen = await ctx.store.read(look)
    # Properties read as dates: HubSpot may report another rendering of the date we wrote.
    dated = {p for r in ctx.rules.fields if r.kind in ("date", "datetime") for p in r.hub_props}
    out: set[int] = set()
    # A creation event of a record linked and in sync brings nothing: its values come as
    # property changes, told apart below (an app deletion is the app feeds' to see).
    for inbox_id, r in said:
        it = items.get(r.record_id)
        if not _in_sync(ctx, it):
            continue
        assert it is not None
        snap = decode_snapshot(it.snapshot)
        if snap is None:
            continue
        if r.kind == "creation":
            out.add(inbox_id)
        elif r.kind == "propertyChange" and r.property is not None:
            held = hub_values_held(ctx.rules, snap, r.property)
            if held == {}:
                out.add(inbox_id)  # a property the sync does not read
            elif (held is not None and r.property in held and r.value is not None
                    and r.value in {value_digest(v) for v in (
                        wire_forms(held[r.property]) if r.property in dated
                        else {_wire(held[r.property])})}):
                out.add(inbox_id)
        elif (r.kind == "associationChange" and r.partner_object in seen
                and r.partner_id is not None):
            pairs_seen = seen[r.partner_object or ""]
            if r.record_id not in pairs_seen:
                continue  # a write of that pair under way
            there = r.partner_id in pairs_seen[r.record_id]
            if there != r.removed:
                out.add(inbox_id)
    return out
