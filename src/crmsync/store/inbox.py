"""The webhook inbox. An event is committed here before the HTTP answer, and marked done in
the transaction that records its sync. Done rows stay a while so redeliveries (HubSpot retries
for up to 24 hours) are recognised and dropped."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence

from crmsync.store import pruning

# Redeliveries come for up to 24 h; twice that is kept.
KEEP_DONE_SECONDS = 48 * 3600


# An inbox source is one object sync's feed from one side; its name carries the sync's
# connection and hub object so that dropping the sync can drop its events too.
def hub_source(connection: str, hub_object: str) -> str:
    return f"hub:{connection}:{hub_object}"


def app_source(connection: str, hub_object: str) -> str:
    return f"app:{connection}:{hub_object}"


def sources_of_sync(sync_id: str) -> tuple[str, str]:
    connection, _, hub_object = sync_id.partition("/")
    return hub_source(connection, hub_object), app_source(connection, hub_object)


def count_sources(conn: sqlite3.Connection, sources: Sequence[str]) -> int:
    marks = ",".join("?" * len(sources))
    return int(conn.execute(f"SELECT count(*) FROM inbox WHERE source IN ({marks})",
                            tuple(sources)).fetchone()[0])


def count_waiting(conn: sqlite3.Connection, sources: Sequence[str]) -> int:
    """Events stored and not synced yet (a disabled connection's keep arriving)."""
    marks = ",".join("?" * len(sources))
    return int(conn.execute(f"SELECT count(*) FROM inbox WHERE source IN ({marks}) AND done = 0",
                            tuple(sources)).fetchone()[0])


def drop_sources(conn: sqlite3.Connection, sources: Sequence[str]) -> int:
    marks = ",".join("?" * len(sources))
    return conn.execute(f"DELETE FROM inbox WHERE source IN ({marks})",
                        tuple(sources)).rowcount


def add_events(conn: sqlite3.Connection, source: str,
               events: Sequence[tuple[str, bytes]]) -> int:
    """Store (event_key, payload) pairs; returns how many were new."""
    now = time.time()
    before = conn.total_changes
    conn.executemany(
        "INSERT OR IGNORE INTO inbox (source, event_key, received_at, payload) VALUES (?,?,?,?)",
        [(source, key, now, payload) for key, payload in events],
    )
    return conn.total_changes - before


def pending_events(conn: sqlite3.Connection, source: str, after_id: int = 0,
                   limit: int = 500) -> list[tuple[int, bytes]]:
    return [(r[0], r[1]) for r in conn.execute(
        "SELECT id, payload FROM inbox WHERE source = ? AND done = 0 AND id > ? ORDER BY id "
        "LIMIT ?", (source, after_id, limit))]


def mark_done(conn: sqlite3.Connection, ids: Sequence[int]) -> None:
    conn.executemany("UPDATE inbox SET done = 1 WHERE id = ?", [(i,) for i in ids])


def prune(conn: sqlite3.Connection, now: float | None = None) -> int:
    """Delete the events synced and received over KEEP_DONE_SECONDS before `now`, in one
    transaction; the daemon's housekeeping deletes them in chunks (store/pruning.py)."""
    cutoff = (now if now is not None else time.time()) - KEEP_DONE_SECONDS
    return pruning.delete_oldest(conn, "inbox", cutoff, pruning.first_kept(conn, "inbox", cutoff))


def stats(conn: sqlite3.Connection) -> dict[str, tuple[int, float | None]]:
    """Per source: pending events and the time of the last received one."""
    return {s: (p, t) for s, p, t in conn.execute(
        "SELECT source, sum(done = 0), max(received_at) FROM inbox GROUP BY source")}
