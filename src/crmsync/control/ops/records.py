"""`crmsync ctl records` and `history`: an object sync's records by state, with the hint that
says what to do about each, optionally their mapped values read now; and a record's decisions,
field by field, with the side that won and why."""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING

import msgspec
import structlog

from crmsync.control.ops.lookup import OperationError, find_record, object_sync, store_of
from crmsync.control.ops.running import while_running
from crmsync.control.views import (
    MAX_PAGE,
    ChangeView,
    HistoryEntryView,
    RecordHistory,
    RecordsPage,
    RecordView,
)
from crmsync.engine.categories import hint_for
from crmsync.engine.types import FieldChange
from crmsync.runtime.context import sync_id_of
from crmsync.store import items as store_items
from crmsync.store.items import STATES, Item

if TYPE_CHECKING:  # types only: the control server passes the daemon in
    from crmsync.daemon.main import Daemon

log = structlog.get_logger("crmsync.control")


def _extra_hint(it: Item, connection: str, obj: str) -> str:
    h = hint_for(it.state, it.category)
    if h:
        return h
    rid = it.hub_id or it.app_id or str(it.item_id)
    if it.state == "deleted":
        if it.category == "pending_review":
            return (f"The delete waits for review: `crmsync ctl deletes approve|ignore "
                    f"{connection} {obj} --record {rid}`.")
        # (A linked record deleted in an app that reuses ids lets go of its app id: the
        # snapshot tells that it was linked.)
        if it.deleted_side in ("hub", "app") and it.snapshot is None and (
                it.hub_id is None or it.app_id is None):
            return (f"Deleted on {it.deleted_side} before it was linked: there is no record on "
                    "the other side to restore it from; nothing to do.")
        if it.deleted_side in ("hub", "app"):
            return (f"Deleted on {it.deleted_side}; the other side kept its record. Re-create "
                    f"it with `crmsync ctl restore-deleted {connection} {obj} --to "
                    f"{it.deleted_side} --record {rid}`.")
        return "Deleted on both sides: nothing is left to sync."
    if it.state == "queued":
        return "Waiting for a running sync of the same record; it clears by itself."
    if it.state == "pending":
        return "Not synced yet: the initial sync has not reached it (or waits for approval)."
    return ""


def record_view(it: Item, connection: str, obj: str) -> RecordView:
    return RecordView(item_id=it.item_id, hub_id=it.hub_id, app_id=it.app_id,
                      match_key=it.match_key, state=it.state, category=it.category,
                      hint=_extra_hint(it, connection, obj), detail=it.detail,
                      deleted_side=it.deleted_side, attempts=it.attempts,
                      updated_at=it.updated_at)


async def records(daemon: Daemon, connection: str, obj: str, state: str, category: str = "",
                  limit: int = 100, after: int = 0, values: bool = False) -> RecordsPage:
    """One page of an object sync's records in `state` (optionally of one category), by item
    id; `next_after` continues it. With `values`, each record also carries its mapped values,
    read now from one side (runtime/record_values.py: one batch read per side); if they
    cannot be read (the object sync is not running, a side fails), the page still comes,
    with `values_error` saying why."""
    sync = object_sync(daemon, connection, obj)
    if state not in STATES:
        raise OperationError("invalid", f"state must be one of {', '.join(STATES)}")
    limit = max(1, min(limit, MAX_PAGE))
    sid = sync_id_of(connection, sync.hub_object)

    def page(conn: sqlite3.Connection) -> tuple[list[Item], dict[str, int]]:
        return (store_items.list_items(conn, sid, state, category or None, limit, after),
                store_items.counts(conn, sid))

    items, counts = await store_of(daemon).read(page)
    views = [record_view(it, connection, sync.hub_object) for it in items]
    fields: list[str] = []
    values_error = ""
    if values:
        try:
            read, fields = await while_running(
                daemon, connection, sync, lambda h: h.read_values(items))
            views = [msgspec.structs.replace(v, values=read[v.item_id].values,
                                             values_side=read[v.item_id].side)
                     if v.item_id in read else v for v in views]
        except OperationError as exc:
            values_error = f"values not read: {exc.message}"
        except Exception as exc:  # a report's extra: the rows still come, the error is shown
            log.warning("record values not read", connection=connection,
                                 object=sync.hub_object, exc_info=True)
            values_error = f"values not read: {type(exc).__name__}: {exc}"
    return RecordsPage(
        connection=connection, hub_object=sync.hub_object, app_object=sync.app_object,
        state=state, category=category, total=counts.get(state, 0), records=views,
        next_after=items[-1].item_id if len(items) == limit else None, fields=fields,
        values_error=values_error)


_WHY = {
    "one_sided_change": "changed on {winner} only since the last sync",
    "conflict_winner": "changed on both sides; {winner} wins conflicts",
    "empty_winner": "changed on both sides; the winner's value was empty, so {winner}'s "
                    "value was kept",
    "first_pairing": "first pairing, the values differed; {winner} wins conflicts",
    "first_pairing_empty": "first pairing, empty on {side}: took {winner}'s value",
    "new_record": "record created on {side} from {winner}'s values",
    "first_pairing_one_way": "first pairing, the values differed; the field syncs one way, "
                             "{winner} → {side}, so {winner}'s value was copied (the "
                             "direction rule: conflict_winner applies to two-way fields only)",
    "conflict_one_way": "changed on both sides; the field syncs one way, {winner} → {side}, "
                        "so {winner}'s value was copied (the direction rule: conflict_winner "
                        "applies to two-way fields only)",
}


_changes_dec = msgspec.json.Decoder(list[FieldChange])


def _changes(blob: bytes) -> list[ChangeView]:
    try:
        changes = _changes_dec.decode(blob or b"[]")
    except msgspec.DecodeError:
        return []
    return [ChangeView(field=c.field, side=c.side, old=c.old, new=c.new, winner=c.winner,
                       reason=c.reason,
                       why=_WHY.get(c.reason, c.reason).format(winner=c.winner, side=c.side))
            for c in changes]


async def history(daemon: Daemon, connection: str, obj: str, record: str, side: str = "",
                  limit: int = 50) -> RecordHistory:
    """A record's decisions, newest first, with per field the old and new value, the side
    that won and why."""
    sync = object_sync(daemon, connection, obj)
    it = await find_record(daemon, sync, record, side)
    sid = sync_id_of(connection, sync.hub_object)
    rows = await store_of(daemon).read(store_items.history_for, sid, it.item_id,
                                     max(1, min(limit, MAX_PAGE)))
    return RecordHistory(
        connection=connection, hub_object=sync.hub_object,
        record=record_view(it, connection, sync.hub_object),
        entries=[HistoryEntryView(at=at, action=action, hub_id=h, app_id=a, detail=detail,
                                  changes=_changes(changes))
                 for at, h, a, action, changes, detail in rows])
