"""Hub edits that our own write overwrote unseen (issue 10 item 6).

HubSpot has no conditional update: between our read of a hub record and our write of one of
its properties, a user may change that property, and our write replaces the edit without the
decision having seen it; the edit's own webhook then finds the hub holding our value, which
looks like no change. The window cannot be closed, but it can be seen:

* every hub update of a sync leaves a `HubWrite` on the item: the values written, the record's
  version (last-modified time) the decision read, and the version the write made;
* a hub event of that record naming a written property, with a time after the version read
  and before the version written, is a change our write may have overwritten;
* the property's history (`propertiesWithHistory`) then tells which value was overwritten,
  and the engine decides it as the conflict it was (`engine.decide_overwritten`).

Pure functions here; the processor does the reading.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import msgspec

from crmsync.connectors.base import PropertyValue

if TYPE_CHECKING:  # intake.py checks events with `echoes`
    from crmsync.runtime.intake import SeenChange


class HubWrite(msgspec.Struct, frozen=True):
    """The last update a sync sent to a hub record (persisted with the item)."""

    values: dict[str, str]  # hub property -> value written
    read_at: int  # the record's version the decision read (epoch ms, HubSpot's clock)
    written_at: int  # the record's version our write made


_enc = msgspec.json.Encoder()
_dec = msgspec.json.Decoder(HubWrite)


def encode_hub_write(w: HubWrite) -> bytes:
    return _enc.encode(w)


def decode_hub_write(b: bytes) -> HubWrite:
    return _dec.decode(b)


def suspects(write: HubWrite, seen: Iterable[SeenChange]) -> list[str]:
    """The written properties that an event says changed after the version read and before
    the version written."""
    return sorted({c.property for c in seen
                   if c.property is not None and c.property in write.values
                   and write.read_at < c.occurred_at < write.written_at})


def value_digest(value: str) -> str:
    """What a hub event keeps of the value it reports (SeenChange.value)."""
    return hashlib.blake2b(value.encode(), digest_size=12).hexdigest()


def echoes(write: HubWrite, marks: Iterable[Any]) -> bool:
    """Whether every one of `marks` (a record's events) reports a property set to the value
    `write` wrote (by `value_digest`), at a time inside its window (after the version read, at the latest the
    version written): our write's own events. Such an event brings nothing to sync — if a
    user set that same value meanwhile, the record holds it either way; a later edit has an
    event of its own, after the window — so the record is not read to find that out."""
    seen = list(marks)
    return bool(seen) and all(
        getattr(m, "property", None) is not None and m.value is not None
        and m.property in write.values and value_digest(write.values[m.property]) == m.value
        and write.read_at < m.occurred_at <= write.written_at for m in seen)


def overwritten(write: HubWrite, history: Mapping[str, list[PropertyValue]],
                properties: Iterable[str]) -> dict[str, str]:
    """Per property of `properties`, the value our write replaced that the decision had not
    seen: the newest value set after the version read and before our write, if our value is
    still the newest (a later edit is the current value, decided the ordinary way)."""
    out: dict[str, str] = {}
    for prop in properties:
        ours = write.values.get(prop)
        entries = history.get(prop) or []
        if ours is None or not entries or entries[0].value != ours:
            continue
        for e in entries[1:]:
            if e.at <= write.read_at:
                break
            if e.value != ours:
                out[prop] = e.value
                break
    return out
