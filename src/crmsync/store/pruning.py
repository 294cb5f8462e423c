"""Deleting what the state database no longer needs: decision history past its retention,
webhook events synced long enough ago that no redelivery can come. Oldest first, a chunk at a
time, so that a large backlog never holds the store's single writer for long.

Rows are written in id order, so id order is time order (but for a wall clock stepped back).
A prune first finds the first row to keep (`first_kept`); every chunk then deletes only below
it, starting from the lowest id — a chunk costs what it deletes, never a scan of the table."""

from __future__ import annotations

import sqlite3

# table → (its time column, epoch seconds; the condition a row must also meet to go)
_PRUNABLE = {
    "history": ("at", "1"),
    "inbox": ("received_at", "done = 1"),  # an event not synced yet is never dropped
}


def first_kept(conn: sqlite3.Connection, table: str, older_than: float) -> int | None:
    """The id of the first row of `table` stamped at or after `older_than` (None: none is)."""
    at, _ = _PRUNABLE[table]
    row = conn.execute(f"SELECT id FROM {table} WHERE {at} >= ? ORDER BY id LIMIT 1",
                       (older_than,)).fetchone()
    return None if row is None else int(row[0])


def delete_oldest(conn: sqlite3.Connection, table: str, older_than: float,
                  below: int | None, limit: int = -1) -> int:
    """Delete up to `limit` (-1: all) rows of `table` stamped before `older_than` whose id is
    below `below` (None: any id); returns how many went."""
    at, also = _PRUNABLE[table]
    return conn.execute(
        f"DELETE FROM {table} WHERE id IN (SELECT id FROM {table} WHERE id < ? AND {at} < ? "
        f"AND {also} ORDER BY id LIMIT ?)",
        (below if below is not None else 2**63 - 1, older_than, limit)).rowcount
