"""LISTEN for the change log's notifications on a connection of its own, driven by Trio.

psycopg's async API needs asyncio, so the listening connection is a blocking one in autocommit
mode whose socket Trio watches (`trio.lowlevel.wait_readable`); when it is readable, libpq
consumes the input without blocking and hands over the notifications. Connecting runs on a
worker thread. A lost connection is re-opened with capped backoff; after every (re)connect the
caller is told that anything may have changed, since notifications sent meanwhile are lost.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import psycopg
import structlog
import trio

from crmsync.connectors.sql_tables import quote_ident

log = structlog.get_logger("crmsync.postgres.listen")

BACKOFF_CAP = 30.0

Wake = Callable[[str, str], None]


def _connect(kwargs: dict[str, Any], channel: str) -> psycopg.Connection:
    conn = psycopg.connect(**kwargs, autocommit=True)
    try:
        conn.execute(f"LISTEN {quote_ident(channel)}")
    except BaseException:
        conn.close()
        raise
    return conn


def _deliver(conn: psycopg.Connection, wake: Wake) -> None:
    conn.pgconn.consume_input()
    while (n := conn.pgconn.notifies()) is not None:
        kind, _, name = n.extra.decode("utf-8", "replace").partition(":")
        wake(kind, name)


async def listen(connect_kwargs: Callable[[], dict[str, Any]], channel: str, wake: Wake,
                 connection: str, *,
                 task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """Run until cancelled (see the module doc). `started` is reported at once: the
    listener is an accelerator, and the connection works (by polling) while it cannot
    connect."""
    task_status.started()
    attempt = 0
    bound = log.bind(connection=connection)
    while True:
        conn: psycopg.Connection | None = None
        try:
            conn = await trio.to_thread.run_sync(_connect, connect_kwargs(), channel)
            attempt = 0
            wake("any", "")
            while True:
                await trio.lowlevel.wait_readable(conn.pgconn.socket)
                _deliver(conn, wake)
        except (psycopg.Error, OSError) as exc:
            if conn is not None:
                conn.close()
                conn = None
            attempt += 1
            delay = random.uniform(0.5, 1.0) * min(BACKOFF_CAP, 0.5 * 2 ** attempt)
            # The exception's type only: libpq's messages name hosts and users.
            bound.warning("change notifications unavailable: polling meanwhile",
                          reason=type(exc).__name__, retry_in_s=round(delay, 1))
            await trio.sleep(delay)
        finally:
            if conn is not None:
                conn.close()
