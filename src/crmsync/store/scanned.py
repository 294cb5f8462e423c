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
what the scan saw or we wrote, and nothing of ours changed since. Association rows are kept
only for records not linked when their page is committed: a linked record's partners may be
linked too, and their syncs write its associations at any time, so a page read before such a
write and committed after it would bring back what the write changed. When the initial sync
completes every row goes: a change made in HubSpot by someone else after the scan is seen at
the record's next sync after that, which reads HubSpot.
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
    associated hub object, the ids (an object absent: the scan could not carry it whole).
    Not those of records linked now (see the module docstring)."""
    rids = list(associations)
    linked: set[str] = set()
    for start in range(0, len(rids), 500):
        chunk = rids[start:start + 500]
        linked.update(r[0] for r in conn.execute(
            "SELECT hub_id FROM items WHERE sync_id = ? AND snapshot IS NOT NULL AND "
            f"app_id IS NOT NULL AND hub_id IN ({','.join('?' * len(chunk))})",
            (sync_id, *chunk)))
    conn.executemany(
        "INSERT OR REPLACE INTO scanned (sync_id, side, record_id, record) VALUES (?, ?, ?, ?)",
        [(sync_id, _assoc_side(obj), rid, _encode_ids(ids))
         for rid, by_obj in associations.items() if rid not in linked
         for obj, ids in by_obj.items()])


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


def forget(conn: sqlite3.Connection, sync_id: str) -> None:
    """Drop what an initial sync of `sync_id` kept (it starts again or is complete)."""
    conn.execute("DELETE FROM scanned WHERE sync_id = ?", (sync_id,))
