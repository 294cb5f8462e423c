"""engine.pairing: the app pass's pairing of a page, as properties over generated indexes.

The index is modelled with plain values (items, and the match keys each side's records
claimed); `commit` applies a page's pairings the way the app pass's outcomes do (a pair takes
the app id, the first record with a key claims it, a duplicate claims nothing). Until commit
`2a8b51b` these rules lived in `store.items.match_app_records`; the differential test that
checked the engine against it on generated indexes is in commit 51b8cab.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from hypothesis import given, settings
from hypothesis import strategies as st

from crmsync.engine.pairing import AppPairing, InFlight, pair_app_page

HUB_IDS = [f"H{i}" for i in range(6)]
APP_IDS = [f"A{i}" for i in range(10)]
KEYS = [f"k{i}" for i in range(5)]
STATES = ("pending", "syncing", "failed", "excluded", "queued", "deleted")


@dataclass(frozen=True)
class FakeItem:
    item_id: int
    hub_id: str | None
    app_id: str | None
    state: str = "pending"
    category: str = ""
    snapshot: bytes | None = None

    def record_id(self, side: str) -> str | None:
        return self.hub_id if side == "hub" else self.app_id


@dataclass(frozen=True)
class Row:
    record_id: str
    keys: tuple[str, ...] = ()
    excluded: str = ""


@dataclass
class Index:
    items: list[FakeItem]
    claims: dict[tuple[str, str], str]  # (side, key) -> record id

    def lookups(self, rows: list[Row]) -> tuple[dict[str, FakeItem], ...]:
        by = {s: {it.record_id(s): it for it in self.items if it.record_id(s)}
              for s in ("hub", "app")}
        keys = {k for r in rows for k in r.keys}
        holders = {s: {k: by[s][rid] for (side, k), rid in self.claims.items()
                       if side == s and k in keys and rid in by[s]} for s in ("hub", "app")}
        existing = {r.record_id: by["app"][r.record_id] for r in rows
                    if r.record_id in by["app"]}
        return existing, holders["app"], holders["hub"]

    def decide(self, rows: list[Row], flight: InFlight | None = None
               ) -> list[AppPairing[FakeItem, Row]]:
        return pair_app_page(rows, *self.lookups(rows), flight)

    def commit(self, pairings: list[AppPairing[FakeItem, Row]]) -> None:
        for p in pairings:
            r = p.row
            if p.known and p.item is not None:
                if p.duplicate_of is not None and p.item.snapshot is None:
                    self._put(replace(p.item, state="failed", category="duplicate"))
                continue
            if r.excluded:
                self._put(FakeItem(self._next(), None, r.record_id, "excluded", r.excluded))
            elif p.duplicate_of is not None:
                self._put(FakeItem(self._next(), None, r.record_id, "failed", "duplicate"))
            else:
                self._put(replace(p.item, app_id=r.record_id) if p.item is not None
                          else FakeItem(self._next(), None, r.record_id))
                for k in r.keys:
                    self.claims.setdefault(("app", k), r.record_id)

    def _next(self) -> int:
        return max((it.item_id for it in self.items), default=0) + 1

    def _put(self, item: FakeItem) -> None:
        self.items = [it for it in self.items if it.item_id != item.item_id] + [item]


@st.composite
def indexes(draw) -> Index:
    hubs = draw(st.lists(st.sampled_from(HUB_IDS), unique=True, max_size=5))
    apps = draw(st.lists(st.sampled_from(APP_IDS[:6]), unique=True, max_size=4))
    n_pairs = draw(st.integers(0, min(len(hubs), len(apps))))
    pairs = [(hubs[i], apps[i]) for i in range(n_pairs)]
    pairs += [(h, None) for h in hubs[n_pairs:]] + [(None, a) for a in apps[n_pairs:]]
    items = []
    for i, (h, a) in enumerate(pairs, start=1):
        linked = h is not None and a is not None and draw(st.booleans())
        items.append(FakeItem(i, h, a, draw(st.sampled_from(STATES)),
                              draw(st.sampled_from(("", "duplicate"))),
                              b"{}" if linked else None))
    claims: dict[tuple[str, str], str] = {}
    for side, ids in (("hub", [h for h, _ in pairs if h]), ("app", [a for _, a in pairs if a])):
        for k in KEYS:
            if ids and draw(st.booleans()):
                claims[(side, k)] = draw(st.sampled_from(ids))
    return Index(items, claims)


@st.composite
def pages(draw) -> list[Row]:
    ids = draw(st.lists(st.sampled_from(APP_IDS), unique=True, min_size=1, max_size=8))
    return [Row(rid, tuple(draw(st.lists(st.sampled_from(KEYS), unique=True, max_size=3))),
                draw(st.sampled_from(("", "", "", "filter")))) for rid in ids]


def _shape(pairings: list[AppPairing[FakeItem, Row]]) -> list[tuple[object, ...]]:
    return [(p.row.record_id, p.item.item_id if p.item is not None else None, p.duplicate_of)
            for p in pairings]


def _linked(index: Index, rid: str) -> bool:
    return any(it.app_id == rid and it.snapshot is not None for it in index.items)


@settings(max_examples=300, deadline=None)
@given(indexes(), pages(), st.integers(0, 8))
def test_a_page_split_in_two_pages_in_flight_pairs_as_one_page(index, rows, cut) -> None:
    whole = index.decide(rows)
    flight = InFlight()
    parts = index.decide(rows[:cut], flight) + index.decide(rows[cut:], flight)
    assert _shape(parts) == _shape(whole)


@settings(max_examples=300, deadline=None)
@given(indexes(), pages())
def test_deciding_a_committed_page_again_gives_the_same_answer(index, rows) -> None:
    """A restart re-runs the last page after its commit: nothing changes. (Which record a
    duplicate names may: a stale claim in the index can hold one of its keys, and a later
    record of the page claims another of them.)"""
    first = index.decide(rows)
    index.commit(first)
    again = index.decide(rows)
    assert [(p.row.record_id, p.duplicate_of is None) for p in again] == \
        [(p.row.record_id, p.duplicate_of is None) for p in first]
    for a, b in zip(first, again, strict=True):
        if a.item is not None and b.item is not None:
            assert a.item.item_id == b.item.item_id


@settings(max_examples=300, deadline=None)
@given(indexes(), pages())
def test_one_hub_record_pairs_with_one_app_record_and_first_claim_wins(index, rows) -> None:
    got = index.decide(rows)
    paired: dict[int, str] = {}
    holder_of: dict[str, str] = {}
    for p in got:
        r = p.row
        if _linked(index, r.record_id):
            continue
        if r.excluded:
            # An excluded record pairs with nothing and is nobody's duplicate.
            assert p.duplicate_of is None
            assert p.item is None or p.item.app_id == r.record_id
            continue
        if p.duplicate_of is not None:
            # The record it duplicates holds one of its keys: earlier in the page, in the
            # index, or as the partner of a hub record holding one.
            hub_partners = {it.app_id for it in index.items
                            for k in r.keys if index.claims.get(("hub", k)) == it.hub_id}
            hub_partners |= {paired[it.item_id] for it in index.items if it.item_id in paired
                             for k in r.keys if index.claims.get(("hub", k)) == it.hub_id}
            assert (p.duplicate_of in {holder_of.get(k) for k in r.keys}
                    or p.duplicate_of in {index.claims.get(("app", k)) for k in r.keys}
                    or p.duplicate_of in hub_partners), (p, index)
            continue
        for k in r.keys:
            holder_of.setdefault(k, r.record_id)
        if p.item is not None and p.item.hub_id is not None and not p.known:
            # A pair: the hub item is not paired with another app record.
            assert p.item.app_id in (None, r.record_id)
            assert paired.setdefault(p.item.item_id, r.record_id) == r.record_id
