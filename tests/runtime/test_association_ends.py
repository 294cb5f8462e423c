"""An association type synced from both of its ends at once (issue 17, defect (b) of the
randomized end-to-end test): a contact's sync reads its companies and a company's sync its
contacts, and the two share the association's snapshot rows. One end must not decide from
what it read before the other end's write and commit, or a removal made in the app comes
back: the company's end, having read the hub before the contact's end removed the
association there and the snapshot after, takes the hub's association for a new one and
writes it back into the app's foreign key."""

from __future__ import annotations

from collections.abc import Sequence

import trio

from crmsync.config.model import ObjectSync
from crmsync.connectors.base import AssociationChange, WriteResult
from crmsync.runtime.associations import AssociationLocks, AssociationPair, AssociationSyncer
from crmsync.store import Store
from crmsync.store import associations as store_assoc
from crmsync.store import items as store_items
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
        return [WriteResult(ok=True) for _ in changes]


class AppForeignKey(MemorySide):
    """The app's customers.company_id: one company per contact; adding replaces it,
    removing clears it only while it still points at that company (as the SQLite
    connector does)."""

    def __init__(self) -> None:
        super().__init__("app")
        self.company_of: dict[str, str | None] = {}

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
        return [WriteResult(ok=True) for _ in changes]


async def test_a_removal_in_the_app_is_not_undone_by_the_company_end_syncing_meanwhile(
        tmp_path, slow_autojump):
    contacts = ObjectSync(connection="shop", hub_object="contacts", app_object="customers",
                          associations=["companies"])
    companies = ObjectSync(connection="shop", hub_object="companies",
                           app_object="organisations")
    hub, app = HubAssociations(), AppForeignKey()
    # Linked and synced before: the contact works at the company on both sides.
    hub.pairs.add((CONTACT_HUB, COMPANY_HUB))
    app.company_of[CONTACT_APP] = COMPANY_APP
    async with Store.open(tmp_path / "state.db") as store:
        def seed(conn):
            for sync_id, h, a in (("shop/contacts", CONTACT_HUB, CONTACT_APP),
                                  ("shop/companies", COMPANY_HUB, COMPANY_APP)):
                store_items.apply_outcomes(conn, sync_id, [Outcome(
                    state="syncing", hub_id=h, app_id=a, snapshot=b"{}")])
            store_assoc.replace_pairs(conn, "shop", "hub", "contacts", "companies",
                                      {CONTACT_HUB: {COMPANY_HUB}})
            store_assoc.replace_pairs(conn, "shop", "app", "contacts", "companies",
                                      {CONTACT_APP: {COMPANY_APP}})

        await store.call(seed)
        locks = AssociationLocks()  # one per connection, as the daemon gives them
        contact_end = AssociationSyncer(
            make_ctx(store, contacts, hub, app),
            [AssociationPair("contacts", "companies", "customers", "organisations",
                             "shop/companies", True, True)], locks=locks)
        company_end = AssociationSyncer(
            make_ctx(store, companies, hub, app),
            [AssociationPair("companies", "contacts", "organisations", "customers",
                             "shop/contacts", True, True)], locks=locks)

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
