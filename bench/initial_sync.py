"""Initial sync throughput and memory. Prints JSON.

    python bench/initial_sync.py --records 100000
    python bench/initial_sync.py --records 1000000 --emulator subprocess

N app contacts (SQLite) and N hub contacts, 30 % of them in both (same email), rate limits
off. records_per_s = 2N / the time from the daemon's start to every object sync being in
incremental mode. peak_rss_mb is this process's peak resident memory. With `--emulator
inprocess` (the default) the emulator's own copy of the hub lives in this process too; with
`--emulator subprocess` it is served over loopback by `crmsync emulator hubspot` in another
process, so the figure is the daemon's alone (what the 1,000,000-record target is about).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import trio

from crmsync.daemon import logging as daemon_logging
from crmsync.daemon.main import Daemon
from crmsync.runtime.object_sync import Timing

TOKEN = "bench-token-0123456789"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def app_db(path: Path, n: int, overlap: int) -> None:
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, email TEXT, first_name TEXT, "
                 "last_name TEXT, phone TEXT, updated_at TEXT NOT NULL DEFAULT "
                 "(strftime('%Y-%m-%dT%H:%M:%fZ', 'now')))")
    rows = ((f"both{i}@example.com" if i < overlap else f"app{i}@example.com", f"A{i}",
             "App", f"+1 555 {i:07d}") for i in range(n))
    conn.executemany("INSERT INTO customers (email, first_name, last_name, phone) "
                     "VALUES (?, ?, ?, ?)", rows)
    conn.commit()
    conn.close()


def hub_records(n: int, overlap: int, start: int = 0,
                stop: int | None = None) -> list[dict[str, str]]:
    return [{"email": f"both{i}@example.com" if i < overlap else f"hub{i}@example.com",
             "firstname": f"H{i}", "lastname": "Hub"} for i in range(start, stop or n)]


def config(tmp: Path, db: Path, base_url: str) -> Path:
    (tmp / "token").write_text(TOKEN)
    cfg = tmp / "crmsync.toml"
    cfg.write_text(f"""
[daemon]
state_dir = "{tmp / 'state'}"
log_level = "info"
[daemon.webhooks]
enabled = false
[hub]
base_url = "{base_url}"
tier = "unlimited"
[hub.auth]
kind = "private_app"
token_file = "token"
[[connections]]
name = "bench"
type = "sqlite"
database = "{db}"
batch_size = 500
[[connections.tables]]
object = "customers"
table = "customers"
[[syncs]]
connection = "bench"
hub_object = "contacts"
app_object = "customers"
""")
    return cfg


async def run(n: int, mode: str, tmp: Path) -> dict[str, object]:
    overlap = int(n * 0.3)
    db = tmp / "app.db"
    app_db(db, n, overlap)
    proc = None
    transport = None
    if mode == "inprocess":
        from crmsync.emulators.hubspot import HubSpotEmulator

        emu = HubSpotEmulator(tokens=(TOKEN,), tier="unlimited", seed=1)
        emu.add_records("contacts", hub_records(n, overlap))
        transport = httpx.ASGITransport(app=emu.app)
        # The emulator's copy of the hub is set-up, not the daemon's working set: keep the
        # cyclic GC from walking it over and over (a separate process would not).
        gc.collect()
        gc.freeze()
        base = "http://hubspot.bench"
    else:
        port = free_port()
        proc = subprocess.Popen([sys.executable, "-m", "crmsync", "emulator", "hubspot",
                                 "--port", str(port), "--token", TOKEN, "--tier", "unlimited",
                                 "--records", "0"], stdout=subprocess.DEVNULL)
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=base, timeout=120) as c:
            for _ in range(100):
                try:
                    await c.get("/_emulator/dump?summary=1")
                    break
                except httpx.TransportError:
                    await trio.sleep(0.1)
            # In chunks: this process's peak memory is what is measured.
            for start in range(0, n, 10_000):
                chunk = hub_records(n, overlap, start, min(n, start + 10_000))
                r = await c.post("/_emulator/seed", json={"contacts": chunk})
                r.raise_for_status()
    log = (tmp / "crmsync.log").open("wb")
    daemon_logging.configure("info", "json", stream=log)
    daemon = Daemon(config(tmp, db, base), hub_transport=transport, configure_logging=False,
                    timing=Timing(hub_poll_interval=3600, app_poll_interval=3600))
    started = time.perf_counter()
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(daemon.run)
            while True:
                h = daemon.handle("bench", "contacts")
                if h is not None and h.ready.is_set():
                    break
                await trio.sleep(0.05)
            elapsed = time.perf_counter() - started
            assert daemon.store is not None
            from crmsync.store import items

            counts = await daemon.store.read(items.counts, "bench/contacts")
            nursery.cancel_scope.cancel()
    finally:
        log.close()
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    expected = 2 * n - overlap
    return {
        "records": n, "overlap": overlap, "emulator": mode,
        "seconds": round(elapsed, 2),
        "records_per_s": round(2 * n / elapsed),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "synced_pairs": counts["syncing"], "expected_pairs": expected,
        "state_db_mb": round(os.path.getsize(tmp / "state" / "crmsync.db") / 2**20, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--emulator", choices=["inprocess", "subprocess"], default="inprocess")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        out = trio.run(run, args.records, args.emulator, Path(d))
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
