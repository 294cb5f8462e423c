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
