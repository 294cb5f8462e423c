"""Matching: what a record that is not linked yet does about the records holding its match
keys. Every path that pairs records (a record first seen, a record synced again, a create
looking for what it may have made, a create refused because the record exists) asks here,
so that a link is made or moved only by these rules.

* Another record of its own side holds one of its keys: it is a duplicate of that record.
* A record of the other side holds one:
  - not paired with anything (and not deleted): the two pair;
  - paired with this very record: they are paired already;
  - paired with another record of this side (even one deleted since): a duplicate. Pairing
    would move that link; creating would make a second record with the key over there.
* A record failed as a duplicate is never a partner and never makes another record a
  duplicate: it stays out of the sync until its key changes.
* Nobody holds its keys: it is alone (created on the other side where the direction allows).

Pure: the caller looks the holders up (the index, or a search on a side) and passes them in.
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from crmsync.engine.types import Side, other


class Holder(msgspec.Struct, frozen=True):
    """A record holding a match key, as the index knows it."""

    record_id: str
    # The record of the other side it is linked (or paired) to, if any.
    partner_id: str | None = None
    # Its item's state and category; "" when crmsync has no item for it (not seen yet).
    state: str = ""
    category: str = ""

    @property
    def failed_duplicate(self) -> bool:
        # Only a failed duplicate carries this category (shown `queued` while a sync of it
        # waits its turn).
        return self.category == "duplicate"


class Pair(msgspec.Struct, frozen=True):
    holder: Holder


class Duplicate(msgspec.Struct, frozen=True):
    of: str  # "<side> record <id>": the record that holds the key

    @property
    def detail(self) -> str:
        return f"same match key as {self.of}"


Match = Pair | Duplicate | None


def pairable(holder: Holder, own_id: str | None) -> bool:
    """Whether a record of the other side holding our key may be paired with ours."""
    if holder.failed_duplicate:
        return False
    if holder.partner_id is not None:
        return holder.partner_id == own_id
    return holder.state != "deleted"


def match(side: Side, own_id: str | None, same_side: Iterable[Holder],
          other_side: Iterable[Holder]) -> Match:
    """What a record of `side` (id `own_id`, None for one not written yet) does about the
    holders of its keys on its own side and on the other side (see the module's rules)."""
    for h in same_side:
        if h.record_id != own_id and not h.failed_duplicate:
            return Duplicate(f"{side} record {h.record_id}")
    for h in other_side:
        if h.failed_duplicate:
            continue
        if pairable(h, own_id):
            return Pair(h)
        if h.partner_id is None:
            continue  # deleted before it was ever paired: nobody's partner
        if h.state == "deleted":
            # Its partner on our side was deleted: the record over there still holds the key.
            return Duplicate(f"{other(side)} record {h.record_id}")
        return Duplicate(f"{side} record {h.partner_id}")
    return None
