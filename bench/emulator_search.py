"""What one page of a CRM search costs the HubSpot emulator, as the table grows; prints JSON.

Seeds N contacts, then pages through three searches with `after` (in process, httpx's
ASGITransport), 200 results a page up to HubSpot's 10,000-result cap:
- `incremental`: `lastmodifieddate GTE t` sorted by `lastmodifieddate` ascending (the
  connector's change scan);
- `default`: no filter, no sort (oldest created first);
- `filtered_other`: `lifecyclestage EQ customer` sorted by `createdate` descending;
- `incremental_with_writes`: the change scan again, with one contact edited between pages.
For each: milliseconds per page (median and max) and pages read. The first page of a search
builds the index of its sort property (that is the max); later pages read it.

Usage: python bench/emulator_search.py [--records N ...] [--limit 200]
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import httpx
import trio

from crmsync.emulators.hubspot import HubSpotEmulator

SEARCHES: dict[str, dict[str, Any]] = {
    "incremental": {
        "filterGroups": [
            {"filters": [{"propertyName": "lastmodifieddate", "operator": "GTE", "value": "0"}]}
        ],
        "sorts": [{"propertyName": "lastmodifieddate", "direction": "ASCENDING"}],
        "properties": ["email", "lastmodifieddate"],
    },
    "default": {"properties": ["email"]},
    "filtered_other": {
        "filterGroups": [
            {"filters": [{"propertyName": "lifecyclestage", "operator": "EQ", "value": "customer"}]}
        ],
        "sorts": [{"propertyName": "createdate", "direction": "DESCENDING"}],
        "properties": ["email"],
    },
}


async def page_through(
    client: httpx.AsyncClient,
    body: dict[str, Any],
    limit: int,
    between: Callable[[], None] = lambda: None,
) -> list[float]:
    times: list[float] = []
    after: str | None = "0"
    while after is not None and int(after) + limit <= 10_000:
        between()
        started = time.perf_counter()
        r = await client.post(
            "/crm/v3/objects/contacts/search", json={**body, "limit": limit, "after": after}
        )
        times.append((time.perf_counter() - started) * 1000)
        r.raise_for_status()
        after = r.json().get("paging", {}).get("next", {}).get("after")
    return times


async def measure(records: int, limit: int) -> dict[str, Any]:
    emu = HubSpotEmulator(tier="unlimited")
    started = time.perf_counter()
    emu.seed({"generate": {"contacts": records}, "seed": 1})
    seeded = time.perf_counter() - started
    out: dict[str, Any] = {"records": records, "seed_s": round(seeded, 1)}
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=emu.app),
        base_url="https://api.hubapi.com",
        headers={"Authorization": "Bearer test-token"},
    ) as client:
        ids = [r["id"] for r in emu.records("contacts")]
        rng = random.Random(1)

        def edit_one() -> None:
            emu.update_record("contacts", rng.choice(ids), {"city": f"City {rng.random()}"})

        runs = [(name, body, lambda: None) for name, body in SEARCHES.items()]
        runs.append(("incremental_with_writes", SEARCHES["incremental"], edit_one))
        for name, body, between in runs:
            times = await page_through(client, body, limit, between)
            out[name] = {
                "pages": len(times),
                "ms_per_page_median": round(statistics.median(times), 2),
                "ms_per_page_max": round(max(times), 2),
            }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, nargs="+", default=[20_000, 100_000])
    parser.add_argument("--limit", type=int, default=200)
    args = parser.parse_args()
    results = [trio.run(measure, n, args.limit) for n in args.records]
    json.dump(
        {"python": platform.python_version(), "limit": args.limit, "results": results},
        sys.stdout,
        indent=2,
    )
    print()


if __name__ == "__main__":
    main()
