"""Reconciliations asked for by something that found a gap in a change feed (the webhooks
journal past its retention). The request is durable: it is written in the same transaction
that moves the feed past the gap, so a crash in between cannot lose it; the object sync's
reconciliation loop runs it and clears it afterwards, unless it was asked for again meanwhile.

Kept as a row of the `cursors` table under the object sync's id, so that dropping the sync
drops its request too.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable

import msgspec

NAME = "reconcile_requested"


class ReconcileRequest(msgspec.Struct, frozen=True):
    reason: str
    at: float  # epoch seconds of the (latest) request


def request(conn: sqlite3.Connection, sync_ids: Iterable[str], reason: str,
            now: float | None = None) -> None:
    """Ask for a reconciliation of each object sync (a newer request replaces an older one)."""
    value = msgspec.json.encode(ReconcileRequest(reason, time.time() if now is None else now))
    conn.executemany(
        "INSERT INTO cursors (sync_id, name, value, updated_at) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (sync_id, name) DO UPDATE SET value = excluded.value, "
        "updated_at = excluded.updated_at",
        [(sid, NAME, value.decode(), time.time()) for sid in sync_ids])


def _raw(conn: sqlite3.Connection, sync_id: str) -> str | None:
    row = conn.execute("SELECT value FROM cursors WHERE sync_id = ? AND name = ?",
                       (sync_id, NAME)).fetchone()
    return None if row is None else str(row[0])


def pending(conn: sqlite3.Connection, sync_id: str) -> ReconcileRequest | None:
    raw = _raw(conn, sync_id)
    if raw is None:
        return None
    try:
        return msgspec.json.decode(raw, type=ReconcileRequest)
    except msgspec.DecodeError:
        return ReconcileRequest("unreadable request", 0.0)


def clear(conn: sqlite3.Connection, sync_id: str, done: ReconcileRequest) -> bool:
    """Forget the request `done` once its reconciliation ran; a request made since stays."""
    if pending(conn, sync_id) != done:
        return False
    conn.execute("DELETE FROM cursors WHERE sync_id = ? AND name = ?", (sync_id, NAME))
    return True
