"""A stored webhook delivery wakes only the intakes of the connection it is for (issue 11
item 1: "the webhook server wakes only the intakes of the connection an event is for").

Daemon level: the webhook server stores a delivery and calls `Daemon.intake_stored` with the
inbox sources it stored to; the daemon finds the connections reading them. The runtime half
(one object sync's intakes) is tests/runtime/test_object_sync.py."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import httpx
import msgspec
import trio

from crmsync.connectors.app_webhooks import AppWebhookEvent, inbox_items, sign
from crmsync.daemon.main import Daemon
from crmsync.emulators.hubspot import HubSpotEmulator
from crmsync.runtime.intake import IDLE_POLL_SECONDS
from crmsync.runtime.object_sync import Timing
from crmsync.store import inbox as store_inbox
from crmsync.store.inbox import app_source

from .harness import APP_SECRET, PUBLIC, TOKEN, make_app_db, write_config

# The pollers never run during the test: a change arrives only through the inbox.
TIMING = Timing(hub_poll_interval=100_000, app_poll_interval=100_000)


def two_connections(tmp: Path) -> Path:
    dbs = {name: tmp / f"{name}.db" for name in ("eu", "us")}
    for name, db in dbs.items():
        make_app_db(db, customers=[{"email": f"first@{name}.example", "first_name": "A"}])
    syncs = "".join(f"""
[[syncs]]
connection = "{name}"
hub_object = "contacts"
app_object = "customers"
""" for name in dbs)
    connections = "".join(f"""
[[connections]]
name = "{name}"
type = "sqlite"
database = "{db}"
poll_interval_seconds = 100000
webhook_secret_file = "app-secret"
[[connections.tables]]
object = "customers"
table = "customers"
""" for name, db in dbs.items())
    cfg = write_config(tmp, dbs["eu"], syncs)
    head, _, _ = cfg.read_text().partition("[[connections]]")
    cfg.write_text(head + connections + syncs)
    return cfg


def add_customer(db: Path, email: str) -> str:
    conn = sqlite3.connect(db)
    try:
        cur = conn.execute("INSERT INTO customers (email, first_name) VALUES (?, 'New')", (email,))
        conn.commit()
        return str(cur.lastrowid)
    finally:
        conn.close()


def upsert(event_id: str, record_id: str) -> AppWebhookEvent:
    return AppWebhookEvent(event_id=event_id, object="customers", record_id=record_id,
                           change="upsert", occurred_at=int(time.time() * 1000))


async def test_a_delivery_wakes_the_intake_of_its_connection_and_no_other(tmp_path,
                                                                          slow_autojump):
    cfg = two_connections(tmp_path)
    emu = HubSpotEmulator(tokens=(TOKEN,), tier="unlimited", seed=0, clock=trio.current_time)
    daemon = Daemon(cfg, hub_transport=httpx.ASGITransport(app=emu.app), timing=TIMING,
                    configure_logging=False, hub_index_lag=0)

    def on_hub() -> set[str]:
        return {r["properties"]["email"] for r in emu.records("contacts")}

    async with trio.open_nursery() as nursery:
        await nursery.start(daemon.run)
        with trio.fail_after(600):
            for conn in ("eu", "us"):
                while not ((h := daemon.handle(conn, "contacts")) and h.is_running):
                    await trio.sleep(0.1)
        assert daemon.store is not None and daemon.webhooks is not None
        assert on_hub() == {"first@eu.example", "first@us.example"}
        # Every intake read its inbox when it started; the next idle read is after this.
        idle_read = trio.current_time() + IDLE_POLL_SECONDS

        # A change in the us app, stored in us's inbox source the way an earlier delivery
        # would have left it, without a wake.
        us_id = add_customer(tmp_path / "us.db", "second@us.example")
        await daemon.store.call(store_inbox.add_events, app_source("us", "contacts"),
                                inbox_items([upsert("us-1", us_id)]))
        # A change in the eu app, delivered to eu's webhook endpoint.
        eu_id = add_customer(tmp_path / "eu.db", "second@eu.example")
        body = msgspec.json.encode([{"event_id": "eu-1", "object": "customers",
                                     "record_id": eu_id, "change": "upsert",
                                     "occurred_at": int(time.time() * 1000)}])
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=daemon.webhooks.app),
                                     base_url=PUBLIC) as client:
            answer = await client.post("/webhooks/eu", content=body,
                                       headers=sign(APP_SECRET, body))
        assert answer.status_code == 204, answer.text  # stored

        # eu's intake read the delivery at once: its contact is on the hub well before any
        # idle read; us's event still waits, its intake was not woken by eu's delivery.
        with trio.fail_after(600):
            while "second@eu.example" not in on_hub():
                await trio.sleep(0.1)
        assert trio.current_time() < idle_read
        assert "second@us.example" not in on_hub()
        assert await daemon.store.read(store_inbox.count_waiting,
                                       [app_source("us", "contacts")]) == 1
        # ... until its intake's idle read, which finds it.
        with trio.fail_after(600):
            while "second@us.example" not in on_hub():
                await trio.sleep(0.5)
        assert trio.current_time() >= idle_read
        nursery.cancel_scope.cancel()
