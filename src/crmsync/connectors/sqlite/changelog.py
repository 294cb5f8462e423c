"""Change capture by triggers: the app-side equivalent of webhooks.

On open, crmsync installs AFTER INSERT / UPDATE / DELETE triggers on every configured table
(and on association join tables). Each appends to the change-log table

    seq INTEGER PRIMARY KEY AUTOINCREMENT, object, record_id, op, at (epoch ms), origin

whoever writes — the app, a script, `sqlite3` on the command line, or crmsync itself. Trigger
bodies use plain SQL only (no function registered on crmsync's connection), so the app's own
connections run them unchanged. AUTOINCREMENT keeps `seq` growing after pruning, so a cursor
(the last seq read) stays meaningful for ever.

`op` is insert, update, delete, or `associate` for a record whose associations changed (a
foreign key pointing at it was set or cleared, or a join-table row naming it was added or
removed): readers re-read the record in every case; only `written_then_changed` (and people
reading the log) tell an `associate` entry from a change of the record's own row.

The insert trigger also notes, in the identity table `<changelog>:identity`
(object, record_id, born), the seq of the row's insert entry; the delete trigger removes it (a
changed primary key does both). A row's `born` is its incarnation: SQLite gives a deleted
row's id to the next insert of a table without AUTOINCREMENT, and `born` tells the new row
from the old one (rows older than the triggers have none: incarnation "0"). The table holds
one small row per row inserted since change capture began, and is never pruned by seq.

Triggers are named `<changelog>:object:<object>:<op>` and `<changelog>:join:<table>:...`;
installing compares them with what is in `sqlite_master` and only replaces those that differ,
so re-opening changes nothing in the app's schema, and a changed configuration (another
column list, a dropped table) brings the triggers in line.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from crmsync.connectors.sql_tables import quote_ident, quote_text
from crmsync.connectors.sqlite.schema import Association, TableSpec

ORIGIN_CRMSYNC = "crmsync"

T = TypeVar("T")

# Epoch milliseconds in plain SQL (unixepoch('subsec') needs SQLite 3.42).
_NOW_MS = "CAST(round((julianday('now') - 2440587.5) * 86400000.0) AS INTEGER)"


def identity_table(log: str) -> str:
    """The name of the identity table kept next to the change log `log`."""
    return f"{log}:identity"


def born_sql(log: str, obj: str, pk_expr: str) -> str:
    """An SQL expression: the incarnation (born seq, 0 before change capture) of the row of
    `obj` whose primary key is `pk_expr`."""
    return (f"COALESCE((SELECT born FROM {quote_ident(identity_table(log))} "
            f"WHERE object = {quote_text(obj)} AND record_id = CAST({pk_expr} AS TEXT)), 0)")


def ensure_log(conn: sqlite3.Connection, log: str) -> None:
    """Create the change-log table, its reading index and the identity table if missing."""
    q = quote_ident(log)
    conn.execute(
        f"CREATE TABLE IF NOT EXISTS {q} ("
        "seq INTEGER PRIMARY KEY AUTOINCREMENT, "
        "object TEXT NOT NULL, "
        "record_id TEXT NOT NULL, "
        "op TEXT NOT NULL, "
        "at INTEGER NOT NULL, "
        # NULL: written by anyone else; 'crmsync': inside one of crmsync's write transactions.
        "origin TEXT)")
    conn.execute(f"CREATE INDEX IF NOT EXISTS {quote_ident(log + ':object_seq')} "
                 f"ON {q} (object, seq)")
    conn.execute(
        f"CREATE TABLE IF NOT EXISTS {quote_ident(identity_table(log))} ("
        "object TEXT NOT NULL, record_id TEXT NOT NULL, born INTEGER NOT NULL, "
        "PRIMARY KEY (object, record_id)) WITHOUT ROWID")


def _born(log: str, obj: str, id_expr: str, when: str = "") -> str:
    """Note the row's incarnation: the seq of the log entry inserted just before (inside a
    trigger, last_insert_rowid() is the rowid of the trigger's own last INSERT)."""
    head = (f"INSERT OR REPLACE INTO {quote_ident(identity_table(log))} "
            "(object, record_id, born) ")
    row = f"{quote_text(obj)}, CAST({id_expr} AS TEXT), last_insert_rowid()"
    if when:
        return f"{head}SELECT {row} WHERE {when};"
    return f"{head}VALUES ({row});"


def _unborn(log: str, obj: str, id_expr: str, when: str = "") -> str:
    cond = f" AND {when}" if when else ""
    return (f"DELETE FROM {quote_ident(identity_table(log))} WHERE object = {quote_text(obj)} "
            f"AND record_id = CAST({id_expr} AS TEXT){cond};")


def _entry(log: str, obj: str, id_expr: str, op: str, when: str = "") -> str:
    head = f"INSERT INTO {quote_ident(log)} (object, record_id, op, at) "
    if when:
        return f"{head}SELECT {quote_text(obj)}, {id_expr}, '{op}', {_NOW_MS} WHERE {when};"
    return f"{head}VALUES ({quote_text(obj)}, {id_expr}, '{op}', {_NOW_MS});"


def _trigger(name: str, event: str, table: str, body: Sequence[str], when: str = "") -> str:
    when_sql = f" WHEN {when}" if when else ""
    return (f"CREATE TRIGGER {quote_ident(name)} AFTER {event} ON {quote_ident(table)}"
            f"{when_sql} BEGIN\n" + "\n".join(body) + "\nEND")


def _unique(names: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(names))


def desired_triggers(log: str, specs: Iterable[TableSpec],
                     associations: Iterable[Association]) -> dict[str, str]:
    """Trigger name -> CREATE TRIGGER statement, for the whole configuration."""
    assocs = list(associations)
    out: dict[str, str] = {}
    for s in specs:
        pk = quote_ident(s.primary_key)
        fks = [(a.target.object, quote_ident(a.column))
               for a in assocs if not a.is_join and a.source.object == s.object]
        prefix = f"{log}:object:{s.object}:"

        body = [_entry(log, s.object, f"NEW.{pk}", "insert"),
                _born(log, s.object, f"NEW.{pk}")]
        body += [_entry(log, to, f"NEW.{c}", "associate", f"NEW.{c} IS NOT NULL")
                 for to, c in fks]
        out[prefix + "insert"] = _trigger(prefix + "insert", "INSERT", s.table, body)

        # Only changes of what crmsync reads (and association columns) are logged, so the
        # app touching other columns creates no work.
        watched = _unique([s.primary_key, *s.columns, *(a.column for a in assocs
                                                       if not a.is_join
                                                       and a.source.object == s.object)])
        changed = " OR ".join(f"OLD.{quote_ident(c)} IS NOT NEW.{quote_ident(c)}"
                              for c in watched)
        moved_pk = f"OLD.{pk} IS NOT NEW.{pk}"
        body = [
            # A changed primary key: the old id is gone, the new one names a new record.
            _entry(log, s.object, f"OLD.{pk}", "delete", moved_pk),
            _unborn(log, s.object, f"OLD.{pk}", moved_pk),
            _entry(log, s.object, f"NEW.{pk}", "update"),
            _born(log, s.object, f"NEW.{pk}", moved_pk),
        ]
        for to, c in fks:
            moved = f"OLD.{c} IS NOT NEW.{c}"
            body.append(_entry(log, to, f"OLD.{c}", "associate",
                               f"{moved} AND OLD.{c} IS NOT NULL"))
            body.append(_entry(log, to, f"NEW.{c}", "associate",
                               f"{moved} AND NEW.{c} IS NOT NULL"))
        out[prefix + "update"] = _trigger(prefix + "update", "UPDATE", s.table, body, changed)

        body = [_entry(log, s.object, f"OLD.{pk}", "delete"),
                _unborn(log, s.object, f"OLD.{pk}")]
        body += [_entry(log, to, f"OLD.{c}", "associate", f"OLD.{c} IS NOT NULL")
                 for to, c in fks]
        out[prefix + "delete"] = _trigger(prefix + "delete", "DELETE", s.table, body)

    for a in assocs:
        if not a.is_join:
            continue
        prefix = f"{log}:join:{a.join_table}:{a.from_column}:{a.to_column}:"
        ends = [(a.source.object, quote_ident(a.from_column)),
                (a.target.object, quote_ident(a.to_column))]

        def touch(row: str, ends: list[tuple[str, str]] = ends) -> list[str]:
            return [_entry(log, obj, f"{row}.{c}", "associate", f"{row}.{c} IS NOT NULL")
                    for obj, c in ends]

        out[prefix + "insert"] = _trigger(prefix + "insert", "INSERT", a.join_table,
                                          touch("NEW"))
        out[prefix + "delete"] = _trigger(prefix + "delete", "DELETE", a.join_table,
                                          touch("OLD"))
        changed = " OR ".join(f"OLD.{c} IS NOT NEW.{c}" for _, c in ends)
        out[prefix + "update"] = _trigger(prefix + "update", "UPDATE", a.join_table,
                                          touch("OLD") + touch("NEW"), changed)
    return out


def _ours(conn: sqlite3.Connection, log: str) -> dict[str, str]:
    prefix = f"{log}:"
    return {name: sql for name, sql in conn.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'trigger'") if name.startswith(prefix)}


def install(conn: sqlite3.Connection, log: str, desired: dict[str, str]) -> int:
    """Bring crmsync's triggers in line with `desired`; returns how many were (re)created or
    dropped. Runs inside the caller's write transaction."""
    existing = _ours(conn, log)
    changed = 0
    for name, sql in existing.items():
        if desired.get(name) != sql:
            conn.execute(f"DROP TRIGGER {quote_ident(name)}")
            changed += 1
    for name, sql in desired.items():
        if existing.get(name) != sql:
            conn.execute(sql)
            changed += 1
    return changed


def remove_change_capture(conn: sqlite3.Connection, log: str, drop_log: bool = False) -> int:
    """Drop every crmsync trigger writing to `log` (and the log itself with `drop_log`), for an
    operator who removes crmsync from an app database. Returns the number of triggers dropped.
    Run it in a write transaction."""
    names = list(_ours(conn, log))
    for name in names:
        conn.execute(f"DROP TRIGGER {quote_ident(name)}")
    if drop_log:
        conn.execute(f"DROP TABLE IF EXISTS {quote_ident(log)}")
        conn.execute(f"DROP TABLE IF EXISTS {quote_ident(identity_table(log))}")
        # AUTOINCREMENT's counter for it (SQLite keeps the sqlite_sequence table itself).
        if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_sequence'").fetchone():
            conn.execute("DELETE FROM sqlite_sequence WHERE name = ?", (log,))
    return len(names)


def log_end(conn: sqlite3.Connection, log: str) -> int:
    """The highest seq ever handed out (pruning never lowers it)."""
    row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = ?", (log,)).fetchone()
    return int(row[0]) if row else 0


@dataclass(frozen=True, slots=True)
class Collapsed:
    """Every log entry of one record within a page, collapsed."""

    record_id: str
    last_seq: int
    last_at: int
    own_only: bool  # every entry was written inside a crmsync write transaction


def read_collapsed(conn: sqlite3.Connection, log: str, obj: str, after: int, end: int,
                   limit: int) -> tuple[list[Collapsed], int, bool]:
    """Entries of `obj` with after < seq <= end, at most `limit`, collapsed per record (in the
    order of each record's last entry). Returns them, the last seq read, and whether the limit
    was hit."""
    rows = conn.execute(
        f"SELECT seq, record_id, at, origin FROM {quote_ident(log)} "
        "WHERE object = ? AND seq > ? AND seq <= ? ORDER BY seq LIMIT ?",
        (obj, after, end, limit)).fetchall()
    merged: dict[str, Collapsed] = {}
    for seq, rid, at, origin in rows:
        rid = rid.decode("utf-8", "replace") if isinstance(rid, bytes) else str(rid)
        prev = merged.pop(rid, None)
        own = origin == ORIGIN_CRMSYNC and (prev is None or prev.own_only)
        merged[rid] = Collapsed(rid, int(seq), int(at), own)
    last = int(rows[-1][0]) if rows else after
    return list(merged.values()), last, len(rows) >= limit


def written_then_changed(conn: sqlite3.Connection, log: str, obj: str, ids: Sequence[str],
                         after: int) -> set[str]:
    """The ids among `ids` with an entry of crmsync's own after `after` that another entry
    (anyone else's) follows: crmsync's write landed, then the record changed again. Only
    entries of the record's own row count: an `associate` entry (a foreign key elsewhere set
    to it or cleared) says nothing of a write to the record's fields."""
    q = quote_ident(log)
    out: set[str] = set()
    for start in range(0, len(ids), 500):
        chunk = list(ids[start:start + 500])
        marks = ",".join("?" * len(chunk))
        out.update(str(r[0]) for r in conn.execute(
            f"SELECT record_id FROM {q} WHERE object = ? AND seq > ? AND record_id IN ({marks}) "
            "AND op <> ? GROUP BY record_id HAVING min(CASE WHEN origin = ? THEN seq END) < "
            "max(CASE WHEN origin IS NOT ? THEN seq END)",
            (obj, after, *chunk, "associate", ORIGIN_CRMSYNC, ORIGIN_CRMSYNC)))
    return out


def mark_own(conn: sqlite3.Connection, log: str, after: int) -> None:
    """Tag the entries this write transaction appended (everything after `after`: crmsync
    holds the write lock) as crmsync's own. Call it just before COMMIT."""
    conn.execute(f"UPDATE {quote_ident(log)} SET origin = ? WHERE seq > ?",
                 (ORIGIN_CRMSYNC, after))


def prune(conn: sqlite3.Connection, log: str, through: int, limit: int) -> int:
    """Delete at most `limit` of the oldest entries with seq <= `through`."""
    q = quote_ident(log)
    return conn.execute(
        f"DELETE FROM {q} WHERE seq IN (SELECT seq FROM {q} WHERE seq <= ? ORDER BY seq "
        "LIMIT ?)", (through, limit)).rowcount


def removal_plan(conn: sqlite3.Connection, log: str) -> list[str]:
    """What `remove_change_capture(conn, log, drop_log=True)` removes, one line each."""
    out = [f"trigger {name}" for name in sorted(_ours(conn, log))]
    exists = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                          (log,)).fetchone() is not None
    if exists:
        n = conn.execute(f"SELECT count(*) FROM {quote_ident(log)}").fetchone()[0]
        out.append(f"table {log} ({n} entries)")
    ident = identity_table(log)
    if conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                    (ident,)).fetchone() is not None:
        n = conn.execute(f"SELECT count(*) FROM {quote_ident(ident)}").fetchone()[0]
        out.append(f"table {ident} ({n} rows)")
    return out or [f"nothing to remove: no trigger writes to {log!r} and it does not exist"]


def with_database(path: str, fn: Callable[[sqlite3.Connection], T], *, write: bool) -> T:
    """`fn(conn)` on the app database at `path` (which must exist), in one transaction
    (`BEGIN IMMEDIATE` when `write`); for commands run outside the daemon."""
    import os
    import urllib.parse

    uri = "file:" + urllib.parse.quote(os.path.abspath(path)) + "?mode=rw"
    conn = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=5.0)
    try:
        conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        try:
            result = fn(conn)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return result
    finally:
        conn.close()
