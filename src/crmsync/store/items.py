"""Sync items: the index of every record per object sync, links with snapshots, and states.

Every function takes the connection first and runs inside the caller's transaction (a store
call); none of them commits. Rows of a page are written with `executemany` where they can be.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Sequence

import msgspec

STATES = ("pending", "syncing", "failed", "excluded", "queued", "deleted")

# Marks "leave this column as it is" in an Outcome.
KEEP = msgspec.UNSET


class IndexRow(msgspec.Struct, frozen=True, array_like=True):
    """One record seen on one side: its id, match keys and version."""

    record_id: str
    keys: tuple[str, ...] = ()
    version: str = ""
    # When set, the record is excluded for this reason (no match key, filter...).
    excluded: str = ""
    detail: str = ""


class Item(msgspec.Struct, frozen=True):
    item_id: int
    sync_id: str
    hub_id: str | None
    app_id: str | None
    state: str
    category: str
    detail: str
    match_key: str
    # The link's snapshot as the runtime encoded it; the store does not read it.
    snapshot: bytes | None
    hub_version: str
    app_version: str
    deleted_side: str
    creating: str
    attempts: int
    updated_at: float

    @property
    def linked(self) -> bool:
        return self.snapshot is not None and self.hub_id is not None and self.app_id is not None


_ITEM_COLS = ("item_id, sync_id, hub_id, app_id, state, category, detail, match_key, snapshot, "
              "hub_version, app_version, deleted_side, creating, attempts, updated_at")


def _item(row: tuple) -> Item:
    return Item(row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7],
                row[8], row[9], row[10], row[11], row[12], row[13], row[14])


def get_item(conn: sqlite3.Connection, item_id: int) -> Item | None:
    row = conn.execute(f"SELECT {_ITEM_COLS} FROM items WHERE item_id = ?", (item_id,)).fetchone()
    return None if row is None else _item(row)


def find_item(conn: sqlite3.Connection, sync_id: str, side: str, record_id: str) -> Item | None:
    col = "hub_id" if side == "hub" else "app_id"
    row = conn.execute(f"SELECT {_ITEM_COLS} FROM items WHERE sync_id = ? AND {col} = ?",
                       (sync_id, record_id)).fetchone()
    return None if row is None else _item(row)


def find_items(conn: sqlite3.Connection, sync_id: str, side: str,
               record_ids: Sequence[str]) -> dict[str, Item]:
    """Items by record id of one side (missing ids are absent from the result)."""
    col = "hub_id" if side == "hub" else "app_id"
    out: dict[str, Item] = {}
    for start in range(0, len(record_ids), 500):
        chunk = list(record_ids[start:start + 500])
        marks = ",".join("?" * len(chunk))
        for row in conn.execute(
            f"SELECT {_ITEM_COLS} FROM items WHERE sync_id = ? AND {col} IN ({marks})",
            (sync_id, *chunk),
        ):
            it = _item(row)
            out[it.hub_id if side == "hub" else it.app_id] = it  # type: ignore[index]
    return out


def key_holder(conn: sqlite3.Connection, sync_id: str, side: str, keys: Iterable[str]) -> Item | None:
    """The item holding the first of `keys` that is taken on `side`."""
    for key in keys:
        row = conn.execute(
            f"SELECT {', '.join('i.' + c.strip() for c in _ITEM_COLS.split(','))} "
            "FROM match_keys k JOIN items i ON i.item_id = k.item_id "
            "WHERE k.sync_id = ? AND k.side = ? AND k.key = ?",
            (sync_id, side, key),
        ).fetchone()
        if row is not None:
            return _item(row)
    return None


def claim_keys(conn: sqlite3.Connection, sync_id: str, side: str, item_id: int,
               keys: Iterable[str]) -> None:
    conn.executemany(
        "INSERT OR IGNORE INTO match_keys (sync_id, side, key, item_id) VALUES (?, ?, ?, ?)",
        [(sync_id, side, k, item_id) for k in keys],
    )


def index_records(conn: sqlite3.Connection, sync_id: str, side: str,
                  rows: Sequence[IndexRow]) -> None:
    """Record one page of a side's index: new records as `pending` (or `excluded`), versions
    refreshed for known ones, match keys claimed first come, first served."""
    now = time.time()
    col = "hub_id" if side == "hub" else "app_id"
    vcol = "hub_version" if side == "hub" else "app_version"
    conn.executemany(
        f"INSERT INTO items (sync_id, {col}, state, category, detail, match_key, {vcol}, "
        "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
        f"ON CONFLICT (sync_id, {col}) WHERE {col} IS NOT NULL DO UPDATE SET "
        f"{vcol} = excluded.{vcol}",
        [(sync_id, r.record_id, "excluded" if r.excluded else "pending", r.excluded, r.detail,
          r.keys[0] if r.keys else "", r.version, now, now) for r in rows],
    )
    keyed = [r for r in rows if r.keys and not r.excluded]
    if keyed:
        ids = find_items(conn, sync_id, side, [r.record_id for r in keyed])
        conn.executemany(
            "INSERT OR IGNORE INTO match_keys (sync_id, side, key, item_id) VALUES (?, ?, ?, ?)",
            [(sync_id, side, k, ids[r.record_id].item_id) for r in keyed for k in r.keys],
        )


class Pairing(msgspec.Struct, frozen=True):
    """Where an app record stands after the app pass looked it up."""

    item: Item
    duplicate_of: str | None = None  # the app record already holding its match key


def pair_app_records(conn: sqlite3.Connection, sync_id: str,
                     rows: Sequence[IndexRow]) -> list[Pairing]:
    """The app pass for one page: pair each app record with the hub record of the same match
    key, or mark it a duplicate of the app record that claimed the key first, or index it
    alone. Idempotent: a record seen before returns its existing item."""
    now = time.time()
    out: list[Pairing] = []
    for r in rows:
        existing = find_item(conn, sync_id, "app", r.record_id)
        if existing is not None:
            dup = None
            if existing.category == "duplicate" and existing.state == "failed":
                holder = key_holder(conn, sync_id, "app", r.keys)
                dup = holder.app_id if holder is not None and holder.item_id != existing.item_id else None
            out.append(Pairing(existing, dup))
            continue
        if r.excluded:
            item_id = _insert(conn, sync_id, None, r.record_id, "excluded", r.excluded, r.detail,
                              r.keys, "", r.version, now)
            out.append(Pairing(get_item(conn, item_id)))  # type: ignore[arg-type]
            continue
        holder = key_holder(conn, sync_id, "app", r.keys)
        hub = key_holder(conn, sync_id, "hub", r.keys) if holder is None else None
        if holder is None and hub is not None and hub.app_id is not None:
            # The hub record is already paired with another app record through another key
            # (a company matched by name and by domain to two different app companies).
            holder = hub
        if holder is not None:
            item_id = _insert(conn, sync_id, None, r.record_id, "failed", "duplicate",
                              f"same match key as app record {holder.app_id}", (), "",
                              r.version, now, match_key=r.keys[0] if r.keys else "")
            out.append(Pairing(get_item(conn, item_id), holder.app_id))  # type: ignore[arg-type]
            continue
        if hub is not None:
            conn.execute("UPDATE items SET app_id = ?, app_version = ?, updated_at = ? "
                         "WHERE item_id = ?", (r.record_id, r.version, now, hub.item_id))
            claim_keys(conn, sync_id, "app", hub.item_id, r.keys)
            out.append(Pairing(get_item(conn, hub.item_id)))  # type: ignore[arg-type]
            continue
        item_id = _insert(conn, sync_id, None, r.record_id, "pending", "", "", r.keys, "",
                          r.version, now)
        out.append(Pairing(get_item(conn, item_id)))  # type: ignore[arg-type]
    return out


def _insert(conn: sqlite3.Connection, sync_id: str, hub_id: str | None, app_id: str | None,
            state: str, category: str, detail: str, keys: Sequence[str], hub_version: str,
            app_version: str, now: float, match_key: str | None = None) -> int:
    cur = conn.execute(
        "INSERT INTO items (sync_id, hub_id, app_id, state, category, detail, match_key, "
        "hub_version, app_version, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
        (sync_id, hub_id, app_id, state, category, detail,
         match_key if match_key is not None else (keys[0] if keys else ""), hub_version,
         app_version, now, now),
    )
    item_id = int(cur.lastrowid)  # type: ignore[arg-type]
    if keys:
        side = "hub" if hub_id is not None else "app"
        claim_keys(conn, sync_id, side, item_id, keys)
    return item_id


def new_item(conn: sqlite3.Connection, sync_id: str, side: str, record_id: str,
             keys: Sequence[str] = (), version: str = "") -> Item:
    """An item for a record first seen after the initial sync (or returns the existing one)."""
    existing = find_item(conn, sync_id, side, record_id)
    if existing is not None:
        return existing
    now = time.time()
    item_id = _insert(conn, sync_id, record_id if side == "hub" else None,
                      record_id if side == "app" else None, "pending", "", "", keys,
                      version if side == "hub" else "", version if side == "app" else "", now)
    return get_item(conn, item_id)  # type: ignore[return-value]


class HistoryEntry(msgspec.Struct, frozen=True):
    action: str
    changes: bytes = b"[]"  # the decision's field changes, encoded by the runtime
    detail: str = ""


class Outcome(msgspec.Struct, frozen=True, kw_only=True):
    """What one sync of one item ended with; `KEEP` leaves a column unchanged."""

    item_id: int
    state: str
    category: str = ""
    detail: str = ""
    hub_id: str | msgspec.UnsetType | None = KEEP
    app_id: str | msgspec.UnsetType | None = KEEP
    snapshot: bytes | msgspec.UnsetType | None = KEEP
    hub_version: str | msgspec.UnsetType = KEEP
    app_version: str | msgspec.UnsetType = KEEP
    deleted_side: str = ""
    creating: str = ""
    match_key: str | msgspec.UnsetType = KEEP
    # Match keys the item now holds on a side (a record it created there).
    claim: tuple[tuple[str, str], ...] = ()
    history: HistoryEntry | None = None
    count_attempt: bool = False


def _take_record_id(conn: sqlite3.Connection, sync_id: str, side: str, record_id: str,
                    item_id: int) -> None:
    """Before giving `record_id` to `item_id`, fold away an unlinked item already holding it
    (the same record seen by a poll before the create that made it was committed)."""
    col = "hub_id" if side == "hub" else "app_id"
    other_col = "app_id" if side == "hub" else "hub_id"
    row = conn.execute(f"SELECT item_id, {other_col} FROM items WHERE sync_id = ? AND {col} = ?",
                       (sync_id, record_id)).fetchone()
    if row is None or row[0] == item_id:
        return
    if row[1] is not None:
        raise sqlite3.IntegrityError(
            f"{side} record {record_id} is already linked in item {row[0]}; cannot link it to "
            f"item {item_id}")
    conn.execute("UPDATE match_keys SET item_id = ? WHERE item_id = ? AND NOT EXISTS "
                 "(SELECT 1 FROM match_keys m WHERE m.sync_id = match_keys.sync_id AND "
                 "m.side = match_keys.side AND m.key = match_keys.key AND m.item_id = ?)",
                 (item_id, row[0], item_id))
    conn.execute("DELETE FROM match_keys WHERE item_id = ?", (row[0],))
    conn.execute("DELETE FROM items WHERE item_id = ?", (row[0],))


def apply_outcomes(conn: sqlite3.Connection, sync_id: str, outcomes: Sequence[Outcome]) -> None:
    now = time.time()
    hist = []
    for o in outcomes:
        sets = ["state = ?", "category = ?", "detail = ?", "deleted_side = ?", "creating = ?",
                "updated_at = ?"]
        vals: list[object] = [o.state, o.category, o.detail, o.deleted_side, o.creating, now]
        for col, val in (("hub_id", o.hub_id), ("app_id", o.app_id)):
            if val is not KEEP:
                if val is not None:
                    _take_record_id(conn, sync_id, col[:3], val, o.item_id)
                sets.append(f"{col} = ?")
                vals.append(val)
        if o.snapshot is not KEEP:
            sets.append("snapshot = ?")
            vals.append(o.snapshot)
        for col, v in (("hub_version", o.hub_version), ("app_version", o.app_version),
                       ("match_key", o.match_key)):
            if v is not KEEP:
                sets.append(f"{col} = ?")
                vals.append(v)
        if o.count_attempt:
            sets.append("attempts = attempts + 1")
        elif o.state == "syncing":
            sets.append("attempts = 0")
        vals.append(o.item_id)
        conn.execute(f"UPDATE items SET {', '.join(sets)} WHERE item_id = ?", vals)
        if o.claim:
            conn.executemany(
                "INSERT OR IGNORE INTO match_keys (sync_id, side, key, item_id) VALUES (?,?,?,?)",
                [(sync_id, side, key, o.item_id) for side, key in o.claim],
            )
        if o.history is not None:
            hist.append((sync_id, o.item_id, now, o.history.action,
                         o.history.changes, o.history.detail))
    if hist:
        conn.executemany(
            "INSERT INTO history (sync_id, item_id, at, hub_id, app_id, action, changes, detail) "
            "SELECT ?, ?, ?, hub_id, app_id, ?, ?, ? FROM items WHERE item_id = ?",
            [(*h, h[1]) for h in hist],
        )


def set_state(conn: sqlite3.Connection, item_ids: Sequence[int], state: str,
              category: str = "", detail: str = "") -> None:
    now = time.time()
    conn.executemany(
        "UPDATE items SET state = ?, category = ?, detail = ?, updated_at = ? WHERE item_id = ?",
        [(state, category, detail, now, i) for i in item_ids],
    )


def mark_queued(conn: sqlite3.Connection, item_ids: Sequence[int]) -> None:
    """A record waiting for another sync of itself shows as `queued`."""
    now = time.time()
    conn.executemany(
        "UPDATE items SET state = 'queued', updated_at = ? WHERE item_id = ? "
        "AND state NOT IN ('excluded', 'deleted')",
        [(now, i) for i in item_ids],
    )


def counts(conn: sqlite3.Connection, sync_id: str) -> dict[str, int]:
    out = dict.fromkeys(STATES, 0)
    for state, n in conn.execute(
        "SELECT state, count(*) FROM items WHERE sync_id = ? GROUP BY state", (sync_id,)
    ):
        out[state] = n
    return out


def list_items(conn: sqlite3.Connection, sync_id: str, state: str | None = None,
               category: str | None = None, limit: int | None = 100,
               after_item: int = 0) -> list[Item]:
    sql = f"SELECT {_ITEM_COLS} FROM items WHERE sync_id = ? AND item_id > ?"
    args: list[object] = [sync_id, after_item]
    if state:
        sql += " AND state = ?"
        args.append(state)
    if category:
        sql += " AND category = ?"
        args.append(category)
    sql += " ORDER BY item_id"
    if limit is not None:
        sql += " LIMIT ?"
        args.append(limit)
    return [_item(r) for r in conn.execute(sql, args)]


def history_for(conn: sqlite3.Connection, sync_id: str, item_id: int,
                limit: int = 100) -> list[tuple[float, str | None, str | None, str, bytes, str]]:
    rows = conn.execute(
        "SELECT at, hub_id, app_id, action, changes, detail FROM history "
        "WHERE sync_id = ? AND item_id = ? ORDER BY id DESC LIMIT ?",
        (sync_id, item_id, limit),
    ).fetchall()
    return [(r[0], r[1], r[2], r[3], r[4], r[5]) for r in rows]


def prune_history(conn: sqlite3.Connection, older_than: float) -> int:
    return conn.execute("DELETE FROM history WHERE at < ?", (older_than,)).rowcount


def drop_sync(conn: sqlite3.Connection, sync_id: str) -> int:
    """Forget everything crmsync knows about an object sync (never touches either side)."""
    n = conn.execute("DELETE FROM items WHERE sync_id = ?", (sync_id,)).rowcount
    for table in ("match_keys", "history", "cursors", "initial_syncs", "plan", "parked_deletes",
                  "sent_events", "event_counts"):
        conn.execute(f"DELETE FROM {table} WHERE sync_id = ?", (sync_id,))
    return n
