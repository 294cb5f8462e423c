"""How fast can SQLite itself write the store benchmark's rows here? Prints JSON.

    python bench/store_floor.py [--rows 100000] [--rounds 3]

`bench/engine.py` measures crmsync's store writing N hub index rows, then N app index rows
and N links (snapshot, match key, history) in pages of 100, one transaction per page. This
script writes the same rows with bare SQL and nothing else: one `items` table with its id and
state indexes and the match keys as partial unique-indexed columns (no `match_keys` table),
no Python objects, no look-ups beyond the one the app pass needs. It is a floor for what any
store design can reach, with the WAL + `synchronous=FULL` that DESIGN.md requires, and shows
how much of it is the commits' fsync. The rounds alternate floor and crmsync runs, so that
both see the same disk.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).parent))
from engine import _store  # bench/engine.py: the crmsync figure

SYNC = "bench/x"
PAGE = 100
SNAPSHOT = b'{"hub":{"p0":"v"},"app":{"p0":"v"}}' * 8  # about the size of a 12-field one

SCHEMA = [
    """CREATE TABLE items (item_id INTEGER PRIMARY KEY, sync_id TEXT NOT NULL, hub_id TEXT,
       app_id TEXT, state TEXT NOT NULL, category TEXT NOT NULL DEFAULT '',
       detail TEXT NOT NULL DEFAULT '', match_key TEXT NOT NULL DEFAULT '', snapshot BLOB,
       hub_version TEXT NOT NULL DEFAULT '', app_version TEXT NOT NULL DEFAULT '',
       attempts INTEGER NOT NULL DEFAULT 0, created_at REAL, updated_at REAL,
       hub_key TEXT, app_key TEXT)""",
    "CREATE UNIQUE INDEX items_hub ON items(sync_id, hub_id)",
    "CREATE UNIQUE INDEX items_app ON items(sync_id, app_id)",
    "CREATE INDEX items_state ON items(sync_id, state, category) WHERE state != 'syncing'",
    "CREATE UNIQUE INDEX items_hub_key ON items(sync_id, hub_key) WHERE hub_key IS NOT NULL",
    "CREATE UNIQUE INDEX items_app_key ON items(sync_id, app_key) WHERE app_key IS NOT NULL",
    """CREATE TABLE history (id INTEGER PRIMARY KEY, sync_id TEXT, item_id INTEGER, at REAL,
       hub_id TEXT, app_id TEXT, action TEXT, changes BLOB, detail TEXT)""",
    "CREATE INDEX history_item ON history(sync_id, item_id, id)",
]


def floor(path: Path, rows: int, synchronous: str) -> dict[str, float]:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute("PRAGMA cache_size=-65536")
    for sql in SCHEMA:
        conn.execute(sql)
    in_commit = 0.0
    commits = 0

    def commit() -> None:
        nonlocal in_commit, commits
        t = time.perf_counter()
        conn.execute("COMMIT")
        in_commit += time.perf_counter() - t
        commits += 1

    start = time.perf_counter()
    for first in range(0, rows, PAGE):
        page = range(first, min(rows, first + PAGE))
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(
            "INSERT INTO items (sync_id, hub_id, state, match_key, hub_version, hub_key, "
            "created_at, updated_at) VALUES (?, ?, 'pending', ?, '1', ?, 0, 0) "
            "ON CONFLICT (sync_id, hub_id) DO UPDATE SET hub_version = excluded.hub_version",
            [(SYNC, f"h{i}", f"uid:{i}", f"uid:{i}") for i in page])
        commit()
    for first in range(0, rows, PAGE):
        page = range(first, min(rows, first + PAGE))
        marks = ",".join("?" * len(page))
        conn.execute("BEGIN")
        conn.execute(f"SELECT item_id FROM items WHERE sync_id = ? AND app_id IN ({marks})",
                     (SYNC, *(f"a{i}" for i in page))).fetchall()
        held = dict(conn.execute(
            f"SELECT hub_key, item_id FROM items WHERE sync_id = ? AND hub_key IN ({marks})",
            (SYNC, *(f"uid:{i}" for i in page))).fetchall())
        conn.execute("COMMIT")
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(
            "UPDATE items SET state = 'syncing', category = '', detail = '', updated_at = 0, "
            "app_id = ?, snapshot = ?, app_version = '1', app_key = ?, attempts = 0 "
            "WHERE item_id = ?",
            [(f"a{i}", SNAPSHOT, f"uid:{i}", held[f"uid:{i}"]) for i in page])
        conn.executemany(
            "INSERT INTO history (sync_id, item_id, at, hub_id, app_id, action, changes, "
            "detail) VALUES (?, ?, 0, ?, ?, 'link', '[]', '')",
            [(SYNC, held[f"uid:{i}"], f"h{i}", f"a{i}") for i in page])
        commit()
    elapsed = time.perf_counter() - start
    wal = path.with_name(path.name + "-wal")
    conn.close()
    return {"rows_per_s": round(3 * rows / elapsed), "seconds": round(elapsed, 2),
            "in_commit_s": round(in_commit, 2),
            "commit_ms": round(1000 * in_commit / commits, 3),
            "wal_bytes_at_end": wal.stat().st_size if wal.exists() else 0}


def empty_commit_ms(path: Path, n: int = 2000) -> float:
    """An fsync with almost nothing to write: the disk's own floor per transaction."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE t (x INTEGER)")
    t = time.perf_counter()
    for i in range(n):
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO t VALUES (?)", (i,))
        conn.execute("COMMIT")
    conn.close()
    return round(1000 * (time.perf_counter() - t) / n, 3)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    runs: dict[str, list[dict[str, float]]] = {"floor_full": [], "floor_off": [], "crmsync": []}
    empties = []
    for r in range(args.rounds):
        with tempfile.TemporaryDirectory() as d:
            runs["floor_full"].append(floor(Path(d) / f"full{r}.db", args.rows, "FULL"))
            runs["crmsync"].append(trio.run(_store, Path(d) / f"store{r}.db", args.rows, PAGE))
            runs["floor_off"].append(floor(Path(d) / f"off{r}.db", args.rows, "OFF"))
            empties.append(empty_commit_ms(Path(d) / f"empty{r}.db"))
    out = {
        name: {"rows_per_s_median": statistics.median(
            r["rows_per_s" if name != "crmsync" else "store_rows_per_s"] for r in rs),
            "runs": rs}
        for name, rs in runs.items()}
    out["empty_commit_ms"] = empties
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
