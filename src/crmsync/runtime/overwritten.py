"""Hub edits that our own write overwrote unseen (issue 10 item 6).

HubSpot has no conditional update: between our read of a hub record and our write of one of
its properties, a user may change that property, and our write replaces the edit without the
decision having seen it; the edit's own webhook then finds the hub holding our value, which
looks like no change. The window cannot be closed, but it can be seen:

* every hub update of a sync leaves a `HubWrite` on the item: the values written, the record's
  version (last-modified time) the decision read, and the version the write made;
* a hub event of that record naming a written property, with a time after the version read
  and before the version written, is a change our write may have overwritten; so is one at
  the very millisecond of our write with another value than ours (HubSpot's times are
  milliseconds: a user's save and our write can share one, the user's first);
* a write whose decision read no version newer than the one our previous write made (it
  saw nothing since, in particular nothing that write overwrote) carries that write's window
  on (`following`): an edit our first write overwrote is still unseen when a second write
  follows before the edit's event is handled;
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
    # Hub property -> values our earlier writes of the window set (`following`), oldest first.
    earlier: dict[str, list[str]] = msgspec.field(default_factory=dict)

    def ours(self, prop: str) -> set[str]:
        """The values of `prop` our writes of this window set."""
        got = set(self.earlier.get(prop, ()))
        if prop in self.values:
            got.add(self.values[prop])
        return got


# Values of a property kept from earlier writes of one window: a window goes on only while
# every decision read our own last write, and a history read shows 20 values (fact sheet).
EARLIER_KEPT = 20


def following(previous: HubWrite | None, values: dict[str, str], read_at: int,
              written_at: int) -> HubWrite:
    """The HubWrite of a write whose decision read version `read_at` and that made
    `written_at`, after the item's `previous` one. When the version read is no newer than the
    one `previous` made, the decision saw nothing that write overwrote unseen: the window
    starts at `previous`'s read, and its values count as ours (seed 7 of the randomized
    e2e test: a hub edit our write replaced in the same millisecond, then an app edit synced
    over the record before the hub edit's event came)."""
    if previous is None or read_at > previous.written_at:
        return HubWrite(values, read_at, written_at)
    earlier = {k: list(v) for k, v in previous.earlier.items()}
    for prop, value in previous.values.items():
        kept = earlier.setdefault(prop, [])
        if value not in kept:
            kept.append(value)
        del kept[:-EARLIER_KEPT]
    # An indexed read (runtime/reads.py) may show a version older than the last decision's.
    return HubWrite({**previous.values, **values}, min(previous.read_at, read_at), written_at,
                    earlier)


_enc = msgspec.json.Encoder()
_dec = msgspec.json.Decoder(HubWrite)


def encode_hub_write(w: HubWrite) -> bytes:
    return _enc.encode(w)


def decode_hub_write(b: bytes) -> HubWrite:
    return _dec.decode(b)


def suspects(write: HubWrite, seen: Iterable[SeenChange]) -> list[str]:
    """The written properties that an event says changed after the version read and before
    the version written, or at the version written to another value than ours (a save in
    the same millisecond as our write; `overwritten` tells from the history whether it came
    first)."""
    return sorted({c.property for c in seen
                   if c.property is not None and c.property in write.values
                   and write.read_at < c.occurred_at <= write.written_at
                   and (c.occurred_at < write.written_at
                        or (c.value is not None and c.value not in
                            {value_digest(v) for v in write.ours(c.property)}))})


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
        and m.property in write.values
        and m.value in {value_digest(v) for v in write.ours(m.property)}
        and write.read_at < m.occurred_at <= write.written_at for m in seen)


def overwritten(write: HubWrite, history: Mapping[str, list[PropertyValue]],
                properties: Iterable[str]) -> dict[str, str]:
    """Per property of `properties`, the value our write replaced that the decision had not
    seen: the newest value other than ours (this window's writes) set after the version read,
    if our last value is still the newest (a later edit is the current value, decided the
    ordinary way)."""
    out: dict[str, str] = {}
    for prop in properties:
        last = write.values.get(prop)
        entries = history.get(prop) or []
        if last is None or not entries or entries[0].value != last:
            continue
        ours = write.ours(prop)
        for e in entries[1:]:
            if e.at <= write.read_at:
                break
            if e.value not in ours:
                out[prop] = e.value
                break
    return out
