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

from crmsync.engine.matching import Duplicate
from crmsync.engine.pairing import (
    AppPairing,
    Fresh,
    InFlight,
    Met,
    Paired,
    merge_fresh,
    pair_app_page,
    pair_fresh,
)

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
        both = h is not None and a is not None
        linked = both and draw(st.booleans())
        # A failed duplicate is a record alone that claims no key.
        dup = not both and draw(st.booleans())
        items.append(FakeItem(i, h, a, "failed" if dup else draw(st.sampled_from(STATES)),
                              "duplicate" if dup else "", b"{}" if linked else None))
    claims: dict[tuple[str, str], str] = {}
    for side in ("hub", "app"):
        ids = [it.record_id(side) for it in items
               if it.record_id(side) and it.category != "duplicate"]
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


# --- records met by one sync batch ----------------------------------------------------------
# These rules lived in runtime/loader.py (`pair_new`, `_merge_fresh`); the differential test
# that checked the engine against them through `loader.load` is in the commit that added
# `pair_fresh`.


def _holders(index: Index, side: str) -> dict[str, FakeItem]:
    by = {it.record_id(side): it for it in index.items if it.record_id(side)}
    return {k: by[rid] for (s, k), rid in index.claims.items() if s == side and rid in by}


@st.composite
def batches(draw) -> list[Met]:
    out = []
    for rid in draw(st.lists(st.sampled_from(HUB_IDS + APP_IDS + ["new-h", "new-a"]),
                             unique=True, min_size=1, max_size=8)):
        side = "hub" if rid.startswith(("H", "new-h")) else "app"
        out.append(Met(side, None if rid.startswith("new") else rid,
                       tuple(draw(st.lists(st.sampled_from(KEYS), unique=True, max_size=3)))))
    return out


def _apply(index: Index, met: list[Met], got: list[Fresh]) -> None:
    """Commit the batch like its sync does (direction both): a pair links, a record alone is
    created on the other side and linked to the record made, a duplicate claims nothing.
    A record's claims follow the keys it holds now."""
    for m, f in zip(met, got, strict=True):
        if m.record_id is None:
            continue
        keep = () if isinstance(f, Duplicate) else m.keys
        index.claims = {sk: rid for sk, rid in index.claims.items()
                        if not (sk[0] == m.side and rid == m.record_id and sk[1] not in keep)}
        if isinstance(f, Duplicate):
            continue
        there = "app" if m.side == "hub" else "hub"
        it = (next(i for i in index.items if i.item_id == f.item_id) if isinstance(f, Paired)
              else next((i for i in index.items if i.record_id(m.side) == m.record_id), None))
        if it is None:
            it = FakeItem(index._next(), None, None)
        made = it.record_id(there) or f"made-for-{m.record_id}"
        index._put(replace(it, **{f"{m.side}_id": m.record_id, f"{there}_id": made},
                           state="syncing", category="", snapshot=b"{}"))
        for k in m.keys:
            index.claims.setdefault((m.side, k), m.record_id)
            if f is None:
                index.claims.setdefault((there, k), made)


@settings(max_examples=300, deadline=None)
@given(indexes(), batches())
def test_a_batch_pairs_each_item_once_and_never_with_a_duplicate_or_a_taken_record(
        index, met) -> None:
    items = {it.item_id: it for it in index.items}
    got = pair_fresh(met, _holders(index, "hub"), _holders(index, "app"))
    paired = [f.item_id for f in got if isinstance(f, Paired)]
    assert len(paired) == len(set(paired))
    for m, f in zip(met, got, strict=True):
        if isinstance(f, Paired):
            it = items[f.item_id]
            assert it.category != "duplicate"
            # Its record of the other side holds one of the keys, and it has no record on
            # this record's side to be moved away from.
            assert it.record_id(m.side) is None
            assert any(index.claims.get(("app" if m.side == "hub" else "hub", k))
                       == it.record_id("app" if m.side == "hub" else "hub") for k in m.keys)


@settings(max_examples=300, deadline=None)
@given(indexes(), batches())
def test_a_later_record_of_a_batch_with_a_key_of_an_earlier_one_is_its_duplicate(
        index, met) -> None:
    got = pair_fresh(met, _holders(index, "hub"), _holders(index, "app"))
    kept: dict[tuple[str, str], str | None] = {}
    for m, f in zip(met, got, strict=True):
        if isinstance(f, Duplicate):
            continue
        for k in m.keys:
            if (m.side, k) in kept and kept[(m.side, k)] != m.record_id:
                raise AssertionError(f"{m} shares {k} with {kept[(m.side, k)]}")
            kept[(m.side, k)] = m.record_id


@settings(max_examples=300, deadline=None)
@given(indexes(), batches())
def test_deciding_a_batch_again_after_its_commit_is_stable(index, met) -> None:
    """Outcomes of deciding twice are stable: a pair made is found paired already (nothing to
    do), a duplicate stays a duplicate, a record alone (created on the other side) is
    found paired. Records of one batch sharing a key across sides were merged before
    (`merge_fresh`) and are left out here."""
    hub_keys = {k for m in met if m.side == "hub" for k in m.keys}
    met = [m for m in met if m.record_id is not None
           and (m.side == "hub" or not hub_keys & set(m.keys))]
    if any(it.record_id(m.side) == m.record_id and it.snapshot is not None
           for m in met for it in index.items):
        return  # linked records are not met as records to pair
    mine = {(m.side, m.record_id): set(m.keys) for m in met}
    if any(k not in mine[(side, rid)] for (side, k), rid in index.claims.items()
           if (side, rid) in mine):
        # A record of the batch let go of a key since: a duplicate of it may pair now, which
        # is the rule ("until its key changes"), not an instability.
        return
    first = pair_fresh(met, _holders(index, "hub"), _holders(index, "app"))
    _apply(index, met, first)
    again = pair_fresh(met, _holders(index, "hub"), _holders(index, "app"))
    for f, g in zip(first, again, strict=True):
        if isinstance(f, Duplicate):
            assert isinstance(g, Duplicate)
        else:
            assert g is None, (f, g)


def test_a_record_whose_key_holder_turns_out_a_duplicate_in_the_same_batch_is_not_one() -> None:
    """The counterexample Hypothesis found for the property above: H2 holds k0, but in this
    batch H2 is a duplicate of H4 (k2) and gives k0 up when the batch commits. H0 (k0) was
    taken for H2's duplicate, then decided alone the next time. It is alone from the start."""
    index = Index(
        items=[FakeItem(1, "H0", None, "failed", "duplicate"),
               FakeItem(3, "H4", None), FakeItem(5, "H2", None)],
        claims={("hub", "k0"): "H2", ("hub", "k2"): "H4"})
    met = [Met("hub", "H0", ("k0",)), Met("hub", "H2", ("k0", "k1", "k2"))]
    first = pair_fresh(met, _holders(index, "hub"), _holders(index, "app"))
    assert first[0] is None and isinstance(first[1], Duplicate), first
    _apply(index, met, first)
    assert pair_fresh(met, _holders(index, "hub"), _holders(index, "app"))[0] is None


@settings(max_examples=300, deadline=None)
@given(batches())
def test_records_first_seen_together_merge_one_to_one_on_a_shared_key(met) -> None:
    fresh: list[Met | None] = [m if m.record_id is None or m.keys else None for m in met]
    merged = merge_fresh(fresh)
    assert len(set(merged.values())) == len(merged)
    first_hub: dict[str, int] = {}
    for i, m in enumerate(fresh):
        if m is not None and m.side == "hub":
            for k in m.keys:
                first_hub.setdefault(k, i)
    taken: set[int] = set()
    for i, m in enumerate(fresh):
        if m is None or m.side != "app":
            assert i not in merged
            continue
        # The hub record holding its first key that any hub record of the batch holds.
        j = next((first_hub[k] for k in m.keys if k in first_hub), None)
        if j is not None and j not in taken:
            assert merged.get(i) == j
            taken.add(j)
        else:
            assert i not in merged
