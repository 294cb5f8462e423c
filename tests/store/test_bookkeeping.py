"""Initial sync progress, cursors, the webhook inbox, parked deletes, tokens, sent events and
connection states, each through the Store."""

from __future__ import annotations

import sqlite3
import time

import pytest
import trio

from crmsync.store import connections, cursors, deletes, events, inbox, initial, tokens
from crmsync.store.items import IndexRow, Outcome, apply_outcomes, find_item, index_records

S = "shop/contacts"
OTHER = "shop/companies"


# --- initial sync ------------------------------------------------------------------------------


async def test_start_checkpoint_complete(store):
    with trio.fail_after(10):
        assert await store.read(initial.get_initial, S) is None
        started = await store.call(initial.start_initial, S, "hash-1", False)
        assert (started.phase, started.cursor, started.done, started.preview, started.complete) \
            == ("hub_index", "", 0, False, False)
        await store.call(initial.checkpoint, S, "hub_index", "after=100", 100, 2500)
        await store.call(initial.checkpoint, S, "app_pass", "page-2")
        mid = await store.read(initial.get_initial, S)
        assert (mid.phase, mid.cursor, mid.done, mid.total) == ("app_pass", "page-2", 100, 2500)
        await store.call(initial.complete_initial, S)
        done = await store.read(initial.get_initial, S)
    assert done.complete and done.phase == "complete" and done.cursor == ""
    assert done.completed_at is not None and abs(done.completed_at - time.time()) < 60
    assert done.config_hash == "hash-1"


async def test_a_checkpoint_survives_reopening(tmp_path):
    from crmsync.store import Store

    path = tmp_path / "state.db"
    with trio.fail_after(10):
        async with Store.open(path) as store:
            await store.call(initial.start_initial, S, "hash-1", False)
            await store.call(initial.checkpoint, S, "hub_pass", "after=4200", 4200, 9000)
        async with Store.open(path) as store:
            got = await store.read(initial.get_initial, S)
    assert (got.phase, got.cursor, got.done, got.total) == ("hub_pass", "after=4200", 4200, 9000)


async def test_a_restart_forgets_progress_plan_and_exclusions_but_keeps_links(store):
    with trio.fail_after(10):
        await store.call(initial.start_initial, S, "hash-1", True)
        await store.call(index_records, S, "hub", [
            IndexRow("H1", ("k1",), "1"), IndexRow("H2", ("k2",), "1"),
            IndexRow("H3", ("k3",), "1", excluded="filter"), IndexRow("H4", ("k4",), "1")])
        ids = {r: (await store.read(find_item, S, "hub", r)).item_id
               for r in ("H1", "H2", "H3", "H4")}
        await store.call(apply_outcomes, S, [
            Outcome(item_id=ids["H1"], state="syncing", app_id="A1", snapshot=b"s"),
            Outcome(item_id=ids["H2"], state="failed", category="invalid_value"),
            Outcome(item_id=ids["H4"], state="deleted", deleted_side="hub"),
        ])
        await store.call(initial.add_plan, S, [("create", "H2", None, "")])
        await store.call(initial.checkpoint, S, "previewed", "", 4, 4)
        again = await store.call(initial.start_initial, S, "hash-2", False)
        states = {r: (await store.read(find_item, S, "hub", r)) for r in ids}
        plan = await store.read(initial.plan_summary, S)
    assert (again.config_hash, again.phase, again.done, again.preview, again.approved) == \
        ("hash-2", "hub_index", 0, False, False)
    assert plan == {}
    assert (states["H1"].state, states["H1"].snapshot, states["H1"].app_id) == \
        ("syncing", b"s", "A1")
    assert (states["H2"].state, states["H2"].category) == ("pending", "")
    assert (states["H3"].state, states["H3"].category) == ("pending", "")
    assert states["H4"].state == "deleted"


async def test_approve_only_a_sync_waiting_in_preview(store):
    with trio.fail_after(10):
        assert not await store.call(initial.approve, S)  # nothing started
        await store.call(initial.start_initial, S, "hash-1", True)
        await store.call(initial.checkpoint, S, "previewed", "", 10, 10)
        assert await store.call(initial.approve, S)
        got = await store.read(initial.get_initial, S)
        assert not await store.call(initial.approve, S)  # already approved
        await store.call(initial.start_initial, OTHER, "hash-1", False)
        assert not await store.call(initial.approve, OTHER)  # never in preview
    assert (got.preview, got.approved, got.phase, got.done) == (False, True, "hub_index", 0)


async def test_the_preview_plan(store):
    with trio.fail_after(10):
        await store.call(initial.start_initial, S, "hash-1", True)
        await store.call(initial.add_plan, S, [
            ("match", "H1", "A1", ""), ("create_app", "H2", None, ""),
            ("create_hub", None, "A3", ""), ("duplicate", None, "A4", "same as A3"),
            ("create_app", "H5", None, "")])
        await store.call(initial.add_plan, OTHER, [("match", "H9", "A9", "")])
        summary = await store.read(initial.plan_summary, S)
        creates = await store.read(initial.plan_entries, S, "create_app")
        first_two = await store.read(initial.plan_entries, S, None, 2)
    assert summary == {"match": 1, "create_app": 2, "create_hub": 1, "duplicate": 1}
    assert creates == [("create_app", "H2", None, ""), ("create_app", "H5", None, "")]
    assert first_two == [("match", "H1", "A1", ""), ("create_app", "H2", None, "")]


# --- cursors -------------------------------------------------------------------------------------


async def test_cursors(store):
    with trio.fail_after(10):
        assert await store.read(cursors.get_cursor, S, "hub") is None
        await store.call(cursors.set_cursor, S, "hub", "1700000000000")
        await store.call(cursors.set_cursor, S, "hub", "1700000300000")
        await store.call(cursors.set_cursor, S, "app", "changelog:42")
        await store.call(cursors.set_cursor, OTHER, "hub", "1")
        assert await store.read(cursors.get_cursor, S, "hub") == "1700000300000"
        got = await store.read(cursors.all_cursors, S)
    assert {k: v for k, (v, _t) in got.items()} == {"hub": "1700000300000", "app": "changelog:42"}


async def test_a_cursor_advances_only_with_the_changes_it_covers(store):
    def commit_page(conn: sqlite3.Connection, fail: bool) -> None:
        index_records(conn, S, "hub", [IndexRow("H1", ("k1",), "2")])
        cursors.set_cursor(conn, S, "hub", "t2")
        if fail:
            raise RuntimeError("the engine failed after the cursor moved")

    with trio.fail_after(10):
        await store.call(cursors.set_cursor, S, "hub", "t1")
        with pytest.raises(RuntimeError):
            await store.call(commit_page, True)
        assert await store.read(cursors.get_cursor, S, "hub") == "t1"
        assert await store.read(find_item, S, "hub", "H1") is None
        await store.call(commit_page, False)
        assert await store.read(cursors.get_cursor, S, "hub") == "t2"


# --- webhook inbox --------------------------------------------------------------------------------


async def test_inbox_deduplicates_by_source_and_event_key(store):
    with trio.fail_after(10):
        assert await store.call(inbox.add_events, "hubspot",
                                [("e1", b"first"), ("e2", b"second")]) == 2
        # A redelivery (HubSpot retries) changes nothing, not even the payload.
        assert await store.call(inbox.add_events, "hubspot",
                                [("e1", b"redelivered"), ("e3", b"third")]) == 1
        # The same key from another source is another event.
        assert await store.call(inbox.add_events, "shop", [("e1", b"shop event")]) == 1
        hub = await store.read(inbox.pending_events, "hubspot")
        shop = await store.read(inbox.pending_events, "shop")
    assert [p for _i, p in hub] == [b"first", b"second", b"third"]
    assert [p for _i, p in shop] == [b"shop event"]


async def test_inbox_pending_mark_done_and_paging(store):
    with trio.fail_after(10):
        await store.call(inbox.add_events, "hubspot", [(f"e{i}", b"%d" % i) for i in range(10)])
        first = await store.read(inbox.pending_events, "hubspot", 0, 4)
        second = await store.read(inbox.pending_events, "hubspot", first[-1][0], 4)
        await store.call(inbox.mark_done, [i for i, _ in first])
        left = await store.read(inbox.pending_events, "hubspot")
        # Done events are still known: a redelivery of one is not new.
        assert await store.call(inbox.add_events, "hubspot", [("e0", b"again")]) == 0
        stats = await store.read(inbox.stats)
    assert [p for _, p in first] == [b"0", b"1", b"2", b"3"]
    assert [p for _, p in second] == [b"4", b"5", b"6", b"7"]
    assert [p for _, p in left] == [b"%d" % i for i in range(4, 10)]
    assert stats["hubspot"][0] == 6


async def test_inbox_prune_keeps_done_events_for_48_hours_and_pending_ones_forever(store):
    hour = 3600.0
    with trio.fail_after(10):
        t0 = time.time()
        await store.call(inbox.add_events, "hubspot", [("done", b"d"), ("pending", b"p")])
        (done_id, _), _ = await store.read(inbox.pending_events, "hubspot")
        await store.call(inbox.mark_done, [done_id])
        assert await store.call(inbox.prune, t0 + 47 * hour) == 0
        assert await store.call(inbox.add_events, "hubspot", [("done", b"again")]) == 0
        assert await store.call(inbox.prune, t0 + 49 * hour) == 1
        assert await store.call(inbox.prune, t0 + 1000 * hour) == 0
        left = await store.read(inbox.pending_events, "hubspot")
    assert [p for _, p in left] == [b"p"]
    assert 48 * hour == inbox.KEEP_DONE_SECONDS


# --- parked deletes, tokens, sent events, connection states -----------------------------------------


async def test_parked_deletes(store):
    with trio.fail_after(10):
        await store.call(deletes.park, S, 1, "hub", "H1")
        await store.call(deletes.park, S, 2, "app", "A2")
        await store.call(deletes.park, S, 1, "hub", "H1")  # parked again: still once
        await store.call(deletes.park, OTHER, 1, "hub", "H1")
        got = await store.read(deletes.parked, S)
        assert sorted((i, side, rid) for i, side, rid, _t in got) == \
            [(1, "hub", "H1"), (2, "app", "A2")]
        assert await store.call(deletes.unpark, S, 1)
        assert not await store.call(deletes.unpark, S, 1)
        assert [r[0] for r in await store.read(deletes.parked, S)] == [2]
        assert len(await store.read(deletes.parked, OTHER)) == 1


async def test_refresh_tokens(store):
    with trio.fail_after(10):
        assert await store.read(tokens.get_refresh_token, "hub") is None
        await store.call(tokens.save_refresh_token, "hub", "rt-1")
        await store.call(tokens.save_refresh_token, "hub", "rt-2")
        await store.call(tokens.save_refresh_token, "other", "rt-x")
        assert await store.read(tokens.get_refresh_token, "hub") == "rt-2"


async def test_sent_events_are_never_sent_twice(store):
    ids = [f"ev-{i}" for i in range(1200)]  # more than one 500-id chunk
    with trio.fail_after(10):
        assert await store.read(events.unsent, S, ids) == set(ids)
        await store.call(events.record_sent, S, ids[:700])
        assert await store.read(events.unsent, S, ids) == set(ids[700:])
        assert await store.read(events.unsent, OTHER, ids[:3]) == set(ids[:3])
        await store.call(events.count, S, "skipped", 2)
        await store.call(events.count, S, "skipped")
        got = await store.read(events.counts, S)
    assert got == {"sent": 700, "skipped": 3}


async def test_recording_an_event_twice_counts_it_once(store):
    """BUG (minor): record_sent ignores ids already sent (INSERT OR IGNORE) but adds
    len(event_ids) to the `sent` counter, so a replayed batch inflates it."""
    with trio.fail_after(10):
        await store.call(events.record_sent, S, ["e1", "e2"])
        await store.call(events.record_sent, S, ["e2", "e3"])
        got = await store.read(events.counts, S)
    assert got == {"sent": 3}


async def test_connection_states(store):
    with trio.fail_after(10):
        assert await store.read(connections.disabled) == {}
        await store.call(connections.set_disabled, "shop", True, "maintenance window")
        await store.call(connections.set_disabled, "crm-eu", True)
        assert await store.read(connections.disabled) == {"shop": "maintenance window",
                                                          "crm-eu": ""}
        await store.call(connections.set_disabled, "shop", False)
        assert await store.read(connections.disabled) == {"crm-eu": ""}
