"""Records as an initial sync's scan listed them, kept for its later phases.

The hub index lists every hub record with the properties the sync maps; the app pass (for the
hub records it pairs) and the hub pass (for the hub records left alone) decide on these instead
of reading each record from HubSpot again: a batch read of what a scan just returned costs API
budget and brings nothing new (issue 16). A change made to a hub record after the scan is
picked up by the hub poller, whose cursor starts when the initial sync does.

Only for records that were never linked: a linked record may have been synced since the scan,
and a value older than its snapshot would pass for a change.

The same scan brings each hub record's associations (HubSpot's `associations=` on list), kept
in the same table under the side `hub>{object}` (a msgpack list of the associated hub ids), and
read by the association syncs instead of a v4 batch read; and the associations of the hub
records the initial sync creates (none but those it wrote: no other sync knows their ids
before the commit that links them, which comes after). An association write to HubSpot
drops the rows of both its ends first (`drop_associations`), so what is kept is only ever
what the scan saw or we wrote, and nothing of ours changed since. When the initial sync
completes, only the rows of records waiting for a partner stay (`forget_but_waiting`), until
their next association sync. A change made in HubSpot by someone else after the scan is seen
at the record's next sync after that.
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


_encode_ids = msgspec.msgpack.Encoder().encode
_decode_ids = msgspec.msgpack.Decoder(list[str]).decode


def _assoc_side(to_object: str) -> str:
    return f"hub>{to_object}"


def keep_associations(conn: sqlite3.Connection, sync_id: str,
                      associations: dict[str, dict[str, list[str]]]) -> None:
    """Remember the hub records' associations as the scan listed them: per record id, per
    associated hub object, the ids (an object absent: the scan could not carry it whole)."""
    conn.executemany(
        "INSERT OR REPLACE INTO scanned (sync_id, side, record_id, record) VALUES (?, ?, ?, ?)",
        [(sync_id, _assoc_side(obj), rid, _encode_ids(ids))
         for rid, by_obj in associations.items() for obj, ids in by_obj.items()])


def get_associations(conn: sqlite3.Connection, sync_id: str, to_object: str,
                     ids: Sequence[str]) -> dict[str, list[str]]:
    """The kept associations with `to_object` of the records among `ids` that have them."""
    out: dict[str, list[str]] = {}
    ids = list(dict.fromkeys(ids))
    for start in range(0, len(ids), 500):
        chunk = ids[start:start + 500]
        rows = conn.execute(
            "SELECT record_id, record FROM scanned WHERE sync_id = ? AND side = ? AND "
            f"record_id IN ({','.join('?' * len(chunk))})",
            (sync_id, _assoc_side(to_object), *chunk))
        for rid, blob in rows:
            out[rid] = _decode_ids(blob)
    return out


def drop_associations(conn: sqlite3.Connection, sync_id: str, to_object: str,
                      ids: Sequence[str]) -> None:
    """Forget the kept associations with `to_object` of these records (about to change)."""
    conn.executemany("DELETE FROM scanned WHERE sync_id = ? AND side = ? AND record_id = ?",
                     [(sync_id, _assoc_side(to_object), i) for i in dict.fromkeys(ids)])


def forget_but_waiting(conn: sqlite3.Connection, sync_id: str) -> None:
    """At the end of the initial sync of `sync_id` (`{connection}/{hub object}`): forget what
    it kept, except the associations of its records that wait for a partner — their sync
    again, asked for when the partner linked, comes right after and decides on them (and
    drops them, see `drop_associations`)."""
    conn.execute(
        "DELETE FROM scanned WHERE sync_id = ? AND NOT (side LIKE 'hub>%' AND record_id IN ("
        "SELECT i.hub_id FROM items i JOIN pending_associations p "
        "ON p.connection || '/' || p.from_object = i.sync_id AND p.from_id = "
        "CASE p.from_side WHEN 'hub' THEN i.hub_id ELSE i.app_id END "
        "WHERE i.sync_id = ? AND i.hub_id IS NOT NULL))", (sync_id, sync_id))


def forget(conn: sqlite3.Connection, sync_id: str) -> None:
    """Drop what an initial sync of `sync_id` kept (it starts again or is complete)."""
    conn.execute("DELETE FROM scanned WHERE sync_id = ?", (sync_id,))
