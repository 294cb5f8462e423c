"""Read-mostly queries for operators (`crmsync ctl`): records by id on either side, deleted and
parked records, the footprint of an object sync, and everything `status` shows in one call.

Like every store module, each function is a unit of work `fn(conn, ...)` run by
`store.read` / `store.call`; none of them commits.
"""

from __future__ import annotations

import sqlite3

import msgspec

from crmsync.store import deletes as store_deletes
from crmsync.store import inbox as store_inbox
from crmsync.store import initial as store_initial
from crmsync.store import items as store_items
from crmsync.store.initial import InitialSync
from crmsync.store.items import Item

# Tables holding per-object-sync bookkeeping (what `items.drop_sync` clears), with the
# column naming the object sync.
SYNC_TABLES = ("items", "match_keys", "history", "cursors", "initial_syncs", "plan",
               "parked_deletes", "sent_events", "event_counts")


def find_record(conn: sqlite3.Connection, sync_id: str, record_id: str,
                side: str = "") -> list[Item]:
    """The items holding `record_id` on `side` (or on either side when `side` is empty):
    at most one per side, hub first. Two results mean the id is ambiguous."""
    out: list[Item] = []
    for s in (side,) if side else ("hub", "app"):
        it = store_items.find_item(conn, sync_id, s, record_id)
        if it is not None and all(o.item_id != it.item_id for o in out):
            out.append(it)
    return out


def deleted_on(conn: sqlite3.Connection, sync_id: str, side: str, after_item: int = 0,
               limit: int = 500) -> tuple[list[Item], int | None]:
    """One page of deleted items whose record was deleted on `side` (not on both), by item
    id, and the `after_item` of the next page (None: no more)."""
    page = store_items.list_items(conn, sync_id, "deleted", None, limit, after_item)
    nxt = page[-1].item_id if len(page) == limit else None
    return [it for it in page if it.deleted_side == side], nxt


class ParkedDelete(msgspec.Struct, frozen=True):
    """A delete parked by `on_delete = "review"`: the side it happened on, the other side's
    record (still there) and the item."""

    item: Item
    deleted_side: str
    other_id: str
    parked_at: float


def parked(conn: sqlite3.Connection, sync_id: str, item_ids: list[int] | None = None,
           limit: int | None = None) -> list[ParkedDelete]:
    """Parked deletes (all, or those of `item_ids`), oldest first."""
    rows = store_deletes.parked(conn, sync_id)
    if item_ids is not None:
        wanted = set(item_ids)
        rows = [r for r in rows if r[0] in wanted]
    if limit is not None:
        rows = rows[:limit]
    out: list[ParkedDelete] = []
    for item_id, side, record_id, parked_at in rows:
        it = store_items.get_item(conn, item_id)
        if it is not None:
            out.append(ParkedDelete(it, side, record_id, parked_at))
    return out


def parked_count(conn: sqlite3.Connection, sync_id: str) -> int:
    return int(conn.execute("SELECT count(*) FROM parked_deletes WHERE sync_id = ?",
                            (sync_id,)).fetchone()[0])


def sync_ids_of(conn: sqlite3.Connection, connection: str) -> list[str]:
    """Every object sync id the store holds anything for under `connection` (also those no
    longer in the configuration)."""
    prefix = f"{connection}/"
    found: set[str] = set()
    for table in SYNC_TABLES:
        found.update(r[0] for r in conn.execute(
            f"SELECT DISTINCT sync_id FROM {table} WHERE substr(sync_id, 1, ?) = ?",
            (len(prefix), prefix)))
    return sorted(found)


def footprint(conn: sqlite3.Connection, sync_id: str) -> dict[str, int]:
    """Rows crmsync keeps for an object sync, per table (what `delete-sync` would drop)."""
    rows = {t: int(conn.execute(f"SELECT count(*) FROM {t} WHERE sync_id = ?",
                                (sync_id,)).fetchone()[0]) for t in SYNC_TABLES}
    rows["inbox"] = store_inbox.count_sources(conn, store_inbox.sources_of_sync(sync_id))
    return rows


class SyncReport(msgspec.Struct, frozen=True):
    """What `crmsync ctl status` needs from the store for one object sync."""

    sync_id: str
    counts: dict[str, int]
    parked: int
    initial: InitialSync | None
    webhook_backlog: int = 0


def status_report(conn: sqlite3.Connection, sync_ids: list[str]) -> dict[str, SyncReport]:
    """Counts per state, parked deletes, the initial sync's state and the webhook events
    waiting of each object sync, in one read transaction (a consistent picture)."""
    return {sid: SyncReport(sid, store_items.counts(conn, sid), parked_count(conn, sid),
                            store_initial.get_initial(conn, sid),
                            store_inbox.count_waiting(conn, store_inbox.sources_of_sync(sid)))
            for sid in sync_ids}
