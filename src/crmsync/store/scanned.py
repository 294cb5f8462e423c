"""Records as an initial sync's scan listed them, kept for its later phases.

The hub index lists every hub record with the properties the sync maps; the app pass (for the
hub records it pairs) and the hub pass (for the hub records left alone) decide on these instead
of reading each record from HubSpot again: a batch read of what a scan just returned costs API
budget and brings nothing new (issue 16). A change made to a hub record after the scan is
picked up by the hub poller, whose cursor starts when the initial sync does.

Only for records that were never linked: a linked record may have been synced since the scan,
and a value older than its snapshot would pass for a change.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

import msgspec

from crmsync.records import Record

_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(Record).decode


def keep(conn: sqlite3.Connection, sync_id: str, side: str,
         records: Sequence[Record]) -> None:
    """Remember `records` (the latest listing of each wins)."""
    conn.executemany(
        "INSERT OR REPLACE INTO scanned (sync_id, side, record_id, record) VALUES (?, ?, ?, ?)",
        [(sync_id, side, r.id, _encode(r)) for r in records])


def get(conn: sqlite3.Connection, sync_id: str, side: str,
        ids: Sequence[str]) -> dict[str, Record]:
    """The remembered records among `ids`."""
    out: dict[str, Record] = {}
    ids = list(dict.fromkeys(ids))
    for start in range(0, len(ids), 500):
        chunk = ids[start:start + 500]
        rows = conn.execute(
            "SELECT record FROM scanned WHERE sync_id = ? AND side = ? AND record_id IN "
            f"({','.join('?' * len(chunk))})", (sync_id, side, *chunk))
        for (blob,) in rows:
            rec = _decode(blob)
            out[rec.id] = rec
    return out


def forget(conn: sqlite3.Connection, sync_id: str) -> None:
    """Drop what an initial sync of `sync_id` kept (it starts again or is complete)."""
    conn.execute("DELETE FROM scanned WHERE sync_id = ?", (sync_id,))
