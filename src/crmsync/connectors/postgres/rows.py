"""Units of work on app rows, run in the connector's worker thread on its one connection.

Reads are one statement (or one transaction). Writes take one transaction per batch: the
batch's statements run pipelined inside a savepoint; when a statement fails because of its row
(a unique or check violation, a value its column's type refuses), the savepoint is rolled back
and the batch is bisected — each half in its own savepoint — until the failing inputs stand
alone and fail with a `RecordError` naming the column, while the others commit. A batch without
a bad input costs one savepoint; k bad inputs cost about 2·k·log2(batch) (PostgreSQL slows every
session down once a transaction holds more than 64 subtransactions, so not one per input).

Creates go further: a batch (and each half of a bisected one) is one multi-row INSERT rather
than a statement per row. PostgreSQL does not document the order of RETURNING rows, so the rows
are matched to their inputs by primary key: the batch first draws one key per input from the
key's own default (its identity sequence, serial sequence or default expression) and inserts
them explicitly. Where that cannot be done with certainty — an input giving its key, a key
without a default, a draw the role may not make, or an app trigger changing the keys — the
batch falls back to a statement per row.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec
import psycopg

from crmsync.connectors import sql_tables
from crmsync.connectors.base import ConnectorError, RecordError
from crmsync.connectors.postgres import capture
from crmsync.connectors.postgres.errors import is_row_error, row_category
from crmsync.connectors.postgres.schema import (
    TableSpec,
    param_sql,
    plain,
    to_param,
)
from crmsync.connectors.sql_tables import chunks, invalid, quote_ident, under_asked_ids
from crmsync.connectors.sqlite.schema import parse_timestamp
from crmsync.records import Record

# Keys per `= ANY(...)` array.
IN_CHUNK = 1000

Finish = Callable[[], Any]


class RowFailed(Exception):
    """Raised by a RowOp that decided its input fails, with the RecordError to report."""

    def __init__(self, error: RecordError) -> None:
        super().__init__(error.message)
        self.error = error


@dataclass
class RowOp:
    """One input's statements. `run(conn)` sends them and returns a function that gives the
    input's result (a Record, None or a RecordError) once the pipeline delivered it; `values`
    (column -> value sent) lets a failure be traced to its column."""

    run: Callable[[psycopg.Connection], Finish]
    spec: TableSpec | None = None
    values: dict[str, Any] = field(default_factory=dict)


# --- reading ------------------------------------------------------------------------------


def updated_ms(value: object) -> int:
    """Epoch milliseconds of an updated-at value of any type; 0 when there is none."""
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)  # crmsync's session runs in UTC
        return round(value.timestamp() * 1000)
    if isinstance(value, dt.date):
        return round(dt.datetime(value.year, value.month, value.day,
                                 tzinfo=dt.UTC).timestamp() * 1000)
    return parse_timestamp(value)


# The table's alias in reads and writes: ORDER BY a bare column name would pick an output
# column of the same name (the key as text, ordering 10 before 2), a qualified one never does;
# and the incarnation's subquery names the row through it.
ALIAS = "crmsync_row"


def born_sql(spec: TableSpec, table: str) -> str:
    """SQL for the incarnation of the current row of `table` (the table's alias or qualified
    name in the statement; see capture.py, "Identity")."""
    if not spec.log_schema:
        return "''"
    return capture.born_sql(spec.log_schema, spec.object,
                            f"{table}.{quote_ident(spec.primary_key)}::text")


def select_sql(spec: TableSpec, cols: Sequence[str]) -> str:
    exprs = [f"{quote_ident(spec.primary_key)}::text", quote_ident(spec.updated_at),
             born_sql(spec, ALIAS)]
    exprs += [spec.all_columns[c].select_sql() for c in cols]
    return f"SELECT {', '.join(exprs)} FROM {spec.qualified} AS {ALIAS}"


def to_record(cols: Sequence[str], row: Sequence[Any]) -> Record:
    """A row selected with `select_sql` (id, updated_at, incarnation, cols...) as a
    Record."""
    return Record(id=row[0], properties={c: plain(v) for c, v in zip(cols, row[3:], strict=True)},
                  updated_at=updated_ms(row[1]), incarnation=row[2])


def _key_param(spec: TableSpec) -> str:
    return f"%s::{spec.key.column.type_sql}"


def scan(conn: psycopg.Connection, spec: TableSpec, cursor: str | None, cols: Sequence[str],
         limit: int) -> tuple[list[Record], str | None]:
    """One page ordered by primary key, after the key `cursor`; the next cursor is the page's
    last key, None on the last page."""
    pk = f"{ALIAS}.{quote_ident(spec.primary_key)}"
    sql = select_sql(spec, cols)
    if cursor is None:
        rows = conn.execute(f"{sql} ORDER BY {pk} LIMIT %s", (limit + 1,)).fetchall()
    else:
        try:
            after = spec.key.to_key(cursor)
        except (ValueError, OverflowError):
            raise ConnectorError("config", "invalid_value",
                                 f"scan cursor {cursor!r} is not a key of {spec.object!r}"
                                 ) from None
        rows = conn.execute(f"{sql} WHERE {pk} > {_key_param(spec)} ORDER BY {pk} LIMIT %s",
                            (after, limit + 1)).fetchall()
    more = len(rows) > limit
    rows = rows[:limit]
    return [to_record(cols, r) for r in rows], (rows[-1][0] if more else None)


def read_keys(conn: psycopg.Connection, spec: TableSpec, keys: Sequence[str],
              cols: Sequence[str]) -> dict[str, Record]:
    """The rows with these keys (as text), by record id (the key's text form)."""
    out: dict[str, Record] = {}
    sql = select_sql(spec, cols)
    pk = quote_ident(spec.primary_key)
    for part in chunks(list(keys), IN_CHUNK):
        for row in conn.execute(f"{sql} WHERE {pk} = ANY({spec.key.array_sql()})",
                                (list(part),)):
            rec = to_record(cols, row)
            out[rec.id] = rec
    return out


def read(conn: psycopg.Connection, spec: TableSpec, ids: Sequence[str],
         cols: Sequence[str]) -> dict[str, Record]:
    keys = spec.keys(ids)
    return under_asked_ids(keys, read_keys(conn, spec, [k for _, k in keys], cols))


def find(conn: psycopg.Connection, spec: TableSpec, field_name: str, value: str,
         cols: Sequence[str]) -> list[Record]:
    """Rows whose `field_name` equals `value`: as the column's type for non-text columns,
    case-insensitively for text (`lower(col) = lower(value)`, which an index on lower(col)
    serves). The whole value is compared, not trimmed."""
    col = spec.all_columns.get(field_name)
    if col is None:
        raise ConnectorError("config", "not_found",
                             f"app object {spec.object!r} has no column {field_name!r}")
    q = quote_ident(field_name)
    sql = select_sql(spec, cols)
    order = f" ORDER BY {ALIAS}.{quote_ident(spec.primary_key)}"
    if col.category == "S":
        rows = conn.execute(f"{sql} WHERE lower({q}::text) = lower(%s){order}",
                            (value,)).fetchall()
    else:
        rows = conn.execute(f"{sql} WHERE {q}::text = %s::{col.type_sql}::text{order}",
                            (value,)).fetchall() if _castable(conn, col, value) else []
    return [to_record(cols, r) for r in rows]


def _castable(conn: psycopg.Connection, col: Any, value: str) -> bool:
    try:
        with conn.transaction():
            conn.execute(f"SELECT %s::{col.type_sql}", (value,))
    except psycopg.DataError:
        return False
    return True


# --- writing ------------------------------------------------------------------------------


# Several ops written by one statement: returns their results in order, or raises NoGroup
# (before or after writing: the caller rolls the savepoint back) when it cannot.
Group = Callable[[psycopg.Connection, Sequence[RowOp]], list[Any]]


class NoGroup(Exception):
    """These ops cannot be written by one statement with certainty: write them one by one."""


def write_batch(conn: psycopg.Connection, ops: Sequence[RowOp | RecordError], *,
                deleting: bool = False, category: str | None = None,
                finish: Callable[[psycopg.Connection, list[Any]], None] | None = None,
                group: Group | None = None) -> list[Any]:
    """Run `ops` in one transaction (see the module doc). Returns, per op, its result or the
    RecordError it failed with; an op given as a RecordError (refused before any SQL) is
    passed through. `group` writes several ops in one statement where it can. `finish(conn,
    results)` may complete the results in place, in the same transaction, once every op ran.
    Errors that are not about a row (connection lost, timeout, missing table) roll the whole
    batch back and propagate."""
    results: list[Any] = [op if isinstance(op, RecordError) else None for op in ops]
    todo = [i for i, op in enumerate(ops) if not isinstance(op, RecordError)]
    with conn.transaction():
        _attempt(conn, ops, todo, results, deleting, category, group)
        if finish is not None:
            finish(conn, results)
    return results


def fill_incarnations(spec: TableSpec, conn: psycopg.Connection, results: list[Any]) -> None:
    """Give the records of `results` (rows this transaction inserted) their incarnation, in
    one query: their insert trigger numbered them after the INSERT's RETURNING was computed
    (an AFTER trigger runs at the end of its statement), so RETURNING cannot show it.

    Each key is looked up by the whole primary key of the identity table (as `born_sql`
    does), which the planner always answers from the index. Not `object = %s AND record_id
    = ANY(...)`: the table starts empty when capture is installed and an initial sync's
    creates grow it faster than autovacuum analyzes it, and without statistics the planner
    takes `object = %s` for selective and scans every row of the object per batch (filtering
    by the array, linearly once the plan is a prepared one): creating 70,000 rows took 37 s
    instead of 4 s, the cost of a batch growing with the table (bench/README.md)."""
    if not spec.log_schema:
        return
    ids = [r.id for r in results if isinstance(r, Record)]
    if not ids:
        return
    born: dict[str, str] = {}
    for part in chunks(ids, IN_CHUNK):
        born.update(conn.execute(
            f"SELECT k.id, {capture.born_sql(spec.log_schema, spec.object, 'k.id')} "
            "FROM unnest(%s::text[]) AS k(id)", (list(part),)).fetchall())
    for i, r in enumerate(results):
        if isinstance(r, Record):
            results[i] = msgspec.structs.replace(r, incarnation=born.get(r.id, ""))


def _attempt(conn: psycopg.Connection, ops: Sequence[RowOp | RecordError], idx: list[int],
             results: list[Any], deleting: bool, category: str | None,
             group: Group | None = None) -> None:
    if not idx:
        return
    if group is not None and len(idx) > 1:
        try:
            with conn.transaction():
                out = group(conn, [_op(ops, i) for i in idx])
        except NoGroup:
            pass  # rolled back: one statement per op below
        except RowFailed:
            return _bisect(conn, ops, idx, results, deleting, category, group)
        except psycopg.Error as exc:
            if not is_row_error(exc):
                raise
            return _bisect(conn, ops, idx, results, deleting, category, group)
        else:
            for i, v in zip(idx, out, strict=True):
                results[i] = v
            return
    try:
        with conn.transaction():
            with conn.pipeline():
                finishers = [_op(ops, i).run(conn) for i in idx]
            out = [f() for f in finishers]
    except RowFailed as exc:
        if len(idx) == 1:
            results[idx[0]] = _recategorise(exc.error, category)
            return
    except psycopg.Error as exc:
        if not is_row_error(exc):
            raise
        if len(idx) == 1:
            err = diagnose(conn, _op(ops, idx[0]), exc, deleting)
            results[idx[0]] = _recategorise(err, category)
            return
    else:
        for i, v in zip(idx, out, strict=True):
            results[i] = v
        return
    _bisect(conn, ops, idx, results, deleting, category, group)


def _bisect(conn: psycopg.Connection, ops: Sequence[RowOp | RecordError], idx: list[int],
            results: list[Any], deleting: bool, category: str | None,
            group: Group | None) -> None:
    mid = len(idx) // 2
    _attempt(conn, ops, idx[:mid], results, deleting, category, group)
    _attempt(conn, ops, idx[mid:], results, deleting, category, group)


def _op(ops: Sequence[RowOp | RecordError], i: int) -> RowOp:
    op = ops[i]
    assert isinstance(op, RowOp)
    return op


def _recategorise(err: RecordError, category: str | None) -> RecordError:
    if category is None or err.category == category:
        return err
    return RecordError(category=category, message=err.message)


def _constraint_columns(conn: psycopg.Connection, spec: TableSpec | None,
                        name: str | None) -> list[str]:
    if spec is None or not name:
        return []
    return [r[0] for r in conn.execute(
        "SELECT a.attname FROM pg_constraint c "
        "JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = ANY(c.conkey) "
        "WHERE c.conrelid = %s AND c.conname = %s "
        "UNION SELECT a.attname FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid "
        "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) "
        "WHERE i.indrelid = %s AND ic.relname = %s",
        (spec.oid, name, spec.oid, name))]


def _bad_column(conn: psycopg.Connection, op: RowOp) -> str | None:
    """The first column whose value its type refuses (each tried alone, in a savepoint)."""
    if op.spec is None:
        return None
    for name, value in op.values.items():
        col = op.spec.all_columns.get(name)
        if col is None:
            continue
        try:
            with conn.transaction():
                conn.execute(f"SELECT {param_sql(col)}", (value,))
        except psycopg.Error as exc:
            if not is_row_error(exc):
                raise
            return name
    return None


def diagnose(conn: psycopg.Connection, op: RowOp, exc: psycopg.Error,
             deleting: bool = False) -> RecordError:
    """The RecordError of an input that failed alone, naming its column where PostgreSQL's
    error allows: the column of a NOT NULL, check, unique or foreign key constraint, or the
    value its column's type refuses."""
    state = exc.sqlstate or ""
    primary = exc.diag.message_primary or str(exc)
    detail = exc.diag.message_detail
    text = primary + (f" ({detail})" if detail else "")
    category = row_category(exc, deleting=deleting)
    if state == "23502" and exc.diag.column_name:
        return RecordError(category="missing_required_field",
                           message=f"column {exc.diag.column_name!r} must not be empty: {text}")
    if state.startswith("23"):
        cols = _constraint_columns(conn, op.spec, exc.diag.constraint_name)
        where = f"column {', '.join(repr(c) for c in cols)}: " if cols else ""
        existing = _existing_id(conn, op, cols) if state == "23505" else None
        return RecordError(category=category, message=where + text, existing_id=existing)
    bad = _bad_column(conn, op)
    if bad is not None:
        return RecordError(category=category, message=f"column {bad!r}: {text}")
    return RecordError(category=category, message=text)


def _existing_id(conn: psycopg.Connection, op: RowOp, cols: list[str]) -> str | None:
    """For a unique violation, the id of the row already holding the value."""
    spec = op.spec
    if spec is None or not cols or any(c not in op.values for c in cols):
        return None
    where = " AND ".join(f"{quote_ident(c)} = {param_sql(spec.all_columns[c])}" for c in cols)
    row = conn.execute(f"SELECT {quote_ident(spec.primary_key)}::text FROM {spec.qualified} "
                       f"WHERE {where} LIMIT 1", [op.values[c] for c in cols]).fetchone()
    return None if row is None else str(row[0])


def prepare(spec: TableSpec, values: Mapping[str, Any],
            record_id: str | None) -> dict[str, Any] | RecordError:
    """Check one input's columns and values before any SQL (sql_tables.prepare), as
    parameters (`to_param`)."""
    return sql_tables.prepare(spec, values, record_id,
                              lambda name, value: to_param(spec.all_columns[name], value))


def stamp_sql(spec: TableSpec, ms_sample: bool) -> str | None:
    """What crmsync writes into the updated-at column, in the column's own type; None when
    the column is the app's to fill (generated or identity)."""
    col = spec.all_columns[spec.updated_at]
    if col.generated:
        return None
    if col.category == "D":
        return "now()"
    if col.category == "N":
        return ("(extract(epoch FROM now()) * 1000)::bigint" if ms_sample
                else "extract(epoch FROM now())::bigint")
    return ("to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"
            f"::{col.type_sql}")


def _returning(spec: TableSpec, cols: Sequence[str]) -> str:
    """RETURNING the columns `to_record` reads. The incarnation is read in the statement's
    snapshot: right for an UPDATE (which never changes the key, so never the incarnation),
    not for an INSERT (see `fill_incarnations`)."""
    exprs = [f"{quote_ident(spec.primary_key)}::text", quote_ident(spec.updated_at),
             born_sql(spec, ALIAS)]
    exprs += [spec.all_columns[c].select_sql() for c in cols]
    return " RETURNING " + ", ".join(exprs)


def create_ops(spec: TableSpec, inputs: Sequence[Mapping[str, Any]], stamp: str | None,
               cols: Sequence[str]) -> list[RowOp | RecordError]:
    ops: list[RowOp | RecordError] = []
    for values in inputs:
        prepared = prepare(spec, values, None)
        if isinstance(prepared, RecordError):
            ops.append(prepared)
            continue
        names = [quote_ident(c) for c in prepared]
        marks = [param_sql(spec.all_columns[c]) for c in prepared]
        if stamp is not None and spec.updated_at not in prepared:
            names.append(quote_ident(spec.updated_at))
            marks.append(stamp)
        if names:
            sql = (f"INSERT INTO {spec.qualified} AS {ALIAS} ({', '.join(names)}) "
                   f"VALUES ({', '.join(marks)})")
        else:
            sql = f"INSERT INTO {spec.qualified} AS {ALIAS} DEFAULT VALUES"
        sql += _returning(spec, cols)
        params = list(prepared.values())

        def run(conn: psycopg.Connection, sql: str = sql, params: list[Any] = params) -> Finish:
            cur = conn.execute(sql, params)
            return lambda: to_record(cols, cur.fetchone())  # type: ignore[arg-type]

        ops.append(RowOp(run, spec, prepared))
    return ops


# Bound parameters per statement (the protocol's limit is 65535).
MAX_PARAMS = 30_000


def create_group(spec: TableSpec, stamp: str | None, cols: Sequence[str]) -> Group | None:
    """Writes several create ops (of `create_ops`) in one multi-row INSERT, matched to them
    by keys drawn beforehand (see the module doc); None when the key has no default to draw
    from."""
    if not spec.key_draw:
        return None
    pk = spec.primary_key
    key_col = spec.all_columns[pk]
    head = f"INSERT INTO {spec.qualified} AS {ALIAS} "
    override = " OVERRIDING SYSTEM VALUE" if spec.key_always else ""

    def group(conn: psycopg.Connection, ops: Sequence[RowOp]) -> list[Any]:
        names = list(dict.fromkeys(c for op in ops for c in op.values))
        if pk in names or len(ops) * (len(names) + 1) > MAX_PARAMS:
            raise NoGroup
        try:
            keys = [r[0] for r in conn.execute(
                f"SELECT ({spec.key_draw})::text FROM generate_series(1, %s)",
                (len(ops),))]
        except psycopg.Error as exc:
            # A draw the role may not make (or a default that cannot be evaluated alone).
            if conn.broken or not (exc.sqlstate or "").startswith(("42", "22", "0A")):
                raise
            raise NoGroup from None
        if len(set(keys)) != len(ops):
            raise NoGroup
        columns = [quote_ident(pk), *(quote_ident(c) for c in names)]
        if stamp is not None:
            columns.append(quote_ident(spec.updated_at))
        rows: list[str] = []
        params: list[Any] = []
        for key, op in zip(keys, ops, strict=True):
            cells = [param_sql(key_col)]
            params.append(key)
            for c in names:
                if c in op.values:
                    cells.append(param_sql(spec.all_columns[c]))
                    params.append(op.values[c])
                else:
                    cells.append("DEFAULT")
            if stamp is not None:
                cells.append(stamp)
            rows.append(f"({', '.join(cells)})")
        sql = (f"{head}({', '.join(columns)}){override} VALUES {', '.join(rows)}"
               + _returning(spec, cols))
        got = {r[0]: r for r in conn.execute(sql, params).fetchall()}
        if set(got) != set(keys):
            raise NoGroup  # an app trigger changed or dropped rows: keys prove nothing
        return [to_record(cols, got[k]) for k in keys]

    return group


def update_ops(spec: TableSpec, inputs: Sequence[tuple[str, Mapping[str, Any]]],
               stamp: str | None, cols: Sequence[str],
               expected: Sequence[Mapping[str, Any] | None] | None = None,
               incarnations: Sequence[str | None] | None = None
               ) -> list[RowOp | RecordError]:
    """One op per input. With `expected[i]` (column -> value), the update applies only while
    the row still holds those values, and with `incarnations[i]` only while the row is still
    that incarnation (not a later row given the same key); otherwise that input fails as
    `conflict` (retryable: re-read and decide again)."""
    pk = quote_ident(spec.primary_key)
    ops: list[RowOp | RecordError] = []
    for n, (record_id, changes) in enumerate(inputs):
        prepared = prepare(spec, changes, record_id)
        if isinstance(prepared, RecordError):
            ops.append(prepared)
            continue
        try:
            key = spec.key.to_key(record_id)
        except (ValueError, OverflowError):
            ops.append(_not_found(spec, record_id))
            continue
        want = expected[n] if expected is not None else None
        cond = _conditions(spec, want or {})
        if isinstance(cond, RecordError):
            ops.append(cond)
            continue
        conds, cond_params = cond
        born = incarnations[n] if incarnations is not None else None
        if born is not None and spec.log_schema:
            conds.append(f"{born_sql(spec, ALIAS)} = %s")
            cond_params.append(born)
        sets = [f"{quote_ident(c)} = {param_sql(spec.all_columns[c])}" for c in prepared]
        if stamp is not None and sets:
            sets.append(f"{quote_ident(spec.updated_at)} = {stamp}")
        where = " AND ".join([f"{pk} = {_key_param(spec)}", *conds])
        if sets:
            sql = (f"UPDATE {spec.qualified} AS {ALIAS} SET {', '.join(sets)} WHERE {where}"
                   + _returning(spec, cols))
        else:
            sql = select_sql(spec, cols) + f" WHERE {where}"
        params = [*prepared.values(), key, *cond_params]

        def run(conn: psycopg.Connection, sql: str = sql, params: list[Any] = params,
                record_id: str = record_id, key: str = key, conditional: bool = bool(conds)
                ) -> Finish:
            cur = conn.execute(sql, params)

            def finish() -> Any:
                row = cur.fetchone()
                if row is not None:
                    return msgspec.structs.replace(to_record(cols, row), id=record_id)
                if conditional and conn.execute(
                        f"SELECT 1 FROM {spec.qualified} WHERE {pk} = {_key_param(spec)}",
                        (key,)).fetchone() is not None:
                    return RecordError(category="conflict", retryable=True, stale=True,
                                       message=f"app object {spec.object!r} record "
                                               f"{record_id!r} changed since it was read")
                return _not_found(spec, record_id)

            return finish

        ops.append(RowOp(run, spec, prepared))
    return ops


def _conditions(spec: TableSpec, want: Mapping[str, Any]
                ) -> tuple[list[str], list[Any]] | RecordError:
    """`col IS NOT DISTINCT FROM value` for each expected value, with its parameters."""
    conds: list[str] = []
    params: list[Any] = []
    for name, value in want.items():
        col = spec.all_columns.get(name)
        if col is None:
            return invalid(f"app object {spec.object!r} has no column {name!r}")
        try:
            params.append(to_param(col, value))
        except TypeError as exc:
            return invalid(str(exc))
        if col.base_type == "json":  # json has no equality operator
            conds.append(f"{quote_ident(name)}::jsonb IS NOT DISTINCT FROM "
                         f"%s::{col.type_sql}::jsonb")
        else:
            conds.append(f"{quote_ident(name)} IS NOT DISTINCT FROM {param_sql(col)}")
    return conds, params


def archive_ops(spec: TableSpec, ids: Sequence[str], now_ms: int) -> list[RowOp | RecordError]:
    """DELETE each row. A row that is already gone counts as archived (the state wanted)."""
    pk = quote_ident(spec.primary_key)
    ops: list[RowOp | RecordError] = []
    for record_id in ids:
        gone = Record(record_id, {}, updated_at=now_ms, archived=True)
        try:
            key: str | None = spec.key.to_key(record_id)
        except (ValueError, OverflowError):
            key = None  # no row can have this id: nothing to delete

        def run(conn: psycopg.Connection, key: str | None = key, gone: Record = gone) -> Finish:
            if key is not None:
                conn.execute(f"DELETE FROM {spec.qualified} WHERE {pk} = {_key_param(spec)}",
                             (key,))
            return lambda: gone

        ops.append(RowOp(run, spec))
    return ops


def _not_found(spec: TableSpec, record_id: str) -> RecordError:
    return RecordError(category="not_found",
                       message=f"app object {spec.object!r} has no record {record_id!r}")
