"""Pairing records that are not linked yet, a batch at a time.

Two batch rules, both pure (the caller reads the index and passes in what it found):

* `pair_app_page`: the initial sync's app pass, one page of app records in page order against
  the hub index and the claims of the pages before it (DESIGN.md "Initial sync", step 2);
* `merge_fresh` and `pair_fresh`: records met by one sync batch (a poll, a webhook, the hub
  pass) that were never linked, against each other and the index, through
  `engine.matching.match`.

The index's items are read through the `IndexedItem` protocol, so the store's `Item` (or any
value with these attributes) comes back as it went in.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

import msgspec

from crmsync.engine.matching import Duplicate, Holder, match
from crmsync.engine.types import Side, other


class IndexedItem(Protocol):
    """An item of the index as pairing reads it."""

    @property
    def item_id(self) -> int: ...

    @property
    def hub_id(self) -> str | None: ...

    @property
    def app_id(self) -> str | None: ...

    @property
    def state(self) -> str: ...

    @property
    def category(self) -> str: ...

    # Not None once the item is linked (the link's snapshot; pairing never reads it).
    @property
    def snapshot(self) -> object: ...

    def record_id(self, side: str) -> str | None: ...


class IndexedRecord(Protocol):
    """A record of one page of the app pass: its id, match keys, and why it is excluded."""

    @property
    def record_id(self) -> str: ...

    @property
    def keys(self) -> tuple[str, ...]: ...

    @property
    def excluded(self) -> str: ...


ItemT = TypeVar("ItemT", bound=IndexedItem)
RowT = TypeVar("RowT", bound=IndexedRecord)


# --- the app pass -----------------------------------------------------------------------------


@dataclass
class InFlight:
    """Keys and pairings claimed by app-pass pages that are not committed yet, so that a
    page looked up while earlier ones are still being written sees their claims."""

    claimed: dict[str, str] = field(default_factory=dict)  # key -> app record id
    paired: dict[int, str] = field(default_factory=dict)  # hub item id -> app record id

    def forget(self, pairings: Iterable[AppPairing[ItemT, RowT]]) -> None:
        """The page holding these pairings committed: the index knows its claims now."""
        for p in pairings:
            for k in p.row.keys:
                if self.claimed.get(k) == p.row.record_id:
                    del self.claimed[k]
            if p.item is not None and self.paired.get(p.item.item_id) == p.row.record_id:
                del self.paired[p.item.item_id]


@dataclass(frozen=True)
class AppPairing(Generic[ItemT, RowT]):
    """Where an app record stands in the app pass.

    `item` is the app record's own item when it was seen before, else the unpaired hub item
    holding its match key (the pair to link), else None (the record is alone). A record whose
    key another app record claimed first has `duplicate_of` set (that record's id)."""

    row: RowT
    item: ItemT | None = None
    duplicate_of: str | None = None

    @property
    def known(self) -> bool:
        return self.item is not None and self.item.app_id == self.row.record_id


def pair_app_page(rows: Sequence[RowT], existing: Mapping[str, ItemT],
                  app_holders: Mapping[str, ItemT], hub_holders: Mapping[str, ItemT],
                  in_flight: InFlight | None = None) -> list[AppPairing[ItemT, RowT]]:
    """The app pass's decision for one page, in page order.

    `existing`: the items of the page's records, by app record id; `app_holders` and
    `hub_holders`: the items whose app / hub record holds one of the page's keys, by key.
    For every record not yet linked (seen before or not): one whose key another app record
    holds (in the index, in a page still in flight, or earlier in this page) is a duplicate of
    it; else one whose key a hub record holds pairs with that hub record, unless that hub
    record is paired with another app record (a company matched by name and by domain to two
    app companies: a duplicate too); otherwise it is alone. An excluded record pairs with
    nothing. `in_flight` takes this page's claims. Deciding a page again gives the same
    answer.
    """
    flight = in_flight if in_flight is not None else InFlight()
    claimed_here = flight.claimed
    paired_here = flight.paired
    out: list[AppPairing[ItemT, RowT]] = []
    for r in rows:
        it = existing.get(r.record_id)
        if it is not None and it.snapshot is not None:
            out.append(AppPairing(r, it))  # linked: the app pass has nothing to decide about it
            continue
        if r.excluded:
            out.append(AppPairing(r, it))
            continue
        holder_app: str | None = None
        for k in r.keys:
            owner = claimed_here.get(k)
            if owner is not None and owner != r.record_id:
                holder_app = owner
                break
            h = app_holders.get(k)
            if h is not None and h.app_id is not None and h.app_id != r.record_id:
                holder_app = h.app_id
                break
        hub_item: ItemT | None = None
        if holder_app is None:
            if it is not None and it.hub_id is not None:
                hub_item = it  # paired earlier (a resumed page)
            else:
                cand = next((hub_holders[k] for k in r.keys if k in hub_holders), None)
                if cand is not None:
                    partner = paired_here.get(cand.item_id) or cand.app_id
                    if partner is not None and partner != r.record_id:
                        holder_app = partner
                    else:
                        hub_item = cand
        if holder_app is not None:
            out.append(AppPairing(r, it, holder_app))
            continue
        for k in r.keys:
            claimed_here.setdefault(k, r.record_id)
        if hub_item is not None:
            paired_here[hub_item.item_id] = r.record_id
        out.append(AppPairing(r, hub_item or it))
    return out


# --- records met by one sync batch -------------------------------------------------------------


class Met(msgspec.Struct, frozen=True):
    """A record not linked yet that one sync batch met: its side, its id (None for a record
    not written yet) and the match keys it holds now."""

    side: Side
    record_id: str | None
    keys: tuple[str, ...]


def unlinked_side(item: IndexedItem | None, hub_read: bool, app_read: bool) -> Side | None:
    """The side of the only record of an item that was never linked, when that record was
    read now and the other side has none (None: no item, linked, paired already, or its
    record is gone). Such a record is matched again by the keys it holds now."""
    if item is None or item.snapshot is not None:
        return None
    if item.hub_id and not item.app_id and hub_read and not app_read:
        return "hub"
    if item.app_id and not item.hub_id and app_read and not hub_read:
        return "app"
    return None


def merge_fresh(met: Sequence[Met | None]) -> dict[int, int]:
    """Records first seen in one batch (no item yet; None for the others), one per side with
    a match key in common, are one pair: returns {position of the app record: position of the
    hub record it joins}. The first hub record holding a key takes the first app record that
    holds it; each hub record takes one app record."""
    by_key: dict[str, int] = {}
    for i, m in enumerate(met):
        if m is not None and m.side == "hub":
            for k in m.keys:
                by_key.setdefault(k, i)
    out: dict[int, int] = {}
    taken: set[int] = set()
    if not by_key:
        return out
    for i, m in enumerate(met):
        if m is None or m.side != "app":
            continue
        partner = next((by_key[k] for k in m.keys if k in by_key), None)
        if partner is not None and partner not in taken:
            taken.add(partner)
            out[i] = partner
    return out


class Paired(msgspec.Struct, frozen=True):
    """Pair with the item holding the key: its record of the other side joins this one."""

    item_id: int


Fresh = Duplicate | Paired | None


def _holder(it: IndexedItem, side: Side, taken: Mapping[int, str]) -> Holder:
    """The record of `side` in item `it`, as matching sees it (`taken`: items paired in this
    batch, with the record they were paired to)."""
    return Holder(it.record_id(side) or "", taken.get(it.item_id, it.record_id(other(side))),
                  it.state, it.category)


def pair_fresh(met: Sequence[Met], hub_holders: Mapping[str, IndexedItem],
               app_holders: Mapping[str, IndexedItem]) -> list[Fresh]:
    """What each record met by one batch does about the index (`*_holders`: the items whose
    record of that side holds one of the batch's keys, by key) and the records before it in
    the batch, through `engine.matching.match`: a `Duplicate`, `Paired` with an item whose
    record of the other side becomes its partner (each item once per batch), or None (alone,
    or paired with that item already). A record that is not a duplicate claims its keys for
    the records after it."""
    holders: dict[Side, Mapping[str, IndexedItem]] = {"hub": hub_holders, "app": app_holders}
    # A record of the batch that turns out a duplicate gives up the keys it held in the index
    # when the batch commits; a record that was taken for its duplicate because of such a key
    # would pair (or stand alone) the next time it is decided. Deciding again without those
    # holders until none is left makes the batch's answer the one it keeps (a chain such as
    # H0 → H2 → H4 within one batch). Holders are only ever removed, so this ends.
    while True:
        out = _pair_once(met, holders)
        gone = {(m.side, m.record_id) for m, f in zip(met, out, strict=True)
                if isinstance(f, Duplicate)}
        stale = {side: [k for k, it in by_key.items() if (side, it.record_id(side)) in gone]
                 for side, by_key in holders.items()}
        if not any(stale.values()):
            return out
        holders = {side: {k: it for k, it in by_key.items() if k not in stale[side]}
                   for side, by_key in holders.items()}


def _pair_once(met: Sequence[Met], holders: Mapping[Side, Mapping[str, IndexedItem]]
               ) -> list[Fresh]:
    claimed: dict[tuple[str, str], str] = {}
    taken: dict[int, str] = {}
    out: list[Fresh] = []
    for m in met:
        side = m.side
        own_id = m.record_id
        same = [Holder(claimed[(side, k)]) for k in m.keys if (side, k) in claimed]
        same += [_holder(holders[side][k], side, taken) for k in m.keys if k in holders[side]]
        across = [holders[other(side)][k] for k in m.keys if k in holders[other(side)]]
        found = match(side, own_id, same, [_holder(it, other(side), taken) for it in across])
        if isinstance(found, Duplicate):
            out.append(found)
            continue
        for k in m.keys:
            claimed[(side, k)] = own_id or ""
        if found is None:
            out.append(None)
            continue
        partner = next(it for it in across if _holder(it, other(side), taken) == found.holder)
        if partner.record_id(side) is not None:
            out.append(None)  # paired with this very record already
            continue
        taken[partner.item_id] = own_id or ""
        out.append(Paired(partner.item_id))
    return out
