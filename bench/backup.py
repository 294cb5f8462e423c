"""Backup and restore of the state database: how long each takes, and how much the daemon's
writer is slowed while a backup runs (issue 15).

Builds a state database with N linked records (index rows, match keys and a snapshot each, as
an initial sync leaves them), then:

- `backup_idle_s`: `write_backup` with nothing else running;
- `backup_busy_s`, `writer_commits_per_s_before` / `_during` / `_after`: the same while a
  writer thread commits one small transaction after another (`synchronous=FULL`: one fsync
  each) through its own connection, as the daemon's store does;
- `restore_s`: `restore_state` of that backup over the state (the replaced one set aside).

Prints one JSON object. `python bench/backup.py --records 1000000`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import tempfile
import threading
import time
from pathlib import Path

from crmsync.store import connect
from crmsync.store.backup import write_backup
from crmsync.store.restores import restore_state

SYNC = "shop/contacts"
SNAPSHOT = b'{"hub":{"email":"x","firstname":"A","lastname":"B","phone":null},' \
           b'"app":{"email":"x","firstname":"A","lastname":"B","phone":null}}'


def build(db: Path, n: int) -> None:
    conn = connect(db)
    now = time.time()
    for start in range(0, n, 50_000):
        rows = range(start, min(n, start + 50_000))
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO items (sync_id, hub_id, app_id, state, match_key, snapshot, "
            "hub_version, app_version, created_at, updated_at) VALUES (?, ?, ?, 'syncing', ?, "
            "?, '1', '1', ?, ?)",
            [(SYNC, f"h{i}", f"a{i}", f"email:c{i}@example.com", SNAPSHOT, now, now)
             for i in rows])
        conn.executemany(
            "INSERT INTO match_keys (sync_id, side, key, record_id) VALUES (?, ?, ?, ?)",
            [(SYNC, side, f"email:c{i}@example.com", f"{side[0]}{i}")
             for i in rows for side in ("hub", "app")])
        conn.execute("COMMIT")
    conn.close()


def writer(db: Path, stop: threading.Event, commits: list[float]) -> None:
    conn = connect(db)
    n = 0
    while not stop.is_set():
        n += 1
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO cursors (sync_id, name, value, updated_at) VALUES "
                     "(?, 'hub', ?, 0) ON CONFLICT (sync_id, name) DO UPDATE SET "
                     "value = excluded.value", (SYNC, str(n)))
        conn.execute("COMMIT")
        commits.append(time.perf_counter())
    conn.close()


def rate(commits: list[float], start: float, end: float) -> float:
    return round(sum(1 for t in commits if start <= t < end) / (end - start), 1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=200_000)
    ap.add_argument("--dir", default=None, help="where to build (default: a temporary dir)")
    args = ap.parse_args()
    base = Path(args.dir or tempfile.mkdtemp(prefix="crmsync-bench-backup-"))
    try:
        state = base / "state"
        state.mkdir(parents=True, exist_ok=True)
        db = state / "crmsync.db"
        t = time.perf_counter()
        build(db, args.records)
        build_s = time.perf_counter() - t

        t = time.perf_counter()
        idle = write_backup(db, base / "b-idle.db", crmsync_version="bench")
        idle_s = time.perf_counter() - t

        stop, commits = threading.Event(), []  # type: ignore[var-annotated]
        w = threading.Thread(target=writer, args=(db, stop, commits))
        w.start()
        while len(commits) < 20:  # its connect() checks the database first
            time.sleep(0.05)
        time.sleep(1.5)
        t0 = time.perf_counter()
        busy = write_backup(db, base / "b-busy.db", crmsync_version="bench")
        t1 = time.perf_counter()
        time.sleep(1.5)
        stop.set()
        w.join()
        before = rate(commits, t0 - 1.5, t0)

        t = time.perf_counter()
        restore_state(state, busy.path, sync_ids=[SYNC])
        restore_s = time.perf_counter() - t
        with sqlite3.connect(db) as conn:
            restored = conn.execute("SELECT count(*) FROM items").fetchone()[0]
        print(json.dumps({
            "records": args.records, "state_bytes": idle.bytes, "build_s": round(build_s, 2),
            "backup_idle_s": round(idle_s, 2), "backup_busy_s": round(t1 - t0, 2),
            "writer_commits_per_s_before": before,
            "writer_commits_per_s_during": rate(commits, t0, t1),
            "writer_commits_per_s_after": rate(commits, t1, t1 + 1.5),
            "restore_s": round(restore_s, 2), "restored_records": restored,
            "cpus": os.cpu_count()}))
    finally:
        if args.dir is None:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
