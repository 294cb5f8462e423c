"""How the runtime persists what the engine decides: the link's snapshot, a sync's intent and
a record's outcome in the store's form (snapshots, changes and intents are runtime-encoded
bytes the store keeps without reading them)."""

from __future__ import annotations

import msgspec

from crmsync.engine.outcome import RecordOutcome
from crmsync.engine.types import Decision, Snapshot
from crmsync.runtime.overwritten import HubWrite, encode_hub_write
from crmsync.store.items import KEEP, HistoryEntry, Outcome

_snap_enc = msgspec.json.Encoder()
_snap_dec = msgspec.json.Decoder(Snapshot)
_changes_enc = msgspec.json.Encoder()


class Intent(msgspec.Struct, frozen=True):
    """What a sync is about to do: the snapshot it will store and the fields it writes."""

    snapshot: Snapshot
    written: dict[str, list[str]]
    at: float = 0.0  # when the writes were about to be sent (epoch seconds)
    # A create's match-key fields as sent (field -> value): the record it made is found by
    # them even if the source record's key changed before the create is healed.
    create_keys: dict[str, str] = {}
    # Where the app's change log ended before the app updates were sent (a side with
    # SupportsWriteEvidence): it tells later whether they landed.
    app_position: str = ""
    # The snapshot the sync decided with. A field whose write did not land falls back to it:
    # when that sync itself decided from an earlier intent (a second crash in a row), the
    # item's stored snapshot knows less (none at all for a create never linked).
    base: Snapshot | None = None


_intent_enc = msgspec.json.Encoder()
_intent_dec = msgspec.json.Decoder(Intent)


def encode_intent(d: Decision, at: float, create_keys: dict[str, str] | None = None,
                  app_position: str = "", base: Snapshot | None = None) -> bytes | None:
    """The intent of decision `d`, about to be written at `at` (None: it stores no link);
    `app_position` is kept only when `d` writes to the app, `base` is the snapshot `d` was
    decided with (`Intent`)."""
    if d.snapshot is None:
        return None
    written: dict[str, list[str]] = {"hub": [], "app": []}
    for c in d.changes:
        written[c.side].append(c.field)
    return _intent_enc.encode(Intent(d.snapshot, written, at, create_keys or {},
                                     app_position if written["app"] else "", base))


def decode_intent(b: bytes) -> Intent:
    return _intent_dec.decode(b)


def encode_snapshot(s: Snapshot) -> bytes:
    return _snap_enc.encode(s)


def decode_snapshot(b: bytes | None) -> Snapshot | None:
    return None if b is None else _snap_dec.decode(b)


def store_outcome(o: RecordOutcome) -> Outcome:
    """The store's form of an outcome the engine chose (snapshots, changes and the hub write
    encoded)."""
    h = o.history
    return Outcome(
        item_id=o.item_id, state=o.state, category=o.category, detail=o.detail,
        hub_id=o.hub_id, app_id=o.app_id,
        snapshot=o.snapshot if not isinstance(o.snapshot, Snapshot)
        else encode_snapshot(o.snapshot),
        hub_version=o.hub_version, app_version=o.app_version,
        app_incarnation=o.app_incarnation, deleted_side=o.deleted_side, creating=o.creating,
        match_key=o.match_key, claim=o.claim, rekey=o.rekey,
        history=None if h is None else HistoryEntry(
            h.action, _changes_enc.encode(h.changes) if h.changes else b"[]", h.detail,
            h.hub_id, h.app_id),
        count_attempt=o.count_attempt, intent=KEEP if o.keep_intent else None,
        hub_write=encode_hub_write(o.hub_write) if isinstance(o.hub_write, HubWrite) else KEEP)
