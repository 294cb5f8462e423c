"""Hub events that are echoes of what the store holds (runtime/echoes.py, issue 16), and how a
worker batch treats them (runtime/worker.py `_without_echoes`, `sync_batch`): creation events
of records linked and in sync, dates reported in another rendering than the one written,
records shown `queued` for those very events, association events of a pair with a write under
way; and the intake dropping what an initial sync's scan kept of an association that changed
(runtime/intake.py `_outdate_scans`)."""

from __future__ import annotations

import dataclasses
import json
from types import SimpleNamespace

import trio

from crmsync.runtime import worker as worker_module
from crmsync.runtime.associations import ASSOCIATION_WAIT
from crmsync.runtime.echoes import echoes, wire_forms
from crmsync.runtime.intake import Intake, Reported, SeenChange
from crmsync.runtime.lock_queue import Batch, RecordLockQueue
from crmsync.runtime.processor import Processor
from crmsync.runtime.requests import open_request_channel
from crmsync.runtime.worker import ItemGate, sync_batch
from crmsync.store import associations as store_assoc
from crmsync.store import inbox as store_inbox
from crmsync.store import items as store_items
from crmsync.store import scanned as store_scanned

from .rig import Rig, rig

SOURCE = "hub:shop:contacts"
PEOPLE = [{"email": "ann@example.com", "firstname": "Ann"},
          {"email": "bob@example.com", "firstname": "Bob"}]


async def linked_ann(r: Rig) -> tuple[str, str]:
    """Ann synced (linked, in sync); Bob only in HubSpot. Their hub ids."""
    ann, bob = [rec["id"] for rec in r.emu.records("contacts")]
    await sync_batch(r.ctx, Processor(r.ctx), ItemGate(),
                     Batch([(("hub", ann), [])], asked={("hub", ann)}))
    it = await r.ctx.store.read(store_items.find_item, r.ctx.sync_id, "hub", ann)
    assert it is not None and it.linked and it.state == "syncing"
    return ann, bob


async def events(r: Rig, *reported: Reported) -> list[SeenChange]:
    """Store one hub event per `reported` in the inbox; the marks that ride with their keys."""
    await r.ctx.store.call(store_inbox.add_events, SOURCE,
                           [(f"e{i}-{trio.current_time()}", b"{}")
                            for i in range(len(reported))])
    rows = await r.ctx.store.read(store_inbox.pending_events, SOURCE, 0, 100)
    ids = [i for i, _ in rows][-len(reported):]
    return [SeenChange(i, 0, reported=rep) for i, rep in zip(ids, reported, strict=True)]


async def waiting_events(r: Rig) -> int:
    return len(await r.ctx.store.read(store_inbox.pending_events, SOURCE, 0, 100))


def hub_requests(r: Rig) -> list[tuple[str, str, int]]:
    return [e for e in r.emu.request_log if not e[1].startswith("/_emulator/")]


# --- creation events --------------------------------------------------------------------


async def test_a_creation_event_of_a_linked_record_in_sync_is_an_echo(tmp_path, slow_autojump):
    async with rig(tmp_path, hub_contacts=PEOPLE) as r:
        ann, bob = await linked_ann(r)
        # Our create's own event (or one of a record we linked): nothing to read. A record
        # not linked is new to the sync.
        assert await echoes(r.ctx, [(1, Reported("creation", ann)),
                                    (2, Reported("creation", bob))]) == {1}
        # Through a worker batch: Ann's event is done without a request; Bob is synced.
        r.emu.request_log.clear()
        (mark_ann, mark_bob) = await events(r, Reported("creation", ann),
                                            Reported("creation", bob))
        await sync_batch(r.ctx, Processor(r.ctx), ItemGate(),
                         Batch([(("hub", ann), [mark_ann])]))
        assert hub_requests(r) == []
        assert await waiting_events(r) == 1
        await sync_batch(r.ctx, Processor(r.ctx), ItemGate(),
                         Batch([(("hub", bob), [mark_bob])]))
        assert sorted(row["email"] for row in r.app_rows()) == ["ann@example.com",
                                                                 "bob@example.com"]
        assert hub_requests(r) != []
        assert await waiting_events(r) == 0


# --- dates in another rendering ------------------------------------------------------------


def test_a_date_written_as_a_day_is_known_in_the_renderings_hubspot_reports():
    # Fact sheet §7: HubSpot dates are midnight-UTC epoch ms or ISO; the emulator (as HubSpot)
    # stores a date as an instant and reports it as ISO 8601 with milliseconds.
    forms = wire_forms("2026-01-01")
    assert "2026-01-01" in forms
    assert "2026-01-01T00:00:00.000Z" in forms
    assert "1767225600000" in forms  # 2026-01-01T00:00:00Z in epoch ms
    # Written as midnight epoch ms: its ISO renderings too.
    assert {"2026-01-01", "2026-01-01T00:00:00.000Z"} <= wire_forms("1767225600000")
    assert wire_forms(1767225600000) == forms
    # Another day, another instant of the day, a non-date: not the same value.
    assert "2026-01-02T00:00:00.000Z" not in forms
    assert "1767225600001" not in forms
    assert wire_forms("1767225600001") == {"1767225600001"}  # not a midnight
    assert wire_forms("Ann") == {"Ann"}
    assert wire_forms(None) == {""}
    assert wire_forms("2026-13-45") == {"2026-13-45"}  # looks like a day, is none


# --- records shown `queued` --------------------------------------------------------------


async def test_an_item_queued_for_these_events_is_in_sync_and_put_back(tmp_path, slow_autojump):
    async with rig(tmp_path, hub_contacts=PEOPLE) as r:
        ann, _ = await linked_ann(r)
        it = await r.ctx.store.read(store_items.find_item, r.ctx.sync_id, "hub", ann)
        assert it is not None
        # Shown `queued` because the event came while a sync of it ran: no failure recorded.
        await r.ctx.store.call(store_items.mark_queued, [it.item_id])
        assert await echoes(r.ctx, [(1, Reported("creation", ann))]) == {1}
        r.emu.request_log.clear()
        (mark,) = await events(r, Reported("creation", ann))
        await sync_batch(r.ctx, Processor(r.ctx), ItemGate(),
                         Batch([(("hub", ann), [mark])]))
        assert hub_requests(r) == []
        assert await waiting_events(r) == 0
        now = await r.ctx.store.read(store_items.get_item, it.item_id)
        assert now is not None and now.state == "syncing"


async def test_an_item_queued_after_a_failure_is_synced(tmp_path, slow_autojump):
    async with rig(tmp_path, hub_contacts=PEOPLE) as r:
        ann, _ = await linked_ann(r)
        it = await r.ctx.store.read(store_items.find_item, r.ctx.sync_id, "hub", ann)
        assert it is not None
        # Failed, then asked again: `queued` with its failure's category.
        await r.ctx.store.call(store_items.set_state, [it.item_id], "queued", "transient",
                               "HubSpot answered 503")
        assert await echoes(r.ctx, [(1, Reported("creation", ann))]) == set()
        r.emu.request_log.clear()
        (mark,) = await events(r, Reported("creation", ann))
        await sync_batch(r.ctx, Processor(r.ctx), ItemGate(),
                         Batch([(("hub", ann), [mark])]))
        assert hub_requests(r) != []  # read to be decided again
        now = await r.ctx.store.read(store_items.get_item, it.item_id)
        assert now is not None and now.state == "syncing" and now.category == ""


# --- association events with a write under way -----------------------------------------


async def test_an_association_event_of_a_pair_with_a_write_under_way_is_no_echo(
        tmp_path, slow_autojump):
    async with rig(tmp_path, hub_contacts=PEOPLE) as r:
        ann, _ = await linked_ann(r)
        # The contacts sync keeps its associations with companies.
        ctx = dataclasses.replace(r.ctx, associations=SimpleNamespace(
            pairs=[SimpleNamespace(hub_b="companies")]))
        await ctx.store.call(store_assoc.replace_pairs, "shop", "hub", "contacts",
                             "companies", {ann: {"901"}})
        added = Reported("associationChange", ann, partner_object="companies",
                         partner_id="901")
        # As the last association sync saw it: an echo.
        assert await echoes(ctx, [(1, added)]) == {1}
        # A sync's write of that pair recorded, not committed yet (its removal, say): what
        # was seen is about to change, and the event may be someone else's.
        await ctx.store.call(store_assoc.add_intents, "shop", "contacts", "companies",
                             [("hub", ann, "901", True, "7", "3")])
        assert await echoes(ctx, [(1, added)]) == set()


# --- a failing echo check ---------------------------------------------------------------


async def test_a_batch_whose_echo_check_fails_is_synced_whole(tmp_path, slow_autojump,
                                                               monkeypatch):
    async with rig(tmp_path, hub_contacts=PEOPLE) as r:
        ann, bob = await linked_ann(r)

        async def broken(ctx, said):
            raise RuntimeError("the echo check met a defect")

        monkeypatch.setattr(worker_module, "echoes", broken)
        marks = await events(r, Reported("creation", ann), Reported("creation", bob))
        r.emu.request_log.clear()
        await sync_batch(r.ctx, Processor(r.ctx), ItemGate(),
                         Batch([(("hub", ann), [marks[0]]), (("hub", bob), [marks[1]])]))
        # Both synced as if no echo check existed: Bob reached the app, Ann was read.
        assert sorted(row["email"] for row in r.app_rows()) == ["ann@example.com",
                                                                 "bob@example.com"]
        assert hub_requests(r) != []
        assert await waiting_events(r) == 0


async def test_a_batch_whose_wait_check_fails_is_synced_whole(tmp_path, slow_autojump,
                                                               monkeypatch):
    async with rig(tmp_path, hub_contacts=PEOPLE) as r:
        _, bob = await linked_ann(r)

        async def broken(ctx, units, asked):
            raise RuntimeError("the association wait check met a defect")

        monkeypatch.setattr(worker_module, "sort_waits", broken)
        # Sent again for an association wait alone: synced whole when that cannot be told.
        await sync_batch(r.ctx, Processor(r.ctx), ItemGate(),
                         Batch([(("hub", bob), [ASSOCIATION_WAIT])]))
        assert sorted(row["email"] for row in r.app_rows()) == ["ann@example.com",
                                                                 "bob@example.com"]


# --- the intake and what a scan kept -----------------------------------------------------


async def test_an_association_event_drops_what_the_scan_kept_of_both_ends(tmp_path,
                                                                          slow_autojump):
    async with rig(tmp_path) as r:
        ctx = r.ctx
        # An initial sync's hub scans kept contact 11 with company 901, and 12 with 902, and
        # company 901 with contact 11 (neither linked yet).
        await ctx.store.call(store_scanned.keep_associations, "shop/contacts",
                             {"11": {"companies": ["901"]}, "12": {"companies": ["902"]}})
        await ctx.store.call(store_scanned.keep_associations, "shop/companies",
                             {"901": {"contacts": ["11"]}})

        def report(payload: bytes) -> Reported:
            body = json.loads(payload)
            return Reported("associationChange", body["id"], partner_object="companies",
                            partner_id=body["to"], removed=True)

        queue = RecordLockQueue(workers=1)
        ends = queue.worker_ends()
        _wake_tx, wake_rx = open_request_channel()
        intake = Intake(ctx, SOURCE, lambda p: [("hub", json.loads(p)["id"])],
                        describe=lambda p: (0, None, None), report=report)
        await ctx.store.call(store_inbox.add_events, SOURCE,
                             [("e1", json.dumps({"id": "11", "to": "901"}).encode())])
        async with trio.open_nursery() as nursery:
            await nursery.start(queue.run)
            await nursery.start(intake.run, queue.changes(), wake_rx)
            with trio.fail_after(120):
                batch = await ends.__anext__()
            assert batch.keys == [("hub", "11")]
            nursery.cancel_scope.cancel()

        def kept(conn):
            return (store_scanned.get_associations(conn, "shop/contacts", "companies",
                                                   ["11", "12"]),
                    store_scanned.get_associations(conn, "shop/companies", "contacts",
                                                   ["901"]))

        contacts, companies = await ctx.store.read(kept)
        # Both ends of the changed association are read again; the others stay kept.
        assert contacts == {"12": ["902"]}
        assert companies == {}


async def test_another_rendering_of_a_date_is_a_change_in_a_text_property(
        tmp_path, slow_autojump):
    # Only a property read as a date may come back as another rendering of what we wrote: in
    # a text property, "2026-01-01T00:00:00.000Z" where "2026-01-01" was is someone's edit.
    from crmsync.runtime.overwritten import value_digest

    people = [{"email": "ann@example.com", "firstname": "2026-01-01"}, PEOPLE[1]]
    async with rig(tmp_path, hub_contacts=people) as r:
        ann, _ = await linked_ann(r)
        same = Reported("propertyChange", ann, "firstname", value_digest("2026-01-01"))
        other = Reported("propertyChange", ann, "firstname",
                         value_digest("2026-01-01T00:00:00.000Z"))
        assert await echoes(r.ctx, [(1, same), (2, other)]) == {1}
