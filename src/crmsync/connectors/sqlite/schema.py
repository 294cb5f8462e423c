"""What the connector learns about the app's tables when it opens, and how values cross over.

Each configured app object is resolved once, at open, into a `TableSpec`: its columns (the
configured list, or every column from `PRAGMA table_info`), how its primary key is typed, and
how the app writes its updated-at column. A schema change in the app is picked up on the next
open (the daemon restarts the connection's supervisor).
"""

from __future__ import annotations

import math
import re
import sqlite3
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Literal

from crmsync.config.model import SqliteTable
from crmsync.connectors.base import FieldInfo, ObjectInfo
from crmsync.connectors.sql_tables import (
    check_association,
    check_table,
    config_error,
    keys_of,
    quote_ident,
    select_columns,
)

Affinity = Literal["INTEGER", "TEXT", "BLOB", "REAL", "NUMERIC"]

# Epoch values at or above this are milliseconds: 1e11 seconds is the year 5138, while
# 1e11 milliseconds is 1973, so no real timestamp is ambiguous.
_MS_THRESHOLD = 1e11


def affinity(declared: str) -> Affinity:
    """SQLite's column affinity rules (https://sqlite.org/datatype3.html §3.1)."""
    d = declared.upper()
    if "INT" in d:
        return "INTEGER"
    if "CHAR" in d or "CLOB" in d or "TEXT" in d:
        return "TEXT"
    if not d or "BLOB" in d:
        return "BLOB"
    if "REAL" in d or "FLOA" in d or "DOUB" in d:
        return "REAL"
    return "NUMERIC"


def field_type(declared: str) -> str:
    """A FieldInfo type (string | number | bool | date | datetime) from a declared type."""
    d = declared.upper()
    if "BOOL" in d:
        return "bool"
    if "DATETIME" in d or "TIMESTAMP" in d:
        return "datetime"
    if "DATE" in d:
        return "date"
    if affinity(declared) in ("INTEGER", "REAL", "NUMERIC"):
        return "number"
    return "string"


# SQLite's integers are signed 64-bit (https://sqlite.org/datatype3.html §2): a Python int
# outside this range cannot even be bound as a parameter (OverflowError).
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def _int_key(s: str) -> int:
    n = int(s)
    if not INT64_MIN <= n <= INT64_MAX:
        raise ValueError(f"{s[:40]!r} is outside SQLite's 64-bit integers")
    return n


def key_converter(aff: Affinity) -> Any:
    """How a record id (always a string outside) becomes the primary key's stored value.

    Returns a function str -> value, raising ValueError for an id the column cannot hold
    (such an id names no row): for an integer key, text that is not an integer or an integer
    beyond SQLite's 64 bits."""
    if aff == "INTEGER":
        return _int_key
    if aff == "REAL":
        return float
    if aff == "TEXT":
        return str

    def untyped(s: str) -> Any:
        # Columns without a numeric or text affinity keep what was stored; ids we hand out are
        # str(value), so a canonical integer string came from an integer (and one beyond 64
        # bits can only have been stored as text).
        try:
            n = _int_key(s)
        except ValueError:
            return s
        return n if str(n) == s else s

    return untyped


def parse_timestamp(value: object) -> int:
    """Epoch milliseconds from an updated-at / occurred-at value; 0 when there is none.

    Accepts epoch seconds or milliseconds (numbers or numeric strings; >= 1e11 means
    milliseconds) and ISO 8601 text (`2024-05-01T12:00:00Z`, SQLite's `2024-05-01 12:00:00`,
    offsets, a bare date). Text without an offset is UTC, as SQLite's date functions write it.
    """
    if value is None or isinstance(value, bool):
        return 0
    if isinstance(value, int | float):
        return _epoch_ms(float(value))
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError:
            return 0
    if not isinstance(value, str):
        return 0
    s = value.strip()
    if not s:
        return 0
    try:
        return _epoch_ms(float(s))
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(s)
    except ValueError:
        return 0
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    try:
        return round(dt.timestamp() * 1000)
    except (OverflowError, OSError, ValueError):
        return 0


def _epoch_ms(v: float) -> int:
    if not math.isfinite(v):
        return 0
    return round(v) if abs(v) >= _MS_THRESHOLD else round(v * 1000)


@dataclass(frozen=True, slots=True)
class TimestampStyle:
    """How the app writes its updated-at column, so crmsync's writes look like the app's own.

    kind: "s" (integer epoch seconds), "ms" (integer epoch ms), "s_float" (real seconds) or
    "iso" (text: `sep` between date and time, `frac` for milliseconds, `suffix` "Z",
    "+00:00" or "").
    """

    kind: Literal["s", "ms", "s_float", "iso"] = "iso"
    sep: str = "T"
    frac: bool = True
    suffix: str = "Z"

    def format(self, epoch_seconds: float) -> int | float | str:
        if self.kind == "s":
            return int(epoch_seconds)
        if self.kind == "ms":
            return round(epoch_seconds * 1000)
        if self.kind == "s_float":
            return epoch_seconds
        dt = datetime.fromtimestamp(epoch_seconds, UTC)
        text = dt.strftime(f"%Y-%m-%d{self.sep}%H:%M:%S")
        if self.frac:
            text += f".{dt.microsecond // 1000:03d}"
        return text + self.suffix

    @classmethod
    def detect(cls, declared: str, sample: object) -> TimestampStyle:
        """From a value the app already wrote, else from the column's declared type."""
        if isinstance(sample, bool):
            sample = None
        if isinstance(sample, int):
            return cls("ms" if abs(sample) >= _MS_THRESHOLD else "s")
        if isinstance(sample, float):
            return cls("s_float")
        if isinstance(sample, str) and len(sample) >= 10:
            s = sample.strip()
            sep = " " if len(s) > 10 and s[10] == " " else "T"
            frac = bool(re.search(r"\d\d:\d\d:\d\d\.\d", s))
            if s.endswith(("Z", "z")):
                suffix = "Z"
            elif re.search(r"[+-]\d\d:?\d\d$", s[10:]):
                suffix = "+00:00"
            else:
                suffix = ""
            return cls("iso", sep, frac, suffix)
        aff = affinity(declared)
        if aff == "INTEGER":
            return cls("s")
        if aff == "REAL":
            return cls("s_float")
        return cls()


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    declared: str
    notnull: bool
    has_default: bool
    pk: bool
    generated: bool = False  # GENERATED ALWAYS AS: readable, never written


@dataclass(frozen=True, slots=True)
class TableSpec:
    """One app object, resolved against the database."""

    object: str
    table: str
    primary_key: str
    updated_at: str
    columns: tuple[str, ...]  # what crmsync reads and may write (the record's properties)
    all_columns: dict[str, Column]
    unique: frozenset[str]  # columns with a single-column unique constraint
    rowid_alias: bool  # INTEGER PRIMARY KEY: SQLite assigns new ids
    pk_affinity: Affinity
    timestamps: TimestampStyle
    pipeline_column: str = ""
    stage_column: str = ""
    # The change log whose identity table gives each row's incarnation ("": none, every
    # row reads as incarnation "0").
    log: str = ""

    def to_key(self, record_id: str) -> Any:
        """The stored primary-key value of a record id; ValueError if no row can have it."""
        return key_converter(self.pk_affinity)(record_id)

    def keys(self, ids: Sequence[str]) -> list[tuple[str, Any]]:
        """(id, stored key) pairs for the ids a row can have, duplicates dropped."""
        return keys_of(ids, self.to_key)

    def select(self, properties: Sequence[str]) -> tuple[str, ...]:
        """The columns to read for the requested properties (sql_tables.select_columns)."""
        return select_columns(self.columns, properties)

    def new_key(self, conn: sqlite3.Connection) -> Any:
        """A primary key for a create that gave none, when SQLite would not assign one.

        Integer keys that are not the rowid take max + 1 (the caller holds the write lock);
        others get a random UUID."""
        if self.pk_affinity == "INTEGER":
            row = conn.execute(f"SELECT max({quote_ident(self.primary_key)}) FROM "
                               f"{quote_ident(self.table)}").fetchone()
            return (row[0] or 0) + 1 if isinstance(row[0], int | None) else uuid.uuid4().hex
        return uuid.uuid4().hex

    def describe(self) -> ObjectInfo:
        fields = []
        for name in self.columns:
            col = self.all_columns[name]
            fields.append(FieldInfo(
                name=name,
                type=field_type(col.declared),
                read_only=name in (self.primary_key, self.updated_at) or col.generated,
                unique=name in self.unique,
            ))
        return ObjectInfo(name=self.object, fields=tuple(fields), updated_at_field=self.updated_at)


def table_exists(conn: sqlite3.Connection, table: str) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                        (table,)).fetchone() is not None


def table_columns(conn: sqlite3.Connection, table: str) -> dict[str, Column]:
    """The table's columns in order (hidden and generated columns included)."""
    rows = conn.execute(f"PRAGMA table_xinfo({quote_ident(table)})").fetchall()
    # table_xinfo: cid, name, type, notnull, dflt_value, pk, hidden (0 normal, 1 virtual-table
    # hidden, 2 / 3 generated).
    return {r[1]: Column(r[1], r[2] or "", bool(r[3]), r[4] is not None, bool(r[5]),
                         r[6] in (2, 3))
            for r in rows if r[6] != 1}


def _unique_columns(conn: sqlite3.Connection, table: str, cols: dict[str, Column]) -> set[str]:
    out: set[str] = set()
    pks = [c.name for c in cols.values() if c.pk]
    if len(pks) == 1:
        out.add(pks[0])
    for idx in conn.execute(f"PRAGMA index_list({quote_ident(table)})").fetchall():
        # seq, name, unique, origin, partial
        if not idx[2] or idx[4]:
            continue
        info = conn.execute(f"PRAGMA index_info({quote_ident(idx[1])})").fetchall()
        if len(info) == 1 and info[0][2] is not None:
            out.add(info[0][2])
    return out


def resolve_table(conn: sqlite3.Connection, t: SqliteTable) -> TableSpec:
    """Check a configured table against the database and resolve it.

    Raises ConnectorError(kind="config") naming the table or column that is missing, or a
    primary key that is not unique (paging by it would skip rows)."""
    where = f"app object {t.object!r} (table {t.table!r})"
    if not table_exists(conn, t.table):
        raise config_error(f"{where}: no such table in the app database")
    cols = table_columns(conn, t.table)
    unique = _unique_columns(conn, t.table, cols)
    check_table(where, t, cols, unique)
    pk = cols[t.primary_key]
    rowid_alias = (pk.pk and pk.declared.upper() == "INTEGER"
                   and sum(c.pk for c in cols.values()) == 1
                   and _has_rowid(conn, t.table))
    upd = cols[t.updated_at_column]
    sample = conn.execute(
        f"SELECT {quote_ident(upd.name)} FROM {quote_ident(t.table)} "
        f"WHERE {quote_ident(upd.name)} IS NOT NULL LIMIT 1").fetchone()
    return TableSpec(
        object=t.object,
        table=t.table,
        primary_key=t.primary_key,
        updated_at=t.updated_at_column,
        columns=tuple(t.columns) if t.columns else tuple(cols),
        all_columns=cols,
        unique=frozenset(unique),
        rowid_alias=rowid_alias,
        pk_affinity=affinity(pk.declared),
        timestamps=TimestampStyle.detect(upd.declared, sample[0] if sample else None),
        pipeline_column=t.pipeline_column,
        stage_column=t.stage_column,
    )


def _has_rowid(conn: sqlite3.Connection, table: str) -> bool:
    sql = conn.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?",
                       (table,)).fetchone()[0] or ""
    return re.search(r"\)\s*(?:STRICT\s*,\s*)?WITHOUT\s+ROWID", sql, re.IGNORECASE) is None


def to_sql_value(value: Any) -> Any:
    """A Python value as SQLite stores it; TypeError for what has no faithful column value."""
    if value is None or isinstance(value, str | float | bytes):
        return value
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        if not -(2**63) <= value < 2**63:
            raise TypeError("integer out of SQLite's 64-bit range")
        return value
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(f"a {type(value).__name__} cannot be stored in a column")


@dataclass(frozen=True, slots=True)
class Association:
    """A configured association, resolved: a foreign-key `column` on `source`'s table holding
    `target`'s primary key, or a `join_table` whose `from_column` holds `source`'s key and
    `to_column` holds `target`'s."""

    source: TableSpec
    target: TableSpec
    column: str = ""
    join_table: str = ""
    from_column: str = ""
    to_column: str = ""

    @property
    def is_join(self) -> bool:
        return bool(self.join_table)


def resolve_association(conn: sqlite3.Connection, specs: dict[str, TableSpec], source: str,
                        target: str, column: str, join_table: str, from_column: str,
                        to_column: str) -> Association:
    where = f"association {source!r} -> {target!r}"
    check_association(where, specs, source, target, column, join_table)
    if column:
        if column not in specs[source].all_columns:
            raise config_error(f"{where}: {column!r} is not a column of table "
                               f"{specs[source].table!r}")
        return Association(specs[source], specs[target], column=column)
    if not table_exists(conn, join_table):
        raise config_error(f"{where}: no such join table {join_table!r}")
    cols = table_columns(conn, join_table)
    for c in (from_column, to_column):
        if not c or c not in cols:
            raise config_error(f"{where}: {c!r} is not a column of join table {join_table!r}")
    return Association(specs[source], specs[target], join_table=join_table,
                       from_column=from_column, to_column=to_column)
