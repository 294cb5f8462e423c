"""A connection's initial syncs in turn where their objects keep associations (issue 16,
runtime/initial_order.py): the contacts' app pass waits for the companies' initial sync, so
each contact's company is linked when the contact is, the association is written once, and
no record is read again for it."""

import trio

from crmsync.connectors.sqlite import connector as sqlite_connector

from .harness import running, wait_for
from .test_e2e_associations import ASSOC, SYNCS, TIMING, setup


async def test_contacts_link_after_their_companies_and_no_record_is_read_again(
        tmp_path, slow_autojump, monkeypatch):
    orgs = [{"name": f"Org {i}", "domain": f"org{i}.example"} for i in range(1, 6)]
    customers = [{"email": f"p{i}@example.com", "first_name": f"P{i}", "company_id": 1 + i % 5}
                 for i in range(20)]
    db = setup(tmp_path, customers, orgs)
    # The companies' app scan is slow (a large or distant table): run side by side, the
    # contacts' app pass would link every contact before any company.
    real_scan = sqlite_connector.SqliteAppConnector.scan

    async def slow_scan(self, object_name, cursor, properties):
        if object_name == "organisations":
            await trio.sleep(30)
        return await real_scan(self, object_name, cursor, properties)

    monkeypatch.setattr(sqlite_connector.SqliteAppConnector, "scan", slow_scan)
    async with running(tmp_path, syncs=SYNCS, app_db=db, timing=TIMING,
                       config_kwargs={"connection_extra": ASSOC}) as env:
        def contacts_wait():
            # What `crmsync ctl status` shows meanwhile.
            h = env.daemon.handle("shop", "contacts")
            return h is not None and h.statistics().status.phase == (
                "app_pass, waiting for shop/companies")

        await wait_for(contacts_wait, timeout=60, step=0.5)
        await env.wait_ready(["contacts", "companies"])
        log = [f"{m} {p}" for m, p, _ in env.emu.request_log]
        creates = [i for i, r in enumerate(log) if r.endswith("/batch/create")
                   and "/crm/v3/objects/" in r]
        first_contact = min(i for i in creates if "/contacts/" in log[i])
        assert all(i < first_contact for i in creates if "/companies/" in log[i]), log
        # No record read again for its associations (what the pollers' first rounds read
        # of associations afterwards is their echo check, not counted here).
        assert [r for r in log if r.endswith("/batch/read") and "/crm/v3/" in r] == [], log
        contacts_writes = [i for i, r in enumerate(log)
                           if "/crm/v4/associations/contacts/companies/batch/create" in r]
        assert contacts_writes and contacts_writes[0] > first_contact

        async def associated():
            hub = env.hub_by_email()
            companies = {r["properties"]["domain"]: r["id"] for r in env.hub("companies")}
            return all(env.emu.associations("contacts", hub[c["email"]]["id"], "companies")
                       == [companies[f"org{c['company_id']}.example"]] for c in customers)

        await wait_for(associated, timeout=120, step=1.0)
        items = await env.items("companies")
        assert {i.state for i in items} == {"syncing"}


async def test_a_record_sent_before_the_feeds_start_does_not_hold_the_initial_sync(
        tmp_path, slow_autojump, monkeypatch):
    # Another object sync may send a record of this one again (an association wait) before
    # this one's initial sync reaches it. Handed out as a batch while no worker runs yet, the
    # key counted as running, and the initial sync's page holding it waited for ever.
    orgs = [{"name": f"Org {i}", "domain": f"org{i}.example"} for i in range(1, 4)]
    db = setup(tmp_path, [], orgs)
    real_scan = sqlite_connector.SqliteAppConnector.scan
    scanning = trio.Event()

    async def slow_scan(self, object_name, cursor, properties):
        if object_name == "organisations" and cursor is None:
            scanning.set()
            await trio.sleep(30)
        return await real_scan(self, object_name, cursor, properties)

    monkeypatch.setattr(sqlite_connector.SqliteAppConnector, "scan", slow_scan)
    async with running(tmp_path, syncs=SYNCS, app_db=db, timing=TIMING,
                       config_kwargs={"connection_extra": ASSOC}) as env:
        with trio.fail_after(60):
            await scanning.wait()
        await env.daemon.handle("shop", "companies").resubmit([("app", "2")])
        await env.wait_ready(["companies"], timeout=300)
        assert {r["properties"]["domain"] for r in env.hub("companies")} == {
            f"org{i}.example" for i in range(1, 4)}
