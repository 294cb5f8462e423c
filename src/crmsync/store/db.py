"""SQLite under Trio: one connection, one worker thread at a time, one transaction per call.

aiosqlite cannot run under Trio (it resolves asyncio futures). Its model is kept: a stdlib
`sqlite3` connection used from one worker thread at a time through
`trio.to_thread.run_sync(..., limiter=CapacityLimiter(1))`. A thread hop costs ~150 µs, so a
store call is a *unit of work*: one synchronous function `fn(conn, *args)` that runs a whole
transaction (`BEGIN IMMEDIATE` ... `COMMIT`) in one hop.

A call already running in the thread is never abandoned on cancellation: its transaction
either commits or rolls back before the caller sees the Cancelled.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

import trio

from crmsync.store.schema import SchemaTooNew, migrate

P = ParamSpec("P")
T = TypeVar("T")


class StoreError(Exception):
    """The state database cannot be used (corrupt, locked, wrong version, disk full)."""


def connect(path: str | Path) -> sqlite3.Connection:
    """Open the database with the durability settings of DESIGN.md and migrate it."""
    p = Path(path)
    if str(p) != ":memory:":
        p.parent.mkdir(parents=True, exist_ok=True)
    conn: sqlite3.Connection | None = None
    try:
        conn = sqlite3.connect(str(p), check_same_thread=False, isolation_level=None,
                               timeout=5.0)
        conn.execute("PRAGMA journal_mode=WAL")
        # FULL: with NORMAL a committed transaction can vanish on power loss, and the inbox,
        # cursors and tokens drive acknowledgements that cannot be taken back.
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA busy_timeout=5000")
        conn.execute("PRAGMA foreign_keys=ON")
        # A larger page cache keeps the index b-trees of big syncs in memory.
        conn.execute("PRAGMA cache_size=-65536")
        ok = conn.execute("PRAGMA quick_check").fetchone()[0]
        if ok != "ok":
            raise StoreError(f"state database {p} failed quick_check: {ok}")
        with transaction(conn):
            migrate(conn)
    except (sqlite3.DatabaseError, SchemaTooNew, StoreError) as exc:
        if conn is not None:
            conn.close()
        if isinstance(exc, StoreError):
            raise
        raise StoreError(f"state database {p} cannot be opened: {exc}") from exc
    return conn


@contextmanager
def transaction(conn: sqlite3.Connection, write: bool = True) -> Any:
    conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    else:
        conn.execute("COMMIT")


def run_unit(conn: sqlite3.Connection, fn: Callable[..., T], args: tuple[Any, ...],
             write: bool) -> T:
    with transaction(conn, write):
        return fn(conn, *args)


class Store:
    """The daemon's state database. Use `async with Store.open(path) as store`."""

    def __init__(self, conn: sqlite3.Connection, path: str) -> None:
        self._conn = conn
        self.path = path
        self._limiter = trio.CapacityLimiter(1)
        self._closed = False
        self.calls = 0

    @classmethod
    @asynccontextmanager
    async def open(cls, path: str | Path) -> AsyncIterator[Store]:
        conn = await trio.to_thread.run_sync(connect, path)
        store = cls(conn, str(path))
        try:
            yield store
        finally:
            with trio.CancelScope(shield=True):
                await store.aclose()

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        await trio.to_thread.run_sync(self._conn.close, limiter=self._limiter)

    async def call(self, fn: Callable[Concatenate[sqlite3.Connection, P], T],
                   *args: Any) -> T:
        """Run `fn(conn, *args)` as one write transaction in the store's thread."""
        return await self._run(fn, args, True)

    async def read(self, fn: Callable[Concatenate[sqlite3.Connection, P], T],
                   *args: Any) -> T:
        """Run `fn(conn, *args)` as one (short) read transaction in the store's thread."""
        return await self._run(fn, args, False)

    async def _run(self, fn: Callable[..., T], args: tuple[Any, ...], write: bool) -> T:
        if self._closed:
            raise StoreError("the store is closed")
        self.calls += 1
        try:
            return await trio.to_thread.run_sync(run_unit, self._conn, fn, args, write,
                                                 limiter=self._limiter)
        except sqlite3.OperationalError as exc:
            raise StoreError(f"state database error: {exc}") from exc

