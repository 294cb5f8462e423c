"""Deletes parked for review (`on_delete = "review"`)."""

from __future__ import annotations

import sqlite3
import time


def park(conn: sqlite3.Connection, sync_id: str, item_id: int, side: str, record_id: str) -> None:
    conn.execute("INSERT OR REPLACE INTO parked_deletes (sync_id, item_id, side, record_id, "
                 "parked_at) VALUES (?, ?, ?, ?, ?)",
                 (sync_id, item_id, side, record_id, time.time()))


def parked(conn: sqlite3.Connection, sync_id: str) -> list[tuple[int, str, str, float]]:
    return [tuple(r) for r in conn.execute(
        "SELECT item_id, side, record_id, parked_at FROM parked_deletes WHERE sync_id = ? "
        "ORDER BY parked_at", (sync_id,))]


def unpark(conn: sqlite3.Connection, sync_id: str, item_id: int) -> bool:
    return conn.execute("DELETE FROM parked_deletes WHERE sync_id = ? AND item_id = ?",
                        (sync_id, item_id)).rowcount > 0
