"""Change-to-visible latency, webhook-driven (or through HubSpot's webhooks journal). Prints
JSON.

    python bench/latency.py [--changes 1000] [--concurrency 10]
    python bench/latency.py --hub-changes journal --journal-interval 5 [--changes 200]

A linked contact is edited on one side and the time until the other side shows the new value
is measured, for `--changes` edits alternating between the sides: hub edits reach the daemon
as signed HubSpot webhooks (the emulator's delivery), app edits as signed app pushes to
POST /webhooks/<connection> (what an app with webhooks sends). Polling intervals are an hour,
so only webhooks can bring a change. Real clock; the emulator and the webhook application run
in process (no TCP), so the figure is crmsync's own latency.

With `--hub-changes journal` HubSpot sends no webhooks: hub edits reach the daemon through the
webhooks journal it reads every `--journal-interval` seconds (`[hub] changes = "journal"`), so
their latency is bounded by that interval (about half of it on average, plus one sync).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

import httpx
import trio

from crmsync.connectors import app_webhooks
from crmsync.daemon import logging as daemon_logging
from crmsync.daemon.main import Daemon
from crmsync.emulators.hubspot import HubSpotEmulator
from crmsync.emulators.hubspot.oauth import OAuthApp
from crmsync.runtime.object_sync import Timing

TOKEN = "bench-token-0123456789"
HUB_SECRET = "hub-secret-0123456789"
APP_SECRET = "app-secret-0123456789"
PUBLIC = "http://crmsync.bench"


CLIENT_ID = "bench-journal-app"
CLIENT_SECRET = "bench-journal-secret-0123456789"


def setup(tmp: Path, contacts: int,
          journal_interval: float | None = None) -> tuple[Path, HubSpotEmulator]:
    db = tmp / "app.db"
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, email TEXT, first_name TEXT, "
                 "last_name TEXT, job_title TEXT, updated_at TEXT NOT NULL DEFAULT "
                 "(strftime('%Y-%m-%dT%H:%M:%fZ', 'now')))")
    conn.executemany("INSERT INTO customers (email, first_name, last_name) VALUES (?, ?, ?)",
                     [(f"c{i}@example.com", f"C{i}", "Same") for i in range(contacts)])
    conn.commit()
    conn.close()
    if journal_interval is None:
        emu = HubSpotEmulator(tokens=(TOKEN,), tier="unlimited", seed=1,
                              webhook_url=f"{PUBLIC}/webhooks/hubspot", webhook_secret=HUB_SECRET)
        changes = 'webhook_client_secret_file = "hub-secret"'
    else:
        emu = HubSpotEmulator(tokens=(TOKEN,), tier="unlimited", seed=1,
                              oauth_clients={CLIENT_ID: OAuthApp(CLIENT_ID, CLIENT_SECRET)})
        (tmp / "journal-secret").write_text(CLIENT_SECRET)
        changes = (f'changes = "journal"\n[hub.journal]\nclient_id = "{CLIENT_ID}"\n'
                   f'client_secret_file = "journal-secret"\n'
                   f"poll_interval_seconds = {journal_interval}")
    emu.add_records("contacts", [{"email": f"c{i}@example.com", "firstname": f"C{i}",
                                  "lastname": "Same"} for i in range(contacts)])
    (tmp / "token").write_text(TOKEN)
    (tmp / "hub-secret").write_text(HUB_SECRET)
    (tmp / "app-secret").write_text(APP_SECRET)
    (tmp / "crmsync.toml").write_text(f"""
[daemon]
state_dir = "{tmp / 'state'}"
[daemon.webhooks]
enabled = false
public_base_url = "{PUBLIC}"
[hub]
base_url = "http://hubspot.bench"
tier = "unlimited"
{changes}
[hub.auth]
kind = "private_app"
token_file = "token"
[[connections]]
name = "shop"
type = "sqlite"
database = "{db}"
webhook_secret_file = "app-secret"
[[connections.tables]]
object = "customers"
table = "customers"
[[syncs]]
connection = "shop"
hub_object = "contacts"
app_object = "customers"
""")
    return db, emu


async def run(changes: int, concurrency: int, contacts: int, tmp: Path,
              journal_interval: float | None = None) -> dict[str, object]:
    db, emu = setup(tmp, contacts, journal_interval)
    log = (tmp / "crmsync.log").open("wb")
    daemon_logging.configure("info", "json", stream=log)
    daemon = Daemon(tmp / "crmsync.toml", hub_transport=httpx.ASGITransport(app=emu.app),
                    configure_logging=False,
                    timing=Timing(hub_poll_interval=3600, app_poll_interval=3600))
    latencies: dict[str, list[float]] = {"hub_to_app": [], "app_to_hub": []}
    async with trio.open_nursery() as nursery:
        await nursery.start(daemon.run)
        assert daemon.webhooks is not None
        to_daemon = httpx.AsyncClient(transport=httpx.ASGITransport(app=daemon.webhooks.app),
                                      base_url=PUBLIC)
        nursery.start_soon(emu.run_webhooks, to_daemon)
        while True:
            h = daemon.handle("shop", "contacts")
            if h is not None and h.is_running:
                break
            await trio.sleep(0.05)
        await trio.sleep(1)  # let the initial sync's own webhook echoes drain
        hub_ids = {r["properties"]["email"]: r["id"] for r in emu.records("contacts")}
        app = sqlite3.connect(db, check_same_thread=False)
        app.execute("PRAGMA busy_timeout=5000")
        slots = trio.Semaphore(concurrency)
        rnd = random.Random(7)
        seq = 0

        async def one(n: int) -> None:
            i = n % contacts
            email = f"c{i}@example.com"
            value = f"v{n}-{time.monotonic_ns()}"
            start = time.perf_counter()
            if n % 2 == 0:
                if journal_interval is not None:
                    # Edits come at random moments, not in step with the reader (the next
                    # edit would otherwise start just after a read and wait a whole interval).
                    await trio.sleep(rnd.uniform(0, journal_interval))
                    start = time.perf_counter()
                emu.update_record("contacts", hub_ids[email], {"jobtitle": value})
                while True:
                    row = app.execute("SELECT job_title FROM customers WHERE email = ?",
                                      (email,)).fetchone()
                    if row and row[0] == value:
                        break
                    await trio.sleep(0.002)
                latencies["hub_to_app"].append(time.perf_counter() - start)
            else:
                app.execute("UPDATE customers SET job_title = ?, updated_at = "
                            "strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE email = ?",
                            (value, email))
                app.commit()
                rid = app.execute("SELECT id FROM customers WHERE email = ?", (email,)).fetchone()[0]
                body = json.dumps([{"event_id": f"e{n}", "object": "customers", "record_id": rid,
                                    "change": "upsert",
                                    "occurred_at": int(time.time() * 1000)}]).encode()
                r = await to_daemon.post("/webhooks/shop", content=body,
                                         headers=app_webhooks.sign(APP_SECRET, body))
                assert r.status_code == 204, r.text
                hid = hub_ids[email]
                while True:
                    rec = emu.state.by_id(emu.state.object_type("contacts"), hid)
                    if rec is not None and rec.properties.get("jobtitle") == value:
                        break
                    await trio.sleep(0.002)
                latencies["app_to_hub"].append(time.perf_counter() - start)
            slots.release()

        started = time.perf_counter()
        async with trio.open_nursery() as workers:
            # Each contact is edited by one change at a time (no overlapping edits of one
            # record, whose later value would be the only one ever seen).
            for n in range(changes):
                await slots.acquire()
                seq = n
                workers.start_soon(one, n)
        elapsed = time.perf_counter() - started
        nursery.cancel_scope.cancel()
        await to_daemon.aclose()
    log.close()

    def pct(xs: list[float], q: float) -> float:
        xs = sorted(xs)
        return round(1000 * xs[min(len(xs) - 1, int(q * len(xs)))], 1)

    every = latencies["hub_to_app"] + latencies["app_to_hub"]
    return {
        "hub_changes": "webhooks" if journal_interval is None else "journal",
        "journal_interval_s": journal_interval,
        "changes": seq + 1, "concurrency": concurrency, "seconds": round(elapsed, 1),
        "p50_ms": pct(every, 0.50), "p99_ms": pct(every, 0.99), "max_ms": pct(every, 1.0),
        "mean_ms": round(1000 * statistics.mean(every), 1),
        "hub_to_app": {"p50_ms": pct(latencies["hub_to_app"], 0.5),
                       "p99_ms": pct(latencies["hub_to_app"], 0.99),
                       "max_ms": pct(latencies["hub_to_app"], 1.0),
                       "mean_ms": round(1000 * statistics.mean(latencies["hub_to_app"]), 1)},
        "app_to_hub": {"p50_ms": pct(latencies["app_to_hub"], 0.5),
                       "p99_ms": pct(latencies["app_to_hub"], 0.99)},
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--changes", type=int, default=1000)
    ap.add_argument("--concurrency", type=int, default=10)
    ap.add_argument("--contacts", type=int, default=200)
    ap.add_argument("--hub-changes", choices=("webhooks", "journal"), default="webhooks",
                    help="how hub edits reach the daemon")
    ap.add_argument("--journal-interval", type=float, default=5.0,
                    help="seconds between journal reads (with --hub-changes journal)")
    args = ap.parse_args()
    interval = args.journal_interval if args.hub_changes == "journal" else None
    with tempfile.TemporaryDirectory() as d:
        out = trio.run(run, args.changes, args.concurrency, args.contacts, Path(d), interval)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
