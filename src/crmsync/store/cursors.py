"""Poll cursors. A cursor advances only in the transaction that commits what it covers, so
callers pass `set_cursor` into the same store call as the outcomes."""

from __future__ import annotations

import sqlite3
import time


def get_cursor(conn: sqlite3.Connection, sync_id: str, name: str) -> str | None:
    row = conn.execute("SELECT value FROM cursors WHERE sync_id = ? AND name = ?",
                       (sync_id, name)).fetchone()
    return None if row is None else str(row[0])


def set_cursor(conn: sqlite3.Connection, sync_id: str, name: str, value: str) -> None:
    conn.execute(
        "INSERT INTO cursors (sync_id, name, value, updated_at) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (sync_id, name) DO UPDATE SET value = excluded.value, "
        "updated_at = excluded.updated_at",
        (sync_id, name, value, time.time()),
    )


def all_cursors(conn: sqlite3.Connection, sync_id: str) -> dict[str, tuple[str, float]]:
    return {n: (v, t) for n, v, t in conn.execute(
        "SELECT name, value, updated_at FROM cursors WHERE sync_id = ?", (sync_id,))}
