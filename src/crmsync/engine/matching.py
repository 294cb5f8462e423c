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

from collections.abc import Iterable, Mapping
from typing import Any, Literal

import msgspec

from crmsync.engine.rules import SyncRules
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


# --- a create's own record ------------------------------------------------------------------
# A create may have landed although its answer was lost (healed by looking for a record with
# the match key it was sent with), or be refused because a record with the key exists there
# (HubSpot's 409 with the existing id). Which of those records may be taken as the one the
# create makes depends on who creates:
#
# * "sync" (a record synced to the other side): only one that no item links to another record
#   and that is not a failed duplicate; a refused create takes the existing record unless it
#   is linked to another record or failed as a duplicate itself (then this record is a
#   duplicate);
# * "restore" (an operator's restore-deleted): one linked to nothing; otherwise the restore
#   fails as a duplicate.

Creator = Literal["sync", "restore"]


def create_keys(rules: SyncRules, side: Side, values: Mapping[str, Any]) -> dict[str, str]:
    """The match-key fields of a create's `values` on `side` that hold a value, as sent
    (field -> value): the record it made is found by them even if its source record's key
    changes before the create is healed."""
    names = rules.hub_key_props if side == "hub" else rules.app_key_fields
    return {n: str(v) for n in names if (v := values.get(n)) not in (None, "")}


def search_key(rules: SyncRules, side: Side, values: Mapping[str, Any]) -> tuple[str, str] | None:
    """The one (field, value) a create's record is looked for by on `side`: its first match
    key field with a value, a company's domain before its name (the stronger key)."""
    names = rules.hub_key_props if side == "hub" else rules.app_key_fields
    for name in reversed(names) if rules.match == "company" else names:
        v = values.get(name)
        if v not in (None, ""):
            return name, str(v)
    return None


def may_take_found(creator: Creator, holder: Holder | None) -> bool:
    """A record found by a create's match key on the side it creates on (`holder`: its item,
    None when crmsync has no item for it): may it be taken as the record the create made?"""
    if holder is None:
        return True
    if creator == "restore":
        return holder.partner_id is None
    return pairable(holder, None)


def refuse_existing(creator: Creator, side: Side, existing_id: str, own_id: str | None,
                    holder: Holder | None, own_item: bool = False) -> tuple[str, str] | None:
    """A create on `side` refused because record `existing_id` exists there (`holder`: its
    item as matching sees it, None when crmsync has none; `own_item`: that item is the
    creating item itself; `own_id`: the record created from). None: take it (read it and
    pair with it); else the (category, detail) the creating record fails with."""
    if holder is None:
        return None
    if creator == "restore":
        if holder.partner_id is None:
            return None
        return ("duplicate", f"{side} record {existing_id} has the same match key and is "
                             "linked already")
    if own_item:
        return None
    if holder.failed_duplicate or isinstance(match(other(side), own_id, [], [holder]),
                                             Duplicate):
        return ("duplicate", f"same match key as {side} record {existing_id}, already linked"
                if holder.partner_id else
                f"same match key as {side} record {existing_id}, itself failed as a duplicate")
    return None


def existing_unreadable(creator: Creator, side: Side, existing_id: str,
                        refused: tuple[str, str]) -> tuple[str, str]:
    """A record a create was refused for and that `refuse_existing` would take cannot be read
    (gone again): what the creating record fails with. A sync fails with the refusal itself
    (`refused`: its category and message); a restore as a duplicate."""
    if creator == "restore":
        return ("duplicate", f"{side} record {existing_id} has the same match key and is "
                             "linked already")
    return refused
