"""Memory under a burst of webhook events. Prints JSON.

    python bench/webhook_burst.py [--events 50000] [--contacts 50000]

`--contacts` contacts are linked on both sides (the initial sync runs first), then `--events`
signed app pushes (POST /webhooks/<connection>, 500 events per request, each naming one
contact, round robin) are delivered to the daemon's webhook application in process, as fast
as it stores them. Reported: the resident memory before the burst, its peak while the burst
is stored and synced (sampled every 20 ms from /proc/self/statm), the time to store the
burst, and the time until the inbox is empty again. The HubSpot emulator runs in process:
its copy of the hub is in both figures, the burst's cost is their difference.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import tempfile
import time
from pathlib import Path

import httpx
import trio

from crmsync.connectors import app_webhooks
from crmsync.daemon import logging as daemon_logging
from crmsync.daemon.main import Daemon
from crmsync.emulators.hubspot import HubSpotEmulator
from crmsync.runtime.object_sync import Timing
from crmsync.store import inbox as store_inbox

TOKEN = "bench-token-0123456789"
APP_SECRET = "app-secret-0123456789"
PUBLIC = "http://crmsync.bench"
PER_REQUEST = 500
PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE / 2**20


def setup(tmp: Path, contacts: int) -> tuple[Path, HubSpotEmulator]:
    db = tmp / "app.db"
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, email TEXT, first_name TEXT, "
                 "last_name TEXT, updated_at TEXT NOT NULL DEFAULT "
                 "(strftime('%Y-%m-%dT%H:%M:%fZ', 'now')))")
    conn.executemany("INSERT INTO customers (email, first_name, last_name) VALUES (?, ?, ?)",
                     [(f"c{i}@example.com", f"C{i}", "Same") for i in range(contacts)])
    conn.commit()
    conn.close()
    emu = HubSpotEmulator(tokens=(TOKEN,), tier="unlimited", seed=1)
    emu.add_records("contacts", [{"email": f"c{i}@example.com", "firstname": f"C{i}",
                                  "lastname": "Same"} for i in range(contacts)])
    (tmp / "token").write_text(TOKEN)
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


def running(h: object) -> bool:
    """The object sync runs its workers (this script measures the code before issue 11's
    handle too, whose `ready` event said it)."""
    if hasattr(h, "is_running"):
        return bool(h.is_running)
    return bool(h.ready.is_set())  # type: ignore[attr-defined]


async def run(events: int, contacts: int, tmp: Path) -> dict[str, object]:
    _, hub = setup(tmp, contacts)
    log = (tmp / "crmsync.log").open("wb")
    daemon_logging.configure("info", "json", stream=log)
    daemon = Daemon(tmp / "crmsync.toml", hub_transport=httpx.ASGITransport(app=hub.app),
                    configure_logging=False,
                    timing=Timing(hub_poll_interval=3600, app_poll_interval=3600))
    samples: list[float] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(daemon.run)
        assert daemon.webhooks is not None and daemon.store is not None
        store = daemon.store
        while True:
            h = daemon.handle("shop", "contacts")
            if h is not None and running(h):
                break
            await trio.sleep(0.05)
        await trio.sleep(1)
        before = rss_mb()

        async def sample() -> None:
            while True:
                samples.append(rss_mb())
                await trio.sleep(0.02)

        nursery.start_soon(sample)
        to_daemon = httpx.AsyncClient(transport=httpx.ASGITransport(app=daemon.webhooks.app),
                                      base_url=PUBLIC)
        started = time.perf_counter()
        now_ms = int(time.time() * 1000)
        for first in range(0, events, PER_REQUEST):
            body = json.dumps([{"event_id": f"e{n}", "object": "customers",
                                "record_id": str(1 + n % contacts), "change": "upsert",
                                "occurred_at": now_ms}
                               for n in range(first, min(events, first + PER_REQUEST))]).encode()
            r = await to_daemon.post("/webhooks/shop", content=body,
                                     headers=app_webhooks.sign(APP_SECRET, body))
            assert r.status_code == 204, r.text
        stored = time.perf_counter() - started
        sources = [store_inbox.app_source("shop", "contacts")]
        while await store.read(store_inbox.count_waiting, sources):
            await trio.sleep(0.1)
        drained = time.perf_counter() - started
        await to_daemon.aclose()
        nursery.cancel_scope.cancel()
    log.close()
    return {
        "events": events, "contacts": contacts,
        "rss_before_mb": round(before, 1),
        "peak_rss_during_burst_mb": round(max(samples), 1),
        "burst_cost_mb": round(max(samples) - before, 1),
        "stored_s": round(stored, 1), "drained_s": round(drained, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=50_000)
    ap.add_argument("--contacts", type=int, default=50_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        out = trio.run(run, args.events, args.contacts, Path(d))
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
