"""Sync items through the Store: the index, the app pass, outcomes, states, history."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from typing import Any

import pytest
import trio

from crmsync.records import Record
from crmsync.runtime.app_pass import pair_app_records
from crmsync.store import (
    Store,
    StoreError,
    cursors,
    deletes,
    events,
    inbox,
    initial,
    restores,
    scanned,
)
from crmsync.store.items import (
    STATES,
    HistoryEntry,
    IndexRow,
    Item,
    Outcome,
    apply_outcomes,
    counts,
    drop_sync,
    find_item,
    get_item,
    history_for,
    index_records,
    key_holder,
    list_items,
    mark_queued,
    new_item,
    prune_history,
    set_state,
)

S = "shop/contacts"
OTHER = "shop/companies"


async def run(store: Store, fn: Callable[..., Any], *args: Any) -> Any:
    return await store.call(fn, *args)


async def item_of(store: Store, side: str, record_id: str, sync_id: str = S) -> Item:
    it = await store.read(find_item, sync_id, side, record_id)
    assert it is not None, (side, record_id)
    return it


async def holder(store: Store, side: str, key: str, sync_id: str = S) -> Item | None:
    return await store.read(key_holder, sync_id, side, [key])


def n_items(conn: sqlite3.Connection, sync_id: str = S) -> int:
    return conn.execute("SELECT count(*) FROM items WHERE sync_id = ?", (sync_id,)).fetchone()[0]


# --- index_records ------------------------------------------------------------------------------


async def test_index_records_new_rows_are_pending_or_excluded(store):
    with trio.fail_after(10):
        await run(store, index_records, S, "hub", [
            IndexRow("H1", ("ann@example.com",), "v1"),
            IndexRow("H2", (), "v1", excluded="no_unique_id", detail="no valid email"),
        ])
        h1, h2 = await item_of(store, "hub", "H1"), await item_of(store, "hub", "H2")
    assert (h1.state, h1.category, h1.match_key, h1.hub_version, h1.app_id, h1.snapshot) == \
        ("pending", "", "ann@example.com", "v1", None, None)
    assert (h2.state, h2.category, h2.detail) == ("excluded", "no_unique_id", "no valid email")
    assert not h1.linked


async def test_index_records_refreshes_versions_of_known_records(store):
    with trio.fail_after(10):
        await run(store, index_records, S, "hub", [IndexRow("H1", ("ann@example.com",), "v1")])
        h1 = await item_of(store, "hub", "H1")
        await run(store, apply_outcomes, S, [Outcome(item_id=h1.item_id, state="syncing",
                                                     app_id="A1", snapshot=b"snap")])
        await run(store, index_records, S, "hub", [IndexRow("H1", ("ann@example.com",), "v2")])
        again = await item_of(store, "hub", "H1")
        total = await store.read(n_items)
    assert again.item_id == h1.item_id
    assert again.hub_version == "v2"
    assert (again.state, again.snapshot, again.app_id) == ("syncing", b"snap", "A1")
    assert total == 1


async def test_index_records_keys_are_first_come_first_served(store):
    with trio.fail_after(10):
        await run(store, index_records, S, "hub", [IndexRow("H1", ("k1",), "1")])
        await run(store, index_records, S, "hub", [
            IndexRow("H2", ("k1",), "1"),  # k1 is H1's since the page before
            IndexRow("H3", ("k2",), "1"),
            IndexRow("H4", ("k2", "k3"), "1"),  # k2 is H3's, earlier in this page; k3 is free
        ])
        assert (await holder(store, "hub", "k1")).hub_id == "H1"
        assert (await holder(store, "hub", "k2")).hub_id == "H3"
        assert (await holder(store, "hub", "k3")).hub_id == "H4"
        # Sides and object syncs do not share keys.
        assert await holder(store, "app", "k1") is None
        assert await holder(store, "hub", "k1", OTHER) is None


async def test_excluded_records_claim_no_key(store):
    with trio.fail_after(10):
        await run(store, index_records, S, "hub", [IndexRow("H1", ("k1",), "1", excluded="filter")])
        assert await holder(store, "hub", "k1") is None
        await run(store, index_records, S, "hub", [IndexRow("H2", ("k1",), "1")])
        assert (await holder(store, "hub", "k1")).hub_id == "H2"


async def test_index_records_on_the_app_side(store):
    with trio.fail_after(10):
        await run(store, index_records, S, "app", [IndexRow("A1", ("k1",), "7")])
        a1 = await item_of(store, "app", "A1")
        assert (a1.app_id, a1.hub_id, a1.app_version, a1.state) == ("A1", None, "7", "pending")
        assert (await holder(store, "app", "k1")).app_id == "A1"


async def test_new_item_returns_the_existing_one(store):
    with trio.fail_after(10):
        first = await run(store, new_item, S, "hub", "H9", ("k9",), "1")
        again = await run(store, new_item, S, "hub", "H9", ("k9",), "2")
    assert first.item_id == again.item_id
    assert first.state == "pending"


async def test_an_unknown_side_is_refused(store):
    with trio.fail_after(10), pytest.raises(ValueError):
        await run(store, index_records, S, "middle", [IndexRow("X1")])


# --- the app pass -------------------------------------------------------------------------------


async def test_app_record_pairs_with_the_hub_record_of_the_same_key(store):
    with trio.fail_after(10):
        await run(store, index_records, S, "hub", [IndexRow("H1", ("ann@example.com",), "1")])
        h1 = await item_of(store, "hub", "H1")
        (p,) = await run(store, pair_app_records, S, [IndexRow("A1", ("ann@example.com",), "5")])
        total = await store.read(n_items)
    assert p.duplicate_of is None
    assert p.item is not None
    assert (p.item.item_id, p.item.hub_id, p.item.app_id, p.item.app_version) == \
        (h1.item_id, "H1", "A1", "5")
    assert total == 1


async def test_a_later_app_record_with_the_same_key_is_a_duplicate_of_the_first(store):
    with trio.fail_after(10):
        await run(store, index_records, S, "hub", [IndexRow("H1", ("ann@example.com",), "1")])
        await run(store, pair_app_records, S, [IndexRow("A1", ("ann@example.com",), "1")])
        (p,) = await run(store, pair_app_records, S, [IndexRow("A2", ("ann@example.com",), "1")])
        a1 = await item_of(store, "app", "A1")
    assert p.duplicate_of == "A1"
    assert p.item is not None and p.item.app_id == "A2"
    assert (p.item.state, p.item.category, p.item.hub_id) == ("failed", "duplicate", None)
    assert "A1" in p.item.detail
    assert a1.hub_id == "H1"  # the first keeps its pair


async def test_duplicates_within_one_page_and_without_a_hub_record(store):
    with trio.fail_after(10):
        got = await run(store, pair_app_records, S, [
            IndexRow("A1", ("bob@example.com",), "1"),
            IndexRow("A2", ("bob@example.com",), "1"),
            IndexRow("A3", ("cy@example.com",), "1"),
        ])
    assert [p.duplicate_of for p in got] == [None, "A1", None]
    assert [(p.item.state, p.item.hub_id) for p in got] == \
        [("pending", None), ("failed", None), ("pending", None)]


async def test_an_excluded_app_record(store):
    with trio.fail_after(10):
        await run(store, index_records, S, "hub", [IndexRow("H1", ("k",), "1")])
        (p,) = await run(store, pair_app_records, S, [
            IndexRow("A1", ("k",), "1", excluded="filter", detail="tier is bronze")])
        h1 = await item_of(store, "hub", "H1")
    assert (p.item.state, p.item.category, p.item.detail) == ("excluded", "filter", "tier is bronze")
    assert p.item.hub_id is None and h1.app_id is None  # an excluded record pairs with nothing


COMPANY_HUB = IndexRow("H1", ("name:acme", "domain:acme.com"), "1")


@pytest.mark.parametrize("pages", [1, 2])
async def test_company_matched_by_name_and_domain_to_two_app_records(store, pages):
    rows = [IndexRow("A1", ("name:acme", "domain:acme.io"), "1"),
            IndexRow("A2", ("name:acme inc", "domain:acme.com"), "1")]
    with trio.fail_after(10):
        await run(store, index_records, S, "hub", [COMPANY_HUB])
        if pages == 1:
            got = await run(store, pair_app_records, S, rows)
        else:
            got = [*await run(store, pair_app_records, S, rows[:1]),
                   *await run(store, pair_app_records, S, rows[1:])]
        h1 = await item_of(store, "hub", "H1")
    assert h1.app_id == "A1"
    assert got[0].duplicate_of is None
    assert got[1].duplicate_of == "A1"
    assert (got[1].item.state, got[1].item.category) == ("failed", "duplicate")


def _page() -> list[IndexRow]:
    return [
        IndexRow("A1", ("ann@example.com",), "1"),
        IndexRow("A2", ("ann@example.com",), "1"),
        IndexRow("A3", ("nobody@example.com",), "1"),
        IndexRow("A4", (), "1", excluded="no_unique_id"),
        IndexRow("acct 17", ("bob@example.com",), "1"),
        IndexRow("acct 18", ("bob@example.com",), "1"),
    ]


async def _first_pass(store: Store) -> list[Any]:
    await run(store, index_records, S, "hub", [IndexRow("H1", ("ann@example.com",), "1"),
                                               COMPANY_HUB])
    return await run(store, pair_app_records, S, _page())


async def test_the_app_pass_run_again_changes_nothing(store):
    with trio.fail_after(10):
        first = await _first_pass(store)
        # Every column but updated_at, which is the only one allowed to move.
        cols = await store.read(lambda c: [r[1] for r in c.execute("PRAGMA table_info(items)")
                                           if r[1] != "updated_at"])
        query = f"SELECT {', '.join(cols)} FROM items ORDER BY item_id"
        before = await store.read(lambda c: c.execute(query).fetchall())
        again = await run(store, pair_app_records, S, _page())
        after = await store.read(lambda c: c.execute(query).fetchall())
    assert [p.item.item_id for p in again] == [p.item.item_id for p in first]
    assert [(p.item.state, p.item.category) for p in again] == \
        [(p.item.state, p.item.category) for p in first]
    assert after == before


async def test_the_app_pass_run_again_reports_the_same_duplicates(store):
    """BUG: on a re-run, a known duplicate gets `duplicate_of=None`. match_app_records only
    looks up key holders for records *not* seen before, so the holder of a known duplicate's
    key is never found (and a company duplicate through the hub partner never could be)."""
    with trio.fail_after(10):
        first = await _first_pass(store)
        again = await run(store, pair_app_records, S, _page())
    assert [p.duplicate_of for p in first] == [None, "A1", None, None, None, "acct 17"]
    assert [p.duplicate_of for p in again] == [p.duplicate_of for p in first]


async def test_a_restarted_initial_sync_still_sees_the_duplicates(store):
    """BUG (likely): start_initial resets every unlinked item to `pending`, duplicates
    included; the app pass of the restarted initial sync then returns the known item and no
    longer reports it as a duplicate, so the record would go through the engine alone and be
    created on the hub a second time."""
    with trio.fail_after(10):
        await _first_pass(store)
        await run(store, initial.start_initial, S, "config-v2", False)
        again = await run(store, pair_app_records, S, _page())
    assert again[1].duplicate_of == "A1"
    assert again[5].duplicate_of == "acct 17"


# --- outcomes ---------------------------------------------------------------------------------


async def _hub_item(store: Store, record_id: str = "H1", key: str = "ann@example.com") -> Item:
    await run(store, index_records, S, "hub", [IndexRow(record_id, (key,), "1")])
    return await item_of(store, "hub", record_id)


async def test_an_outcome_records_state_snapshot_versions_and_history(store):
    snapshot = bytes(range(256))
    with trio.fail_after(10):
        h1 = await _hub_item(store)
        await run(store, apply_outcomes, S, [Outcome(
            item_id=h1.item_id, state="syncing", app_id="A1", snapshot=snapshot,
            hub_version="h-2", app_version="a-2", match_key="ann@example.com",
            history=HistoryEntry("create", b'[["email", null, "ann@example.com", "hub"]]',
                                 "created in app", hub_id="H1", app_id="A1"))])
        it = await store.read(get_item, h1.item_id)
        hist = await store.read(history_for, S, h1.item_id)
    assert (it.state, it.app_id, it.snapshot, it.hub_version, it.app_version) == \
        ("syncing", "A1", snapshot, "h-2", "a-2")
    assert it.linked
    ((at, hub_id, app_id, action, changes, detail),) = hist
    assert (hub_id, app_id, action, detail) == ("H1", "A1", "create", "created in app")
    assert changes == b'[["email", null, "ann@example.com", "hub"]]'
    assert abs(at - time.time()) < 60


async def test_a_failed_outcome_keeps_what_it_does_not_name(store):
    with trio.fail_after(10):
        h1 = await _hub_item(store)
        await run(store, apply_outcomes, S, [Outcome(item_id=h1.item_id, state="syncing",
                                                     app_id="A1", snapshot=b"s1")])
        for _ in range(2):
            await run(store, apply_outcomes, S, [Outcome(
                item_id=h1.item_id, state="failed", category="invalid_value",
                detail="amount: not a number", count_attempt=True)])
        failed = await store.read(get_item, h1.item_id)
        await run(store, apply_outcomes, S, [Outcome(item_id=h1.item_id, state="syncing")])
        ok = await store.read(get_item, h1.item_id)
    assert (failed.state, failed.category, failed.detail, failed.attempts) == \
        ("failed", "invalid_value", "amount: not a number", 2)
    assert (failed.app_id, failed.snapshot) == ("A1", b"s1")
    assert (ok.state, ok.category, ok.attempts, ok.snapshot) == ("syncing", "", 0, b"s1")


async def test_an_outcome_can_clear_a_column(store):
    with trio.fail_after(10):
        h1 = await _hub_item(store)
        await run(store, apply_outcomes, S, [Outcome(item_id=h1.item_id, state="syncing",
                                                     app_id="A1", snapshot=b"s1")])
        await run(store, apply_outcomes, S, [Outcome(item_id=h1.item_id, state="deleted",
                                                     deleted_side="app", app_id=None)])
        it = await store.read(get_item, h1.item_id)
    assert (it.state, it.deleted_side, it.app_id, it.snapshot) == ("deleted", "app", None, b"s1")


async def test_an_outcome_without_item_creates_it_with_its_history(store):
    with trio.fail_after(10):
        await run(store, apply_outcomes, S, [Outcome(
            state="syncing", hub_id="H7", app_id="A7", snapshot=b"s",
            history=HistoryEntry("link", hub_id="H7", app_id="A7"))])
        it = await item_of(store, "app", "A7")
        hist = await store.read(history_for, S, it.item_id)
    assert (it.hub_id, it.state, it.snapshot) == ("H7", "syncing", b"s")
    assert [(h[1], h[2], h[3]) for h in hist] == [("H7", "A7", "link")]


async def test_an_outcome_claims_keys_first_come(store):
    with trio.fail_after(10):
        h1 = await _hub_item(store)
        await run(store, index_records, S, "app", [IndexRow("A0", ("taken",), "1")])
        await run(store, apply_outcomes, S, [Outcome(
            item_id=h1.item_id, state="syncing", app_id="A1", snapshot=b"s",
            claim=(("app", "ann@example.com", "A1"), ("app", "taken", "A1")))])
        assert (await holder(store, "app", "ann@example.com")).item_id == h1.item_id
        assert (await holder(store, "app", "taken")).app_id == "A0"


async def test_linking_folds_away_the_unlinked_item_of_the_same_record(store):
    """A create in the app was committed by the app, a poll indexed the new record as its own
    item, then the link arrives: the stray item goes, its key now leads to the link."""
    with trio.fail_after(10):
        h1 = await _hub_item(store)
        await run(store, index_records, S, "app", [IndexRow("A9", ("ann@example.com",), "1")])
        stray = await item_of(store, "app", "A9")
        await run(store, apply_outcomes, S, [Outcome(item_id=h1.item_id, state="syncing",
                                                     app_id="A9", snapshot=b"s")])
        linked = await item_of(store, "app", "A9")
        gone = await store.read(get_item, stray.item_id)
        key = await holder(store, "app", "ann@example.com")
        total = await store.read(n_items)
    assert gone is None
    assert (linked.item_id, linked.hub_id, linked.linked) == (h1.item_id, "H1", True)
    assert key is not None and key.item_id == h1.item_id
    assert total == 1


async def test_linking_never_steals_a_record_linked_elsewhere(store):
    with trio.fail_after(10):
        h1 = await _hub_item(store, "H1", "k1")
        h2 = await _hub_item(store, "H2", "k2")
        h3 = await _hub_item(store, "H3", "k3")
        await run(store, apply_outcomes, S, [Outcome(item_id=h2.item_id, state="syncing",
                                                     app_id="A2", snapshot=b"s2")])
        with pytest.raises((sqlite3.IntegrityError, StoreError), match="A2"):
            await run(store, apply_outcomes, S, [
                Outcome(item_id=h3.item_id, state="failed", category="conflict"),
                Outcome(item_id=h1.item_id, state="syncing", app_id="A2", snapshot=b"s1"),
            ])
        after = [await store.read(get_item, h.item_id) for h in (h1, h2, h3)]
    assert (after[0].app_id, after[0].state) == (None, "pending")
    assert (after[1].app_id, after[1].snapshot) == ("A2", b"s2")
    assert after[2].state == "pending"  # the whole unit rolled back


async def test_outcomes_for_one_item_apply_in_order(store):
    """BUG: the last outcome for an item in one call must be the one that stands (a batch may
    carry a failure and a later success of the same item). apply_outcomes groups UPDATEs by
    their SQL shape and runs group by group, so the two `syncing` outcomes (same shape) run
    before the `failed` one in between, which then wins."""
    with trio.fail_after(10):
        h1 = await _hub_item(store)
        await run(store, apply_outcomes, S, [Outcome(item_id=h1.item_id, state="syncing",
                                                     app_id="A1", snapshot=b"s0")])
        await run(store, apply_outcomes, S, [
            Outcome(item_id=h1.item_id, state="syncing", snapshot=b"s1"),
            Outcome(item_id=h1.item_id, state="failed", category="api_unavailable",
                    count_attempt=True),
            Outcome(item_id=h1.item_id, state="syncing", snapshot=b"s2"),
        ])
        it = await store.read(get_item, h1.item_id)
    assert (it.state, it.category, it.snapshot, it.attempts) == ("syncing", "", b"s2", 0)


# --- states, counts, listing ------------------------------------------------------------------


async def _population(store: Store) -> dict[str, int]:
    """Hub items in every state; returns item ids by record id."""
    rows = [IndexRow(f"H{i}", (f"k{i}",), "1") for i in range(12)]
    await run(store, index_records, S, "hub", rows)
    await run(store, index_records, OTHER, "hub", [IndexRow("H0", ("k0",), "1")])
    ids = {r.record_id: (await item_of(store, "hub", r.record_id)).item_id for r in rows}
    await run(store, apply_outcomes, S, [
        Outcome(item_id=ids["H0"], state="syncing", app_id="A0", snapshot=b"s"),
        Outcome(item_id=ids["H1"], state="syncing", app_id="A1", snapshot=b"s"),
        Outcome(item_id=ids["H2"], state="failed", category="duplicate", detail="A1"),
        Outcome(item_id=ids["H3"], state="failed", category="invalid_value"),
        Outcome(item_id=ids["H4"], state="failed", category="duplicate"),
        Outcome(item_id=ids["H5"], state="excluded", category="filter"),
        Outcome(item_id=ids["H6"], state="deleted", deleted_side="hub"),
    ])
    await run(store, mark_queued, [ids["H7"], ids["H5"], ids["H6"]])
    await run(store, set_state, [ids["H8"]], "failed", "permission_denied", "403")
    return ids


async def test_counts_by_state(store):
    with trio.fail_after(10):
        await _population(store)
        got = await store.read(counts, S)
        other = await store.read(counts, OTHER)
        empty = await store.read(counts, "nothing/here")
    assert got == {"pending": 3, "syncing": 2, "failed": 4, "excluded": 1, "queued": 1,
                   "deleted": 1}
    assert other == dict.fromkeys(STATES, 0) | {"pending": 1}
    assert empty == dict.fromkeys(STATES, 0)


async def test_mark_queued_leaves_excluded_and_deleted_alone(store):
    with trio.fail_after(10):
        ids = await _population(store)
        got = {r: (await store.read(get_item, ids[r])).state for r in ("H5", "H6", "H7")}
    assert got == {"H5": "excluded", "H6": "deleted", "H7": "queued"}


async def test_list_items_filters_by_state_and_category(store):
    with trio.fail_after(10):
        ids = await _population(store)
        failed = await store.read(list_items, S, "failed")
        dups = await store.read(list_items, S, "failed", "duplicate")
        syncing = await store.read(list_items, S, "syncing")
        every = await store.read(list_items, S, None, None, None)
        page1 = await store.read(list_items, S, None, None, 5)
        page2 = await store.read(list_items, S, None, None, 5, page1[-1].item_id)
        with pytest.raises(ValueError):
            await store.read(list_items, S, "'; DROP TABLE items; --")
    assert [i.hub_id for i in failed] == ["H2", "H3", "H4", "H8"]
    assert [i.hub_id for i in dups] == ["H2", "H4"]
    assert [i.hub_id for i in syncing] == ["H0", "H1"]
    assert len(every) == 12 and all(i.sync_id == S for i in every)
    assert [i.item_id for i in page1 + page2] == sorted(ids.values())[:10]


# --- history ---------------------------------------------------------------------------------


async def test_history_newest_first_and_pruned_by_age(store):
    with trio.fail_after(10):
        h1 = await _hub_item(store)
        for n in range(5):
            await run(store, apply_outcomes, S, [Outcome(
                item_id=h1.item_id, state="syncing",
                history=HistoryEntry("update", f"[{n}]".encode(), hub_id="H1"))])
        now = time.time()
        day = 86400.0
        # Age the first three entries: 100, 95 and 89 days old.
        await run(store, lambda c: c.executemany(
            "UPDATE history SET at = ? WHERE id = (SELECT min(id) FROM history WHERE at > ?)",
            [(now - 100 * day, now - 1000), (now - 95 * day, now - 1000),
             (now - 89 * day, now - 1000)]))
        latest_two = await store.read(history_for, S, h1.item_id, 2)
        pruned = await run(store, prune_history, now - 90 * day)
        left = await store.read(history_for, S, h1.item_id)
    assert [h[4] for h in latest_two] == [b"[4]", b"[3]"]
    assert pruned == 2
    assert [h[4] for h in left] == [b"[4]", b"[3]", b"[2]"]


# --- dropping an object sync ------------------------------------------------------------------


async def _fill(store: Store, sync_id: str) -> None:
    await run(store, index_records, sync_id, "hub", [IndexRow("H1", ("k1",), "1"),
                                                     IndexRow("H2", ("k2",), "1")])
    await run(store, pair_app_records, sync_id, [IndexRow("A1", ("k1",), "1")])
    h1 = await item_of(store, "hub", "H1", sync_id)
    await run(store, apply_outcomes, sync_id, [Outcome(
        item_id=h1.item_id, state="syncing", snapshot=b"s", history=HistoryEntry("link"))])
    await run(store, cursors.set_cursor, sync_id, "hub", "2024-01-01")
    await run(store, initial.start_initial, sync_id, "hash", True)
    await run(store, initial.add_plan, sync_id, [("create", "H2", None, "")])
    await run(store, scanned.keep, sync_id, "hub", [Record("H2", {"email": "b@x.io"})])
    await run(store, deletes.park, sync_id, h1.item_id, "hub", "H1")
    await run(store, events.record_sent, sync_id, ["e1"])
    await run(store, events.count, sync_id, "skipped", 3)
    await store.call(lambda conn: restores.record_restore(
        conn, restored_at=1.0, backup_taken_at=0.5, backup_file="b.db", replaced="",
        sync_ids=[sync_id]))
    for source in inbox.sources_of_sync(sync_id):
        await run(store, inbox.add_events, source, [(f"{source}:e1", b"{}")])


def _rows_per_table(conn: sqlite3.Connection, sync_id: str) -> dict[str, int]:
    tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    out = {}
    for t in tables:
        columns = [r[1] for r in conn.execute(f"PRAGMA table_info({t})")]
        if "sync_id" in columns:
            out[t] = conn.execute(f"SELECT count(*) FROM {t} WHERE sync_id = ?",
                                  (sync_id,)).fetchone()[0]
    # Events received for the sync and not yet synced (the inbox is keyed by source).
    out["inbox"] = inbox.count_sources(conn, inbox.sources_of_sync(sync_id))
    return out


async def test_scanned_records_are_kept_until_the_initial_sync_starts_again_or_completes(store):
    with trio.fail_after(10):
        await run(store, initial.start_initial, S, "hash", False)
        h2 = Record("H2", {"email": "b@x.io", "firstname": "B"}, updated_at=5)
        await run(store, scanned.keep, S, "hub", [Record("H1", {}), h2])
        await run(store, scanned.keep, OTHER, "hub", [Record("H2", {})])
        assert await store.read(scanned.get, S, "hub", ["H2", "H3"]) == {"H2": h2}
        await run(store, initial.start_initial, S, "hash2", False)  # settings changed
        assert await store.read(scanned.get, S, "hub", ["H1", "H2"]) == {}
        await run(store, scanned.keep, S, "hub", [h2])
        await run(store, initial.complete_initial, S)
        assert await store.read(scanned.get, S, "hub", ["H2"]) == {}
        assert list(await store.read(scanned.get, OTHER, "hub", ["H2"])) == ["H2"]


async def test_drop_sync_forgets_that_sync_and_nothing_of_another(store):
    with trio.fail_after(10):
        await _fill(store, S)
        await _fill(store, OTHER)
        before = await store.read(_rows_per_table, OTHER)
        assert all(before.values()), before  # every table with a sync_id has rows to lose
        dropped = await run(store, drop_sync, S)
        mine = await store.read(_rows_per_table, S)
        other = await store.read(_rows_per_table, OTHER)
    assert dropped == 2
    assert set(mine.values()) == {0}, mine
    assert other == before
