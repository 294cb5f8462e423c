"""Where the HubSpot webhooks journal has been read up to, per account.

The offset of the last entry whose events are in the inbox, and when the journal was last read
to its end. The offset moves only in the transaction that stores the entry's events in the
inbox (`commit_entry`), so a crash between fetching an entry and committing it reads the entry
again, and its events are deduplicated by their keys: each entry is applied once.

Kept in the `cursors` table under the key `hub-journal:<portal id>`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping, Sequence

import msgspec

from crmsync.store import cursors, reconciles
from crmsync.store import inbox as store_inbox

OFFSET = "offset"
READ_AT = "read_at"


def key(portal_id: int) -> str:
    return f"hub-journal:{portal_id}"


class JournalPosition(msgspec.Struct, frozen=True):
    offset: str | None  # None: nothing read yet (start from the earliest entry kept)
    read_at: float | None  # epoch seconds the journal was last read (to its end or an entry)


def position(conn: sqlite3.Connection, account: str) -> JournalPosition:
    offset = cursors.get_cursor(conn, account, OFFSET)
    read_at = cursors.get_cursor(conn, account, READ_AT)
    return JournalPosition(offset, float(read_at) if read_at is not None else None)


def commit_entry(conn: sqlite3.Connection, account: str, offset: str,
                 per_source: Mapping[str, Sequence[tuple[str, bytes]]], now: float) -> int:
    """Store an entry's events in the inbox (deduplicated by event key) and move the offset
    past it, in one transaction; returns how many events were new."""
    new = sum(store_inbox.add_events(conn, source, events)
              for source, events in per_source.items())
    cursors.set_cursor(conn, account, OFFSET, offset)
    cursors.set_cursor(conn, account, READ_AT, repr(now))
    return new


def mark_read(conn: sqlite3.Connection, account: str, now: float) -> None:
    """The journal was read to its end at `now` (nothing new)."""
    cursors.set_cursor(conn, account, READ_AT, repr(now))


def skip_gap(conn: sqlite3.Connection, account: str, offset: str | None,
             sync_ids: Iterable[str], reason: str, now: float) -> None:
    """Move past a gap (to `offset`; None: to the earliest entry kept) and ask the affected
    object syncs for a reconciliation, in one transaction."""
    if offset is None:
        conn.execute("DELETE FROM cursors WHERE sync_id = ? AND name = ?", (account, OFFSET))
    else:
        cursors.set_cursor(conn, account, OFFSET, offset)
    cursors.set_cursor(conn, account, READ_AT, repr(now))
    reconciles.request(conn, sync_ids, reason, now)
