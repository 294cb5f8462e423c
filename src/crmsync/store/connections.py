"""Per-connection operator state: disabled by `crmsync ctl disable`, and why."""

from __future__ import annotations

import sqlite3
import time


def set_disabled(conn: sqlite3.Connection, name: str, disabled: bool, reason: str = "") -> None:
    conn.execute("INSERT INTO connection_states (name, disabled, reason, updated_at) "
                 "VALUES (?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET disabled = "
                 "excluded.disabled, reason = excluded.reason, updated_at = excluded.updated_at",
                 (name, int(disabled), reason, time.time()))


def disabled(conn: sqlite3.Connection) -> dict[str, str]:
    return {n: r for n, r in conn.execute(
        "SELECT name, reason FROM connection_states WHERE disabled = 1")}
