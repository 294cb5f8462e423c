"""`SqliteAppConnector`: the async face of the SQLite app connector.

One stdlib `sqlite3` connection, used from one worker thread at a time
(`trio.to_thread.run_sync(..., limiter=CapacityLimiter(1))`); every method is one unit of work —
one transaction in one thread hop — except writes, which take one hop and one transaction per
`batch_size` inputs. A call already running in the thread is never abandoned on cancellation:
its transaction commits or rolls back before the caller sees `Cancelled`.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import sqlite3
import time
import urllib.parse
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import msgspec
import trio

from crmsync.config.model import SqliteConnection
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
from crmsync.connectors.sqlite import changelog, relations, rows
from crmsync.connectors.sqlite.errors import call_error
from crmsync.connectors.sqlite.schema import (
    Association,
    TableSpec,
    resolve_association,
    resolve_table,
)
from crmsync.records import PipelineInfo, Record

T = TypeVar("T")

BUSY_TIMEOUT_MS = 5000
# How Python's sqlite3 reports TEXT that is not valid UTF-8 with the default text factory.
_UNDECODABLE = "Could not decode to UTF-8"


def _lenient_text(value: bytes) -> str:
    return value.decode("utf-8", "replace")

# Change-log rows deleted per transaction when pruning: the app's writers wait at most for one
# such chunk, never for the whole prune.
PRUNE_CHUNK = 5000


class SqliteConnectorStatistics(msgspec.Struct, frozen=True):
    open: bool
    journal_mode: str  # "wal" is recommended; crmsync never changes it (see the package doc)
    calls: int
    rows_written: int
    rows_failed: int
    triggers_changed: int  # triggers (re)created or dropped when the connector opened


@dataclass(frozen=True, slots=True)
class _Resolved:
    specs: dict[str, TableSpec]
    associations: list[Association]
    pipelines: relations.PipelineTables | None
    events: relations.EventTable | None
    triggers_changed: int


class _Opener:
    """What `open()` returns: await it, or use it as `async with`."""

    def __init__(self, connector: SqliteAppConnector) -> None:
        self._connector = connector

    def __await__(self) -> Generator[Any, None, SqliteAppConnector]:
        return self._connector._open().__await__()

    async def __aenter__(self) -> SqliteAppConnector:
        return await self._connector._open()

    async def __aexit__(self, *exc_info: object) -> None:
        with trio.CancelScope(shield=True):
            await self._connector.aclose()


def _database_uri(path: str) -> str:
    # mode=rw: the app's database must exist; crmsync never creates an empty one by mistake.
    return "file:" + urllib.parse.quote(os.path.abspath(path)) + "?mode=rw"


class SqliteAppConnector:
    """The app side of object syncs whose app keeps its data in a SQLite database.

    `settings` is the connection's `[[connections]]` entry. `clock` gives the time written to
    updated-at columns (epoch seconds). With `suppress_echoes`, `changes_since` leaves out
    records whose only changes were crmsync's own writes (see the package doc for why that is
    off by default).
    """

    def __init__(self, settings: SqliteConnection, *, clock: Callable[[], float] = time.time,
                 suppress_echoes: bool = False, base_dir: Path | None = None) -> None:
        # base_dir: the registry's uniform constructor; the database path is used as given.
        del base_dir
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
        self._clock = clock
        self._suppress_echoes = suppress_echoes
        self._log = settings.changelog_table
        self._limiter = trio.CapacityLimiter(1)
        self._conn: sqlite3.Connection | None = None
        self._resolved: _Resolved | None = None
        self._journal_mode = ""
        self._state = "new"  # new -> opening -> open -> closed (a failed open: back to new)
        self._calls = 0
        self._written = 0
        self._failed = 0

    # --- for the registry: secrets and removal ---------------------------------------------

    @staticmethod
    def secrets(settings: SqliteConnection, base_dir: Path | None) -> list[str]:
        """A SQLite connection holds no secret of its own (its webhook secret is the
        daemon's to read)."""
        return []

    @staticmethod
    def removal_plan(settings: SqliteConnection, base_dir: Path | None) -> list[str]:
        """What `remove` would drop: crmsync's triggers and its change-log table."""
        return changelog.with_database(settings.database, lambda conn: changelog.removal_plan(
            conn, settings.changelog_table), write=False)

    @staticmethod
    def remove(settings: SqliteConnection, base_dir: Path | None) -> list[str]:
        """Drop crmsync's triggers and change-log table, in one transaction."""
        def run(conn: sqlite3.Connection) -> list[str]:
            plan = changelog.removal_plan(conn, settings.changelog_table)
            changelog.remove_change_capture(conn, settings.changelog_table, drop_log=True)
            return plan

        return changelog.with_database(settings.database, run, write=True)

    # --- lifecycle ------------------------------------------------------------------------

    def open(self) -> _Opener:
        """Open the database, create the change log and install the triggers.

        `async with connector.open():` closes it on exit; `await connector.open()` leaves that
        to `aclose()`. Raises ConnectorError(kind="config") when the database or a configured
        table, column or association does not fit, and kind="transient" when the database is
        busy for longer than the busy timeout."""
        return _Opener(self)

    async def _open(self) -> SqliteAppConnector:
        if self._state != "new":
            raise RuntimeError(f"connector {self.name!r} was already opened")
        self._state = "opening"
        try:
            conn, journal, resolved = await trio.to_thread.run_sync(
                self._connect, limiter=self._limiter)
        except BaseException:
            self._state = "new"  # a failed open may be retried
            raise
        self._conn, self._journal_mode, self._resolved = conn, journal, resolved
        self._state = "open"
        return self

    def _connect(self) -> tuple[sqlite3.Connection, str, _Resolved]:
        what = f"opening app database {self.settings.database}"
        try:
            conn = sqlite3.connect(_database_uri(self.settings.database), uri=True,
                                   check_same_thread=False, isolation_level=None,
                                   timeout=BUSY_TIMEOUT_MS / 1000)
        except sqlite3.Error as exc:
            raise call_error(exc, what) from exc
        try:
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            # Per connection, so the app is not affected: crmsync honours the app's declared
            # foreign keys, and its own commits are durable.
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA synchronous=FULL")
            journal = str(conn.execute("PRAGMA journal_mode").fetchone()[0]).lower()
            conn.create_function(rows.CASEFOLD_FUNCTION, 1, rows.casefold, deterministic=True)
            resolved = rows.run_write(conn, self._setup)
        except BaseException as exc:
            conn.close()
            if isinstance(exc, sqlite3.Error):
                raise call_error(exc, what) from exc
            raise
        return conn, journal, resolved

    def _setup(self, conn: sqlite3.Connection) -> _Resolved:
        s = self.settings
        specs: dict[str, TableSpec] = {}
        for t in s.tables:
            if t.object in specs:
                raise ConnectorError("config", "invalid_value",
                                     f"app object {t.object!r} is configured twice")
            specs[t.object] = dataclasses.replace(resolve_table(conn, t), log=self._log)
        assocs = [resolve_association(conn, specs, a.from_object, a.to_object, a.column,
                                      a.join_table, a.from_column, a.to_column)
                  for a in s.associations]
        pipelines = relations.resolve_pipelines(conn, s.pipelines) if s.pipelines else None
        events = relations.resolve_events(conn, s.events.table) if s.events else None
        changelog.ensure_log(conn, self._log)
        changed = changelog.install(conn, self._log,
                                    changelog.desired_triggers(self._log, specs.values(), assocs))
        return _Resolved(specs, assocs, pipelines, events, changed)

    async def aclose(self) -> None:
        """Close the connection once calls in flight have finished. Idempotent."""
        if self._state == "closed":
            return
        self._state = "closed"
        conn, self._conn = self._conn, None
        if conn is not None:
            await trio.to_thread.run_sync(conn.close, limiter=self._limiter)

    def statistics(self) -> SqliteConnectorStatistics:
        return SqliteConnectorStatistics(
            open=self._state == "open",
            journal_mode=self._journal_mode,
            calls=self._calls,
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
        assert self._conn is not None
        self._calls += 1
        return await trio.to_thread.run_sync(self._call, what, fn, self._conn, args,
                                             limiter=self._limiter)

    @staticmethod
    def _call(what: str, fn: Callable[..., T], conn: sqlite3.Connection,
              args: tuple[Any, ...]) -> T:
        try:
            try:
                return fn(conn, *args)
            except sqlite3.OperationalError as exc:
                if not str(exc).startswith(_UNDECODABLE):
                    raise
            # One value somewhere is not UTF-8 (an app may store any bytes as TEXT): read
            # again with U+FFFD in place of the bad bytes, as the sqlite3 shell shows them,
            # so that one value never fails the whole call. Each call is one transaction
            # rolled back on error, so running it again is safe. The default factory is kept
            # otherwise: a Python decoder per value would slow every large scan.
            conn.text_factory = _lenient_text
            try:
                return fn(conn, *args)
            finally:
                conn.text_factory = str
        except sqlite3.Error as exc:
            raise call_error(exc, what) from exc

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
            results = await self._run(what, functools.partial(rows.write_batch, **kwargs),
                                      self._log, part)
            for r in results:
                if isinstance(r, RecordError):
                    self._failed += 1
                    out.append(WriteResult(ok=False, error=r))
                else:
                    self._written += 1
                    out.append(WriteResult(ok=True, record=r))
        return out

    # --- Connector ------------------------------------------------------------------------

    async def describe(self, object_name: str) -> ObjectInfo:
        """The columns crmsync reads (typed from their declared SQL types); the primary key,
        the updated-at column and generated columns are read-only."""
        return self._spec(object_name).describe()

    def id_problem(self, object_name: str, record_id: str) -> str | None:
        """Why `record_id` cannot name a row of `object_name` (None: it can, or the object is
        not known here): an id its primary key cannot hold, or one written otherwise than
        crmsync reads it back ("05" for row 5 would be another record). No I/O: for webhook
        intake."""
        if self._resolved is None:
            return None
        spec = self._resolved.specs.get(object_name)
        if spec is None:
            return None
        try:
            key = spec.to_key(record_id)
        except (ValueError, OverflowError):
            return (f"{record_id[:40]!r} cannot be a key of app object {object_name!r}: its "
                    f"primary key {spec.primary_key!r} holds {spec.pk_affinity} values")
        if str(key) != record_id:
            return (f"{record_id[:40]!r} is not how app object {object_name!r} writes its "
                    f"keys (it would be {str(key)[:40]!r})")
        return None

    async def scan(self, object_name: str, cursor: str | None,
                   properties: Sequence[str]) -> Page:
        """`batch_size` rows in primary-key order after `cursor` (the previous page's last
        primary key, as a string; None for the first page)."""
        spec = self._spec(object_name)
        cols = spec.select(properties)
        records, nxt = await self._run(f"scanning {object_name}", rows.run_read, rows.scan,
                                       spec, cursor, cols, self.settings.batch_size)
        return Page(records=records, next_cursor=nxt)

    async def read(self, object_name: str, ids: Sequence[str],
                   properties: Sequence[str]) -> dict[str, Record]:
        spec = self._spec(object_name)
        return await self._run(f"reading {object_name}", rows.run_read, rows.read, spec,
                               list(ids), spec.select(properties))

    async def create(self, object_name: str,
                     inputs: Sequence[Mapping[str, Any]]) -> list[WriteResult]:
        """INSERT each input (its columns, plus the updated-at column set to now); each result
        carries the row as stored, with its new id. The primary key comes from SQLite for an
        INTEGER PRIMARY KEY or a column default, from the input when it gives one, else
        max + 1 (integer keys) or a random UUID (text keys). A UNIQUE violation fails the input
        with category `duplicate` and `existing_id` set to the row holding the value."""
        spec = self._spec(object_name)
        ops = rows.create_ops(spec, inputs, self._clock(), spec.columns)
        return await self._write(f"creating {object_name}", ops)

    async def update(self, object_name: str, inputs: Sequence[tuple[str, Mapping[str, Any]]],
                     expected: Sequence[Record | None] | None = None) -> list[WriteResult]:
        """UPDATE the given columns (and the updated-at column) of each row; a missing row
        fails with `not_found`. Empty changes write nothing and return the current row.

        With `expected[i]` (the row as read), the UPDATE's WHERE also requires each written
        column that `expected[i]` has to hold the value read (`IS`, so NULL compares too): a
        row the app changed meanwhile is left alone and the input fails as `stale`."""
        spec = self._spec(object_name)
        ops = rows.update_ops(spec, inputs, self._clock(), spec.columns, expected)
        return await self._write(f"updating {object_name}", ops)

    async def archive(self, object_name: str, ids: Sequence[str]) -> list[WriteResult]:
        """DELETE each row (a row already gone succeeds). A row other rows still reference
        through an enforced foreign key fails with `conflict`."""
        spec = self._spec(object_name)
        return await self._write(f"deleting {object_name}",
                                 rows.archive_ops(spec, ids, self._clock()), deleting=True)

    async def find(self, object_name: str, field: str, value: str,
                   properties: Sequence[str]) -> list[Record]:
        """Rows whose column `field` equals `value` — case-insensitively for text columns,
        numerically for numeric ones — in primary-key order.

        This is how a create whose link was never committed is healed: the INSERT carries the
        match key (the email column, say) and commits atomically with its change-log entry, so
        after a crash between that commit and the commit of the link, the runtime finds the row
        by its match key and links it instead of inserting a second one."""
        spec = self._spec(object_name)
        return await self._run(f"finding {object_name}", rows.run_read, rows.find, spec,
                               field, value, spec.select(properties))

    async def log_position(self) -> str:
        """The change log's end (its last seq), as a decimal string."""
        return str(await self._run("reading the change log", rows.run_read, changelog.log_end,
                                   self._log))

    async def written_then_changed(self, object_name: str, ids: Sequence[str],
                                   position: str) -> set[str]:
        """Rows crmsync updated after the change-log position `position` (its own entries,
        tagged in its write transactions) that someone else changed after that
        (connectors/base.py SupportsWriteEvidence)."""
        spec = self._spec(object_name)
        after = self._seq(position, "change-log position")
        return await self._run(f"reading the change log of {object_name}", rows.run_read,
                               changelog.written_then_changed, self._log, spec.object,
                               list(ids), after)

    async def changes_since(self, object_name: str, cursor: str | None,
                            properties: Sequence[str]) -> Changes:
        """Records whose rows changed after `cursor`, read from the trigger-filled change log.

        The cursor is the last change-log `seq` covered, as a decimal string. None returns no
        records and the log's current end (changes from now on). Several entries of one record
        collapse into one: its current row, or `Record(id, {}, archived=True)` when the row no
        longer exists. At most `batch_size` entries are read per call; `more=True` says the
        limit was hit. The returned cursor is to be committed together with the syncs of these
        records. Raises ConnectorError(kind="config") for a cursor beyond the log's end (the
        log was dropped or the database restored from a backup: changes may have been missed,
        so a reconciliation is due)."""
        spec = self._spec(object_name)
        return await self._run(f"reading changes of {object_name}", rows.run_read,
                               self._changes, spec, cursor, spec.select(properties))

    def _changes(self, conn: sqlite3.Connection, spec: TableSpec, cursor: str | None,
                 cols: Sequence[str]) -> Changes:
        end = changelog.log_end(conn, self._log)
        if cursor is None:
            return Changes(records=[], cursor=str(end))
        after = self._seq(cursor, "change-log cursor")
        if after > end:
            raise ConnectorError(
                "config", "not_found",
                f"change-log cursor {after} is beyond the end ({end}) of {self._log!r} in "
                f"{self.settings.database}: the log was reset or the database restored; "
                "changes may have been missed, reconcile this connection")
        entries, last, full = changelog.read_collapsed(conn, self._log, spec.object, after,
                                                       end, self.settings.batch_size)
        if self._suppress_echoes:
            entries = [e for e in entries if not e.own_only]
        current = rows.read(conn, spec, [e.record_id for e in entries], cols)
        records = [current.get(e.record_id)
                   or Record(e.record_id, {}, updated_at=e.last_at, archived=True)
                   for e in entries]
        # A page that did not hit the limit covered every entry of this object up to `end`.
        return Changes(records=records, cursor=str(last if full else end), more=full)

    @staticmethod
    def _seq(cursor: str, what: str) -> int:
        try:
            n = int(cursor)
        except ValueError:
            n = -1
        if n < 0:
            raise ConnectorError("config", "invalid_value", f"{what} {cursor!r} is not a "
                                 "sequence number")
        return n

    async def prune_changelog(self, through: str) -> int:
        """Delete change-log entries up to and including the cursor `through`, which must be
        the smallest cursor committed by every reader of this connection's log (each object
        sync reading it). Deletes in chunks of PRUNE_CHUNK rows, one transaction each, so the
        app's writers never wait long. Returns how many entries were deleted."""
        upto = self._seq(through, "prune cursor")
        total = 0
        while True:
            n: int = await self._run("pruning the change log", rows.run_write,
                                     changelog.prune, self._log, upto, PRUNE_CHUNK)
            total += n
            if n < PRUNE_CHUNK:
                return total

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
        return await self._run("reading pipelines", rows.run_read, relations.read_pipelines, p)

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
                               rows.run_read, relations.read_associations, a, forward,
                               list(ids))

    async def write_associations(self, from_object: str, to_object: str,
                                 changes: Sequence[AssociationChange]) -> list[WriteResult]:
        """Create or remove associations, one result per change, `batch_size` per transaction.
        Foreign key: creating sets the column (replacing a previous partner: a foreign key
        holds one), removing sets it NULL only while it still points at that partner; both
        set the row's updated-at column. Join table: the row is added once, or deleted.
        Creating fails (`association_failed`) when either record does not exist."""
        a, forward = self._association(from_object, to_object)
        ops = relations.association_ops(a, forward, changes,
                                        a.source.timestamps.format(self._clock()))
        return await self._write(f"writing {from_object} -> {to_object} associations", ops,
                                 category="association_failed")

    # --- SupportsEventSource --------------------------------------------------------------

    async def events_since(self, cursor: str | None, limit: int) -> tuple[list[AppEvent], str]:
        """Up to `limit` events from the events table after `cursor` (the last rowid read, as
        a decimal string; None: from the first event), and the cursor to commit once they are
        handled. Events are never deleted by crmsync; dedup by event id is the caller's."""
        e = self._require_open().events
        if e is None:
            raise ConnectorError("config", "not_found",
                                 f"connection {self.name!r} has no events table configured "
                                 "([connections.events])")
        after = 0 if cursor is None else self._seq(cursor, "event cursor")
        events, last = await self._run("reading events", rows.run_read, relations.read_events,
                                       e, after, max(1, limit))
        return events, str(last)
