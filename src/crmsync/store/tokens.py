"""OAuth refresh tokens rotated by the hub, when the refresh token cannot be written back to
its own file (it comes from the environment or from systemd credentials, immutable while the
service runs): the newest one lives here."""

from __future__ import annotations

import sqlite3
import time


def get_refresh_token(conn: sqlite3.Connection, account: str) -> str | None:
    row = conn.execute("SELECT refresh_token FROM tokens WHERE account = ?", (account,)).fetchone()
    return None if row is None else str(row[0])


def get_refresh_token_at(conn: sqlite3.Connection, account: str) -> tuple[str, float] | None:
    """The kept refresh token and when it was saved (epoch seconds)."""
    row = conn.execute("SELECT refresh_token, updated_at FROM tokens WHERE account = ?",
                       (account,)).fetchone()
    return None if row is None else (str(row[0]), float(row[1]))


def save_refresh_token(conn: sqlite3.Connection, account: str, token: str) -> None:
    conn.execute("INSERT INTO tokens (account, refresh_token, updated_at) VALUES (?, ?, ?) "
                 "ON CONFLICT (account) DO UPDATE SET refresh_token = excluded.refresh_token, "
                 "updated_at = excluded.updated_at", (account, token, time.time()))


def delete_refresh_token(conn: sqlite3.Connection, account: str) -> None:
    conn.execute("DELETE FROM tokens WHERE account = ?", (account,))
