"""The engine's pairing agrees with the code it replaced, on generated index states.

Differential tests, kept only while the old code exists: each runs the old implementation and
the new engine function on the same generated inputs and asserts the same answers.
"""

from __future__ import annotations

import sqlite3
import time

from hypothesis import given, settings
from hypothesis import strategies as st

from crmsync.engine.pairing import InFlight, pair_app_page
from crmsync.store import items as store_items
from crmsync.store.db import connect, transaction
from crmsync.store.items import IndexRow

S = "c/contacts"
HUB_IDS = [f"H{i}" for i in range(6)]
APP_IDS = [f"A{i}" for i in range(8)]
KEYS = [f"k{i}" for i in range(5)]
STATES = ("pending", "syncing", "failed", "excluded", "queued", "deleted")


@st.composite
def index_states(draw):
    hubs = draw(st.lists(st.sampled_from(HUB_IDS), unique=True, max_size=5))
    apps = draw(st.lists(st.sampled_from(APP_IDS), unique=True, max_size=5))
    items = []
    # Some items pair a hub and an app record, the others hold one record.
    n_pairs = draw(st.integers(0, min(len(hubs), len(apps))))
    for i in range(n_pairs):
        items.append((hubs[i], apps[i]))
    items += [(h, None) for h in hubs[n_pairs:]]
    items += [(None, a) for a in apps[n_pairs:]]
    rows = []
    for hub_id, app_id in items:
        state = draw(st.sampled_from(STATES))
        category = draw(st.sampled_from(("", "duplicate", "filter")))
        linked = hub_id is not None and app_id is not None and draw(st.booleans())
        rows.append((hub_id, app_id, state, category, b"{}" if linked else None))
    claims = []
    for side, ids in (("hub", [i[0] for i in items if i[0]]), ("app", [i[1] for i in items
                                                                       if i[1]])):
        for k in KEYS:
            if ids and draw(st.booleans()):
                claims.append((side, k, draw(st.sampled_from(ids))))
    return rows, claims


@st.composite
def pages(draw):
    ids = draw(st.lists(st.sampled_from([*APP_IDS, "A8", "A9"]), unique=True, min_size=1,
                        max_size=8))
    rows = [IndexRow(rid, tuple(draw(st.lists(st.sampled_from(KEYS), unique=True, max_size=3))),
                     "1", draw(st.sampled_from(("", "", "", "filter"))))
            for rid in ids]
    cuts = sorted(draw(st.lists(st.integers(0, len(rows)), max_size=2)))
    out, at = [], 0
    for c in [*cuts, len(rows)]:
        out.append(rows[at:c])
        at = c
    return out


def _load(conn: sqlite3.Connection, state) -> None:
    rows, claims = state
    now = time.time()
    with transaction(conn):
        for hub_id, app_id, st_, cat, snap in rows:
            conn.execute("INSERT INTO items (sync_id, hub_id, app_id, state, category, snapshot, "
                         "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                         (S, hub_id, app_id, st_, cat, snap, now, now))
        conn.executemany("INSERT OR IGNORE INTO match_keys (sync_id, side, key, record_id) "
                         "VALUES (?, ?, ?, ?)", [(S, *c) for c in claims])


def _new(conn, rows, flight):
    keys = list({k for r in rows for k in r.keys})
    return pair_app_page(rows, store_items.find_items(conn, S, "app", [r.record_id for r in rows]),
                         store_items.key_holders(conn, S, "app", keys) if keys else {},
                         store_items.key_holders(conn, S, "hub", keys) if keys else {}, flight)


def _shape(pairings):
    return [(p.row.record_id, p.item.item_id if p.item is not None else None, p.duplicate_of,
             p.known) for p in pairings]


@settings(max_examples=400, deadline=None)
@given(index_states(), pages(), st.lists(st.booleans(), min_size=3, max_size=3))
def test_pair_app_page_agrees_with_match_app_records(state, page_list, forget) -> None:
    conn = connect(":memory:")
    try:
        _load(conn, state)
        old_flight, new_flight = store_items.InFlight(), InFlight()
        for i, rows in enumerate(page_list):
            old = store_items.match_app_records(conn, S, rows, old_flight)
            new = _new(conn, rows, new_flight)
            assert _shape(new) == _shape(old)
            assert (new_flight.claimed, new_flight.paired) == (old_flight.claimed,
                                                               old_flight.paired)
            if forget[i % 3]:
                old_flight.forget(old)
                new_flight.forget(new)
                assert (new_flight.claimed, new_flight.paired) == (old_flight.claimed,
                                                                   old_flight.paired)
    finally:
        conn.close()
