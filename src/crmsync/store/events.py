"""Event sync bookkeeping: which app events were sent (never twice) and how many were skipped."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence


def unsent(conn: sqlite3.Connection, sync_id: str, event_ids: Sequence[str]) -> set[str]:
    sent: set[str] = set()
    for start in range(0, len(event_ids), 500):
        chunk = list(event_ids[start:start + 500])
        marks = ",".join("?" * len(chunk))
        sent.update(r[0] for r in conn.execute(
            f"SELECT event_id FROM sent_events WHERE sync_id = ? AND event_id IN ({marks})",
            (sync_id, *chunk)))
    return set(event_ids) - sent


def record_sent(conn: sqlite3.Connection, sync_id: str, event_ids: Sequence[str]) -> None:
    now = time.time()
    before = conn.total_changes
    conn.executemany("INSERT OR IGNORE INTO sent_events (sync_id, event_id, sent_at) "
                     "VALUES (?, ?, ?)", [(sync_id, e, now) for e in event_ids])
    new = conn.total_changes - before
    if new:
        count(conn, sync_id, "sent", new)


def count(conn: sqlite3.Connection, sync_id: str, outcome: str, n: int = 1) -> None:
    conn.execute("INSERT INTO event_counts (sync_id, outcome, count) VALUES (?, ?, ?) "
                 "ON CONFLICT (sync_id, outcome) DO UPDATE SET count = count + excluded.count",
                 (sync_id, outcome, n))


def counts(conn: sqlite3.Connection, sync_id: str) -> dict[str, int]:
    return dict(conn.execute("SELECT outcome, count FROM event_counts WHERE sync_id = ?",
                             (sync_id,)).fetchall())
