"""`apply_outcomes_apart`: an outcome that breaks a unique index is left out, the rest of the
batch (and the caller's transaction) commits."""

from __future__ import annotations

from crmsync.store.cursors import get_cursor, set_cursor
from crmsync.store.items import (
    HistoryEntry,
    Outcome,
    apply_outcomes,
    apply_outcomes_apart,
    find_item,
    history_for,
)

S = "shop/contacts"


async def test_a_conflicting_outcome_is_left_out_and_the_others_apply(store):
    await store.call(apply_outcomes, S, [Outcome(state="syncing", hub_id="H1", app_id="A1")])
    h1 = await store.read(find_item, S, "hub", "H1")

    def batch(conn):
        refused = apply_outcomes_apart(conn, S, [
            Outcome(state="pending", hub_id="H2", history=HistoryEntry("create", hub_id="H2")),
            # H1 is in an item already (another sync committed it first).
            Outcome(state="pending", hub_id="H1", app_id="A9"),
            Outcome(item_id=h1.item_id, state="failed", category="invalid_value"),
        ])
        set_cursor(conn, S, "hub", "c1")  # the caller's own write, in the same transaction
        return refused

    refused = await store.call(batch)
    assert list(refused) == [1] and "UNIQUE constraint failed" in refused[1]
    h2 = await store.read(find_item, S, "hub", "H2")
    assert h2 is not None and h2.state == "pending"
    assert [e[3] for e in await store.read(history_for, S, h2.item_id)] == ["create"]
    assert (await store.read(find_item, S, "app", "A9")) is None
    assert (await store.read(find_item, S, "hub", "H1")).state == "failed"
    assert await store.read(get_cursor, S, "hub") == "c1"


async def test_without_a_conflict_nothing_is_left_out(store):
    refused = await store.call(apply_outcomes_apart, S,
                               [Outcome(state="pending", hub_id="H1"),
                                Outcome(state="pending", app_id="A1")])
    assert refused == {}
    assert (await store.read(find_item, S, "app", "A1")) is not None
