"""Records sent again only because an association of theirs waited for a partner (issue 16,
runtime/association_waits.py): such a record is synced only as far as that wait needs.

- its wait was answered meanwhile and it is in sync otherwise: no sync at all (no read of
  either side), and a `queued` shown for it goes back to `syncing`;
- it still waits for a partner linked now: only its associations with that partner's
  object are synced (no record read), under the item gate, a failed write failing it;
- it failed (or is otherwise not in sync): synced whole.

And around it: the start syncs again only records waiting for a partner linked now
(`waiting_answerable`), a poll's echo check counts a waited-for partner as known
(`as_seen`), the start's sweep leaves out keys with a sync running or waiting
(`absent_only`), and the retry sweeper sends again items left `queued`."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

import trio
import trio.testing

from crmsync.connectors.base import AssociationChange, RecordError, WriteResult
from crmsync.engine.types import Snapshot
from crmsync.records import Record
from crmsync.runtime import worker as worker_module
from crmsync.runtime.associations import ASSOCIATION_WAIT, AssociationPair, AssociationSyncer
from crmsync.runtime.context import ObjectSyncContext
from crmsync.runtime.encoding import encode_snapshot
from crmsync.runtime.intake import Reported, SeenChange
from crmsync.runtime.lock_queue import Batch
from crmsync.runtime.processor import Processor
from crmsync.runtime.worker import ItemGate, run_retry_sweeper, sync_batch
from crmsync.store import Store
from crmsync.store import associations as store_assoc
from crmsync.store import items as store_items
from crmsync.store.items import Item, Outcome

from .fakes import make_ctx
from .test_association_snapshots import (
    COMPANY_APP,
    COMPANY_HUB,
    CONTACT_APP,
    CONTACT_HUB,
    CONTACT_PAIR,
    CONTACTS,
    AppForeignKey,
    HubAssociations,
)
from .test_lock_queue import running as queue_running
from .test_lock_queue import take

# A second association type of contacts, to tell which types a links-only sync touches.
DEAL_PAIR = AssociationPair("contacts", "deals", "customers", "deals", "shop/deals", True, True)


class CountingHub(HubAssociations):
    """HubSpot's side, logging association reads (record reads are in `calls`)."""

    def __init__(self) -> None:
        super().__init__()
        self.assoc_reads: list[tuple[str, list[str]]] = []  # (to_object, ids)
        self.fail_writes = False

    async def read_associations(self, from_object: str, to_object: str,
                                ids: Sequence[str]) -> dict[str, list[str]]:
        self.assoc_reads.append((to_object, list(ids)))
        return await super().read_associations(from_object, to_object, ids)

    async def write_associations(self, from_object: str, to_object: str,
                                 changes: Sequence[AssociationChange]) -> list[WriteResult]:
        if self.fail_writes:
            return [WriteResult(ok=False, error=RecordError("invalid_value", "refused"))
                    for _ in changes]
        return await super().write_associations(from_object, to_object, changes)


class CountingApp(AppForeignKey):
    def __init__(self) -> None:
        super().__init__()
        self.assoc_reads: list[tuple[str, list[str]]] = []

    async def read_associations(self, from_object: str, to_object: str,
                                ids: Sequence[str]) -> dict[str, list[str]]:
        self.assoc_reads.append((to_object, list(ids)))
        return await super().read_associations(from_object, to_object, ids)


def record_reads(*sides: Any) -> list[Any]:
    return [c for s in sides for c in s.calls if c[0] == "read"]


async def seed(store: Store, *, contact_state: str = "syncing", contact_category: str = "",
               company_linked: bool = True, wait: bool = True) -> None:
    """The contact linked and synced before; the company linked (or only seen in the hub);
    with `wait`, the contact's association with the company (seen in the app) waiting for
    it, as the contact's sync left it when the company was not linked yet."""
    def fill(conn):
        store_items.apply_outcomes(conn, "shop/contacts", [Outcome(
            state=contact_state, category=contact_category, hub_id=CONTACT_HUB,
            app_id=CONTACT_APP, snapshot=b"{}")])
        store_items.apply_outcomes(conn, "shop/companies", [Outcome(
            state="syncing", hub_id=COMPANY_HUB,
            app_id=COMPANY_APP if company_linked else None,
            snapshot=b"{}" if company_linked else None)])
        if wait:
            store_assoc.add_pending(conn, "shop", [
                ("contacts", "app", CONTACT_APP, "companies", COMPANY_APP)])

    await store.call(fill)


async def contact_item(store: Store) -> Item:
    found = await store.read(store_items.find_items, "shop/contacts", "hub", [CONTACT_HUB])
    return found[CONTACT_HUB]


def contacts_ctx(store: Store, hub: CountingHub, app: CountingApp,
                 pairs: Sequence[AssociationPair] = (CONTACT_PAIR,)) -> ObjectSyncContext:
    ctx = make_ctx(store, CONTACTS, hub, app)
    ctx.associations = AssociationSyncer(ctx, list(pairs))
    return ctx


def wait_batch(key: Hashable) -> Batch:
    """What the lock queue hands a worker for a record sent again by `release_pending`."""
    return Batch(units=[(key, [ASSOCIATION_WAIT])])


async def test_a_wait_answered_meanwhile_needs_no_sync_and_queued_is_back_to_syncing(
        tmp_path, slow_autojump):
    hub, app = CountingHub(), CountingApp()
    async with Store.open(tmp_path / "state.db") as store:
        # The object sync runs; what is seeded below happened since it started.
        ctx = contacts_ctx(store, hub, app)
        # The company's sync wrote the association on both sides and answered the contact's
        # wait (no waiting row); the contact shows `queued` for the request at hand.
        await seed(store, contact_state="queued", wait=False)
        hub.pairs.add((CONTACT_HUB, COMPANY_HUB))
        app.company_of[CONTACT_APP] = COMPANY_APP
        await sync_batch(ctx, Processor(ctx), ItemGate(), wait_batch(("app", CONTACT_APP)))
        assert record_reads(hub, app) == []
        assert hub.assoc_reads == [] and app.assoc_reads == []
        it = await contact_item(store)
        assert (it.state, it.category) == ("syncing", "")


async def test_a_wait_for_a_partner_linked_now_syncs_only_that_association(
        tmp_path, slow_autojump):
    hub, app = CountingHub(), CountingApp()
    async with Store.open(tmp_path / "state.db") as store:
        # The object sync runs; what is seeded below happened since it started.
        ctx = contacts_ctx(store, hub, app, [CONTACT_PAIR, DEAL_PAIR])
        await seed(store, contact_state="queued")
        app.company_of[CONTACT_APP] = COMPANY_APP  # the association the contact's sync saw
        await sync_batch(ctx, Processor(ctx), ItemGate(), wait_batch(("app", CONTACT_APP)))
        # The association reached the hub, the wait is answered ...
        assert hub.pairs == {(CONTACT_HUB, COMPANY_HUB)}
        assert await store.read(store_assoc.pending_count, "shop") == 0
        it = await contact_item(store)
        assert (it.state, it.category) == ("syncing", "")
        # ... without a read of the contact's record on either side, nor of its
        # associations of a type it does not wait for.
        assert record_reads(hub, app) == []
        assert {o for o, _ in hub.assoc_reads + app.assoc_reads} == {"companies",
                                                                     "organisations"}


async def test_a_failed_association_write_syncs_the_record_whole(tmp_path, slow_autojump):
    # The app may have given the record's id to another record since (which only a read of
    # it tells): the record is synced whole, which reads it first and records the failure
    # as a whole sync does, rather than failed on the association write alone.
    hub, app = CountingHub(), CountingApp()
    hub.fail_writes = True
    async with Store.open(tmp_path / "state.db") as store:
        # The object sync runs; what is seeded below happened since it started.
        ctx = contacts_ctx(store, hub, app)
        await seed(store)
        app.company_of[CONTACT_APP] = COMPANY_APP
        await sync_batch(ctx, Processor(ctx), ItemGate(), wait_batch(("app", CONTACT_APP)))
        assert hub.assoc_reads and record_reads(hub, app) != []
        it = await contact_item(store)
        assert it.state == "failed"
        # It still waits: the next change of either end brings its sync again.
        assert await store.read(store_assoc.pending_count, "shop") == 1


async def test_the_links_only_sync_waits_for_a_sync_of_the_same_item(tmp_path, slow_autojump):
    hub, app = CountingHub(), CountingApp()
    async with Store.open(tmp_path / "state.db") as store:
        # The object sync runs; what is seeded below happened since it started.
        ctx = contacts_ctx(store, hub, app)
        await seed(store)
        app.company_of[CONTACT_APP] = COMPANY_APP
        gate = ItemGate()
        it = await contact_item(store)
        gate.enter({it.item_id})  # another worker syncs the contact (its hub record's key)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sync_batch, ctx, Processor(ctx), gate,
                               wait_batch(("app", CONTACT_APP)))
            await trio.sleep(5)
            assert hub.pairs == set(), "written while another sync of the item ran"
            gate.leave({it.item_id})
        assert hub.pairs == {(CONTACT_HUB, COMPANY_HUB)}


async def test_a_failed_record_sent_for_its_wait_is_synced_whole(tmp_path, slow_autojump):
    hub, app = CountingHub(), CountingApp()
    async with Store.open(tmp_path / "state.db") as store:
        # The object sync runs; what is seeded below happened since it started.
        ctx = contacts_ctx(store, hub, app)
        await seed(store, contact_state="failed", contact_category="conflict")
        app.company_of[CONTACT_APP] = COMPANY_APP
        await sync_batch(ctx, Processor(ctx), ItemGate(), wait_batch(("app", CONTACT_APP)))
        # Its failure needs a sync of the record to be decided again.
        assert record_reads(hub, app) != []


async def test_a_wait_riding_with_events_found_to_be_echoes_is_still_synced(
        tmp_path, slow_autojump, monkeypatch):
    # Review of issue 16: the contact's hub creation event (an echo once it is linked and in
    # sync) merged in the lock queue with its send for the wait; the record was left out of
    # the links-only sync for its events, then dropped with them by the echo check: the
    # association never reached the app and the wait stayed.
    hub, app = CountingHub(), CountingApp()

    async def all_echoes(ctx: ObjectSyncContext, said: Sequence[tuple[int, Reported]]
                         ) -> set[int]:
        return {i for i, _ in said}  # what the echo check says of a creation event here

    monkeypatch.setattr(worker_module, "echoes", all_echoes)
    async with Store.open(tmp_path / "state.db") as store:
        # The object sync runs; what is seeded below happened since it started.
        ctx = contacts_ctx(store, hub, app)
        await seed(store, wait=False)
        # A hub user associated the contact with the company before the company linked.
        await store.call(store_assoc.add_pending, "shop", [
            ("contacts", "hub", CONTACT_HUB, "companies", COMPANY_HUB)])
        hub.pairs.add((CONTACT_HUB, COMPANY_HUB))
        # Synced whole, it is read on both sides: records with nothing to change.
        await store.call(lambda conn: conn.execute(
            "UPDATE items SET snapshot = ? WHERE hub_id = ?",
            (encode_snapshot(Snapshot(hub={}, app={})), CONTACT_HUB)))
        hub.records[CONTACT_HUB] = Record(CONTACT_HUB, {}, 1)
        app.records[CONTACT_APP] = Record(CONTACT_APP, {}, 1)
        event = SeenChange(inbox_id=7, occurred_at=0, reported=Reported("creation", CONTACT_HUB))
        await sync_batch(ctx, Processor(ctx), ItemGate(), Batch(units=[
            (("hub", CONTACT_HUB), [event, ASSOCIATION_WAIT])]))
        assert app.company_of.get(CONTACT_APP) == COMPANY_APP
        assert await store.read(store_assoc.pending_count, "shop") == 0


async def test_the_start_syncs_again_only_records_waiting_for_a_partner_linked_now(
        tmp_path, slow_autojump):
    hub, app = CountingHub(), CountingApp()
    async with Store.open(tmp_path / "state.db") as store:
        def fill(conn):
            store_items.apply_outcomes(conn, "shop/contacts", [Outcome(
                state="syncing", hub_id=f"H{i}", app_id=f"A{i}", snapshot=b"{}")
                for i in range(1, 6)])
            store_items.apply_outcomes(conn, "shop/companies", [
                # X: seen in the hub only, not linked yet.
                Outcome(state="syncing", hub_id="HX", app_id=None, snapshot=None),
                Outcome(state="syncing", hub_id="HY", app_id="AY", snapshot=b"{}"),
                # Z: deleted in the app (the side a hub-side wait writes to).
                Outcome(state="deleted", deleted_side="app", hub_id="HZ", app_id="AZ",
                        snapshot=b"{}")])
            store_assoc.add_pending(conn, "shop", [
                ("contacts", "hub", "H1", "companies", "HX"),
                ("contacts", "hub", "H2", "companies", "HY"),
                ("contacts", "hub", "H3", "companies", "HZ"),
                ("contacts", "app", "A4", "companies", "AY"),
                ("contacts", "hub", "H5", "companies", "HNEVER")])  # no item at all

        await store.call(fill)
        syncer = contacts_ctx(store, hub, app).associations
        assert sorted(await syncer.waiting()) == [("app", "A4"), ("hub", "H2")]
        asked = [("hub", f"H{i}") for i in range(1, 6)] + [("app", "A4")]
        assert await syncer.answerable(asked) == {("hub", "H2"): {"companies"},
                                                  ("app", "A4"): {"companies"}}


async def test_a_partner_waited_for_counts_as_known_to_a_poll_s_echo_check(
        tmp_path, slow_autojump):
    hub, app = CountingHub(), CountingApp()
    async with Store.open(tmp_path / "state.db") as store:
        # The contact's company is never linked (say, excluded): its association waits.
        await seed(store, company_linked=False)
        app.company_of[CONTACT_APP] = COMPANY_APP
        syncer = contacts_ctx(store, hub, app).associations
        assert await syncer.as_seen("app", [CONTACT_APP]) == {CONTACT_APP}
        # Another company, not waited for, is a change to sync.
        app.company_of[CONTACT_APP] = "AC-other"
        assert await syncer.as_seen("app", [CONTACT_APP]) == set()


async def test_absent_only_leaves_out_keys_running_or_waiting(autojump_clock):
    queued: list[Hashable] = []

    async def on_queued(keys):
        queued.extend(keys)

    async with queue_running(on_queued=on_queued, workers=1) as (_q, send, ends):
        await send.submit(["a"])
        first = await take(ends)  # "a" runs; the only worker is busy
        await send.submit(["b"], {"b": [1]})  # "b" waits its turn, with a payload
        await send.submit(["a", "b", "c"], absent_only=True)
        await trio.testing.wait_all_tasks_blocked()
        assert queued == [], "a running key must not be queued again by the sweep"
        await ends.done(first)
        second = await take(ends)
        # "b" keeps only what it had (not asked again: its sync may still be skipped where
        # it needs none), "c" is new; "a" does not run again.
        assert dict(second.units) == {"b": [1], "c": []}
        assert "b" not in second.asked
        await ends.done(second)
        with trio.move_on_after(5):
            extra = await ends.__anext__()
            raise AssertionError(f"unexpected batch {extra.keys}")


class Sender:
    """The sweeper's end of the lock queue: what it sends."""

    def __init__(self) -> None:
        self.submitted: list[list[Hashable]] = []
        self.synced: list[list[Hashable]] = []

    async def __aenter__(self) -> Sender:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def submit(self, keys, payloads=None, *, absent_only=False):
        self.submitted.append(list(keys))

    async def sync(self, keys):
        self.synced.append(list(keys))


async def test_the_retry_sweeper_sends_again_an_item_left_queued(tmp_path, slow_autojump):
    hub, app = CountingHub(), CountingApp()
    async with Store.open(tmp_path / "state.db") as store:
        def fill(conn):
            store_items.apply_outcomes(conn, "shop/contacts", [Outcome(
                state="queued", hub_id=h, app_id=a, snapshot=b"{}")
                for h, a in (("H1", "A1"), ("H2", "A2"))])

        await store.call(fill)
        busy = (await store.read(store_items.find_items, "shop/contacts", "hub", ["H2"]))["H2"]
        ctx = make_ctx(store, CONTACTS, hub, app)
        sender = Sender()

        async def requeue_busy() -> None:
            # H2 is queued anew again and again (requests keep coming while it syncs).
            await store.call(store_items.mark_queued, [busy.item_id])

        async with trio.open_nursery() as nursery:
            await requeue_busy()
            await nursery.start(run_retry_sweeper, ctx, sender, 10.0)
            await trio.sleep(15)  # one pass seen both: not a whole interval yet
            assert sender.submitted == []
            await requeue_busy()
            await trio.sleep(10)  # the second pass: H1 unchanged for a whole interval
            assert sender.submitted == [[("hub", "H1")]]
            nursery.cancel_scope.cancel()



async def test_a_record_queued_before_the_object_sync_started_is_synced_whole(
        tmp_path, slow_autojump):
    # After a restart, `queued` may be a sync that was due when the daemon stopped (an
    # operator's resync that a kill cut short): a wait answered meanwhile must not pass it
    # for in sync and skip it.
    hub, app = CountingHub(), CountingApp()
    async with Store.open(tmp_path / "state.db") as store:
        await seed(store, contact_state="queued", wait=False)  # before this process
        await trio.sleep(1)
        hub.pairs.add((CONTACT_HUB, COMPANY_HUB))
        app.company_of[CONTACT_APP] = COMPANY_APP
        ctx = contacts_ctx(store, hub, app)
        ctx.started_at = (await contact_item(store)).updated_at + 1
        await sync_batch(ctx, Processor(ctx), ItemGate(), wait_batch(("app", CONTACT_APP)))
        assert record_reads(hub, app) != []
