"""Associations end to end: contact ↔ company kept on both sides (a foreign key in the app),
an association created before its partner is linked waits and is applied once it is, removals
propagate, and nothing is lost or doubled under faults."""

import sqlite3

import trio

from crmsync.emulators.hubspot import Faults
from crmsync.runtime.object_sync import Timing

from .harness import companies_sync, contacts_sync, make_app_db, running, wait_for

SCHEMA = """
CREATE TABLE organisations (
    id INTEGER PRIMARY KEY, name TEXT, domain TEXT, city TEXT, phone TEXT, industry TEXT,
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')));
CREATE TABLE customers (
    id INTEGER PRIMARY KEY, email TEXT, first_name TEXT, last_name TEXT, phone TEXT,
    job_title TEXT, company_name TEXT, company_id INTEGER REFERENCES organisations(id),
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')));
"""

SYNCS = (contacts_sync(extra='associations = ["companies"]\n') + companies_sync())
ASSOC = """
[[connections.associations]]
from_object = "customers"
to_object = "organisations"
column = "company_id"
"""
TIMING = Timing(hub_poll_interval=10_000, app_poll_interval=2)


def setup(tmp, customers, orgs):
    db = tmp / "app.db"
    make_app_db(db, organisations=orgs, customers=customers, schema=SCHEMA)
    return db


def hub_companies_of(env, email):
    hub = env.hub_by_email()[email]
    return {env.emu.records("companies")[0]["id"] and c
            for c in env.emu.associations("contacts", hub["id"], "companies")}


def company_name(env, company_id):
    return next(r["properties"]["name"] for r in env.hub("companies") if r["id"] == company_id)


async def test_associations_flow_both_ways_and_removals_follow(tmp_path, slow_autojump):
    orgs = [{"name": "Acme", "domain": "acme.example"}, {"name": "Globex", "domain": "globex.example"}]
    customers = [{"email": "ann@example.com", "first_name": "Ann", "company_id": 1},
                 {"email": "bob@example.com", "first_name": "Bob"}]
    db = setup(tmp_path, customers, orgs)

    def configure(emu):
        (ivy,) = emu.add_records("contacts", [{"email": "ivy@example.com", "firstname": "Ivy"}])
        (initech,) = emu.add_records("companies", [{"name": "Initech", "domain": "initech.example"}])
        emu.associate("contacts", ivy, "companies", initech)

    async with running(tmp_path, syncs=SYNCS, app_db=db, timing=TIMING, configure=configure,
                       config_kwargs={"connection_extra": ASSOC}) as env:
        await env.wait_ready(["contacts", "companies"])

        def hub_assoc(email):
            hub = env.hub_by_email()[email]
            return sorted(company_name(env, c)
                          for c in env.emu.associations("contacts", hub["id"], "companies"))

        def app_company(email):
            row = env.app_by_email()[email]
            orgs = {r["id"]: r["name"] for r in env.app_rows("organisations")}
            return orgs.get(row["company_id"])

        # App → hub (ann's foreign key) and hub → app (ivy's association).
        await env.eventually(lambda: hub_assoc("ann@example.com") == ["Acme"])
        await env.eventually(lambda: app_company("ivy@example.com") == "Initech")
        assert hub_assoc("bob@example.com") == []

        # A change in the app: bob joins Globex.
        env.app_exec("UPDATE customers SET company_id = 2 WHERE email = 'bob@example.com'")
        await env.eventually(lambda: hub_assoc("bob@example.com") == ["Globex"])

        # A removal in the hub clears the app's foreign key.
        ann = env.hub_by_email()["ann@example.com"]["id"]
        (acme,) = env.emu.associations("contacts", ann, "companies")
        env.emu.state.dissociate(env.emu.state.object_type("contacts"), int(ann),
                                 env.emu.state.object_type("companies"), int(acme))
        await env.eventually(lambda: app_company("ann@example.com") is None)
        # ...and the other associations stay.
        assert hub_assoc("bob@example.com") == ["Globex"]
        assert app_company("ivy@example.com") == "Initech"


async def test_an_association_made_before_its_partner_is_linked_is_applied_later(
        tmp_path, slow_autojump):
    db = setup(tmp_path, [{"email": "cy@example.com", "first_name": "Cy"}], [])
    async with running(tmp_path, syncs=SYNCS, app_db=db, timing=TIMING,
                       config_kwargs={"connection_extra": ASSOC}) as env:
        await env.wait_ready(["contacts", "companies"])
        # The company and the contact's link to it appear in one app transaction; the
        # contact's sync can see the association before the company is linked.
        env.app_exec("INSERT INTO organisations (id, name, domain) VALUES (7, 'Hooli', "
                     "'hooli.example')")
        env.app_exec("UPDATE customers SET company_id = 7 WHERE email = 'cy@example.com'")

        def linked():
            cy = env.hub_by_email().get("cy@example.com")
            if cy is None:
                return False
            ids = env.emu.associations("contacts", cy["id"], "companies")
            return [company_name(env, c) for c in ids] == ["Hooli"]

        await env.eventually(linked)
        from crmsync.store import associations as store_assoc

        # The association is written in the company's sync; the contact's waiting row is
        # cleared by that sync (it answered it), or by the contact's own sync, asked for
        # once the company's committed.
        async def nothing_waits():
            return await env.daemon.store.read(store_assoc.pending_count, "shop") == 0

        await wait_for(nothing_waits, timeout=60, step=1.0)


async def test_associations_converge_under_faults(tmp_path, slow_autojump):
    orgs = [{"name": f"Org{i}", "domain": f"org{i}.example"} for i in range(10)]
    customers = [{"email": f"p{i}@example.com", "first_name": f"P{i}", "company_id": 1 + i % 10}
                 for i in range(60)]
    db = setup(tmp_path, customers, orgs)
    async with running(tmp_path, syncs=SYNCS, app_db=db, timing=TIMING,
                       config_kwargs={"connection_extra": ASSOC}) as env:
        env.emu.faults = Faults(error_rate=0.2, hang_after_apply_rate=0.05, seed=4)
        await env.wait_ready(["contacts", "companies"], timeout=5000)
        env.emu.faults = Faults()

        def converged():
            by_name = {r["id"]: r["properties"]["name"] for r in env.hub("companies")}
            for i in range(60):
                hub = env.hub_by_email().get(f"p{i}@example.com")
                if hub is None:
                    return False
                got = [by_name.get(c) for c in
                       env.emu.associations("contacts", hub["id"], "companies")]
                if got != [f"Org{i % 10}"]:
                    return False
            return True

        # Records that failed for a transient reason are retried by the sweeper.
        with trio.fail_after(5000):
            while not converged():
                await trio.sleep(10)
        assert len(env.hub("companies")) == 10
        assert len(env.hub()) == 60


async def test_an_association_that_failed_is_decided_again_when_its_partner_changes(
        tmp_path, slow_autojump):
    # Issue 17 item 6: a contact moved to another company in the app while it was deleted on
    # the hub, and the daemon had not seen that deletion yet. The association is written from
    # that stale picture and fails ("No contact with id … exists"); once the contact's
    # deletion is synced, the failure is decided again from what is true now: there is no
    # hub contact to associate, so the company is in sync and the association waits.
    orgs = [{"name": "Acme", "domain": "acme.example"},
            {"name": "Globex", "domain": "globex.example"}]
    db = setup(tmp_path, [{"email": "ann@example.com", "first_name": "Ann", "company_id": 1}],
               orgs)
    # Nothing polls by itself: the test says which feed is read when.
    timing = Timing(hub_poll_interval=10_000, app_poll_interval=10_000)
    async with running(tmp_path, syncs=SYNCS, app_db=db, timing=timing, webhooks=False,
                       config_kwargs={"connection_extra": ASSOC}) as env:
        await env.wait_ready(["contacts", "companies"])
        ann = env.hub_by_email()["ann@example.com"]
        handles = [env.daemon.handle("shop", o) for o in ("contacts", "companies")]
        # Each poller polls once when it starts, then waits for its (long) interval.
        await env.eventually(
            lambda: env.emu.associations("contacts", ann["id"], "companies") != []
            and all(st.hub_poller.polls and st.app_poller.polls
                    for st in (h.statistics() for h in handles)))
        env.emu.archive_record("contacts", ann["id"])  # not seen: no webhooks, no poll yet
        env.app_exec("UPDATE customers SET company_id = 2 WHERE email = 'ann@example.com'")
        # The companies' change log is read first: Globex's new contact is associated on
        # the hub from the stale picture.
        env.daemon.handle("shop", "companies").poll_now(sides=("app",), events=False)

        async def globex():
            items = await env.items("companies")
            return next(i for i in items if i.app_id == "2")

        await wait_for(lambda: _failed(globex), timeout=300, step=1.0)
        assert (await globex()).category == "association_failed"
        # The hub poll brings the contact's deletion: a change of the failed association's
        # partner.
        env.daemon.handle("shop", "contacts").poll_now()
        await wait_for(lambda: _state(globex, "syncing"), timeout=300, step=1.0)
        for obj in ("contacts", "companies"):
            assert [i for i in await env.items(obj) if i.category == "association_failed"] == []


async def _failed(get):
    return (await get()).state == "failed"


async def _state(get, state):
    return (await get()).state == state


async def test_a_record_whose_link_ended_waits_for_nothing(tmp_path, slow_autojump):
    # Acme's association waits for its contact, who cannot be linked (no valid email). Once
    # Acme is deleted on the hub its link ends (the app keeps its record: on_delete = mark):
    # nothing syncs its associations again (a restore links it anew), so nothing of it may
    # wait any more. A row left behind waited for ever, and every start of the daemon synced
    # the deleted record again for it.
    db = setup(tmp_path, [{"email": "not-an-email", "first_name": "Ann", "company_id": 1}],
               [{"name": "Acme", "domain": "acme.example"}])
    async with running(tmp_path, syncs=SYNCS, app_db=db, timing=TIMING, webhooks=False,
                       config_kwargs={"connection_extra": ASSOC}) as env:
        await env.wait_ready(["contacts", "companies"])

        async def waiting():
            return await env.daemon.store.read(lambda conn: list(conn.execute(
                "SELECT from_object, from_side, from_id, to_object, to_id "
                "FROM pending_associations")))

        await wait_for(lambda: _rows(waiting, [("companies", "app", "1", "contacts", "1")]),
                       timeout=60, step=1.0)
        # Acme is deleted on the hub (its link ends; the app keeps its record: mark).
        (acme,) = env.hub("companies")
        env.emu.archive_record("companies", acme["id"])
        env.daemon.handle("shop", "companies").poll_now()

        async def acme_deleted():
            (item,) = await env.items("companies")
            return item.state == "deleted"

        await wait_for(acme_deleted, timeout=60, step=1.0)
        assert await waiting() == []


async def _rows(get, want):
    return await get() == want


async def test_a_propagated_delete_of_a_company_lets_go_of_its_contacts(tmp_path, slow_autojump):
    # Acme is deleted on the hub (which drops its associations) and on_delete = propagate
    # deletes it in the app too, where Ann's foreign key still points at it. As on the hub,
    # Ann stays and loses her company: the delete neither fails on the enforced foreign key
    # (leaving the sides apart for good) nor leaves Ann pointing at nothing.
    db = setup(tmp_path, [{"email": "ann@example.com", "first_name": "Ann", "company_id": 1}],
               [{"name": "Acme", "domain": "acme.example"}])
    syncs = (contacts_sync(on_delete="propagate", extra='associations = ["companies"]\n')
             + companies_sync(on_delete="propagate"))
    async with running(tmp_path, syncs=syncs, app_db=db, timing=TIMING, webhooks=False,
                       config_kwargs={"connection_extra": ASSOC}) as env:
        await env.wait_ready(["contacts", "companies"])
        ann = env.hub_by_email()["ann@example.com"]
        await env.eventually(lambda: env.emu.associations("contacts", ann["id"], "companies"))
        (acme,) = env.hub("companies")
        env.emu.archive_record("companies", acme["id"])
        env.daemon.handle("shop", "companies").poll_now()

        async def acme_deleted():
            (item,) = await env.items("companies")
            return item.state in ("deleted", "failed")

        await wait_for(acme_deleted, timeout=60, step=1.0)
        (item,) = await env.items("companies")
        assert (item.state, item.deleted_side) == ("deleted", "both"), item
        assert env.app_rows("organisations") == []
        assert [(r["email"], r["company_id"]) for r in env.app_rows()] == [
            ("ann@example.com", None)]


async def test_an_association_is_not_written_to_a_record_given_a_deleted_one_s_id(
        tmp_path, slow_autojump, monkeypatch):
    # Found by the randomized e2e test (seed 7): Ivy's company, decided for her app row, was
    # written after the app had deleted that row and given its id to Zoe (SQLite reuses the
    # highest id): Zoe got Ivy's company, which her hub contact never had, and nothing
    # would ever tell the two sides apart again. Here the app swaps the rows right before
    # the first association write that names Ivy's row.
    from crmsync.connectors.sqlite.connector import SqliteAppConnector

    db = setup(tmp_path, [], [{"name": "Initech", "domain": "initech.example"}])
    real = SqliteAppConnector.write_associations
    swapped: list[str] = []

    async def swap_then_write(self, from_object, to_object, changes):
        ivy = next((ch.from_id if from_object == "customers" else ch.to_id
                    for ch in changes if not ch.removed), None)
        if ivy is not None and not swapped:
            conn = sqlite3.connect(db)
            with conn:
                conn.execute("DELETE FROM customers WHERE id = ?", (ivy,))
                cur = conn.execute("INSERT INTO customers (email, first_name) "
                                   "VALUES ('zoe@example.com', 'Zoe')")
            conn.close()
            assert str(cur.lastrowid) == ivy
            swapped.append(ivy)
        return await real(self, from_object, to_object, changes)

    monkeypatch.setattr(SqliteAppConnector, "write_associations", swap_then_write)

    def configure(emu):
        (ivy,) = emu.add_records("contacts", [{"email": "ivy@example.com", "firstname": "Ivy"}])
        (initech,) = emu.add_records("companies", [{"name": "Initech",
                                                    "domain": "initech.example"}])
        emu.associate("contacts", ivy, "companies", initech)

    async with running(tmp_path, syncs=SYNCS, app_db=db, timing=TIMING, webhooks=False,
                       configure=configure, config_kwargs={"connection_extra": ASSOC}) as env:
        await env.wait_ready(["contacts", "companies"])

        def zoe_on_the_hub():
            return "zoe@example.com" in env.hub_by_email()

        await env.eventually(zoe_on_the_hub, timeout=120, step=1.0)
        await wait_for(lambda: _all_settled(env), timeout=120, step=1.0)
        assert swapped
        (zoe,) = [r for r in env.app_rows() if r["email"] == "zoe@example.com"]
        assert zoe["company_id"] is None
        hub_zoe = env.hub_by_email()["zoe@example.com"]
        assert env.emu.associations("contacts", hub_zoe["id"], "companies") == []
        # Ivy, deleted in the app (on_delete = mark), keeps her company on the hub.
        hub_ivy = env.hub_by_email()["ivy@example.com"]
        assert len(env.emu.associations("contacts", hub_ivy["id"], "companies")) == 1


async def _all_settled(env):
    counts = {**await env.counts("contacts")}
    return counts.get("pending", 0) == 0 and counts.get("queued", 0) == 0


async def test_a_record_given_a_deleted_one_s_id_has_its_own_associations(
        tmp_path, slow_autojump):
    # Found by the randomized e2e test (seed 14): the app deleted Ivy's row and gave its id
    # to Zoe (SQLite reuses the highest id), at Ivy's company. What crmsync had seen of Ivy's
    # association was taken for Zoe's: hers looked old, and never reached the hub.
    db = setup(tmp_path, [{"email": "ivy@example.com", "first_name": "Ivy", "company_id": 1}],
               [{"name": "Initech", "domain": "initech.example"}])
    async with running(tmp_path, syncs=SYNCS, app_db=db, timing=TIMING, webhooks=False,
                       config_kwargs={"connection_extra": ASSOC}) as env:
        await env.wait_ready(["contacts", "companies"])
        await env.eventually(lambda: hub_assoc(env, "ivy@example.com") == ["Initech"],
                             timeout=120, step=1.0)
        conn = sqlite3.connect(db)
        with conn:
            conn.execute("DELETE FROM customers WHERE id = 1")
            cur = conn.execute("INSERT INTO customers (email, first_name, company_id) "
                               "VALUES ('zoe@example.com', 'Zoe', 1)")
        conn.close()
        assert cur.lastrowid == 1
        await env.eventually(lambda: hub_assoc(env, "zoe@example.com") == ["Initech"],
                             timeout=120, step=1.0)
        # Ivy, deleted in the app (on_delete = mark), keeps her company on the hub.
        assert hub_assoc(env, "ivy@example.com") == ["Initech"]


def hub_assoc(env, email):
    hub = env.hub_by_email().get(email)
    if hub is None:
        return None
    return sorted(company_name(env, c)
                  for c in env.emu.associations("contacts", hub["id"], "companies"))


async def test_a_record_left_waiting_at_a_stop_is_synced_again_at_the_start(
        tmp_path, slow_autojump):
    # Found by test_sigkill_associations (seed 7): a partner's link was committed and the
    # daemon killed before the waiting record was synced again (`release_pending` hands it to
    # the lock queue, which a kill empties). Its fields and associations as seen unchanged,
    # no poll or event brought it again: its waiting row stayed for ever.
    from crmsync.store import associations as store_assoc

    db = setup(tmp_path, [{"email": "cy@example.com", "first_name": "Cy", "company_id": 7}],
               [{"id": 7, "name": "Hooli", "domain": "hooli.example"}])
    async with running(tmp_path, syncs=SYNCS, app_db=db, timing=TIMING, webhooks=False,
                       config_kwargs={"connection_extra": ASSOC}) as env:
        await env.wait_ready(["contacts", "companies"])
        store = env.daemon.store

        def linked():
            cy = env.hub_by_email().get("cy@example.com")
            return cy is not None and [company_name(env, c) for c in env.emu.associations(
                "contacts", cy["id"], "companies")] == ["Hooli"]

        await env.eventually(linked)
        # What the kill left: cy's association waited for Hooli, whose link was committed
        # (the association holds on both sides); cy's sync again had not run.
        await store.call(store_assoc.add_pending, "shop",
                         [("contacts", "app", "1", "companies", "7")])
        emu = env.emu
    async with running(tmp_path, syncs=SYNCS, app_db=db, timing=TIMING, emulator=emu,
                       webhooks=False, config_kwargs={"connection_extra": ASSOC}) as env:
        await env.wait_ready(["contacts", "companies"])

        async def nothing_waits():
            return await env.daemon.store.read(store_assoc.pending_count, "shop") == 0

        await wait_for(nothing_waits, timeout=120, step=1.0)
        cy = env.hub_by_email()["cy@example.com"]
        assert [company_name(env, c) for c in env.emu.associations(
            "contacts", cy["id"], "companies")] == ["Hooli"]
