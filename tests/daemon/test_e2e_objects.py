"""Invoices with line items, event sync, and two instances of one app sharing the hub."""

import sqlite3

import trio

from crmsync.runtime.object_sync import Timing
from crmsync.store import events as store_events

from .harness import contacts_sync, make_app_db, running, wait_for, write_config

SCHEMA = """
CREATE TABLE customers (
    id INTEGER PRIMARY KEY, email TEXT, first_name TEXT, last_name TEXT, phone TEXT,
    job_title TEXT, company_name TEXT,
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')));
CREATE TABLE organisations (id INTEGER PRIMARY KEY, name TEXT, domain TEXT, updated_at TEXT);
CREATE TABLE invoices (
    id INTEGER PRIMARY KEY, number TEXT, currency TEXT, invoice_date TEXT, due_date TEXT,
    customer_id INTEGER REFERENCES customers(id),
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')));
CREATE TABLE invoice_lines (
    id INTEGER PRIMARY KEY, invoice_id INTEGER REFERENCES invoices(id), name TEXT,
    quantity REAL, price REAL, sku TEXT,
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')));
CREATE TABLE events (event_id TEXT, contact_email TEXT, name TEXT, occurred_at TEXT,
                     properties TEXT);
"""

INVOICE_TABLES = """
[[connections.tables]]
object = "invoices"
table = "invoices"

[[connections.tables]]
object = "invoice_lines"
table = "invoice_lines"

[[connections.associations]]
from_object = "invoices"
to_object = "customers"
column = "customer_id"

[[connections.associations]]
from_object = "invoice_lines"
to_object = "invoices"
column = "invoice_id"

[connections.events]
table = "events"
"""

SYNCS = contacts_sync(extra="event_sync = true\n") + """
[[syncs]]
connection = "shop"
hub_object = "invoices"
app_object = "invoices"
unique_property = "hs_purchase_order_number"
associations = ["contacts"]

[[syncs]]
connection = "shop"
hub_object = "line_items"
app_object = "invoice_lines"
unique_property = "hs_sku"
associations = ["invoices"]
"""

TIMING = Timing(hub_poll_interval=10_000, app_poll_interval=2)


def app_db(tmp):
    db = tmp / "app.db"
    make_app_db(db, schema=SCHEMA)
    conn = sqlite3.connect(db)
    conn.executescript("""
        INSERT INTO customers (id, email, first_name) VALUES (1, 'ann@example.com', 'Ann'),
            (2, 'bob@example.com', 'Bob'), (3, 'ann@example.com', 'Twin');
        INSERT INTO invoices (id, number, currency, invoice_date, customer_id)
            VALUES (10, 'INV-10', 'EUR', '2026-11-01', 1);
        INSERT INTO invoice_lines (invoice_id, name, quantity, price, sku)
            VALUES (10, 'Widget', 2, 9.5, 'INV-10/1'), (10, 'Gadget', 1, 100, 'INV-10/2');
    """)
    conn.commit()
    conn.close()
    return db


async def test_invoices_with_line_items_and_their_contact(tmp_path, slow_autojump):
    db = app_db(tmp_path)

    def configure(emu):
        (carl,) = emu.add_records("contacts", [{"email": "carl@example.com"}])
        (inv,) = emu.add_records("invoices", [{"hs_currency": "USD",
                                               "hs_purchase_order_number": "H-1"}])
        (line,) = emu.add_records("line_items", [{"name": "Service", "quantity": "3",
                                                  "price": "20", "hs_sku": "H-1/1"}])
        (acme,) = emu.add_records("companies", [{"name": "Acme"}])
        emu.associate("invoices", inv, "contacts", carl)
        emu.associate("line_items", line, "invoices", inv)
        emu.associate("invoices", inv, "companies", acme)

    async with running(tmp_path, syncs=SYNCS, app_db=db, timing=TIMING, configure=configure,
                       config_kwargs={"connection_extra": INVOICE_TABLES}) as env:
        await env.wait_ready(["contacts", "invoices", "line_items"])

        def hub_invoice(po):
            return next(r for r in env.hub("invoices")
                        if r["properties"].get("hs_purchase_order_number") == po)

        async def settled():
            with trio.fail_after(600):
                while True:
                    inv = hub_invoice("INV-10")
                    contacts = env.emu.associations("invoices", inv["id"], "contacts")
                    lines = env.emu.associations("invoices", inv["id"], "line_items")
                    rows = env.app_rows("invoices")
                    h1 = next((r for r in rows if r["number"] == "H-1"), None)
                    if contacts and len(lines) == 2 and h1 and h1["customer_id"]:
                        return inv, contacts, lines, h1
                    await trio.sleep(1)

        inv, contacts, lines, h1 = await settled()
        assert inv["properties"]["hs_currency"] == "EUR"
        ann_hub = env.hub_by_email()["ann@example.com"]["id"]
        assert contacts == [ann_hub]
        names = sorted(r["properties"]["name"] for r in env.hub("line_items")
                       if r["id"] in lines)
        assert names == ["Gadget", "Widget"]
        # The hub's invoice arrived with its line item and its contact; its company
        # association is left alone (invoices associate only with contacts).
        carl = next(r for r in env.app_rows() if r["email"] == "carl@example.com")
        assert h1["currency"] == "USD" and h1["customer_id"] == carl["id"]
        line = next(r for r in env.app_rows("invoice_lines") if r["sku"] == "H-1/1")
        assert line["invoice_id"] == h1["id"] and line["quantity"] == 3
        hub_h1 = hub_invoice("H-1")
        assert len(env.emu.associations("invoices", hub_h1["id"], "companies")) == 1


async def test_events_reach_the_hub_once_and_only_for_known_contacts(tmp_path, slow_autojump):
    db = app_db(tmp_path)
    async with running(tmp_path, syncs=SYNCS, app_db=db, timing=TIMING,
                       config_kwargs={"connection_extra": INVOICE_TABLES}) as env:
        await env.wait_ready(["contacts"])
        # Twin (customer 3) failed as a duplicate of ann, but ann exists in the hub: her
        # events are sent. nobody@ is in neither system: skipped with the reason.
        failed = await env.items("contacts", "failed")
        assert [i.app_id for i in failed] == ["3"]
        env.app_exec("INSERT INTO events VALUES ('e1', 'ANN@example.com', 'pe_login', "
                     "'2026-11-29T10:00:00Z', '{\"plan\": \"pro\"}')")
        env.app_exec("INSERT INTO events VALUES ('e2', 'nobody@example.com', 'pe_login', "
                     "'2026-11-29T10:01:00Z', '{}')")
        env.app_exec("INSERT INTO events VALUES ('e3', 'bob@example.com', 'pe_order', "
                     "'2026-11-29T10:02:00Z', '{}')")
        await env.eventually(lambda: len(env.emu.events) == 2)
        # Re-inserting an event id (an app replaying its table) sends nothing twice.
        env.app_exec("INSERT INTO events VALUES ('e1', 'ann@example.com', 'pe_login', "
                     "'2026-11-29T10:00:00Z', '{}')")
        env.daemon.handle("shop", "contacts").poll_now()
        await trio.sleep(30)
        assert len(env.emu.events) == 2
        names = sorted(e.get("eventName") for e in env.emu.events)
        assert names == ["pe_login", "pe_order"]
        counts = await env.daemon.store.read(store_events.counts, "shop/contacts")
        assert counts == {"sent": 2, "skipped_no_contact": 1}


async def test_two_instances_of_one_app_share_the_hub_contact(tmp_path, slow_autojump):
    db1, db2 = tmp_path / "eu.db", tmp_path / "us.db"
    make_app_db(db1, customers=[{"email": "shared@example.com", "first_name": "Sam"},
                                {"email": "eu@example.com", "first_name": "Eu"}])
    make_app_db(db2, customers=[{"email": "Shared@Example.com", "last_name": "Smith"},
                                {"email": "us@example.com", "first_name": "Us"}])
    syncs = """
[[syncs]]
connection = "eu"
hub_object = "contacts"
app_object = "customers"

[[syncs]]
connection = "us"
hub_object = "contacts"
app_object = "customers"
"""
    second = f"""
[[connections]]
name = "eu"
type = "sqlite"
database = "{db1}"
poll_interval_seconds = 2
[[connections.tables]]
object = "customers"
table = "customers"

[[connections]]
name = "us"
type = "sqlite"
database = "{db2}"
poll_interval_seconds = 2
[[connections.tables]]
object = "customers"
table = "customers"
"""
    cfg = write_config(tmp_path, db1, syncs)
    # Replace the single connection of the harness config by the two instances.
    text = cfg.read_text()
    head, _, _rest = text.partition("[[connections]]")
    cfg.write_text(head + second + syncs)

    import httpx

    from crmsync.daemon.main import Daemon
    from crmsync.emulators.hubspot import HubSpotEmulator

    from .harness import TOKEN

    emu = HubSpotEmulator(tokens=(TOKEN,), tier="unlimited", seed=0, clock=trio.current_time)
    emu.add_records("contacts", [{"email": "shared@example.com", "phone": "+1 555"}])
    daemon = Daemon(cfg, hub_transport=httpx.ASGITransport(app=emu.app), timing=TIMING,
                    configure_logging=False, hub_index_lag=0)
    async with trio.open_nursery() as nursery:
        await nursery.start(daemon.run)
        with trio.fail_after(600):
            for conn in ("eu", "us"):
                while not (daemon.handle(conn, "contacts") and
                           daemon.handle(conn, "contacts").is_running):
                    await trio.sleep(0.1)
        hub = {r["properties"]["email"].lower(): r for r in emu.records("contacts")}
        # One hub contact for the shared person, linked from both instances; no duplicate.
        assert sorted(hub) == ["eu@example.com", "shared@example.com", "us@example.com"]
        from crmsync.store import items
        shared_id = hub["shared@example.com"]["id"]
        for conn in ("eu", "us"):
            linked = await daemon.store.read(items.find_item, f"{conn}/contacts", "hub",
                                             shared_id)
            assert linked is not None and linked.state == "syncing" and linked.app_id == "1"
        props = hub["shared@example.com"]["properties"]
        assert props.get("firstname") == "Sam" and props.get("lastname") == "Smith"
        # Each instance has its own index and states. A contact the other instance put on
        # the hub reaches it through the hub's changes: the two initial syncs ran at once, so
        # one may have polled the hub before the other's contact was there.
        for conn in ("eu", "us"):
            daemon.handle(conn, "contacts").poll_now()

        async def both_synced():
            eu = await daemon.store.read(items.counts, "eu/contacts")
            us = await daemon.store.read(items.counts, "us/contacts")
            return eu["syncing"] == 3 and us["syncing"] == 3

        await wait_for(both_synced, timeout=120, step=1.0)
        # us@ reached the eu app too (through the hub), and the other way round.
        rows = sqlite3.connect(db1).execute("SELECT lower(email) FROM customers").fetchall()
        assert sorted(r[0] for r in rows) == ["eu@example.com", "shared@example.com",
                                              "us@example.com"]
        nursery.cancel_scope.cancel()
