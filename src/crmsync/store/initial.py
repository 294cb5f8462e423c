"""Initial sync progress, checkpoints and the preview plan, per object sync.

Phases: hub_index -> app_pass -> hub_pass -> complete. In preview the phases run without
writing to either side and end in `previewed` until approved.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence

import msgspec

from crmsync.store import scanned

PHASES = ("hub_index", "app_pass", "hub_pass", "previewed", "complete")


class InitialSync(msgspec.Struct, frozen=True):
    sync_id: str
    config_hash: str
    phase: str
    cursor: str
    done: int
    total: int
    preview: bool
    approved: bool
    started_at: float
    completed_at: float | None
    updated_at: float
    # The settings that decide matching when it (re)started; "" when not known.
    match_hash: str = ""

    @property
    def complete(self) -> bool:
        return self.phase == "complete"


def get_initial(conn: sqlite3.Connection, sync_id: str) -> InitialSync | None:
    row = conn.execute(
        "SELECT sync_id, config_hash, phase, cursor, done, total, preview, approved, started_at, "
        "completed_at, updated_at, match_hash FROM initial_syncs WHERE sync_id = ?",
        (sync_id,)).fetchone()
    if row is None:
        return None
    return InitialSync(row[0], row[1], row[2], row[3], row[4], row[5], bool(row[6]),
                       bool(row[7]), row[8], row[9], row[10], row[11])


def start_initial(conn: sqlite3.Connection, sync_id: str, config_hash: str,
                  preview: bool, match_hash: str = "") -> InitialSync:
    """Start (or restart, when the object sync's settings changed) the initial sync.

    A restart keeps links and snapshots (they are still true) but forgets the checkpoint,
    the plan and the exclusions, which depend on the settings. `match_hash` is kept for the
    next restart to tell whether what matches changed.
    """
    now = time.time()
    conn.execute("DELETE FROM plan WHERE sync_id = ?", (sync_id,))
    scanned.forget(conn, sync_id)
    conn.execute(
        "INSERT INTO initial_syncs (sync_id, config_hash, phase, cursor, done, total, preview, "
        "approved, started_at, completed_at, updated_at, match_hash) "
        "VALUES (?, ?, 'hub_index', '', 0, 0, ?, 0, ?, NULL, ?, ?) "
        "ON CONFLICT (sync_id) DO UPDATE SET config_hash = excluded.config_hash, "
        "phase = 'hub_index', cursor = '', done = 0, total = 0, preview = excluded.preview, "
        "approved = 0, started_at = excluded.started_at, completed_at = NULL, "
        "updated_at = excluded.updated_at, match_hash = excluded.match_hash",
        (sync_id, config_hash, int(preview), now, now, match_hash),
    )
    # Unlinked items are re-decided under the new settings.
    conn.execute("UPDATE items SET state = 'pending', category = '', detail = '' "
                 "WHERE sync_id = ? AND snapshot IS NULL AND state != 'deleted'", (sync_id,))
    got = get_initial(conn, sync_id)
    assert got is not None
    return got


def checkpoint(conn: sqlite3.Connection, sync_id: str, phase: str, cursor: str,
               done: int | None = None, total: int | None = None) -> None:
    sets = ["phase = ?", "cursor = ?", "updated_at = ?"]
    vals: list[object] = [phase, cursor, time.time()]
    if done is not None:
        sets.append("done = ?")
        vals.append(done)
    if total is not None:
        sets.append("total = ?")
        vals.append(total)
    vals.append(sync_id)
    conn.execute(f"UPDATE initial_syncs SET {', '.join(sets)} WHERE sync_id = ?", vals)


def complete_initial(conn: sqlite3.Connection, sync_id: str) -> None:
    now = time.time()
    conn.execute("UPDATE initial_syncs SET phase = 'complete', cursor = '', completed_at = ?, "
                 "updated_at = ? WHERE sync_id = ?", (now, now, sync_id))
    scanned.forget(conn, sync_id)


def approve(conn: sqlite3.Connection, sync_id: str) -> bool:
    """Let an initial sync waiting in preview run for real. False if none is waiting."""
    n = conn.execute(
        "UPDATE initial_syncs SET approved = 1, preview = 0, phase = 'hub_index', cursor = '', "
        "done = 0, updated_at = ? WHERE sync_id = ? AND preview = 1",
        (time.time(), sync_id)).rowcount
    if n:
        scanned.forget(conn, sync_id)  # the hub index lists the hub again
    return n > 0


def add_plan(conn: sqlite3.Connection, sync_id: str,
             entries: Sequence[tuple[str, str | None, str | None, str]]) -> None:
    conn.executemany("INSERT INTO plan (sync_id, kind, hub_id, app_id, detail) "
                     "VALUES (?, ?, ?, ?, ?)", [(sync_id, *e) for e in entries])


def plan_summary(conn: sqlite3.Connection, sync_id: str) -> dict[str, int]:
    return {k: n for k, n in conn.execute(
        "SELECT kind, count(*) FROM plan WHERE sync_id = ? GROUP BY kind", (sync_id,))}


def plan_entries(conn: sqlite3.Connection, sync_id: str, kind: str | None = None,
                 limit: int = 100) -> list[tuple[str, str | None, str | None, str]]:
    sql = "SELECT kind, hub_id, app_id, detail FROM plan WHERE sync_id = ?"
    args: list[object] = [sync_id]
    if kind:
        sql += " AND kind = ?"
        args.append(kind)
    sql += " ORDER BY id LIMIT ?"
    args.append(limit)
    return [tuple(r) for r in conn.execute(sql, args)]
