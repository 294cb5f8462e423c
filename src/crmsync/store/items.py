"""Sync items: the index of every record per object sync, links with snapshots, and states.

Every function takes the connection first and runs inside the caller's transaction (a store
call); none of them commits. Pages are written set-based (`executemany`, `IN (...)` lookups) so
a page of 100 records costs a handful of statements, not hundreds.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence

import msgspec

from crmsync.store import associations, inbox, pruning

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
    # A sync's pending snapshot and written fields, set before its writes (runtime-encoded).
    intent: bytes | None = None
    # The incarnation of the app record (records.py) when it was last synced; None: unknown.
    app_incarnation: str | None = None
    # The last write of a sync to the hub record (runtime-encoded), or None.
    hub_write: bytes | None = None

    @property
    def linked(self) -> bool:
        return self.snapshot is not None and self.hub_id is not None and self.app_id is not None

    def record_id(self, side: str) -> str | None:
        return self.hub_id if side == "hub" else self.app_id


_ITEM_COLS = ("item_id, sync_id, hub_id, app_id, state, category, detail, match_key, snapshot, "
              "hub_version, app_version, deleted_side, creating, attempts, updated_at, intent, "
              "app_incarnation, hub_write")
_JOINED_COLS = ", ".join("i." + c.strip() for c in _ITEM_COLS.split(","))


def _item(row: Sequence[object]) -> Item:
    return Item(*row)  # type: ignore[arg-type]


def _col(side: str) -> str:
    if side == "hub":
        return "hub_id"
    if side == "app":
        return "app_id"
    raise ValueError(f"unknown side {side!r}")


def get_item(conn: sqlite3.Connection, item_id: int) -> Item | None:
    row = conn.execute(f"SELECT {_ITEM_COLS} FROM items WHERE item_id = ?", (item_id,)).fetchone()
    return None if row is None else _item(row)


def find_item(conn: sqlite3.Connection, sync_id: str, side: str, record_id: str) -> Item | None:
    row = conn.execute(f"SELECT {_ITEM_COLS} FROM items WHERE sync_id = ? AND {_col(side)} = ?",
                       (sync_id, record_id)).fetchone()
    return None if row is None else _item(row)


def find_items(conn: sqlite3.Connection, sync_id: str, side: str,
               record_ids: Sequence[str]) -> dict[str, Item]:
    """Items by record id of one side (missing ids are absent from the result)."""
    col = _col(side)
    out: dict[str, Item] = {}
    for start in range(0, len(record_ids), 500):
        chunk = list(record_ids[start:start + 500])
        marks = ",".join("?" * len(chunk))
        for row in conn.execute(
            f"SELECT {_ITEM_COLS} FROM items WHERE sync_id = ? AND {col} IN ({marks})",
            (sync_id, *chunk),
        ):
            it = _item(row)
            out[it.record_id(side)] = it  # type: ignore[index]
    return out


def key_holders(conn: sqlite3.Connection, sync_id: str, side: str,
                keys: Sequence[str]) -> dict[str, Item]:
    """The items whose `side` record holds any of `keys`, by key."""
    col = _col(side)
    out: dict[str, Item] = {}
    for start in range(0, len(keys), 500):
        chunk = list(keys[start:start + 500])
        marks = ",".join("?" * len(chunk))
        for row in conn.execute(
            f"SELECT k.key, {_JOINED_COLS} FROM match_keys k JOIN items i "
            f"ON i.sync_id = k.sync_id AND i.{col} = k.record_id "
            f"WHERE k.sync_id = ? AND k.side = ? AND k.key IN ({marks})",
            (sync_id, side, *chunk),
        ):
            out[row[0]] = _item(row[1:])
    return out


def key_holder(conn: sqlite3.Connection, sync_id: str, side: str,
               keys: Sequence[str]) -> Item | None:
    """The item holding the first of `keys` that is taken on `side`."""
    found = key_holders(conn, sync_id, side, keys)
    for k in keys:
        if k in found:
            return found[k]
    return None


def release_keys(conn: sqlite3.Connection, sync_id: str, side: str, record_id: str) -> None:
    conn.execute("DELETE FROM match_keys WHERE sync_id = ? AND side = ? AND record_id = ?",
                 (sync_id, side, record_id))


def index_records(conn: sqlite3.Connection, sync_id: str, side: str,
                  rows: Sequence[IndexRow]) -> None:
    """Record one page of a side's index: new records as `pending` (or `excluded`), versions
    refreshed for known ones, match keys claimed first come, first served."""
    now = time.time()
    col = _col(side)
    vcol = "hub_version" if side == "hub" else "app_version"
    conn.executemany(
        f"INSERT INTO items (sync_id, {col}, state, category, detail, match_key, {vcol}, "
        "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
        f"ON CONFLICT (sync_id, {col}) DO UPDATE SET "
        f"{vcol} = excluded.{vcol}",
        [(sync_id, r.record_id, "excluded" if r.excluded else "pending", r.excluded, r.detail,
          r.keys[0] if r.keys else "", r.version, now, now) for r in rows],
    )
    conn.executemany(
        "INSERT OR IGNORE INTO match_keys (sync_id, side, key, record_id) VALUES (?, ?, ?, ?)",
        [(sync_id, side, k, r.record_id) for r in rows if not r.excluded for k in r.keys],
    )


class HistoryEntry(msgspec.Struct, frozen=True):
    action: str
    changes: bytes = b"[]"  # the decision's field changes, encoded by the runtime
    detail: str = ""
    # The item's record ids when the decision was applied.
    hub_id: str | None = None
    app_id: str | None = None


class Outcome(msgspec.Struct, frozen=True, kw_only=True):
    """What one sync of one item ended with; `KEEP` leaves a column unchanged.

    `item_id=None` creates the item (a record first seen in this call)."""

    item_id: int | None = None
    state: str
    category: str = ""
    detail: str = ""
    hub_id: str | msgspec.UnsetType | None = KEEP
    app_id: str | msgspec.UnsetType | None = KEEP
    snapshot: bytes | msgspec.UnsetType | None = KEEP
    hub_version: str | msgspec.UnsetType = KEEP
    app_version: str | msgspec.UnsetType = KEEP
    deleted_side: str = ""
    creating: str | msgspec.UnsetType = ""
    match_key: str | msgspec.UnsetType = KEEP
    # Match keys a record of this item now holds: (side, key, record id).
    claim: tuple[tuple[str, str, str], ...] = ()
    # A record's keys changed (or it was deleted: no keys): (side, record id, its keys now).
    # Claims it no longer has are released; the new ones are claimed if nobody holds them.
    rekey: tuple[tuple[str, str, tuple[str, ...]], ...] = ()
    history: HistoryEntry | None = None
    count_attempt: bool = False
    # Set by the intent commit before writes; an outcome clears it (None) or keeps it (KEEP,
    # when some of its writes may have landed).
    intent: bytes | msgspec.UnsetType | None = None
    app_incarnation: str | msgspec.UnsetType | None = KEEP
    hub_write: bytes | msgspec.UnsetType | None = KEEP


def new_item(conn: sqlite3.Connection, sync_id: str, side: str, record_id: str,
             keys: Sequence[str] = (), version: str = "") -> Item:
    """An item for a record first seen after the initial sync (or the existing one)."""
    index_records(conn, sync_id, side, [IndexRow(record_id, tuple(keys), version)])
    got = find_item(conn, sync_id, side, record_id)
    assert got is not None
    return got


def _fold(conn: sqlite3.Connection, sync_id: str, side: str,
          targets: dict[str, int]) -> None:
    """Before giving record ids to items, drop an unlinked item already holding one (the same
    record indexed by a poll before the create that made it was committed). A record linked
    in another item is never taken."""
    holders = find_items(conn, sync_id, side, list(targets))
    for record_id, it in holders.items():
        if it.item_id == targets[record_id]:
            continue
        if it.record_id("app" if side == "hub" else "hub") is not None:
            raise sqlite3.IntegrityError(
                f"{side} record {record_id} is already linked in item {it.item_id}; cannot "
                f"link it to item {targets[record_id]}")
        conn.execute("DELETE FROM items WHERE item_id = ?", (it.item_id,))


_INSERT_COLS = ("sync_id", "hub_id", "app_id", "state", "category", "detail", "snapshot",
                "hub_version", "app_version", "deleted_side", "creating", "match_key",
                "created_at", "updated_at", "intent", "app_incarnation", "hub_write")


def apply_outcomes(conn: sqlite3.Connection, sync_id: str, outcomes: Sequence[Outcome]) -> None:
    """Record how each item's sync ended. Outcomes of the same shape share one `executemany`,
    so a page of outcomes costs a few statements."""
    now = time.time()
    for side in ("hub", "app"):
        targets = {}
        for o in outcomes:
            rid = o.hub_id if side == "hub" else o.app_id
            if isinstance(rid, str) and o.item_id is not None:
                targets[rid] = o.item_id
        if targets:
            _fold(conn, sync_id, side, targets)

    inserts: list[tuple[object, ...]] = []
    # Consecutive updates of one shape share an executemany; order is kept, so several
    # outcomes of one item apply in the order given.
    groups: list[tuple[str, list[list[object]]]] = []
    for o in outcomes:
        if o.item_id is None:
            inserts.append((
                sync_id, o.hub_id or None, o.app_id or None, o.state, o.category, o.detail,
                None if o.snapshot is KEEP else o.snapshot,
                "" if o.hub_version is KEEP else o.hub_version,
                "" if o.app_version is KEEP else o.app_version,
                o.deleted_side, "" if o.creating is KEEP else o.creating,
                "" if o.match_key is KEEP else o.match_key, now, now,
                None if o.intent is KEEP else o.intent,
                None if o.app_incarnation is KEEP else o.app_incarnation,
                None if o.hub_write is KEEP else o.hub_write))
            continue
        sets = ["state = ?", "category = ?", "detail = ?", "deleted_side = ?", "updated_at = ?"]
        vals: list[object] = [o.state, o.category, o.detail, o.deleted_side, now]
        for col, v in (("creating", o.creating), ("intent", o.intent), ("hub_id", o.hub_id),
                       ("app_id", o.app_id),
                       ("snapshot", o.snapshot),
                       ("hub_version", o.hub_version), ("app_version", o.app_version),
                       ("match_key", o.match_key), ("app_incarnation", o.app_incarnation),
                       ("hub_write", o.hub_write)):
            if v is not KEEP:
                sets.append(f"{col} = ?")
                vals.append(v)
        if o.count_attempt:
            sets.append("attempts = attempts + 1")
        elif o.state == "syncing":
            sets.append("attempts = 0")
        vals.append(o.item_id)
        sql = f"UPDATE items SET {', '.join(sets)} WHERE item_id = ?"
        if groups and groups[-1][0] == sql:
            groups[-1][1].append(vals)
        else:
            groups.append((sql, [vals]))
    if inserts:
        conn.executemany(f"INSERT INTO items ({', '.join(_INSERT_COLS)}) "
                         f"VALUES ({', '.join('?' * len(_INSERT_COLS))})", inserts)
    for sql, params in groups:
        conn.executemany(sql, params)
    for o in outcomes:
        for side, rid, keys in o.rekey:
            marks = ",".join("?" * len(keys))
            conn.execute(
                "DELETE FROM match_keys WHERE sync_id = ? AND side = ? AND record_id = ?"
                + (f" AND key NOT IN ({marks})" if keys else ""), (sync_id, side, rid, *keys))
    claims = [(sync_id, side, key, rid) for o in outcomes for side, key, rid in o.claim]
    claims += [(sync_id, side, key, rid) for o in outcomes for side, rid, keys in o.rekey
               for key in keys]
    if claims:
        conn.executemany(
            "INSERT OR IGNORE INTO match_keys (sync_id, side, key, record_id) VALUES (?,?,?,?)",
            claims)
    hist_known = [(sync_id, o.item_id, now, o.history.hub_id, o.history.app_id, o.history.action,
                   o.history.changes, o.history.detail)
                  for o in outcomes if o.history is not None and o.item_id is not None]
    if hist_known:
        conn.executemany(
            "INSERT INTO history (sync_id, item_id, at, hub_id, app_id, action, changes, detail) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", hist_known)
    for side in ("hub", "app"):
        # New items are found again by their record id.
        hist_new = [(sync_id, now, o.history.hub_id, o.history.app_id, o.history.action,
                     o.history.changes, o.history.detail, sync_id,
                     o.hub_id if side == "hub" else o.app_id)
                    for o in outcomes if o.history is not None and o.item_id is None
                    and (side == "hub") == isinstance(o.hub_id, str)]
        if hist_new:
            conn.executemany(
                "INSERT INTO history (sync_id, item_id, at, hub_id, app_id, action, changes, "
                "detail) SELECT ?, item_id, ?, ?, ?, ?, ?, ? FROM items "
                f"WHERE sync_id = ? AND {_col(side)} = ?",
                hist_new)


def apply_outcomes_apart(conn: sqlite3.Connection, sync_id: str,
                         outcomes: Sequence[Outcome]) -> dict[int, str]:
    """`apply_outcomes`, except that an outcome breaking a unique constraint (its record was
    given to another item by a sync that committed meanwhile) is left out and the others
    are applied. Returns the left-out outcomes' positions with the constraint's message;
    the caller decides such a record again from what the store holds now.

    All outcomes are tried at once first (the common case costs nothing more); only when
    that fails is each tried in its own savepoint."""
    conn.execute("SAVEPOINT outcomes")
    try:
        apply_outcomes(conn, sync_id, outcomes)
    except sqlite3.IntegrityError:
        conn.execute("ROLLBACK TO outcomes")
    else:
        conn.execute("RELEASE outcomes")
        return {}
    refused: dict[int, str] = {}
    for i, o in enumerate(outcomes):
        conn.execute("SAVEPOINT outcome")
        try:
            apply_outcomes(conn, sync_id, [o])
        except sqlite3.IntegrityError as exc:
            conn.execute("ROLLBACK TO outcome")
            refused[i] = str(exc)
        conn.execute("RELEASE outcome")
    conn.execute("RELEASE outcomes")
    return refused


def detach_app_records(conn: sqlite3.Connection, sync_id: str,
                       item_ids: Sequence[int]) -> None:
    """These items' app records were deleted and their ids now name other records (an app
    that reuses ids): the items let go of the ids and of the match keys those records
    claimed, so the records holding the ids now are new to the sync. An item with a hub
    record keeps it and its snapshot (its next sync decides the deletion), and so does one
    whose create on the hub was sent (`creating`: the hub record it made may exist); any
    other is dropped. A kept item not deleted yet is `queued` until that sync ran: nothing
    else names it any more (the change that showed the reuse is about the new record), so a
    start syncs the queued items again (`queued_records`)."""
    for item_id in item_ids:
        row = conn.execute("SELECT app_id, hub_id, creating FROM items WHERE item_id = ? AND "
                           "sync_id = ?", (item_id, sync_id)).fetchone()
        if row is None or row[0] is None:
            continue
        release_keys(conn, sync_id, "app", row[0])
        if row[1] is None and row[2] != "hub":
            # An app record alone (never linked): nothing of it is left to sync.
            conn.execute("DELETE FROM items WHERE item_id = ?", (item_id,))
            continue
        conn.execute("UPDATE items SET app_id = NULL, app_incarnation = NULL, updated_at = ?, "
                     "state = CASE WHEN state IN ('excluded', 'deleted') THEN state "
                     "ELSE 'queued' END WHERE item_id = ?", (time.time(), item_id))


def set_state(conn: sqlite3.Connection, item_ids: Sequence[int], state: str,
              category: str = "", detail: str = "") -> None:
    now = time.time()
    conn.executemany(
        "UPDATE items SET state = ?, category = ?, detail = ?, updated_at = ? WHERE item_id = ?",
        [(state, category, detail, now, i) for i in item_ids],
    )


def set_intents(conn: sqlite3.Connection, intents: Sequence[tuple[int, bytes | None, str]]
                ) -> None:
    """(item id, intent, creating side) set before a sync sends its writes."""
    conn.executemany("UPDATE items SET intent = ?, creating = ? WHERE item_id = ?",
                     [(blob, creating, item_id) for item_id, blob, creating in intents])


def mark_queued(conn: sqlite3.Connection, item_ids: Sequence[int]) -> None:
    """A record waiting for another sync of itself shows as `queued`."""
    now = time.time()
    conn.executemany(
        "UPDATE items SET state = 'queued', updated_at = ? WHERE item_id = ? "
        "AND state NOT IN ('excluded', 'deleted')",
        [(now, i) for i in item_ids],
    )


def any_linked(conn: sqlite3.Connection, sync_id: str) -> bool:
    """Whether any record of the sync was ever linked (an item with a snapshot)."""
    return conn.execute("SELECT 1 FROM items WHERE sync_id = ? AND snapshot IS NOT NULL "
                        "LIMIT 1", (sync_id,)).fetchone() is not None


def unqueue(conn: sqlite3.Connection, item_ids: Sequence[int]) -> None:
    """These items, shown `queued` for a sync that turned out to need doing no more than
    what was done (runtime/association_waits.py), are in sync again."""
    conn.executemany("UPDATE items SET state = 'syncing', updated_at = ? WHERE item_id = ? "
                     "AND state = 'queued'", [(time.time(), i) for i in item_ids])


def queued_records(conn: sqlite3.Connection, sync_id: str) -> list[tuple[str, str]]:
    """(side, record id) of the items left `queued`: a sync of them was due when the daemon
    stopped (their hub id where they have one). An item with neither id (its app id let go
    of while its create in the hub was under way, `detach_app_records`) comes as
    ("item", item id): nothing else names it, and its sync decides what its create left."""
    return [("hub", h) if h is not None else ("app", a) if a is not None else ("item", str(i))
            for i, h, a in conn.execute(
                "SELECT item_id, hub_id, app_id FROM items WHERE sync_id = ? AND "
                "state = 'queued' AND state != 'syncing' ORDER BY item_id", (sync_id,))]


def still_queued(conn: sqlite3.Connection, sync_id: str,
                 item_ids: Sequence[int]) -> list[int]:
    """The items among `item_ids` still `queued`."""
    out: list[int] = []
    ids = list(item_ids)
    for start in range(0, len(ids), 500):
        chunk = ids[start:start + 500]
        out.extend(r[0] for r in conn.execute(
            "SELECT item_id FROM items WHERE sync_id = ? AND state = 'queued' AND "
            f"item_id IN ({','.join('?' * len(chunk))}) ORDER BY item_id",
            (sync_id, *chunk)))
    return out


def counts(conn: sqlite3.Connection, sync_id: str) -> dict[str, int]:
    """Items per state. `syncing` is the total minus the others, which the partial state
    index holds."""
    out = dict.fromkeys(STATES, 0)
    for state, n in conn.execute(
        "SELECT state, count(*) FROM items WHERE sync_id = ? AND state != 'syncing' "
        "GROUP BY state", (sync_id,)
    ):
        out[state] = n
    total = conn.execute("SELECT count(*) FROM items WHERE sync_id = ?", (sync_id,)).fetchone()[0]
    out["syncing"] = total - sum(n for s, n in out.items() if s != "syncing")
    return out


def count_of(conn: sqlite3.Connection, sync_id: str, state: str, category: str) -> int:
    """Items in `state` with `category` (say failed duplicates)."""
    return int(conn.execute(
        "SELECT count(*) FROM items WHERE sync_id = ? AND state = ? AND state != 'syncing' "
        "AND category = ?", (sync_id, state, category)).fetchone()[0])


def unlinked_hub_items(conn: sqlite3.Connection, sync_id: str, after_item: int,
                       limit: int) -> list[Item]:
    """Hub records not linked to an app record and still to be decided (the hub pass), in
    item order after `after_item`."""
    return [_item(r) for r in conn.execute(
        f"SELECT {_ITEM_COLS} FROM items WHERE sync_id = ? AND item_id > ? AND "
        "hub_id IS NOT NULL AND app_id IS NULL AND state IN ('pending', 'failed', 'queued') "
        "AND state != 'syncing' ORDER BY item_id LIMIT ?", (sync_id, after_item, limit))]


def list_items(conn: sqlite3.Connection, sync_id: str, state: str | None = None,
               category: str | None = None, limit: int | None = 100,
               after_item: int = 0) -> list[Item]:
    sql = f"SELECT {_ITEM_COLS} FROM items WHERE sync_id = ? AND item_id > ?"
    args: list[object] = [sync_id, after_item]
    if state:
        if state not in STATES:
            raise ValueError(f"unknown state {state!r}")
        # A literal lets SQLite use the partial state index (it cannot prove `? != 'syncing'`).
        sql += f" AND state = '{state}'"
        if state != "syncing":
            # Repeats the partial index's own condition so SQLite may use it.
            sql += " AND state != 'syncing'"
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
    """Delete the history written before `older_than` (epoch seconds), in one transaction;
    the daemon's housekeeping deletes it in chunks (store/pruning.py)."""
    return pruning.delete_oldest(conn, "history", older_than,
                                 pruning.first_kept(conn, "history", older_than))


def drop_sync(conn: sqlite3.Connection, sync_id: str) -> int:
    """Forget everything crmsync knows about an object sync (never touches either side)."""
    n = conn.execute("DELETE FROM items WHERE sync_id = ?", (sync_id,)).rowcount
    for table in ("match_keys", "history", "cursors", "initial_syncs", "plan", "parked_deletes",
                  "sent_events", "event_counts", "restore_catch_up", "scanned"):
        conn.execute(f"DELETE FROM {table} WHERE sync_id = ?", (sync_id,))
    # Events received for it and not synced yet would be replayed into a new initial sync.
    inbox.drop_sources(conn, inbox.sources_of_sync(sync_id))
    connection, _, obj = sync_id.partition("/")
    associations.drop_connection_object(conn, connection, obj)
    return n
