"""Differential test, kept only while the old code exists: the loader's pairing of records
met by a batch, through engine.pairing, agrees with the code it replaced."""

from __future__ import annotations

import time

import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from crmsync.config.model import ObjectSync
from crmsync.records import Record
from crmsync.runtime import loader
from crmsync.store import Store

from .fakes import MemorySide, make_ctx

S_SYNC = ObjectSync(connection="c", hub_object="companies", app_object="accounts")
SID = "c/companies"
NAMES = ["acme", "beta", "gamma", ""]
DOMAINS = ["acme.com", "beta.io", ""]
STATES = ("pending", "syncing", "failed", "excluded", "queued", "deleted")


def _rec(rid: str, name: str, domain: str) -> Record:
    return Record(rid, {"name": name, "domain": domain}, 1)


@st.composite
def worlds(draw):
    hub = [_rec(f"H{i}", draw(st.sampled_from(NAMES)), draw(st.sampled_from(DOMAINS)))
           for i in range(draw(st.integers(0, 5)))]
    app = [_rec(f"A{i}", draw(st.sampled_from(NAMES)), draw(st.sampled_from(DOMAINS)))
           for i in range(draw(st.integers(0, 5)))]
    hub_ids = [r.id for r in hub] + ["H8"]  # H8: an indexed record deleted since
    app_ids = [r.id for r in app] + ["A8"]
    hs = draw(st.lists(st.sampled_from(hub_ids), unique=True))
    as_ = draw(st.lists(st.sampled_from(app_ids), unique=True))
    n = draw(st.integers(0, min(len(hs), len(as_))))
    pairs = [(hs[i], as_[i]) for i in range(n)]
    pairs += [(h, None) for h in hs[n:]] + [(None, a) for a in as_[n:]]
    items = [(h, a, draw(st.sampled_from(STATES)), draw(st.sampled_from(("", "duplicate"))),
              b"{}" if h and a and draw(st.booleans()) else None) for h, a in pairs]
    keys = ["name:acme", "name:beta", "name:gamma", "domain:acme.com", "domain:beta.io"]
    claims = []
    for side, ids in (("hub", [p[0] for p in pairs if p[0]]), ("app", [p[1] for p in pairs
                                                                       if p[1]])):
        for k in keys:
            if ids and draw(st.booleans()):
                claims.append((side, k, draw(st.sampled_from(ids))))
    batch = draw(st.lists(st.sampled_from([("hub", i) for i in hub_ids]
                                          + [("app", i) for i in app_ids]),
                          unique=True, min_size=1, max_size=8))
    return hub, app, items, claims, batch


def _shape(works):
    return [(w.item.item_id if w.item is not None else None, w.hub_id, w.app_id,
             w.hub.id if w.hub else None, w.app.id if w.app else None, w.duplicate_of, w.keys,
             w.key_side, w.rekey_own, w.paired_keys, w.payload) for w in works]


async def _both(world):
    hub, app, items, claims, batch = world
    async with Store.open(":memory:") as store:
        def setup(conn):
            now = time.time()
            for h, a, state, cat, snap in items:
                conn.execute("INSERT INTO items (sync_id, hub_id, app_id, state, category, "
                             "snapshot, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?)",
                             (SID, h, a, state, cat, snap, now, now))
            conn.executemany("INSERT OR IGNORE INTO match_keys VALUES (?,?,?,?)",
                             [(SID, *c) for c in claims])
        store.call_blocking(setup)
        ctx = make_ctx(store, S_SYNC, MemorySide("hub", hub), MemorySide("app", app))
        payloads = [[i] for i in range(len(batch))]
        new = await loader.load(ctx, batch, payloads)
        keep = loader.pair_new
        loader.pair_new = loader.pair_new_before
        try:
            old = await loader.load(ctx, batch, payloads)
        finally:
            loader.pair_new = keep
    return _shape(new), _shape(old)


@settings(max_examples=300, deadline=None)
@given(worlds())
def test_pair_new_agrees_with_the_code_it_replaced(world) -> None:
    new, old = trio.run(_both, world)
    assert new == old
