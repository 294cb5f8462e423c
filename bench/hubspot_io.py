"""HubSpot connector I/O against the HubSpot emulator; prints JSON.

1. Scan and batch-create throughput, in process (httpx.ASGITransport) and over loopback HTTP
   (hypercorn's trio worker on 127.0.0.1), on the "unlimited" tier.
2. The professional tier's limits on (190 requests per 10 s per app, search 5/s) for at least
   60 s of real time over loopback: the request rate the connector achieves as a fraction of
   the ceiling, and how many 429s the emulator had to send (each one handled: no call fails).

3. With `--full-read N`: N contacts read whole with 21 properties and with 300 (too many for
   a list URL), records/s and requests, in process and over loopback.

Usage: python bench/hubspot_io.py [--contacts N] [--creates N] [--seconds S]
       python bench/hubspot_io.py --full-read 100000
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import trio
from hypercorn.config import Config
from hypercorn.trio import serve

from crmsync.connectors.hubspot import HubSpotConnector, PrivateAppToken, budget_for
from crmsync.connectors.ratelimit import RateBudget
from crmsync.emulators.hubspot import HubSpotEmulator


@asynccontextmanager
async def loopback(emu: HubSpotEmulator) -> AsyncIterator[str]:
    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    config.errorlog = None
    config.graceful_timeout = 1.0
    async with trio.open_nursery() as nursery:
        shutdown = trio.Event()

        async def run(task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
            await serve(emu.app, config, shutdown_trigger=shutdown.wait,  # type: ignore[arg-type]
                        task_status=task_status)

        binds = await nursery.start(run)
        try:
            yield binds[0]
        finally:
            shutdown.set()


def make_client(emu: HubSpotEmulator, url: str | None) -> httpx.AsyncClient:
    common: dict[str, Any] = {"auth": PrivateAppToken("test-token"),
                              "timeout": httpx.Timeout(30.0),
                              "limits": httpx.Limits(max_connections=16,
                                                     max_keepalive_connections=16)}
    if url is None:
        return httpx.AsyncClient(base_url="https://api.hubapi.com",
                                 transport=httpx.ASGITransport(app=emu.app), **common)
    return httpx.AsyncClient(base_url=url, **common)


async def throughput(transport: str, contacts: int, creates: int) -> dict[str, Any]:
    emu = HubSpotEmulator(tier="unlimited")
    emu.seed({"generate": {"contacts": contacts}, "seed": 1})

    async def measure(url: str | None) -> dict[str, Any]:
        async with make_client(emu, url) as client:
            c = HubSpotConnector(client, RateBudget())
            t0 = time.perf_counter()
            n, pages, cursor = 0, 0, None
            while True:
                page = await c.scan("contacts", cursor, ["email", "firstname", "lastname"])
                n += len(page.records)
                pages += 1
                cursor = page.next_cursor
                if cursor is None:
                    break
            scan_s = time.perf_counter() - t0
            assert n == contacts, (n, contacts)

            inputs = [{"email": f"bench{i}@example.com", "firstname": "Bench",
                       "lastname": str(i)} for i in range(creates)]
            t0 = time.perf_counter()
            results = await c.create("contacts", inputs)
            create_s = time.perf_counter() - t0
            assert all(r.ok for r in results)

            # Four writers at once (as batch writers of several object syncs would).
            more = [{"email": f"bench-par{i}@example.com"} for i in range(creates)]
            quarter = len(more) // 4
            t0 = time.perf_counter()
            async with trio.open_nursery() as nursery:
                for k in range(4):
                    nursery.start_soon(c.create, "contacts", more[k * quarter:(k + 1) * quarter])
            par_s = time.perf_counter() - t0
        return {
            "transport": transport,
            "scan_records": n,
            "scan_pages": pages,
            "scan_seconds": round(scan_s, 3),
            "scan_records_per_second": round(n / scan_s),
            "scan_requests_per_second": round(pages / scan_s, 1),
            "create_records": creates,
            "create_seconds": round(create_s, 3),
            "create_records_per_second": round(creates / create_s),
            "create_4_writers_records_per_second": round(4 * quarter / par_s),
        }

    if transport == "in_process":
        return await measure(None)
    async with loopback(emu) as url:
        return await measure(url)


async def rate_ceiling(seconds: float, workers: int) -> dict[str, Any]:
    """Professional limits for `seconds` of real time over loopback: the calls completed in
    [start, start + seconds) against the ceiling of 190 per 10 s (search: 5 per s)."""
    emu = HubSpotEmulator(tier="professional")
    emu.add_records("contacts", [{"email": f"r{i}@example.com", "firstname": "Rate"}
                                 for i in range(100)])
    budget = budget_for("professional", name="hub")
    failures: list[str] = []
    done: dict[str, list[float]] = {"default": [], "search": []}
    async with loopback(emu) as url, make_client(emu, url) as client:
        c = HubSpotConnector(client, budget)
        await c.describe("contacts")  # warm the properties cache before the clock starts
        emu.rate_limiter.reset()
        emu.request_log.clear()
        start = trio.current_time()
        deadline = start + seconds

        async def loop(call: Callable[[], Awaitable[Any]], kind: str) -> None:
            while True:
                try:
                    await call()
                    done[kind].append(trio.current_time())
                except Exception as exc:  # a 429 left unhandled would land here
                    failures.append(f"{type(exc).__name__}: {exc}")

        with trio.move_on_at(deadline):
            async with trio.open_nursery() as nursery:
                for _ in range(workers):
                    nursery.start_soon(loop, lambda: c.scan("contacts", None, ["email"]),
                                       "default")
                for _ in range(2):
                    nursery.start_soon(loop, lambda: c.find("contacts", "firstname", "Rate",
                                                            ["email"]), "search")
        elapsed = trio.current_time() - start
    statuses = [s for _, _, s in emu.request_log]
    ok = len(done["default"])
    search_ok = len(done["search"])
    ceiling = 190 / 10.0 * seconds
    stats = budget.statistics()
    return {
        "tier": "professional",
        "seconds": round(elapsed, 1),
        "workers": workers,
        "requests_ok": ok,
        "ceiling_requests": round(ceiling),
        "fraction_of_ceiling": round(ok / ceiling, 3),
        "requests_per_10s": round(ok / seconds * 10, 1),
        "search_requests_ok": search_ok,
        "search_fraction_of_5_per_second": round(search_ok / (5 * seconds), 3),
        "responses_429": statuses.count(429),
        "unhandled_failures": len(failures),
        "failure_samples": failures[:3],
        "budget_waits": stats.waits,
        "budget_waited_seconds": round(stats.waited_seconds, 1),
    }


def _long_properties(emu: HubSpotEmulator, n: int) -> list[str]:
    """`n` custom contact properties of 40-odd characters, like a long-lived account's."""
    state = emu.state
    names = [f"custom_property_number_{i:03d}_with_a_long_name" for i in range(n)]
    for name in names:
        state.registry.create(state.object_type("contacts"), {
            "name": name, "label": name, "type": "string", "fieldType": "text",
            "groupName": "contactinformation"}, state.now_ms())
    return names


async def full_read(contacts: int, extra: int) -> list[dict[str, Any]]:
    """A scan of every contact with 21 properties and with 21 + `extra` (too many for a list
    URL: the connector lists ids and batch-reads each page), in process and over loopback."""
    emu = HubSpotEmulator(tier="unlimited")
    emu.seed({"generate": {"contacts": contacts}, "seed": 2})
    base = [p.name for p in emu.state.registry.all(emu.state.object_type("contacts"))][:21]
    wide = base + _long_properties(emu, extra)
    out = []
    for url_kind in ("in_process", "loopback"):
        async with contextlib.AsyncExitStack() as stack:
            url = None if url_kind == "in_process" else await stack.enter_async_context(
                loopback(emu))
            client = await stack.enter_async_context(make_client(emu, url))
            c = HubSpotConnector(client, RateBudget())
            for props in (base, wide):
                emu.request_log.clear()
                t0 = time.perf_counter()
                n, cursor = 0, None
                while True:
                    page = await c.scan("contacts", cursor, props)
                    n += len(page.records)
                    cursor = page.next_cursor
                    if cursor is None:
                        break
                seconds = time.perf_counter() - t0
                out.append({"transport": url_kind, "properties": len(props), "records": n,
                            "seconds": round(seconds, 2), "records_per_s": round(n / seconds),
                            "requests": len(emu.request_log),
                            "requests_per_100": round(100 * len(emu.request_log) / n, 2)})
    return out


async def main(args: argparse.Namespace) -> dict[str, Any]:
    if args.full_read:
        return {"benchmark": "hubspot_io full read", "python": platform.python_version(),
                "full_read": await full_read(args.full_read, args.extra_properties)}
    return {
        "benchmark": "hubspot_io",
        "python": platform.python_version(),
        "machine": platform.machine(),
        "throughput": [
            await throughput("in_process", args.contacts, args.creates),
            await throughput("loopback", args.contacts, args.creates),
        ],
        "rate_limit": await rate_ceiling(args.seconds, args.workers),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=20_000)
    parser.add_argument("--creates", type=int, default=5_000)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--full-read", type=int, default=0, metavar="CONTACTS",
                        help="only: read CONTACTS contacts whole with 21 and 21 + "
                             "--extra-properties properties (issue 16 item 5)")
    parser.add_argument("--extra-properties", type=int, default=279)
    result = trio.run(main, parser.parse_args())
    json.dump(result, sys.stdout, indent=2)
    sys.stdout.write("\n")
    rate = result.get("rate_limit")
    sys.exit(0 if rate is None or rate["unhandled_failures"] == 0 else 1)
