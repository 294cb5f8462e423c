"""Association bookkeeping: the pairs each side showed after the last association sync (to
tell an addition from a removal), and associations waiting for a partner to be linked.

Pairs are kept per connection and side, with the two object types in a fixed order
(x_object < y_object), so an association is the same row whichever end synced it.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Sequence

Pair = tuple[str, str]  # (id of the record of `obj`, id of the partner)


def _order(obj: str, other: str) -> bool:
    """True when `obj` is the x end of the (obj, other) pair."""
    return obj < other


def seen_pairs(conn: sqlite3.Connection, connection: str, side: str, obj: str, other: str,
               ids: Sequence[str]) -> dict[str, set[str]]:
    """For each id of `obj` (on `side`), the partner ids of `other` last seen there."""
    out: dict[str, set[str]] = {i: set() for i in ids}
    x_end = _order(obj, other)
    own, partner = ("x_id", "y_id") if x_end else ("y_id", "x_id")
    x_obj, y_obj = (obj, other) if x_end else (other, obj)
    for start in range(0, len(ids), 500):
        chunk = list(ids[start:start + 500])
        marks = ",".join("?" * len(chunk))
        for a, b in conn.execute(
            f"SELECT {own}, {partner} FROM assoc_pairs WHERE connection = ? AND side = ? AND "
            f"x_object = ? AND y_object = ? AND {own} IN ({marks})",
            (connection, side, x_obj, y_obj, *chunk),
        ):
            out[a].add(b)
    return out


def replace_pairs(conn: sqlite3.Connection, connection: str, side: str, obj: str, other: str,
                  now_seen: dict[str, set[str]]) -> None:
    """Set what `side` shows now for these records of `obj` (replacing what was kept)."""
    x_end = _order(obj, other)
    own = "x_id" if x_end else "y_id"
    x_obj, y_obj = (obj, other) if x_end else (other, obj)
    ids = list(now_seen)
    for start in range(0, len(ids), 500):
        chunk = ids[start:start + 500]
        marks = ",".join("?" * len(chunk))
        conn.execute(f"DELETE FROM assoc_pairs WHERE connection = ? AND side = ? AND "
                     f"x_object = ? AND y_object = ? AND {own} IN ({marks})",
                     (connection, side, x_obj, y_obj, *chunk))
    rows = []
    for a, partners in now_seen.items():
        for b in partners:
            x_id, y_id = (a, b) if x_end else (b, a)
            rows.append((connection, side, x_obj, x_id, y_obj, y_id))
    conn.executemany("INSERT OR IGNORE INTO assoc_pairs VALUES (?, ?, ?, ?, ?, ?)", rows)


def add_pending(conn: sqlite3.Connection, connection: str,
                rows: Iterable[tuple[str, str, str, str, str]]) -> None:
    """(from_object, from_side, from_id, to_object, to_id): an association of a linked record
    whose partner (`to_id`, on the same side) is not linked yet."""
    now = time.time()
    conn.executemany(
        "INSERT OR IGNORE INTO pending_associations (connection, from_object, from_side, "
        "from_id, to_object, to_id, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        [(connection, *r, now) for r in rows])


def waiting_for(conn: sqlite3.Connection, connection: str, to_object: str, side: str,
                to_ids: Sequence[str]) -> list[tuple[str, str, str]]:
    """The records waiting for these partners: (from_object, from_side, from_id). The rows
    stay until the waiting record's association sync looked at them again."""
    out: list[tuple[str, str, str]] = []
    for start in range(0, len(to_ids), 500):
        chunk = list(to_ids[start:start + 500])
        marks = ",".join("?" * len(chunk))
        out.extend((r[0], r[1], r[2]) for r in conn.execute(
            "SELECT DISTINCT from_object, from_side, from_id FROM pending_associations WHERE "
            f"connection = ? AND to_object = ? AND from_side = ? AND to_id IN ({marks})",
            (connection, to_object, side, *chunk)))
    return out


def waiting_partners(conn: sqlite3.Connection, connection: str, from_object: str,
                     to_object: str, side: str, ids: Sequence[str]) -> list[tuple[str, str]]:
    """(record id, partner id) of the associations of these records of `from_object` (on
    `side`) waiting for a `to_object` partner."""
    out: list[tuple[str, str]] = []
    for start in range(0, len(ids), 500):
        chunk = list(ids[start:start + 500])
        out.extend((r[0], r[1]) for r in conn.execute(
            "SELECT from_id, to_id FROM pending_associations WHERE connection = ? AND "
            "from_object = ? AND to_object = ? AND from_side = ? AND "
            f"from_id IN ({','.join('?' * len(chunk))})",
            (connection, from_object, to_object, side, *chunk)))
    return out


def waiting_answerable(conn: sqlite3.Connection, connection: str, from_object: str,
                       only: Sequence[tuple[str, str]] | None = None
                       ) -> list[tuple[str, str, str]]:
    """(side, record id, partner object) of this object's records (all, or those among
    `only`) with an association waiting for a partner that is linked now (with a record on
    the other side to write to): the only waits a new sync of the record can do anything
    about. A partner not linked yet releases the wait itself when its link is committed
    (`release_pending`)."""
    out: list[tuple[str, str, str]] = []
    for side, other in (("hub", "app"), ("app", "hub")):
        # One query per side, so each joins on the index of its id (items_hub, items_app).
        sql = ("SELECT DISTINCT p.from_id, p.to_object FROM pending_associations p "
               f"JOIN items i ON i.sync_id = ? || '/' || p.to_object AND i.{side}_id = p.to_id "
               "WHERE p.connection = ? AND p.from_object = ? AND p.from_side = ? "
               f"AND i.snapshot IS NOT NULL AND i.{other}_id IS NOT NULL "
               "AND NOT (i.state = 'deleted' AND i.deleted_side IN ('both', ?))")
        args: tuple[str, ...] = (connection, connection, from_object, side, other)
        if only is None:
            out.extend((side, r[0], r[1]) for r in conn.execute(sql, args))
            continue
        ids = sorted({rid for s, rid in only if s == side})
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            out.extend((side, r[0], r[1]) for r in conn.execute(
                sql + f" AND p.from_id IN ({','.join('?' * len(chunk))})", (*args, *chunk)))
    return out


def clear_waiting(conn: sqlite3.Connection, connection: str, from_object: str,
                  to_object: str, hub_ids: Sequence[str], app_ids: Sequence[str]) -> None:
    for side, ids in (("hub", hub_ids), ("app", app_ids)):
        for start in range(0, len(ids), 500):
            chunk = list(ids[start:start + 500])
            marks = ",".join("?" * len(chunk))
            conn.execute(
                "DELETE FROM pending_associations WHERE connection = ? AND from_object = ? "
                f"AND to_object = ? AND from_side = ? AND from_id IN ({marks})",
                (connection, from_object, to_object, side, *chunk))


def clear_answered(conn: sqlite3.Connection, connection: str, from_object: str,
                   to_object: str, rows: Iterable[tuple[str, str, str]]) -> None:
    """Drop these waiting associations, (from_side, from_id, to_id) each, of `from_object`
    records for `to_object` partners: the partner's own association sync decided them."""
    conn.executemany(
        "DELETE FROM pending_associations WHERE connection = ? AND from_object = ? AND "
        "from_side = ? AND from_id = ? AND to_object = ? AND to_id = ?",
        [(connection, from_object, side, fid, to_object, tid) for side, fid, tid in rows])


def pending_count(conn: sqlite3.Connection, connection: str) -> int:
    return int(conn.execute("SELECT count(*) FROM pending_associations WHERE connection = ?",
                            (connection,)).fetchone()[0])


# An association write about to be sent: (side written, id of the record of `obj` there, its
# partner's id, removed, and the same association on the other side, which it carries:
# the id of the record of `obj` there and its partner's).
Intent = tuple[str, str, str, bool, str, str]


def add_intents(conn: sqlite3.Connection, connection: str, obj: str, other: str,
                intents: Iterable[Intent]) -> None:
    """Record association writes before they are sent (see schema _V11)."""
    x_end = _order(obj, other)
    x_obj, y_obj = (obj, other) if x_end else (other, obj)
    rows = []
    for side, own, partner, removed, src_own, src_partner in intents:
        x_id, y_id = (own, partner) if x_end else (partner, own)
        sx, sy = (src_own, src_partner) if x_end else (src_partner, src_own)
        rows.append((connection, side, x_obj, x_id, y_obj, y_id, int(removed), sx, sy))
    conn.executemany("INSERT OR REPLACE INTO assoc_intents VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                     rows)


def _intent_rows(conn: sqlite3.Connection, connection: str, obj: str, other: str,
                 side: str, ids: Sequence[str], fetch: bool) -> list[Intent]:
    x_end = _order(obj, other)
    own = "x_id" if x_end else "y_id"
    x_obj, y_obj = (obj, other) if x_end else (other, obj)
    out: list[Intent] = []
    for start in range(0, len(ids), 500):
        chunk = list(ids[start:start + 500])
        where = (f"FROM assoc_intents WHERE connection = ? AND side = ? AND x_object = ? AND "
                 f"y_object = ? AND {own} IN ({','.join('?' * len(chunk))})")
        args = (connection, side, x_obj, y_obj, *chunk)
        if not fetch:
            conn.execute(f"DELETE {where}", args)
            continue
        for x_id, y_id, removed, sx, sy in conn.execute(
                f"SELECT x_id, y_id, removed, src_x_id, src_y_id {where}", args):
            mine, partner = (x_id, y_id) if x_end else (y_id, x_id)
            src_mine, src_partner = (sx, sy) if x_end else (sy, sx)
            out.append((side, mine, partner, bool(removed), src_mine, src_partner))
    return out


def intents_of(conn: sqlite3.Connection, connection: str, obj: str, other: str,
               side: str, ids: Sequence[str]) -> list[Intent]:
    """The recorded writes to `side` of these records of `obj` (ids of that side)."""
    return _intent_rows(conn, connection, obj, other, side, ids, fetch=True)


def clear_intents(conn: sqlite3.Connection, connection: str, obj: str, other: str,
                  hub_ids: Sequence[str], app_ids: Sequence[str]) -> None:
    """Forget the recorded writes of these records of `obj` (in the commit of what their
    association sync saw)."""
    _intent_rows(conn, connection, obj, other, "hub", hub_ids, fetch=False)
    _intent_rows(conn, connection, obj, other, "app", app_ids, fetch=False)


def forget_records(conn: sqlite3.Connection, connection: str, obj: str, other: str,
                   hub_ids: Sequence[str], app_ids: Sequence[str]) -> None:
    """Forget what was seen of these records' associations of `obj` with `other` (and the
    writes recorded for them): records whose link ended. An app may give a deleted record's
    id to a new one, whose associations are then new, not the deleted one's."""
    x_end = _order(obj, other)
    own = "x_id" if x_end else "y_id"
    x_obj, y_obj = (obj, other) if x_end else (other, obj)
    for side, ids in (("hub", hub_ids), ("app", app_ids)):
        for start in range(0, len(ids), 500):
            chunk = list(ids[start:start + 500])
            conn.execute(f"DELETE FROM assoc_pairs WHERE connection = ? AND side = ? AND "
                         f"x_object = ? AND y_object = ? AND {own} IN "
                         f"({','.join('?' * len(chunk))})",
                         (connection, side, x_obj, y_obj, *chunk))
    clear_intents(conn, connection, obj, other, hub_ids, app_ids)


def drop_connection_object(conn: sqlite3.Connection, connection: str, obj: str) -> None:
    conn.execute("DELETE FROM assoc_pairs WHERE connection = ? AND (x_object = ? OR "
                 "y_object = ?)", (connection, obj, obj))
    conn.execute("DELETE FROM assoc_intents WHERE connection = ? AND (x_object = ? OR "
                 "y_object = ?)", (connection, obj, obj))
    conn.execute("DELETE FROM pending_associations WHERE connection = ? AND (from_object = ? "
                 "OR to_object = ?)", (connection, obj, obj))
