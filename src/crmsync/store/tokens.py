"""OAuth refresh tokens rotated by the hub: systemd credentials are immutable while the
service runs, so the newest refresh token lives here."""

from __future__ import annotations

import sqlite3
import time


def get_refresh_token(conn: sqlite3.Connection, account: str) -> str | None:
    row = conn.execute("SELECT refresh_token FROM tokens WHERE account = ?", (account,)).fetchone()
    return None if row is None else str(row[0])


def save_refresh_token(conn: sqlite3.Connection, account: str, token: str) -> None:
    conn.execute("INSERT INTO tokens (account, refresh_token, updated_at) VALUES (?, ?, ?) "
                 "ON CONFLICT (account) DO UPDATE SET refresh_token = excluded.refresh_token, "
                 "updated_at = excluded.updated_at", (account, token, time.time()))
