"""The `changes_since` cursor: an opaque JSON string the runtime stores with the data it covers.

Search part (records changed, ordered by the object's last-modified property):
- `ts`: every record whose last-modified time is ≤ `ts` has been returned, except, in tie
  mode, records at exactly `ts` with an id above `after_id` that are not in `seen`.
- `tie`: the records at exactly `ts` are being paged in id order (`hs_object_id GT after_id`),
  so any number of records sharing one timestamp is read without deep paging.
- `seen`: ids at `ts` already returned (by the page that ended at `ts`); not returned again.

Archived part (search never shows archived records; the list endpoint with `archived=true`
does, in id order, with `archivedAt`):
- `arch_ts`: every record archived at or before `arch_ts` has been reported.
- `arch_upper` / `arch_after`: a pass over the archived list in progress, reporting those
  archived in (`arch_ts`, `arch_upper`], resuming at list cursor `arch_after`.

`ts` and `arch_upper` never exceed (the scan's start − index_lag): search indexing lags.
"""

from __future__ import annotations

import msgspec

CURSOR_VERSION = 1


class ChangesCursor(msgspec.Struct, kw_only=True, omit_defaults=True):
    v: int = CURSOR_VERSION
    ts: int
    tie: bool = False
    after_id: int = 0
    seen: list[str] = []
    arch_ts: int
    arch_upper: int | None = None
    arch_after: str | None = None


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(ChangesCursor)


def encode_cursor(cursor: ChangesCursor) -> str:
    return _encoder.encode(cursor).decode()


def decode_cursor(text: str) -> ChangesCursor:
    """Raises ValueError for a cursor this version cannot read."""
    try:
        cursor = _decoder.decode(text)
    except msgspec.DecodeError as exc:
        raise ValueError(f"unreadable HubSpot changes cursor: {exc}") from None
    if cursor.v != CURSOR_VERSION:
        raise ValueError(f"HubSpot changes cursor version {cursor.v} is not supported")
    return cursor
