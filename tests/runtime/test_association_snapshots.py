"""What each side showed of an association last time (its snapshot) must stay true to what
crmsync wrote, or a re-link or a removal made on one side is undone from the other (issue 17,
defect (b) of the randomized end-to-end test):

- an association type is synced from both of its ends (a contact's sync reads its
  companies, a company's sync its contacts), and the two share its snapshot rows: one end
  must not decide from what it read before the other end's write and commit;
- a sync cut short after its association writes landed and before it committed what it saw
  must not leave its own writes to pass for changes made on that side;
- what a side is re-read to hold after our writes there counts as seen only as far as our
  writes explain it: a change a user made there meanwhile is still to be carried over."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import trio

from crmsync.config.model import ObjectSync
from crmsync.connectors.base import AssociationChange, WriteResult
from crmsync.runtime.associations import AssociationLocks, AssociationPair, AssociationSyncer
from crmsync.store import Store
from crmsync.store import associations as store_assoc
from crmsync.store import initial as store_initial
from crmsync.store import items as store_items
from crmsync.store import scanned as store_scanned
from crmsync.store.items import Outcome

from .fakes import MemorySide, make_ctx

CONTACT_HUB, CONTACT_APP = "H1", "A1"
COMPANY_HUB, COMPANY_APP = "HC", "AC"


class HubAssociations(MemorySide):
    """HubSpot's contact ↔ company associations (a contact may have several companies).
    A read of the companies' contacts can be held after it has read (`hold`), so that the
    test decides what happens between that read and the rest of the company's sync."""

    def __init__(self) -> None:
        super().__init__("hub")
        self.pairs: set[tuple[str, str]] = set()  # (contact, company)
        self.hold: trio.Event | None = None
        self.held = trio.Event()
        # Set: a write applies, and its answer never comes (the daemon is killed meanwhile).
        self.hang_after_write = False
        # What a hub user does while a write of ours is under way.
        self.meanwhile: Callable[[], None] | None = None

    async def read_associations(self, from_object: str, to_object: str,
                                ids: Sequence[str]) -> dict[str, list[str]]:
        if from_object == "contacts":
            got = {i: sorted(c for p, c in self.pairs if p == i) for i in ids}
        else:
            got = {i: sorted(p for p, c in self.pairs if c == i) for i in ids}
            if self.hold is not None:
                self.held.set()
                await self.hold.wait()
        return got

    async def write_associations(self, from_object: str, to_object: str,
                                 changes: Sequence[AssociationChange]) -> list[WriteResult]:
        for c in changes:
            pair = (c.from_id, c.to_id) if from_object == "contacts" else (c.to_id, c.from_id)
            if c.removed:
                self.pairs.discard(pair)
            else:
                self.pairs.add(pair)
        if self.meanwhile is not None:
            self.meanwhile()
            self.meanwhile = None
        if self.hang_after_write:
            await trio.sleep_forever()
        return [WriteResult(ok=True) for _ in changes]


class AppForeignKey(MemorySide):
    """The app's customers.company_id: one company per contact; adding replaces it,
    removing clears it only while it still points at that company (as the SQLite
    connector does)."""

    def __init__(self) -> None:
        super().__init__("app")
        self.company_of: dict[str, str | None] = {}
        # What an app user does while a write of ours is under way.
        self.meanwhile: Callable[[], None] | None = None

    async def read_associations(self, from_object: str, to_object: str,
                                ids: Sequence[str]) -> dict[str, list[str]]:
        if from_object == "customers":
            return {i: [c] if (c := self.company_of.get(i)) else [] for i in ids}
        return {i: sorted(p for p, c in self.company_of.items() if c == i) for i in ids}

    async def write_associations(self, from_object: str, to_object: str,
                                 changes: Sequence[AssociationChange]) -> list[WriteResult]:
        for c in changes:
            person, company = ((c.from_id, c.to_id) if from_object == "customers"
                               else (c.to_id, c.from_id))
            if not c.removed:
                self.company_of[person] = company
            elif self.company_of.get(person) == company:
                self.company_of[person] = None
        if self.meanwhile is not None:
            self.meanwhile()
            self.meanwhile = None
        return [WriteResult(ok=True) for _ in changes]


CONTACTS = ObjectSync(connection="shop", hub_object="contacts", app_object="customers",
                      associations=["companies"])
COMPANIES = ObjectSync(connection="shop", hub_object="companies", app_object="organisations")
CONTACT_PAIR = AssociationPair("contacts", "companies", "customers", "organisations",
                               "shop/companies", True, True, app_holds_one=True)
COMPANY_PAIR = AssociationPair("companies", "contacts", "organisations", "customers",
                               "shop/contacts", True, True)


async def linked(store: Store, hub: HubAssociations, app: AppForeignKey,
                 companies: Sequence[tuple[str, str]]) -> None:
    """The contact and these companies (hub id, app id) linked and synced before, the
    contact working at the first company on both sides."""
    hub.pairs.add((CONTACT_HUB, companies[0][0]))
    app.company_of[CONTACT_APP] = companies[0][1]

    def seed(conn):
        store_items.apply_outcomes(conn, "shop/contacts", [Outcome(
            state="syncing", hub_id=CONTACT_HUB, app_id=CONTACT_APP, snapshot=b"{}")])
        store_items.apply_outcomes(conn, "shop/companies", [Outcome(
            state="syncing", hub_id=h, app_id=a, snapshot=b"{}") for h, a in companies])
        store_assoc.replace_pairs(conn, "shop", "hub", "contacts", "companies",
                                  {CONTACT_HUB: {companies[0][0]}})
        store_assoc.replace_pairs(conn, "shop", "app", "contacts", "companies",
                                  {CONTACT_APP: {companies[0][1]}})

    await store.call(seed)


async def test_a_removal_in_the_app_is_not_undone_by_the_company_end_syncing_meanwhile(
        tmp_path, slow_autojump):
    hub, app = HubAssociations(), AppForeignKey()
    async with Store.open(tmp_path / "state.db") as store:
        await linked(store, hub, app, [(COMPANY_HUB, COMPANY_APP)])
        locks = AssociationLocks()  # one per connection, as the daemon gives them
        contact_end = AssociationSyncer(make_ctx(store, CONTACTS, hub, app), [CONTACT_PAIR],
                                        locks=locks)
        company_end = AssociationSyncer(make_ctx(store, COMPANIES, hub, app), [COMPANY_PAIR],
                                        locks=locks)

        # The app's user takes the contact out of the company.
        app.company_of[CONTACT_APP] = None
        hub.hold = trio.Event()
        contact_done = trio.Event()

        async def contact_sync() -> None:
            await contact_end.sync_links([(CONTACT_HUB, CONTACT_APP)])
            contact_done.set()

        async with trio.open_nursery() as nursery:
            # The company's sync (its record changed too) has read the hub's side...
            nursery.start_soon(company_end.sync_links, [(COMPANY_HUB, COMPANY_APP)])
            await hub.held.wait()
            # ... when the contact's sync comes (the app's change log names the contact):
            # it may run to its end now, or wait for the company's.
            nursery.start_soon(contact_sync)
            with trio.move_on_after(30):
                await contact_done.wait()
            hub.hold.set()

        # The removal made in the app holds, and reached the hub.
        assert app.company_of[CONTACT_APP] is None
        assert hub.pairs == set()


async def test_a_re_link_after_a_sync_cut_short_is_not_undone_by_that_sync_s_writes(
        tmp_path, slow_autojump):
    hub, app = HubAssociations(), AppForeignKey()
    old, moved, last = ("HC1", "AC1"), ("HC2", "AC2"), ("HC3", "AC3")
    async with Store.open(tmp_path / "state.db") as store:
        await linked(store, hub, app, [old, moved, last])
        # The app moves the contact to another company; its sync writes that to the hub
        # and is killed before it commits what it saw.
        app.company_of[CONTACT_APP] = moved[1]
        hub.hang_after_write = True
        with trio.move_on_after(30):
            await AssociationSyncer(make_ctx(store, CONTACTS, hub, app),
                                    [CONTACT_PAIR]).sync_links([(CONTACT_HUB, CONTACT_APP)])
        assert hub.pairs == {(CONTACT_HUB, moved[0])}  # the write landed
        hub.hang_after_write = False
        # Before the restarted daemon syncs the contact, the app moves it once more.
        app.company_of[CONTACT_APP] = last[1]
        await AssociationSyncer(make_ctx(store, CONTACTS, hub, app),
                                [CONTACT_PAIR]).sync_links([(CONTACT_HUB, CONTACT_APP)])
        # The app's last re-link holds and reached the hub: the association the cut-short
        # sync wrote to the hub is its own, not a hub change to copy back into the app.
        assert app.company_of[CONTACT_APP] == last[1]
        assert hub.pairs == {(CONTACT_HUB, last[0])}


async def test_a_hub_removal_made_while_we_write_to_that_company_reaches_the_app(
        tmp_path, slow_autojump):
    hub, app = HubAssociations(), AppForeignKey()
    other_hub, other_app = "H2", "A2"
    async with Store.open(tmp_path / "state.db") as store:
        await linked(store, hub, app, [(COMPANY_HUB, COMPANY_APP)])
        # A second contact at the same company, linked and synced before.
        hub.pairs.add((other_hub, COMPANY_HUB))
        app.company_of[other_app] = COMPANY_APP

        def seed(conn):
            store_items.apply_outcomes(conn, "shop/contacts", [Outcome(
                state="syncing", hub_id=other_hub, app_id=other_app, snapshot=b"{}")])
            store_assoc.replace_pairs(conn, "shop", "hub", "contacts", "companies",
                                      {other_hub: {COMPANY_HUB}})
            store_assoc.replace_pairs(conn, "shop", "app", "contacts", "companies",
                                      {other_app: {COMPANY_APP}})

        await store.call(seed)
        company_end = AssociationSyncer(make_ctx(store, COMPANIES, hub, app), [COMPANY_PAIR])
        # The app takes the second contact out of the company; while the company's sync
        # removes that on the hub, a hub user takes the first contact out of it too.
        app.company_of[other_app] = None
        hub.meanwhile = lambda: hub.pairs.discard((CONTACT_HUB, COMPANY_HUB))
        await company_end.sync_links([(COMPANY_HUB, COMPANY_APP)])
        assert hub.pairs == set()
        # The hub user's removal comes to the company's next sync (its webhook) as a
        # change, and reaches the app.
        await company_end.sync_links([(COMPANY_HUB, COMPANY_APP)])
        assert app.company_of == {CONTACT_APP: None, other_app: None}


async def test_an_app_removal_made_while_we_add_another_contact_to_that_company_reaches_the_hub(
        tmp_path, slow_autojump):
    hub, app = HubAssociations(), AppForeignKey()
    new_hub, new_app = "H3", "A3"
    async with Store.open(tmp_path / "state.db") as store:
        await linked(store, hub, app, [(COMPANY_HUB, COMPANY_APP)])
        await store.call(lambda conn: store_items.apply_outcomes(conn, "shop/contacts", [
            Outcome(state="syncing", hub_id=new_hub, app_id=new_app, snapshot=b"{}")]))
        app.company_of[new_app] = None
        company_end = AssociationSyncer(make_ctx(store, COMPANIES, hub, app), [COMPANY_PAIR])
        # A hub user adds a second contact to the company; while the company's sync writes
        # that into the app's foreign key, the app's user takes the first contact out of it
        # (a company holds many contacts: our add replaced nothing there).
        hub.pairs.add((new_hub, COMPANY_HUB))
        app.meanwhile = lambda: app.company_of.update({CONTACT_APP: None})
        await company_end.sync_links([(COMPANY_HUB, COMPANY_APP)])
        assert app.company_of == {CONTACT_APP: None, new_app: COMPANY_APP}
        # The app user's removal comes to the next sync as a change, and reaches the hub.
        await company_end.sync_links([(COMPANY_HUB, COMPANY_APP)])
        assert hub.pairs == {(new_hub, COMPANY_HUB)}


class StoreHeldBeforeCall:
    """A store whose next `call` (a commit) first runs `before` (what another task does
    between a sync's reads and its commit)."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.before: Callable[[], Awaitable[None]] | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def call(self, fn: Any, *args: Any) -> Any:
        before, self.before = self.before, None
        if before is not None:
            await before()
        return await self._store.call(fn, *args)


async def test_a_partner_linked_between_the_lookup_and_the_commit_brings_the_sync_again(
        tmp_path, slow_autojump):
    # Found by test_sigkill_associations (seed 7): the contact's association sync found its
    # company not linked and the association waited (a row the company's link releases).
    # The company's link was committed, and its `release_pending` looked for waiting rows,
    # between the contact's look-up and its commit: it found none, the row came after, and
    # nothing synced the contact again.
    hub, app = HubAssociations(), AppForeignKey()
    async with Store.open(tmp_path / "state.db") as store:
        await store.call(lambda conn: store_items.apply_outcomes(conn, "shop/contacts", [
            Outcome(state="syncing", hub_id=CONTACT_HUB, app_id=CONTACT_APP,
                    snapshot=b"{}")]))
        app.company_of[CONTACT_APP] = COMPANY_APP  # the app's user puts it in a new company
        resubmitted: list[tuple[str, tuple[str, str]]] = []

        async def resubmit(obj: str, key: tuple[str, str]) -> None:
            resubmitted.append((obj, key))

        held = StoreHeldBeforeCall(store)
        contact_end = AssociationSyncer(make_ctx(held, CONTACTS, hub, app),  # type: ignore[arg-type]
                                        [CONTACT_PAIR], resubmit=resubmit)
        company_end = AssociationSyncer(make_ctx(store, COMPANIES, hub, app), [COMPANY_PAIR],
                                        resubmit=resubmit)

        async def company_linked() -> None:
            # The company's sync commits its link, then releases what waits for it.
            await store.call(lambda conn: store_items.apply_outcomes(
                conn, "shop/companies", [Outcome(state="syncing", hub_id=COMPANY_HUB,
                                                 app_id=COMPANY_APP, snapshot=b"{}")]))
            await company_end.release_pending([(COMPANY_HUB, COMPANY_APP)])

        held.before = company_linked
        await contact_end.sync_links([(CONTACT_HUB, CONTACT_APP)])
        assert await store.read(store_assoc.pending_count, "shop") == 1
        # The contact is synced again, and then its association reaches the hub.
        assert resubmitted == [("contacts", ("app", CONTACT_APP))]
        await contact_end.sync_links([(CONTACT_HUB, CONTACT_APP)])
        assert hub.pairs == {(CONTACT_HUB, COMPANY_HUB)}
        assert await store.read(store_assoc.pending_count, "shop") == 0


async def test_a_hub_re_link_after_the_initial_sync_is_read_from_hubspot(
        tmp_path, slow_autojump):
    # Review of issue 16's scan-time associations: the hub scan's associations of a contact
    # whose company was not linked yet were kept past the end of the initial sync, for the
    # contact's sync once the company linked. The company's sync answered the contact's wait
    # instead, so that sync never came and the row stayed: every later sync of the contact
    # took the scan's companies for what HubSpot holds, and undid a re-link made in HubSpot.
    hub, app = HubAssociations(), AppForeignKey()
    moved = ("HQ", "AQ")
    async with Store.open(tmp_path / "state.db") as store:
        def seed(conn):
            store_items.apply_outcomes(conn, "shop/contacts", [Outcome(
                state="syncing", hub_id=CONTACT_HUB, app_id=CONTACT_APP, snapshot=b"{}")])
            store_items.apply_outcomes(conn, "shop/companies", [Outcome(
                state="syncing", hub_id=moved[0], app_id=moved[1], snapshot=b"{}")])
            store_initial.start_initial(conn, "shop/contacts", "", preview=False)
            # The contacts' hub index listed the contact with its company.
            store_scanned.keep_associations(conn, "shop/contacts",
                                            {CONTACT_HUB: {"companies": [COMPANY_HUB]}})

        await store.call(seed)
        hub.pairs.add((CONTACT_HUB, COMPANY_HUB))
        contact_end = AssociationSyncer(make_ctx(store, CONTACTS, hub, app), [CONTACT_PAIR])
        company_end = AssociationSyncer(make_ctx(store, COMPANIES, hub, app), [COMPANY_PAIR])
        # The contact's sync in the initial sync: its company is not linked, it waits.
        await contact_end.sync_links([(CONTACT_HUB, CONTACT_APP)])
        assert await store.read(store_assoc.pending_count, "shop") == 1
        await store.call(store_initial.complete_initial, "shop/contacts")
        # The company links; its sync writes the association into the app, answering the
        # contact's wait.
        await store.call(lambda conn: store_items.apply_outcomes(conn, "shop/companies", [
            Outcome(state="syncing", hub_id=COMPANY_HUB, app_id=COMPANY_APP,
                    snapshot=b"{}")]))
        await company_end.sync_links([(COMPANY_HUB, COMPANY_APP)])
        assert app.company_of[CONTACT_APP] == COMPANY_APP
        # Later a HubSpot user moves the contact to another company.
        hub.pairs = {(CONTACT_HUB, moved[0])}
        await contact_end.sync_links([(CONTACT_HUB, CONTACT_APP)])
        assert app.company_of[CONTACT_APP] == moved[1]
        assert hub.pairs == {(CONTACT_HUB, moved[0])}


async def test_a_hub_index_page_read_before_a_partner_s_write_does_not_bring_it_back(
        tmp_path, slow_autojump):
    # Review of issue 16's scan-time associations: in a restarted initial sync, records are
    # linked while the hub index lists them, and their partners' syncs write their
    # associations. A page read before such a write and committed after it kept what the
    # write changed, and the contact's sync took that for what HubSpot holds.
    hub, app = HubAssociations(), AppForeignKey()
    moved = ("HQ", "AQ")
    async with Store.open(tmp_path / "state.db") as store:
        await linked(store, hub, app, [(COMPANY_HUB, COMPANY_APP), moved])
        await store.call(store_initial.start_initial, "shop/contacts", "", False)
        # The contacts' hub index reads a page: the contact with its company.
        page = {CONTACT_HUB: {"companies": sorted(c for p, c in hub.pairs
                                                  if p == CONTACT_HUB)}}
        # The app's user moves the contact to another company, whose sync writes that to
        # the hub before the page is committed.
        app.company_of[CONTACT_APP] = moved[1]
        company_end = AssociationSyncer(make_ctx(store, COMPANIES, hub, app), [COMPANY_PAIR])
        await company_end.sync_links([moved])
        await store.call(store_scanned.keep_associations, "shop/contacts", page)
        # The contact's sync: the app's move holds on both sides.
        await AssociationSyncer(make_ctx(store, CONTACTS, hub, app),
                                [CONTACT_PAIR]).sync_links([(CONTACT_HUB, CONTACT_APP)])
        assert app.company_of[CONTACT_APP] == moved[1]
        assert hub.pairs == {(CONTACT_HUB, moved[0])}


async def test_forgetting_a_reused_app_id_waits_for_an_association_sync_under_way(
        tmp_path, slow_autojump):
    # Review of issue 16: what was seen of a deleted app record's associations is forgotten
    # in the commit that ends its link (or lets go of its reused id), outside the locks of
    # the association syncs. A company's association sync that had read the app before
    # that commit stored, after it, what it read: the new record given the id at the same
    # company then looked associated already, and its association never reached the hub
    # (as random e2e seed 14 found without the race).
    hub, app = HubAssociations(), AppForeignKey()
    new_hub = "H9"
    async with Store.open(tmp_path / "state.db") as store:
        await linked(store, hub, app, [(COMPANY_HUB, COMPANY_APP)])
        locks = AssociationLocks()
        held = StoreHeldBeforeCall(store)
        contact_end = AssociationSyncer(make_ctx(store, CONTACTS, hub, app), [CONTACT_PAIR],
                                        locks=locks)
        company_end = AssociationSyncer(make_ctx(held, COMPANIES, hub, app),  # type: ignore[arg-type]
                                        [COMPANY_PAIR], locks=locks)

        async def id_reused() -> None:
            # The app deleted the contact and gave its id to a new one at the same company
            # (the foreign key reads the same); the load that saw it lets go of the id.
            def commit(conn):
                (old,) = store_items.list_items(conn, "shop/contacts", None, None, None)
                store_items.detach_app_records(conn, "shop/contacts", [old.item_id])
                contact_end.forget_app_records(conn, [CONTACT_APP])

            async with contact_end.held():
                await store.call(commit)

        async with trio.open_nursery() as nursery:
            async def meanwhile() -> None:
                # The company's sync has read both sides and looked at what it saw, when
                # the contact's id is reused.
                nursery.start_soon(id_reused)
                await trio.sleep(1)

            held.before = meanwhile
            await company_end.sync_links([(COMPANY_HUB, COMPANY_APP)])
        # The new contact is created in the hub and linked; its sync brings its company
        # there.
        await store.call(lambda conn: store_items.apply_outcomes(conn, "shop/contacts", [
            Outcome(state="syncing", hub_id=new_hub, app_id=CONTACT_APP, snapshot=b"{}")]))
        await contact_end.sync_links([(new_hub, CONTACT_APP)])
        assert (new_hub, COMPANY_HUB) in hub.pairs
