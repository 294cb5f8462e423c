"""HubSpot API requests per record, counted at the emulator (issue 16). Prints JSON.

    python bench/api_requests.py                      # the three scenarios below
    python bench/api_requests.py --scenario initial --records 20000
    python bench/api_requests.py --scenario initial --project  # + 1,000,000 contacts' time

Scenarios (each counts every request the emulator answered, per endpoint):

- `initial`: contacts only, N app customers (SQLite) and N hub contacts, 30 % in both (same
  email); requests until the initial sync is complete, per 100 input records (2N).
- `demo`: `crmsync demo --records 2000 --until-synced` (five object types with associations,
  the demo's edits and events); requests of the whole run, per 100 records synced in the end.
- `incremental`: after a contacts initial sync, 1,000 single-field edits of distinct linked
  customers in the app database at once; requests until every edit shows in the hub, per
  100 edits. Run twice: with HubSpot's webhooks reaching the daemon (`incremental`, the
  default `hub.changes = "webhooks"`; their echoes of the sync's writes included) and with
  the hub poller alone (`incremental_poll_only`).

Paths are grouped with ids replaced by `{id}`. Rate limits are off (`unlimited` tier) except in
`demo`, which runs at its default tier: requests are counted, not timed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import sqlite3
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import trio

from crmsync.daemon import logging as daemon_logging
from crmsync.daemon.main import Daemon
from crmsync.emulators.hubspot import HubSpotEmulator
from crmsync.runtime.object_sync import Timing

sys.path.insert(0, str(Path(__file__).parent))
from initial_sync import TOKEN, app_db, config, hub_records

TARGETS = {"initial": 1.1, "demo": 2.5, "incremental": 1.5, "incremental_poll_only": 1.5}
PUBLIC = "http://crmsync.bench"
HUB_SECRET = "bench-hub-secret-0123456789"
_ID = re.compile(r"/(\d+|[^/]+@[^/]+)(?=/|$)")


def endpoint(method: str, path: str) -> str:
    return f"{method} {_ID.sub('/{id}', path)}"


def tally(log: list[tuple[str, str, int]]) -> dict[str, int]:
    counts = Counter(endpoint(m, p) for m, p, _ in log if not p.startswith("/_emulator/"))
    return dict(counts.most_common())


def figures(log: list[tuple[str, str, int]], per: int, what: str) -> dict[str, Any]:
    by_endpoint = tally(log)
    total = sum(by_endpoint.values())
    return {"requests": total, what: per,
            "per_100": round(100 * total / per, 3) if per else None,
            "by_endpoint": by_endpoint}


async def _until_ready(daemon: Daemon, sync: str, obj: str, limit: float) -> None:
    with trio.fail_after(limit):
        while True:
            h = daemon.handle(sync, obj)
            if h is not None and h.is_running:
                return
            await trio.sleep(0.05)


async def contacts(n: int, tmp: Path, edits: int = 0, webhooks: bool = False,
                   app_page: int = 500) -> dict[str, Any]:
    """The contacts-only initial sync; with `edits`, then that many app edits. With
    `webhooks`, HubSpot's webhooks reach the daemon (delivered to its webhook application in
    process), as `hub.changes = "webhooks"` with a served listener has them; else the hub
    poller alone finds hub changes. `app_page`: the connection's `batch_size` (rows per app
    change-log read; the app poller hands the lock queue one such page at a time)."""
    overlap = int(n * 0.3)
    db = tmp / "app.db"
    app_db(db, n, overlap)
    emu = HubSpotEmulator(tokens=(TOKEN,), tier="unlimited", seed=1,
                          webhook_url=f"{PUBLIC}/webhooks/hubspot" if webhooks else None,
                          webhook_secret=HUB_SECRET if webhooks else None)
    emu.add_records("contacts", hub_records(n, overlap))
    log = (tmp / "crmsync.log").open("wb")
    daemon_logging.configure("info", "json", stream=log)
    cfg = config(tmp, db, "http://hubspot.bench")
    cfg.write_text(cfg.read_text().replace("batch_size = 500", f"batch_size = {app_page}", 1))
    if webhooks:
        (tmp / "hub-secret").write_text(HUB_SECRET)
        cfg.write_text(cfg.read_text().replace(
            "[hub]\n", '[hub]\nwebhook_client_secret_file = "hub-secret"\n', 1))
    daemon = Daemon(cfg, hub_transport=httpx.ASGITransport(app=emu.app), configure_logging=False,
                    timing=Timing(hub_poll_interval=3600, app_poll_interval=0.5),
                    hub_events=webhooks)
    out: dict[str, Any] = {}
    try:
        async with contextlib.AsyncExitStack() as clients, trio.open_nursery() as nursery:
            await nursery.start(daemon.run)
            if webhooks:
                assert daemon.webhooks is not None
                client = await clients.enter_async_context(httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=daemon.webhooks.app), base_url=PUBLIC))
                nursery.start_soon(emu.run_webhooks, client)
            await _until_ready(daemon, "bench", "contacts", 600)
            out["initial"] = {"records": n, "overlap": overlap,
                              **figures(emu.request_log, 2 * n, "input_records")}
            # Then the change feeds' first rounds: they see the initial sync's own writes.
            await _quiet(emu)
            out["initial"]["with_first_polls"] = figures(emu.request_log, 2 * n,
                                                         "input_records")
            if edits:
                out["incremental"] = await _edit_burst(daemon, emu, db, edits)
            nursery.cancel_scope.cancel()
    finally:
        log.close()
    return out


async def _quiet(emu: HubSpotEmulator, seconds: float = 3.0) -> None:
    """Until no request came for `seconds`."""
    seen = -1
    while len(emu.request_log) != seen:
        seen = len(emu.request_log)
        await trio.sleep(seconds)


async def _edit_burst(daemon: Daemon, emu: HubSpotEmulator, db: Path,
                      edits: int) -> dict[str, Any]:
    from crmsync.store import items as store_items

    assert daemon.store is not None
    linked = [it for it in await daemon.store.read(store_items.list_items, "bench/contacts",
                                                   "syncing", None, None)
              if it.hub_id and it.app_id][:edits]
    assert len(linked) == edits, f"only {len(linked)} linked records to edit"
    await _quiet(emu)  # the pollers' first rounds
    emu.request_log.clear()
    started = time.perf_counter()

    def edit() -> None:
        conn = sqlite3.connect(db)
        with conn:
            conn.executemany("UPDATE customers SET last_name = ? WHERE id = ?",
                             [(f"Edited{it.app_id}", int(it.app_id or 0)) for it in linked])
        conn.close()

    await trio.to_thread.run_sync(edit)
    want = {it.hub_id: f"Edited{it.app_id}" for it in linked}
    with trio.fail_after(300):
        while True:
            held = {r["id"]: r["properties"].get("lastname") for r in emu.records("contacts")}
            if all(held.get(h) == v for h, v in want.items()):
                break
            await trio.sleep(0.1)
    await trio.sleep(1.0)  # what follows the last write (commits, nothing more expected)
    return {"seconds": round(time.perf_counter() - started, 2),
            **figures(emu.request_log, edits, "edits")}


async def demo(records: int, tmp: Path) -> dict[str, Any]:
    """`crmsync demo --records N --until-synced` with the emulator it makes captured."""
    from crmsync.cli import demo as demo_cli
    from crmsync.cli.main import build_parser

    made: list[HubSpotEmulator] = []

    class Captured(HubSpotEmulator):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            made.append(self)

    args = build_parser().parse_args(["demo", "--records", str(records), "--until-synced",
                                      "--json", "--state-dir", str(tmp / "demo")])
    saved = demo_cli.HubSpotEmulator
    demo_cli.HubSpotEmulator = Captured  # type: ignore[misc]
    run = demo_cli.Demo(args)
    at_ready: list[list[tuple[str, str, int]]] = []
    progress = run._progress

    async def counted_progress(daemon: Daemon, console: Any) -> None:
        await progress(daemon, console)
        at_ready.append(list(made[0].request_log))

    run._progress = counted_progress  # type: ignore[method-assign]
    try:
        with contextlib.redirect_stdout(sys.stderr):
            code = await run.run()
    finally:
        demo_cli.HubSpotEmulator = saved  # type: ignore[misc]
        run.cleanup()
    emu = made[0]
    synced = _synced(tmp / "demo" / "state" / "crmsync.db")
    return {"records": records, "exit": code,
            **figures(emu.request_log, synced, "synced_records"),
            "initial_syncs_complete": figures(at_ready[0], synced, "synced_records")}


def _synced(db: Path) -> int:
    conn = sqlite3.connect(db)
    try:
        return int(conn.execute("SELECT count(*) FROM items WHERE state = 'syncing'")
                   .fetchone()[0])
    finally:
        conn.close()


# Real limits (reference/hubspot-api.md §3.1, §2): requests per 10 s per app, per day per
# account, searches per second (searches are exempt from the ten-secondly limit).
TIERS = {"professional": (190, 625_000, 5), "enterprise": (190, 1_000_000, 5)}


def _split(by_endpoint: dict[str, int]) -> tuple[int, int]:
    """(requests under the ten-secondly limit, searches)."""
    searches = sum(v for k, v in by_endpoint.items() if k.endswith("/search"))
    return sum(by_endpoint.values()) - searches, searches


def project(initial: dict[str, Any], contacts: int = 1_000_000) -> dict[str, Any]:
    """Wall time at HubSpot's real limits of the measured initial sync scaled to `contacts`
    hub contacts and as many app records (30 % the same people), from its requests per input
    record: the ten-secondly limit bounds the burst requests, 5/s the searches, the daily cap
    stops the sync until the next day once spent. Then the hub poller's first round, which
    reads back through search what the initial sync wrote."""
    scale = 2 * contacts / initial["input_records"]
    burst, searches = (x * scale for x in _split(initial["by_endpoint"]))
    poll_burst, poll_searches = (x * scale for x in _split(
        Counter(initial["with_first_polls"]["by_endpoint"]) - Counter(initial["by_endpoint"])))
    out: dict[str, Any] = {"hub_contacts": contacts, "app_records": contacts,
                           "requests": round(burst + searches),
                           "first_poll_searches": round(poll_searches)}
    for tier, (per_10s, per_day, search_rate) in TIERS.items():
        total = burst + searches
        seconds = max(burst / (per_10s / 10), searches / search_rate)
        if total > per_day:
            whole = int(total // per_day)
            seconds = max(seconds, whole * 86_400 + (total - whole * per_day) / (per_10s / 10))
        poll_seconds = max(poll_burst / (per_10s / 10), poll_searches / search_rate)
        out[tier] = {"requests_per_10s": per_10s, "daily_cap": per_day,
                     "searches_per_s": search_rate,
                     "initial_sync_hours": round(seconds / 3600, 2),
                     "share_of_daily_cap": round(total / per_day, 3),
                     "first_poll_hours": round(poll_seconds / 3600, 2)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scenario", choices=["all", "initial", "demo", "incremental"],
                    default="all")
    ap.add_argument("--records", type=int, default=20_000,
                    help="app and hub contacts each in `initial` (default 20,000)")
    ap.add_argument("--demo-records", type=int, default=2000)
    ap.add_argument("--edits", type=int, default=1000)
    ap.add_argument("--app-page", type=int, default=500,
                    help="the app connection's batch_size in `incremental` (default 500)")
    ap.add_argument("--project", action="store_true",
                    help="project the wall time of a 1,000,000-contact initial sync")
    args = ap.parse_args()
    result: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        if args.scenario in ("all", "initial", "incremental"):
            (tmp / "c").mkdir()
            edits = args.edits if args.scenario in ("all", "incremental") else 0
            n = args.records if args.scenario != "incremental" else max(args.edits * 2, 2000)
            got = trio.run(contacts, n, tmp / "c", edits, False, args.app_page)
            if args.scenario in ("all", "initial"):
                result["initial"] = got["initial"]
            if "incremental" in got:
                result["incremental_poll_only"] = got["incremental"]
            if edits:
                (tmp / "w").mkdir()
                got = trio.run(contacts, max(args.edits * 2, 2000), tmp / "w", edits, True,
                               args.app_page)
                result["incremental"] = got["incremental"]
        if args.scenario in ("all", "demo"):
            (tmp / "d").mkdir()
            result["demo"] = trio.run(demo, args.demo_records, tmp / "d")
    for name, target in TARGETS.items():
        if name in result:
            result[name]["target_per_100"] = target
            result[name]["met"] = result[name]["per_100"] <= target
    if args.project and "initial" in result:
        result["projection"] = project(result["initial"])
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
