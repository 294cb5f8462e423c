"""Engine and store throughput. Prints JSON.

    python bench/engine.py [--pairs 100000] [--fields 12]

decisions_per_s: decide() over N linked record pairs with F mapped fields: half unchanged,
a quarter changed on one side, a tenth conflicting, the rest first pairings (no snapshot).
store_rows_per_s: N hub index rows (hub index phase), then the app pass: N app index rows paired
with them and N links committed with snapshots, keys and history, in pages of 100 (a read call
and a write call per page, each one transaction; WAL + synchronous=FULL). Rows written = hub
index rows + app index rows + links.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

import msgspec
import trio

from crmsync.config.model import FieldMapping, ObjectSync
from crmsync.engine import Record, Snapshot, compile_rules, decide
from crmsync.runtime.app_pass import match_app_records
from crmsync.store import Store
from crmsync.store import items as store_items

TRANSFORMS = ["string", "string", "string", "number", "bool", "date", "datetime", "string",
              "string", "number", "string", "string"]


def make_rules(fields: int):
    mappings = [FieldMapping(hub=f"p{i}", app=f"f{i}", transform=TRANSFORMS[i % len(TRANSFORMS)])
                for i in range(fields)]
    sync = ObjectSync(connection="bench", hub_object="line_items", app_object="items",
                      unique_property="p0", use_default_mappings=False, mappings=mappings)
    return compile_rules(sync)


def value(kind: str, rnd: random.Random) -> str:
    if kind == "number":
        return str(rnd.randint(0, 10_000))
    if kind == "bool":
        return rnd.choice(["true", "false"])
    if kind == "date":
        return f"2024-{rnd.randint(1, 12):02d}-{rnd.randint(1, 28):02d}"
    if kind == "datetime":
        return str(1_700_000_000_000 + rnd.randint(0, 10**9))
    return f"text-{rnd.randint(0, 10**6)}"


def make_cases(rules, n: int, seed: int = 1):
    rnd = random.Random(seed)
    cases = []
    for i in range(n):
        hub = {}
        for f in rules.fields:
            hub[f.hub_prop] = value(f.kind, rnd)
        hub[rules.fields[0].hub_prop] = f"uid-{i}"
        canon = {f.name: f.transform.hub_canon(hub[f.hub_prop]) for f in rules.fields}
        app = {f.app_field: f.transform.to_app(canon[f.name]) for f in rules.fields}
        snap = Snapshot(hub=dict(canon), app=dict(canon))
        r = rnd.random()
        if r < 0.5:
            pass  # unchanged
        elif r < 0.75:
            f = rnd.choice(rules.fields[1:])
            if rnd.random() < 0.5:
                hub[f.hub_prop] = value(f.kind, rnd)
            else:
                app[f.app_field] = f.transform.to_app(f.transform.hub_canon(value(f.kind, rnd)))
        elif r < 0.85:
            f = rnd.choice(rules.fields[1:])
            hub[f.hub_prop] = value(f.kind, rnd)
            app[f.app_field] = f.transform.to_app(f.transform.hub_canon(value(f.kind, rnd)))
        else:
            snap = None  # first pairing
        cases.append((Record(f"h{i}", hub), Record(f"a{i}", app), snap))
    return cases


def bench_decide(pairs: int, fields: int) -> dict[str, float]:
    rules = make_rules(fields)
    cases = make_cases(rules, pairs)
    t = time.perf_counter()
    for hub, app, snap in cases:
        decide(rules, hub, app, snap)
    elapsed = time.perf_counter() - t
    return {"pairs": pairs, "fields": fields, "seconds": round(elapsed, 3),
            "decisions_per_s": round(pairs / elapsed)}


async def _store(path: Path, rows: int, batch: int) -> dict[str, float]:
    snap = msgspec.json.encode(Snapshot(hub={f"p{i}": "v" for i in range(12)},
                                        app={f"p{i}": "v" for i in range(12)}))
    hist = store_items.HistoryEntry("link", b"[]")
    async with Store.open(path) as store:
        t = time.perf_counter()
        for start in range(0, rows, batch):
            page = [store_items.IndexRow(f"h{i}", (f"uid:{i}",), "1")
                    for i in range(start, min(rows, start + batch))]
            await store.call(store_items.index_records, "bench/x", "hub", page)
        t_index = time.perf_counter() - t
        t = time.perf_counter()
        for start in range(0, rows, batch):
            page = [store_items.IndexRow(f"a{i}", (f"uid:{i}",), "1")
                    for i in range(start, min(rows, start + batch))]
            # The app pass: look the page up (read), decide and write to the sides (not
            # measured here), then commit index rows, links, keys and history in one call.
            pairs = await store.read(match_app_records, "bench/x", page)
            outcomes = [
                store_items.Outcome(item_id=p.item.item_id, state="syncing", snapshot=snap,
                                    app_id=p.row.record_id, app_version=p.row.version,
                                    claim=tuple(("app", k, p.row.record_id) for k in p.row.keys),
                                    history=hist)
                for p in pairs if p.item is not None]
            await store.call(store_items.apply_outcomes, "bench/x", outcomes)
        t_link = time.perf_counter() - t
        counts = await store.read(store_items.counts, "bench/x")
    assert counts["syncing"] == rows, counts
    return {
        "rows": rows, "batch": batch,
        "index_rows_per_s": round(rows / t_index),
        # An app-pass page writes each record's index row and its link.
        "app_pass_rows_per_s": round(2 * rows / t_link),
        "store_rows_per_s": round(3 * rows / (t_index + t_link)),
        "calls": 3 * ((rows + batch - 1) // batch),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=100_000)
    ap.add_argument("--fields", type=int, default=12)
    ap.add_argument("--batch", type=int, default=100)
    args = ap.parse_args()
    out = {"decide": bench_decide(args.pairs, args.fields)}
    with tempfile.TemporaryDirectory() as d:
        out["store"] = trio.run(_store, Path(d) / "bench.db", args.pairs, args.batch)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
