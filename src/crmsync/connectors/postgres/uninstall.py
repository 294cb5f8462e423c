"""Removing what crmsync installed in a PostgreSQL database (`crmsync app uninstall CONN`):
its triggers on the app's tables, their functions, the change log, the identity table, their
sequences and — when nothing else is in it — its schema. Blocking calls, for the command line."""

from __future__ import annotations

from pathlib import Path

import psycopg

from crmsync.config.model import PostgresConnection
from crmsync.connectors.postgres import capture
from crmsync.connectors.postgres.capture import RemovalPlan
from crmsync.connectors.postgres.dsn import connect_kwargs, read_dsn
from crmsync.connectors.postgres.errors import call_error


def _connect(settings: PostgresConnection, base_dir: Path | None) -> psycopg.Connection:
    dsn = read_dsn(settings, base_dir)
    try:
        conn = psycopg.connect(**connect_kwargs(dsn, settings, "crmsync uninstall"),
                               autocommit=True)
    except psycopg.Error as exc:
        raise call_error(exc, f"connecting to PostgreSQL {dsn.describe()}") from None
    conn.execute("SELECT set_config('lock_timeout', %s, false)",
                 (f"{round(settings.lock_timeout_seconds * 1000)}ms",))
    return conn


def plan(settings: PostgresConnection, base_dir: Path | None) -> RemovalPlan:
    """What `remove` would remove; changes nothing."""
    with _connect(settings, base_dir) as conn:
        try:
            return capture.removal_plan(conn, settings.changelog_schema)
        except psycopg.Error as exc:
            raise call_error(exc, "reading what crmsync installed") from None


def remove(settings: PostgresConnection, base_dir: Path | None) -> RemovalPlan:
    """Remove it all in one transaction; returns what was removed."""
    with _connect(settings, base_dir) as conn:
        try:
            with conn.transaction():
                return capture.remove(conn, settings.changelog_schema)
        except psycopg.Error as exc:
            raise call_error(exc, "removing what crmsync installed") from None
