"""Units of work on app rows: each function runs in the connector's thread, inside one
transaction (reads) or as one batch transaction with a savepoint per input (writes).

One bad input — a UNIQUE or NOT NULL violation, a CHECK, an app trigger's RAISE — rolls back
to its own savepoint and becomes a `RecordError` for that input; the rest of the batch commits.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import msgspec

from crmsync.connectors import sql_tables
from crmsync.connectors.base import ConnectorError, RecordError
from crmsync.connectors.sql_tables import chunks, quote_ident, under_asked_ids
from crmsync.connectors.sqlite import changelog
from crmsync.connectors.sqlite.errors import is_row_error, row_error
from crmsync.connectors.sqlite.schema import (
    TableSpec,
    affinity,
    parse_timestamp,
    to_sql_value,
)
from crmsync.records import Record

T = TypeVar("T")

# One input's statements; returns its result (a Record, None), or a RecordError it decided on
# without failing a statement, or raises RowFailed / a row-level sqlite3 error.
RowOp = Callable[[sqlite3.Connection], Any]


class RowFailed(Exception):
    """Raised by a RowOp whose statement failed, with the RecordError to report."""

    def __init__(self, error: RecordError) -> None:
        super().__init__(error.message)
        self.error = error

# Bound parameters per `IN (...)` (SQLite allows 32766; small chunks keep statements cheap).
IN_CHUNK = 500

CASEFOLD_FUNCTION = "crmsync_casefold"


def run_read(conn: sqlite3.Connection, fn: Callable[..., T], *args: Any) -> T:
    """`fn(conn, *args)` in one read transaction (one consistent snapshot)."""
    conn.execute("BEGIN")
    try:
        result = fn(conn, *args)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return result


def run_write(conn: sqlite3.Connection, fn: Callable[..., T], *args: Any) -> T:
    """`fn(conn, *args)` in one `BEGIN IMMEDIATE` transaction, rolled back if it raises."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = fn(conn, *args)
        # Inside the try: a COMMIT refused as busy (rollback-journal mode) leaves the
        # transaction open, and it must not stay so.
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return result


def write_batch(conn: sqlite3.Connection, log: str, ops: Sequence[RowOp | RecordError],
                *, deleting: bool = False, category: str | None = None) -> list[Any]:
    """Run `ops` in one write transaction, each in its own savepoint.

    Returns, per op, its result or the RecordError it failed with. An op given as a
    RecordError (refused before any SQL) is passed through. Errors that are not about the row
    (locked, disk full, schema gone) roll the whole batch back and propagate.

    The change-log entries the batch appends are tagged as crmsync's own before COMMIT.
    An app trigger may end the whole transaction (`RAISE(ROLLBACK, ...)`): that input fails
    and the batch is run again without it, so the others are not lost.
    """
    refused: dict[int, RecordError] = {i: op for i, op in enumerate(ops)
                                       if isinstance(op, RecordError)}
    while True:
        conn.execute("BEGIN IMMEDIATE")
        try:
            before = changelog.log_end(conn, log)
            results: list[Any] = []
            lost = False
            for i, op in enumerate(ops):
                if i in refused:
                    results.append(refused[i])
                    continue
                assert not isinstance(op, RecordError)
                conn.execute("SAVEPOINT crmsync_row")
                try:
                    value = op(conn)
                except Exception as exc:
                    if isinstance(exc, RowFailed):
                        err = exc.error
                    elif is_row_error(exc):
                        err = row_error(exc, deleting=deleting)
                    else:
                        raise
                    if category is not None:
                        err = RecordError(category=category, message=err.message)
                    if not conn.in_transaction:
                        refused[i] = err
                        lost = True
                        break
                    conn.execute("ROLLBACK TO crmsync_row")
                    conn.execute("RELEASE crmsync_row")
                    results.append(err)
                else:
                    if isinstance(value, RecordError):
                        conn.execute("ROLLBACK TO crmsync_row")
                    conn.execute("RELEASE crmsync_row")
                    results.append(value)
            if lost:
                continue
            changelog.mark_own(conn, log, before)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return results


# --- reading ------------------------------------------------------------------------------


def _born(spec: TableSpec) -> str:
    """SQL for the incarnation of the table's current row (see changelog.py)."""
    if not spec.log:
        return "0"
    t = quote_ident(spec.table)
    return changelog.born_sql(spec.log, spec.object, f"{t}.{quote_ident(spec.primary_key)}")


def _select_sql(spec: TableSpec, cols: Sequence[str]) -> str:
    t = quote_ident(spec.table)
    names = ", ".join(f"{t}.{quote_ident(c)}" for c in (spec.primary_key, spec.updated_at))
    names += f", {_born(spec)}"
    names += "".join(f", {t}.{quote_ident(c)}" for c in cols)
    return f"SELECT {names} FROM {t}"


def to_record(cols: Sequence[str], row: Sequence[Any]) -> Record:
    """A row selected with `_select_sql` (pk, updated_at, incarnation, cols...) as a
    Record."""
    return Record(id=str(row[0]), properties=dict(zip(cols, row[3:], strict=True)),
                  updated_at=parse_timestamp(row[1]), incarnation=str(row[2]))


def scan(conn: sqlite3.Connection, spec: TableSpec, cursor: str | None, cols: Sequence[str],
         limit: int) -> tuple[list[Record], str | None]:
    """One page ordered by primary key, after the key `cursor`; the next cursor is the page's
    last key, None on the last page."""
    pk = quote_ident(spec.primary_key)
    sql = _select_sql(spec, cols)
    if cursor is None:
        rows = conn.execute(f"{sql} ORDER BY {pk} LIMIT ?", (limit + 1,)).fetchall()
    else:
        try:
            after = spec.to_key(cursor)
        except (ValueError, OverflowError):
            raise ConnectorError("config", "invalid_value",
                                 f"scan cursor {cursor!r} is not a key of {spec.object!r}") from None
        rows = conn.execute(f"{sql} WHERE {pk} > ? ORDER BY {pk} LIMIT ?",
                            (after, limit + 1)).fetchall()
    more = len(rows) > limit
    rows = rows[:limit]
    return [to_record(cols, r) for r in rows], (str(rows[-1][0]) if more else None)


def read_keys(conn: sqlite3.Connection, spec: TableSpec, keys: Sequence[Any],
              cols: Sequence[str]) -> dict[str, Record]:
    """The rows with these stored keys, by record id."""
    out: dict[str, Record] = {}
    sql = _select_sql(spec, cols)
    for part in chunks(list(keys), IN_CHUNK):
        marks = ",".join("?" * len(part))
        for row in conn.execute(f"{sql} WHERE {quote_ident(spec.primary_key)} IN ({marks})",
                                part):
            rec = to_record(cols, row)
            out[rec.id] = rec
    return out


def read(conn: sqlite3.Connection, spec: TableSpec, ids: Sequence[str],
         cols: Sequence[str]) -> dict[str, Record]:
    keys = spec.keys(ids)
    return under_asked_ids(keys, read_keys(conn, spec, [k for _, k in keys], cols))


def casefold(value: object) -> str | None:
    return value.casefold() if isinstance(value, str) else None


def find(conn: sqlite3.Connection, spec: TableSpec, field: str, value: str,
         cols: Sequence[str]) -> list[Record]:
    """Rows whose `field` equals `value`: numerically for numeric columns, case-insensitively
    for text (ASCII through the NOCASE collation, which can use an index; other text through
    Python's casefold over the table). The whole value is compared, not trimmed."""
    col = spec.all_columns.get(field)
    if col is None:
        raise ConnectorError("config", "not_found",
                             f"app object {spec.object!r} has no column {field!r}")
    q = quote_ident(field)
    sql = _select_sql(spec, cols)
    order = f" ORDER BY {quote_ident(spec.primary_key)}"
    if affinity(col.declared) in ("INTEGER", "REAL", "NUMERIC"):
        rows = conn.execute(f"{sql} WHERE {q} = ?{order}", (value,)).fetchall()
    elif value.isascii():
        rows = conn.execute(f"{sql} WHERE {q} = ? COLLATE NOCASE{order}", (value,)).fetchall()
    else:
        rows = conn.execute(f"{sql} WHERE {CASEFOLD_FUNCTION}({q}) = ?{order}",
                            (value.casefold(),)).fetchall()
    return [to_record(cols, r) for r in rows]


# --- writing ------------------------------------------------------------------------------


def _prepare(spec: TableSpec, values: Mapping[str, Any],
             record_id: str | None) -> dict[str, Any] | RecordError:
    """Check one input's columns and values before any SQL (sql_tables.prepare)."""
    return sql_tables.prepare(spec, values, record_id, _stored_value)


def _stored_value(name: str, value: Any) -> Any:
    try:
        return to_sql_value(value)
    except TypeError as exc:
        raise TypeError(f"column {name!r}: {exc}") from None


def _existing_id(conn: sqlite3.Connection, spec: TableSpec, exc: sqlite3.Error,
                 values: Mapping[str, Any]) -> str | None:
    """For a UNIQUE violation, the id of the row already holding the value."""
    msg = str(exc)
    if "constraint failed:" not in msg:
        return None
    cols = []
    for part in msg.split("constraint failed:", 1)[1].split(","):
        table, _, col = part.strip().rpartition(".")
        if table != spec.table or col not in values:
            return None
        cols.append(col)
    where = " AND ".join(f"{quote_ident(c)} = ?" for c in cols)
    args = [values[c] for c in cols]
    pk, t = quote_ident(spec.primary_key), quote_ident(spec.table)
    row = conn.execute(f"SELECT {pk} FROM {t} WHERE {where} LIMIT 1", args).fetchone()
    if row is None and cols:
        where = " AND ".join(f"{quote_ident(c)} = ? COLLATE NOCASE" for c in cols)
        row = conn.execute(f"SELECT {pk} FROM {t} WHERE {where} LIMIT 1", args).fetchone()
    return str(row[0]) if row else None


def _duplicate(conn: sqlite3.Connection, spec: TableSpec, exc: sqlite3.IntegrityError,
               values: Mapping[str, Any]) -> RowFailed | None:
    """A UNIQUE violation as `duplicate` naming the row that holds the value; None for other
    constraint errors (the batch classifies them)."""
    if getattr(exc, "sqlite_errorname", "") not in ("SQLITE_CONSTRAINT_UNIQUE",
                                                    "SQLITE_CONSTRAINT_PRIMARYKEY"):
        return None
    return RowFailed(RecordError(category="duplicate", message=str(exc),
                                 existing_id=_existing_id(conn, spec, exc, values)))


def create_ops(spec: TableSpec, inputs: Sequence[Mapping[str, Any]], now: float,
               cols: Sequence[str]) -> list[RowOp | RecordError]:
    stamp = spec.timestamps.format(now)
    pk_col = spec.all_columns[spec.primary_key]
    t = quote_ident(spec.table)
    ops: list[RowOp | RecordError] = []
    for values in inputs:
        prepared = _prepare(spec, values, None)
        if isinstance(prepared, RecordError):
            ops.append(prepared)
            continue

        def op(conn: sqlite3.Connection, vals: dict[str, Any] = prepared) -> Any:
            row = {**vals, spec.updated_at: stamp}
            if (spec.primary_key not in row and not spec.rowid_alias
                    and not pk_col.has_default):
                row[spec.primary_key] = spec.new_key(conn)
            names = ", ".join(quote_ident(c) for c in row)
            marks = ", ".join("?" * len(row))
            try:
                key = conn.execute(
                    f"INSERT INTO {t} ({names}) VALUES ({marks}) "
                    f"RETURNING {quote_ident(spec.primary_key)}", list(row.values())
                ).fetchall()[0][0]
            except sqlite3.IntegrityError as exc:
                dup = _duplicate(conn, spec, exc, row)
                if dup is None:
                    raise
                raise dup from exc
            # Read back (rather than RETURNING *) so the app's own AFTER triggers show.
            return read_keys(conn, spec, [key], cols)[str(key)]

        ops.append(op)
    return ops


def update_ops(spec: TableSpec, inputs: Sequence[tuple[str, Mapping[str, Any]]], now: float,
               cols: Sequence[str],
               expected: Sequence[Record | None] | None = None) -> list[RowOp | RecordError]:
    stamp = spec.timestamps.format(now)
    t, pk = quote_ident(spec.table), quote_ident(spec.primary_key)
    ops: list[RowOp | RecordError] = []
    for i, (record_id, changes) in enumerate(inputs):
        prepared = _prepare(spec, changes, record_id)
        if isinstance(prepared, RecordError):
            ops.append(prepared)
            continue
        try:
            key = spec.to_key(record_id)
        except (ValueError, OverflowError):
            ops.append(_not_found(spec, record_id))
            continue
        read = expected[i] if expected is not None else None
        # The values the decision read, for the columns it writes: the UPDATE applies only
        # while the row still holds them.
        held = ({c: read.properties[c] for c in prepared if c in read.properties}
                if read is not None else {})
        try:
            held = {c: to_sql_value(v) for c, v in held.items()}
        except TypeError:
            held = {}
        # The same record, not a later one given its id.
        born = (int(read.incarnation) if read is not None and read.incarnation.isdigit()
                and spec.log else None)

        def op(conn: sqlite3.Connection, vals: dict[str, Any] = prepared, key: Any = key,
               record_id: str = record_id, held: dict[str, Any] = held,
               born: int | None = born) -> Any:
            if vals:
                row = {**vals, spec.updated_at: stamp}
                sets = ", ".join(f"{quote_ident(c)} = ?" for c in row)
                where = "".join(f" AND {quote_ident(c)} IS ?" for c in held)
                args = [*row.values(), key, *held.values()]
                if born is not None:
                    where += f" AND {_born(spec)} = ?"
                    args.append(born)
                try:
                    n = conn.execute(f"UPDATE {t} SET {sets} WHERE {pk} = ?{where}",
                                     args).rowcount
                except sqlite3.IntegrityError as exc:
                    dup = _duplicate(conn, spec, exc, row)
                    if dup is None:
                        raise
                    raise dup from exc
                if n == 0:
                    if ((held or born is not None)
                            and read_keys(conn, spec, [key], ()).get(str(key)) is not None):
                        return _stale(spec, record_id)
                    return _not_found(spec, record_id)
            rec = read_keys(conn, spec, [key], cols).get(str(key))
            if rec is None:
                return _not_found(spec, record_id)
            return msgspec.structs.replace(rec, id=record_id)

        ops.append(op)
    return ops


def archive_ops(spec: TableSpec, ids: Sequence[str], now: float) -> list[RowOp | RecordError]:
    """DELETE each row. A row that is already gone counts as archived (the state wanted)."""
    t, pk = quote_ident(spec.table), quote_ident(spec.primary_key)
    ms = round(now * 1000)
    ops: list[RowOp | RecordError] = []
    for record_id in ids:
        gone = Record(record_id, {}, updated_at=ms, archived=True)
        try:
            key = spec.to_key(record_id)
        except (ValueError, OverflowError):
            key = None  # no row can have this id: nothing to delete

        def op(conn: sqlite3.Connection, key: Any = key, gone: Record = gone) -> Any:
            if key is not None:
                conn.execute(f"DELETE FROM {t} WHERE {pk} = ?", (key,))
            return gone

        ops.append(op)
    return ops


def _stale(spec: TableSpec, record_id: str) -> RecordError:
    return RecordError(category="conflict", stale=True,
                       message=f"app object {spec.object!r} record {record_id!r} changed since "
                               "it was read; not written")


def _not_found(spec: TableSpec, record_id: str) -> RecordError:
    return RecordError(category="not_found",
                       message=f"app object {spec.object!r} has no record {record_id!r}")
