"""HubSpot ⇄ Pipedrive figures (issue 13). Prints JSON.

    python bench/pipedrive.py initial [--records 10000] [--overlap 0.3] [--plan professional]
    python bench/pipedrive.py latency [--changes 1000] [--concurrency 10]

`initial`: both sides hold `--records` contacts / persons, `--overlap` of them the same
people. The daemon runs its initial sync against both emulators in process (real clock); the
figures are the Pipedrive tokens spent per 100 records, and how much of Pipedrive's burst window
crmsync used while it had calls waiting for it: over every 2-second window in which a call
waited for the account's budget, the calls Pipedrive admitted in that window divided by the
plan's burst limit (target ≥ 0.90), with the 429s Pipedrive answered and whether any record
was left failed by one.

`latency`: a linked person is edited in Pipedrive (as in its web app) and the time until
HubSpot shows the new value is measured, over `--changes` edits; only Pipedrive's webhooks
(v2, HTTP Basic, delivered in process to the daemon's webhook application) can bring them: the
pollers run hourly.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import trio

import crmsync.connectors.pipedrive.connector as pd_connector
from crmsync.connectors.pipedrive.http import PLANS, WINDOW_SECONDS, budget_for
from crmsync.connectors.ratelimit import Permit, RateBudget, RequestKind
from crmsync.daemon import logging as daemon_logging
from crmsync.daemon.main import Daemon
from crmsync.emulators.hubspot import HubSpotEmulator
from crmsync.emulators.pipedrive import PipedriveEmulator
from crmsync.runtime.object_sync import Timing
from crmsync.store import items as store_items

HUB_TOKEN = "bench-hub-token-0123456789"
HUB_SECRET = "bench-hub-secret-0123456789"
PD_TOKEN = "bench-pd-token-0123456789"
HOOK_PASSWORD = "bench-hook-password-0123"
PUBLIC = "http://crmsync.bench"


class WatchedBudget(RateBudget):
    """The account's budget, noting when each call was let go and whether it had to wait."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.acquired: list[tuple[float, bool]] = []

    async def acquire(self, kind: RequestKind = "default", cost: int = 1, *,
                      check_daily: bool = True, max_wait: float | None = None) -> Permit:
        start = trio.current_time()
        permit = await super().acquire(kind, cost, check_daily=check_daily, max_wait=max_wait)
        now = trio.current_time()
        self.acquired.append((now, now - start > 0.001))
        return permit


def config(tmp: Path, plan: str, poll: float) -> Path:
    (tmp / "hub-token").write_text(HUB_TOKEN)
    (tmp / "hub-secret").write_text(HUB_SECRET)
    (tmp / "pd-token").write_text(PD_TOKEN)
    (tmp / "pd-hook").write_text(HOOK_PASSWORD)
    path = tmp / "crmsync.toml"
    path.write_text(f"""
[daemon]
state_dir = "{tmp / 'state'}"
[daemon.webhooks]
listen = "127.0.0.1:0"
public_base_url = "{PUBLIC}"
[hub]
base_url = "http://hubspot.bench"
tier = "unlimited"
webhook_client_secret_file = "hub-secret"
[hub.auth]
kind = "private_app"
token_file = "hub-token"
[[connections]]
name = "pd"
type = "pipedrive"
base_url = "http://pipedrive.bench"
plan = "{plan}"
poll_interval_seconds = {poll}
max_concurrent_requests = 64
[connections.auth]
kind = "api_token"
token_file = "pd-token"
[connections.webhooks]
password_file = "pd-hook"
[[syncs]]
connection = "pd"
hub_object = "contacts"
app_object = "persons"
""")
    return path


def people(records: int, overlap: float) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    both = int(records * overlap)
    hub = [{"email": f"p{i}@example.com", "firstname": f"F{i}", "lastname": "Hub",
            "phone": f"+1 555 {i:05d}"} for i in range(records)]
    pd = [{"name": f"F{i} {'Hub' if i < both // 2 else 'Pd'}",
           "emails": [{"value": f"p{i}@example.com" if i < both else f"q{i}@example.com",
                       "primary": True}]}
          for i in range(records)]
    return hub, pd


def windows(acquired: list[tuple[float, bool]], limit: int) -> dict[str, Any]:
    """Calls per 2-second window, over the windows in which a call waited for the budget."""
    if not acquired:
        return {}
    t0 = acquired[0][0]
    per: Counter[int] = Counter()
    waited: set[int] = set()
    for at, waits in acquired:
        w = int((at - t0) // WINDOW_SECONDS)
        per[w] += 1
        if waits:
            waited.add(w)
    # The last window is cut short by the end of the run: not a full window.
    last = max(per)
    busy = sorted(w for w in waited if w != last)
    share = (sum(per[w] for w in busy) / (limit * len(busy))) if busy else None
    every = [per.get(w, 0) for w in range(last)]
    return {"windows": last + 1, "windows_with_waiting_calls": len(busy),
            "burst_share_while_waiting": round(share, 3) if share is not None else None,
            "burst_share_overall": round(sum(every) / (limit * len(every)), 3) if every else None,
            "max_calls_in_a_window": max(per.values())}


async def initial(records: int, overlap: float, plan: str, tmp: Path) -> dict[str, Any]:
    hub_people, pd_people = people(records, overlap)
    hub = HubSpotEmulator(tokens=(HUB_TOKEN,), tier="unlimited", seed=1)
    hub.add_records("contacts", hub_people)
    pd = PipedriveEmulator(tokens=(PD_TOKEN,), plan=plan, seed=1)
    pd.seed({"persons": pd_people})
    admitted: list[tuple[float, int]] = []
    admit = pd.rate_limiter.admit

    def watch_admit(*a: Any, **kw: Any) -> Any:
        verdict = admit(*a, **kw)
        admitted.append((time.monotonic(), verdict.status))
        return verdict

    pd.rate_limiter.admit = watch_admit  # type: ignore[method-assign]
    figures = PLANS[plan]
    limit = figures[1] if figures else 0
    made: list[WatchedBudget] = []

    def watched_budget(plan: str, **kw: Any) -> RateBudget:
        model = budget_for(plan, **kw)
        st = model.statistics()
        b = WatchedBudget(per_window=st.window_limit, window_seconds=st.window_seconds,
                          daily=st.daily_limit, search_per_second=st.search_limit,
                          search_window_seconds=WINDOW_SECONDS, search_in_window=True,
                          name=st.name)
        made.append(b)
        return b

    pd_connector.budget_for = watched_budget  # type: ignore[assignment]
    cfg = config(tmp, plan, poll=3600)
    log = (tmp / "crmsync.log").open("wb")
    daemon_logging.configure("info", "json", stream=log)
    daemon = Daemon(cfg, hub_transport=httpx.ASGITransport(app=hub.app), configure_logging=False,
                    app_transports={"pd": httpx.ASGITransport(app=pd.app)},
                    timing=Timing(hub_poll_interval=3600, app_poll_interval=3600))
    tokens_before = pd.tokens_used_today()
    started = time.perf_counter()
    async with trio.open_nursery() as nursery:
        await nursery.start(daemon.run)
        while True:
            h = daemon.handle("pd", "contacts")
            if h is not None and h.is_running:
                break
            await trio.sleep(0.2)
        elapsed = time.perf_counter() - started
        assert daemon.store is not None
        counts = await daemon.store.read(store_items.counts, "pd/contacts")
        failed = await daemon.store.read(store_items.list_items, "pd/contacts", "failed", None,
                                         None)
        nursery.cancel_scope.cancel()
    log.close()
    tokens = pd.tokens_used_today() - tokens_before
    calls = Counter((m, p.split("?")[0].rstrip("0123456789")) for m, p, _, _ in pd.request_log)
    held = len(hub.records("contacts")) + len(pd.records("persons"))
    budget = made[-1]
    return {
        "records_per_side": records, "overlap": overlap, "plan": plan,
        "burst_limit_per_2s": limit, "seconds": round(elapsed, 1),
        "hub_contacts_after": len(hub.records("contacts")),
        "pipedrive_persons_after": len(pd.records("persons")),
        "counts": counts,
        "failed_rate_limited": sum(1 for it in failed if it.category == "rate_limited"),
        "pipedrive_tokens": tokens,
        "tokens_per_100_records_held": round(100 * tokens / held, 1),
        "tokens_per_100_records_per_side": round(100 * tokens / records, 1),
        "pipedrive_calls": {f"{m} {p}": n for (m, p), n in calls.most_common()},
        "answered_429": sum(1 for _, s in admitted if s == 429),
        "budget_waits": budget.statistics().waits,
        **windows(budget.acquired, limit),
    }


async def latency(changes: int, concurrency: int, persons: int, tmp: Path) -> dict[str, Any]:
    hub = HubSpotEmulator(tokens=(HUB_TOKEN,), tier="unlimited", seed=1)
    hub.add_records("contacts", [{"email": f"c{i}@example.com", "firstname": "C",
                                  "lastname": f"L{i}"} for i in range(persons)])
    pd = PipedriveEmulator(tokens=(PD_TOKEN,), plan="professional", seed=1)
    pd.seed({"persons": [{"name": f"C L{i}", "emails": [{"value": f"c{i}@example.com"}]}
                         for i in range(persons)]})
    cfg = config(tmp, "professional", poll=3600)
    log = (tmp / "crmsync.log").open("wb")
    daemon_logging.configure("info", "json", stream=log)
    daemon = Daemon(cfg, hub_transport=httpx.ASGITransport(app=hub.app), configure_logging=False,
                    app_transports={"pd": httpx.ASGITransport(app=pd.app)},
                    timing=Timing(hub_poll_interval=3600, app_poll_interval=3600))
    seconds: list[float] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(daemon.run)
        assert daemon.webhooks is not None
        to_daemon = httpx.AsyncClient(transport=httpx.ASGITransport(app=daemon.webhooks.app))
        nursery.start_soon(pd.run_webhooks, to_daemon)
        while True:
            h = daemon.handle("pd", "contacts")
            if h is not None and h.is_running:
                break
            await trio.sleep(0.05)
        await trio.sleep(1)
        hub_ids = {r["properties"]["email"]: r["id"] for r in hub.records("contacts")}
        pd_ids = {p["emails"][0]["value"]: p["id"] for p in pd.records("persons")}
        contacts = hub.state.object_type("contacts")
        slots = trio.Semaphore(concurrency)

        async def one(n: int) -> None:
            email = f"c{n % persons}@example.com"
            value = f"V{n}-{time.monotonic_ns()}"
            start = time.perf_counter()
            pd.update_record("persons", pd_ids[email], {"last_name": value})
            while True:
                rec = hub.state.by_id(contacts, hub_ids[email])
                if rec is not None and rec.properties.get("lastname") == value:
                    break
                await trio.sleep(0.002)
            seconds.append(time.perf_counter() - start)
            slots.release()

        started = time.perf_counter()
        async with trio.open_nursery() as workers:
            # One change of a person at a time: a later value would hide an earlier one.
            for n in range(changes):
                await slots.acquire()
                workers.start_soon(one, n)
        elapsed = time.perf_counter() - started
        nursery.cancel_scope.cancel()
        await to_daemon.aclose()
    log.close()

    def pct(q: float) -> float:
        xs = sorted(seconds)
        return round(1000 * xs[min(len(xs) - 1, int(q * len(xs)))], 1)

    return {"changes": len(seconds), "concurrency": concurrency, "seconds": round(elapsed, 1),
            "p50_ms": pct(0.5), "p99_ms": pct(0.99), "max_ms": pct(1.0),
            "mean_ms": round(1000 * statistics.mean(seconds), 1),
            "webhook_deliveries": len(pd.webhooks.log.deliveries),
            "pipedrive_tokens": pd.tokens_used_today()}


def main() -> None:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="what", required=True)
    i = sub.add_parser("initial")
    i.add_argument("--records", type=int, default=10_000)
    i.add_argument("--overlap", type=float, default=0.3)
    i.add_argument("--plan", default="professional", choices=sorted(PLANS))
    lat = sub.add_parser("latency")
    lat.add_argument("--changes", type=int, default=1000)
    lat.add_argument("--concurrency", type=int, default=10)
    lat.add_argument("--persons", type=int, default=200)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        if args.what == "initial":
            out = trio.run(initial, args.records, args.overlap, args.plan, Path(d))
        else:
            out = trio.run(latency, args.changes, args.concurrency, args.persons, Path(d))
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
