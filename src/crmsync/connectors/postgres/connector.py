"""`PostgresAppConnector`: the async face of the PostgreSQL app connector.

psycopg 3's async API runs on asyncio only, so crmsync uses its blocking API on a worker thread:
one connection, used by one thread at a time (`trio.to_thread.run_sync(...,
limiter=CapacityLimiter(1))`), every method one unit of work in one thread hop. A call already
running in the thread is never abandoned on cancellation: its transaction commits or rolls back
before the caller sees `Cancelled` (statement_timeout bounds how long that takes).

A lost connection (the server restarted, a network cut) fails the call in flight with
ConnectorError(kind="transient") and the next call connects again; nothing read from the change
log is acknowledged before the runtime commits the cursor that covers it, so the supervisor's
restart loses nothing.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import msgspec
import psycopg
import trio

from crmsync.config.model import PostgresConnection
from crmsync.connectors.base import (
    AppEvent,
    AssociationChange,
    Capabilities,
    Changes,
    ConnectorError,
    ObjectInfo,
    Page,
    RecordError,
    WriteResult,
)
from crmsync.connectors.postgres import capture, listen, relations, rows
from crmsync.connectors.postgres.dsn import Dsn, connect_kwargs, read_dsn
from crmsync.connectors.postgres.errors import call_error
from crmsync.connectors.postgres.schema import (
    Association,
    Column,
    TableSpec,
    quote_ident,
    resolve_association,
    resolve_table,
    table_columns,
)
from crmsync.records import PipelineInfo, Record

T = TypeVar("T")

APPLICATION_NAME = "crmsync"


class PostgresConnectorStatistics(msgspec.Struct, frozen=True):
    open: bool
    server: str  # user@host:port/dbname (no secret)
    server_version: int
    calls: int
    reconnects: int
    rows_written: int
    rows_failed: int
    triggers_changed: int  # triggers created or dropped when the connector opened


@dataclass(frozen=True, slots=True)
class _Resolved:
    specs: dict[str, TableSpec]
    associations: list[Association]
    join_columns: dict[str, dict[str, Column]]
    pipelines: relations.PipelineTables | None
    events: relations.EventTable | None
    stamps: dict[str, str | None]
    triggers_changed: int


class _Opener:
    """What `open()` returns: await it, or use it as `async with`."""

    def __init__(self, connector: PostgresAppConnector) -> None:
        self._connector = connector

    def __await__(self) -> Generator[Any, None, PostgresAppConnector]:
        return self._connector._open().__await__()

    async def __aenter__(self) -> PostgresAppConnector:
        return await self._connector._open()

    async def __aexit__(self, *exc_info: object) -> None:
        with trio.CancelScope(shield=True):
            await self._connector.aclose()


class PostgresAppConnector:
    """The app side of object syncs whose app keeps its data in PostgreSQL.

    `settings` is the connection's `[[connections]]` entry; `base_dir` is where a relative
    `dsn_file` is looked up (the configuration file's directory). With `suppress_echoes`,
    `changes_since` leaves out records whose only changes were crmsync's own writes (off by
    default, as for SQLite: the app's reactions to our writes carry our tag too).
    """

    def __init__(self, settings: PostgresConnection, *, base_dir: Path | None = None,
                 dsn: Dsn | None = None, suppress_echoes: bool = False) -> None:
        self.settings = settings
        self.name = settings.name
        self.capabilities = Capabilities(
            webhooks=bool(settings.webhook_secret_env or settings.webhook_secret_file),
            change_log=True,
            polling=True,
            write_batch_size=settings.batch_size,
            read_batch_size=settings.batch_size,
            pipelines=settings.pipelines is not None,
            associations=bool(settings.associations),
            events=settings.events is not None,
            local_find=True,
            conditional_update=True,
        )
        self._base_dir = base_dir
        self._dsn = dsn
        self._suppress_echoes = suppress_echoes
        self._log_schema = settings.changelog_schema
        self._limiter = trio.CapacityLimiter(1)
        self._conn: psycopg.Connection | None = None
        self._resolved: _Resolved | None = None
        self._server_version = 0
        self._state = "new"  # new -> opening -> open -> closed (a failed open: back to new)
        self._calls = 0
        self._reconnects = 0
        self._written = 0
        self._failed = 0

    # --- for the registry: secrets and removal ---------------------------------------------

    @staticmethod
    def secrets(settings: PostgresConnection, base_dir: Path | None) -> list[str]:
        """The connection string's secret parts (its password), for log redaction."""
        return read_dsn(settings, base_dir).secrets()

    @staticmethod
    def removal_plan(settings: PostgresConnection, base_dir: Path | None) -> list[str]:
        """What `remove` would drop (see `capture.RemovalPlan`)."""
        from crmsync.connectors.postgres import uninstall

        return uninstall.plan(settings, base_dir).lines()

    @staticmethod
    def remove(settings: PostgresConnection, base_dir: Path | None) -> list[str]:
        """Drop crmsync's triggers, functions, change log and (when empty) schema."""
        from crmsync.connectors.postgres import uninstall

        return uninstall.remove(settings, base_dir).lines()

    # --- lifecycle ------------------------------------------------------------------------

    @property
    def dsn(self) -> Dsn:
        if self._dsn is None:
            self._dsn = read_dsn(self.settings, self._base_dir)
        return self._dsn

    def open(self) -> _Opener:
        """Connect, resolve the configured tables, create the change log and install the
        triggers. `async with connector.open():` closes it on exit; `await connector.open()`
        leaves that to `aclose()`. Raises ConnectorError(kind="config") when the database or a
        configured table, column, association or privilege does not fit (the message names
        the GRANT that is missing), kind="transient" when the server cannot be reached."""
        return _Opener(self)

    async def _open(self) -> PostgresAppConnector:
        if self._state != "new":
            raise RuntimeError(f"connector {self.name!r} was already opened")
        self._state = "opening"
        try:
            dsn = self.dsn
            conn, resolved = await trio.to_thread.run_sync(self._connect_and_setup, dsn,
                                                           limiter=self._limiter)
        except BaseException:
            self._state = "new"  # a failed open may be retried
            raise
        self._conn, self._resolved = conn, resolved
        self._state = "open"
        return self

    def _connect(self, dsn: Dsn) -> psycopg.Connection:
        s = self.settings
        try:
            conn = psycopg.connect(**connect_kwargs(dsn, s, APPLICATION_NAME), autocommit=True)
        except psycopg.Error as exc:
            raise call_error(exc, f"connecting to PostgreSQL {dsn.describe()}") from None
        try:
            # Per session, so the app is not affected: UTC timestamps, bounded statements
            # and lock waits (a lock wait never holds the app's writers behind crmsync's
            # DDL), and the tag that marks crmsync's writes in the change log.
            conn.execute(
                "SELECT set_config('TimeZone', 'UTC', false), "
                "set_config('statement_timeout', %s, false), "
                "set_config('lock_timeout', %s, false), "
                "set_config('idle_in_transaction_session_timeout', %s, false), "
                "set_config(%s, %s, false)",
                (f"{round(s.statement_timeout_seconds * 1000)}ms",
                 f"{round(s.lock_timeout_seconds * 1000)}ms",
                 f"{round(max(60.0, s.statement_timeout_seconds * 2) * 1000)}ms",
                 capture.ORIGIN_SETTING, capture.ORIGIN_CRMSYNC))
            self._server_version = conn.info.server_version
        except BaseException:
            conn.close()
            raise
        return conn

    def _connect_and_setup(self, dsn: Dsn) -> tuple[psycopg.Connection, _Resolved]:
        conn = self._connect(dsn)
        try:
            with conn.transaction():
                resolved = self._setup(conn)
        except BaseException as exc:
            conn.close()
            if isinstance(exc, psycopg.Error):
                raise call_error(exc, f"opening app database {dsn.describe()}") from None
            raise
        return conn, resolved

    def _setup(self, conn: psycopg.Connection) -> _Resolved:
        s = self.settings
        if conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s",
                        (s.schema,)).fetchone() is None:
            raise ConnectorError("config", "not_found",
                                 f"connection {self.name!r}: schema {s.schema!r} does not "
                                 "exist in the app database")
        specs: dict[str, TableSpec] = {}
        for t in s.tables:
            if t.object in specs:
                raise ConnectorError("config", "invalid_value",
                                     f"app object {t.object!r} is configured twice")
            specs[t.object] = resolve_table(conn, s.schema, t, self._log_schema)
        assocs = [resolve_association(conn, s.schema, specs, a.from_object, a.to_object,
                                      a.column, a.join_table, a.from_column, a.to_column)
                  for a in s.associations]
        join_columns = {a.join_table: table_columns(conn, a.join_oid)
                        for a in assocs if a.is_join}
        pipelines = (relations.resolve_pipelines(conn, s.schema, s.pipelines)
                     if s.pipelines else None)
        events = relations.resolve_events(conn, s.schema, s.events.table) if s.events else None
        stamps = {o: rows.stamp_sql(spec, self._ms_sample(conn, spec))
                  for o, spec in specs.items()}
        schema = self._log_schema
        captures = [capture.record_capture(schema, spec, assocs) for spec in specs.values()]
        captures += [capture.join_capture(schema, a) for a in assocs if a.is_join]
        if events is not None:
            captures.append(capture.event_capture(schema, events.schema, events.table,
                                                  events.oid))
        changed = capture.install(conn, schema, captures)
        return _Resolved(specs, assocs, join_columns, pipelines, events, stamps, changed)

    @staticmethod
    def _ms_sample(conn: psycopg.Connection, spec: TableSpec) -> bool:
        """Does a numeric updated-at column hold epoch milliseconds (else seconds)?"""
        col = spec.all_columns[spec.updated_at]
        if col.category != "N":
            return False
        row = conn.execute(f"SELECT {quote_ident(col.name)}::float8 FROM {spec.qualified} "
                           f"WHERE {quote_ident(col.name)} IS NOT NULL LIMIT 1").fetchone()
        return bool(row and abs(row[0]) >= 1e11)

    async def aclose(self) -> None:
        """Close the connection once calls in flight have finished. Idempotent."""
        if self._state == "closed":
            return
        self._state = "closed"
        conn, self._conn = self._conn, None
        if conn is not None:
            await trio.to_thread.run_sync(conn.close, limiter=self._limiter)

    def statistics(self) -> PostgresConnectorStatistics:
        return PostgresConnectorStatistics(
            open=self._state == "open",
            server=self._dsn.describe() if self._dsn else "",
            server_version=self._server_version,
            calls=self._calls,
            reconnects=self._reconnects,
            rows_written=self._written,
            rows_failed=self._failed,
            triggers_changed=self._resolved.triggers_changed if self._resolved else 0,
        )

    # --- plumbing -------------------------------------------------------------------------

    def _require_open(self) -> _Resolved:
        if self._state != "open" or self._resolved is None:
            raise RuntimeError(f"connector {self.name!r} is not open")
        return self._resolved

    async def _run(self, what: str, fn: Callable[..., T], *args: Any) -> T:
        self._require_open()
        self._calls += 1
        return await trio.to_thread.run_sync(self._call, what, fn, args, limiter=self._limiter)

    def _call(self, what: str, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        conn = self._conn
        if conn is None or conn.closed or conn.broken:
            # The previous call lost the connection: connect again (the schema was resolved
            # at open; a table renamed meanwhile fails its statement as a config error).
            if conn is not None:
                conn.close()
            self._conn = None
            conn = self._connect(self.dsn)
            self._conn = conn
            self._reconnects += 1
        try:
            return fn(conn, *args)
        except psycopg.Error as exc:
            err = call_error(exc, what)
            if err.kind == "transient" and (conn.broken
                                            or exc.sqlstate in ("0A000", "57P01", "57P02")):
                # A prepared plan gone stale, or a connection in doubt: start afresh.
                conn.close()
            raise err from None

    def _spec(self, object_name: str) -> TableSpec:
        spec = self._require_open().specs.get(object_name)
        if spec is None:
            raise ConnectorError("config", "not_found",
                                 f"connection {self.name!r} has no app object {object_name!r}")
        return spec

    async def _write(self, what: str, ops: Sequence[rows.RowOp | RecordError],
                     **kwargs: Any) -> list[WriteResult]:
        out: list[WriteResult] = []
        for part in rows.chunks(ops, self.settings.batch_size):
            results = await self._run(what, functools.partial(rows.write_batch, **kwargs), part)
            for r in results:
                if isinstance(r, RecordError):
                    self._failed += 1
                    out.append(WriteResult(ok=False, error=r))
                else:
                    self._written += 1
                    out.append(WriteResult(ok=True, record=r))
        return out

    @staticmethod
    def _read_tx(conn: psycopg.Connection, fn: Callable[..., T], *args: Any) -> T:
        with conn.transaction():
            return fn(conn, *args)

    # --- Connector ------------------------------------------------------------------------

    async def describe(self, object_name: str) -> ObjectInfo:
        return self._spec(object_name).describe()

    async def scan(self, object_name: str, cursor: str | None,
                   properties: Sequence[str]) -> Page:
        """One page of `batch_size` rows in primary-key order; the cursor is the page's last
        key (so rows inserted behind it meanwhile are left to the change log)."""
        spec = self._spec(object_name)
        records, nxt = await self._run(f"scanning {object_name}", rows.scan, spec, cursor,
                                       spec.select(properties), self.settings.batch_size)
        return Page(records=records, next_cursor=nxt)

    async def read(self, object_name: str, ids: Sequence[str],
                   properties: Sequence[str]) -> dict[str, Record]:
        spec = self._spec(object_name)
        if not ids:
            return {}
        return await self._run(f"reading {object_name}", rows.read, spec, list(ids),
                               spec.select(properties))

    async def create(self, object_name: str,
                     inputs: Sequence[Mapping[str, Any]]) -> list[WriteResult]:
        """INSERT each input (with the updated-at column set to now), `batch_size` per
        transaction, in one statement where the key's default allows (see `rows`). The primary key is the database's (identity, serial, a default) unless
        an input gives one. A unique violation fails as `duplicate` with `existing_id`."""
        spec = self._spec(object_name)
        stamp = self._require_open().stamps[object_name]
        ops = rows.create_ops(spec, inputs, stamp, spec.columns)
        return await self._write(f"creating {object_name}", ops,
                                 group=rows.create_group(spec, stamp, spec.columns),
                                 finish=functools.partial(rows.fill_incarnations, spec))

    async def update(self, object_name: str, inputs: Sequence[tuple[str, Mapping[str, Any]]],
                     expected: Sequence[Record | None] | None = None) -> list[WriteResult]:
        """UPDATE each row's given columns (and its updated-at column), `batch_size` per
        transaction; a missing row fails as `not_found`. With `expected` (the record as read,
        one per input), an input applies only while its row still holds the values read in
        the columns it writes and is still the same incarnation (a row inserted later under
        the same key is another record) — `UPDATE ... WHERE` what the decision read — and
        otherwise fails as a `conflict` with `stale` set, to be re-read and decided again
        (connectors/base.py)."""
        spec = self._spec(object_name)
        stamp = self._require_open().stamps[object_name]
        held = incarnations = None
        if expected is not None:
            held = [None if read is None else {c: read.properties[c] for c in changes
                                               if c in read.properties}
                    for (_, changes), read in zip(inputs, expected, strict=True)]
            # The same record, not a later row given its key (connectors/base.py).
            incarnations = [None if read is None else read.incarnation for read in expected]
        ops = rows.update_ops(spec, inputs, stamp, spec.columns, held, incarnations)
        return await self._write(f"updating {object_name}", ops)

    async def archive(self, object_name: str, ids: Sequence[str]) -> list[WriteResult]:
        """DELETE each row; a row that is already gone counts as archived. A row still
        referenced by a foreign key fails as `conflict`."""
        spec = self._spec(object_name)
        ops = rows.archive_ops(spec, ids, round(time.time() * 1000))
        return await self._write(f"deleting {object_name}", ops, deleting=True)

    async def find(self, object_name: str, field: str, value: str,
                   properties: Sequence[str]) -> list[Record]:
        spec = self._spec(object_name)
        return await self._run(f"finding {object_name} by {field}", rows.find, spec, field,
                               value, spec.select(properties))

    async def changes_since(self, object_name: str, cursor: str | None,
                            properties: Sequence[str]) -> Changes:
        """Records whose rows changed, from the trigger-filled change log (see `capture`).

        The cursor names the batch of entries the previous call handed out; calling with it
        acknowledges that batch (its entries are deleted) — so call with a cursor only once
        the syncs it caused are committed, as the runtime does. None forgets what the log
        holds for this object and starts from now on. Several entries of one record collapse
        into one: its current row, or `Record(id, {}, archived=True)` when the row no longer
        exists. At most `batch_size` entries per call; `more=True` says the limit was hit.
        Raises ConnectorError(kind="config") for a cursor the log never handed out (the log
        was removed and installed again: changes may have been missed, so a reconciliation
        is due)."""
        spec = self._spec(object_name)
        return await self._run(f"reading changes of {object_name}", self._read_tx,
                               self._changes, spec, cursor, spec.select(properties))

    def _after(self, conn: psycopg.Connection, cursor: str, what: str) -> int:
        try:
            after = int(cursor)
        except ValueError:
            after = -1
        if after < 0:
            raise ConnectorError("config", "invalid_value", f"{what} {cursor!r} is not a "
                                 "claim number")
        end = capture.claim_end(conn, self._log_schema)
        if after > end:
            raise ConnectorError(
                "config", "not_found",
                f"{what} {after} was never handed out by {self._log_schema}.changelog (last: "
                f"{end}): the change log was removed and installed again; changes may have "
                "been missed, reconcile this connection")
        return after

    def _changes(self, conn: psycopg.Connection, spec: TableSpec, cursor: str | None,
                 cols: Sequence[str]) -> Changes:
        schema = self._log_schema
        if cursor is None:
            capture.forget(conn, schema, "record", spec.object)
            return Changes(records=[], cursor=str(capture.claim_end(conn, schema)))
        after = self._after(conn, cursor, "change-log cursor")
        capture.acknowledge(conn, schema, "record", spec.object, after)
        limit = self.settings.batch_size
        number, entries = capture.claim(conn, schema, "record", spec.object, after, limit)
        if not entries:
            return Changes(records=[], cursor=cursor)
        collapsed = capture.collapse(entries)
        if self._suppress_echoes:
            collapsed = [c for c in collapsed if not c.own_only]
        current = rows.read(conn, spec, [c.record_id for c in collapsed], cols)
        records = [current.get(c.record_id)
                   or Record(c.record_id, {}, updated_at=c.last_at, archived=True)
                   for c in collapsed]
        return Changes(records=records, cursor=str(number), more=len(entries) >= limit)

    # --- change notifications -------------------------------------------------------------

    async def watch_changes(self, wake: Callable[[str, str], None], *,
                            task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                            ) -> None:
        """Run until cancelled, calling `wake(kind, name)` soon after a transaction that
        changed a captured table commits: ("record", app object) or ("event", events table);
        ("any", "") after (re)connecting, when notifications may have been missed. Only a
        wake-up: the change log is read by `changes_since` / `events_since`. A lost listening
        connection is re-opened with backoff, never failing the caller."""
        await listen.listen(
            lambda: connect_kwargs(self.dsn, self.settings, APPLICATION_NAME + " listener"),
            self._log_schema, wake, self.name, task_status=task_status)

    # --- SupportsPipelines ----------------------------------------------------------------

    async def pipelines(self, object_name: str) -> list[PipelineInfo]:
        """Every pipeline of the `pipelines` table with its stages from the `stages` table.
        Raises ConnectorError(kind="config") when the connection has no [pipelines] table."""
        self._spec(object_name)
        p = self._require_open().pipelines
        if p is None:
            raise ConnectorError("config", "not_found",
                                 f"connection {self.name!r} has no pipelines configured "
                                 "([connections.pipelines])")
        return await self._run("reading pipelines", relations.read_pipelines, p)

    # --- SupportsAssociations -------------------------------------------------------------

    def _association(self, from_object: str, to_object: str) -> tuple[Association, bool]:
        assocs = self._require_open().associations
        for a in assocs:
            if (a.source.object, a.target.object) == (from_object, to_object):
                return a, True
        for a in assocs:
            if (a.target.object, a.source.object) == (from_object, to_object):
                return a, False
        raise ConnectorError("config", "association_failed",
                             f"connection {self.name!r} has no association between "
                             f"{from_object!r} and {to_object!r}")

    async def read_associations(self, from_object: str, to_object: str,
                                ids: Sequence[str]) -> dict[str, list[str]]:
        """Works both ways of a configured association: from the table holding the foreign
        key to its target, and back (which rows point at these ids), or either way through a
        join table. Every id asked for is in the result ([] when it has no partner)."""
        a, forward = self._association(from_object, to_object)
        return await self._run(f"reading {from_object} -> {to_object} associations",
                               relations.read_associations, a, forward, list(ids))

    async def write_associations(self, from_object: str, to_object: str,
                                 changes: Sequence[AssociationChange]) -> list[WriteResult]:
        """Create or remove associations, one result per change, `batch_size` per transaction.
        Foreign key: creating sets the column (replacing a previous partner: a foreign key
        holds one), removing sets it NULL only while it still points at that partner; both
        set the row's updated-at column. Join table: the row is added once, or deleted.
        Creating fails (`association_failed`) when either record does not exist."""
        a, forward = self._association(from_object, to_object)
        r = self._require_open()
        ops = relations.association_ops(a, forward, changes, r.stamps[a.source.object],
                                        r.join_columns.get(a.join_table, {}))
        return await self._write(f"writing {from_object} -> {to_object} associations", ops,
                                 category="association_failed")

    # --- SupportsEventSource --------------------------------------------------------------

    async def events_since(self, cursor: str | None, limit: int) -> tuple[list[AppEvent], str]:
        """Up to `limit` events and the cursor to commit once they are handled.

        None starts from the first event: the table is read in key order first (cursor
        `scan:<claim>:<key>`), then its change log (cursor `log:<claim>`), acknowledged like
        record changes. Events are never deleted from the app's table; dedup by event id is
        the caller's (a crash may hand an event out twice, never lose one)."""
        e = self._require_open().events
        if e is None:
            raise ConnectorError("config", "not_found",
                                 f"connection {self.name!r} has no events table configured "
                                 "([connections.events])")
        return await self._run("reading events", self._read_tx, self._events, e, cursor,
                               max(1, limit))

    def _events(self, conn: psycopg.Connection, e: relations.EventTable, cursor: str | None,
                limit: int) -> tuple[list[AppEvent], str]:
        schema = self._log_schema
        if cursor is None:
            # The table scan covers what the log holds now.
            capture.forget(conn, schema, "event", e.table)
            cursor = f"scan:{capture.claim_end(conn, schema)}:"
        kind, _, rest = cursor.partition(":")
        if kind == "scan":
            start, _, after = rest.partition(":")
            base = self._after(conn, start, "event cursor")
            events, last = relations.scan_events(conn, e, after or None, limit)
            if last is not None:
                return events, f"scan:{base}:{last}"
            if events:
                return events, f"log:{base}"
            # The table is read to its end: on to its log in the same call (a caller stops
            # at an empty page, so this cursor would never be committed otherwise).
            kind, rest = "log", str(base)
        if kind != "log":
            raise ConnectorError("config", "invalid_value",
                                 f"event cursor {cursor!r} is not one crmsync hands out")
        after_n = self._after(conn, rest, "event cursor")
        capture.acknowledge(conn, schema, "event", e.table, after_n)
        number, entries = capture.claim(conn, schema, "event", e.table, after_n, limit)
        if not entries:
            return [], cursor
        return relations.logged_events(entries, e), f"log:{number}"
