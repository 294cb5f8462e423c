"""What the connector learns about the app's tables when it opens, and how values cross over.

Each configured app object is resolved once, at open, from the catalogs into a `TableSpec`:
its columns with their types, how its primary key is typed, its single-column unique
constraints. A schema change in the app is picked up on the next open (the daemon restarts the
connection's supervisor after a failure; `crmsync ctl reload` restarts it on demand).

**Values read.** Record ids are the key's PostgreSQL text form (`id::text`), whatever its type
(bigint, uuid, text...). Values are plain: text, enums, uuids, numerics and json as text
(numerics keep every digit), integers, floats and booleans as such, arrays as lists of text
(a multi-select), dates and timestamps as ISO 8601 text (timestamps in UTC).

**Values written.** Every value is cast to its column's type in SQL (`%s::type`), so
PostgreSQL's own input functions read it: text into an enum, a date or a numeric column works,
and a value the type refuses fails that input as `invalid_value` naming the column. A text
value written to an array column is split on ";" (HubSpot's multi-select separator).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import psycopg

from crmsync.config.model import AppTable
from crmsync.connectors.base import ConnectorError, FieldInfo, ObjectInfo

# Type categories (pg_type.typcategory) read without a text cast.
_RAW_CATEGORIES = frozenset({"B", "D"})  # booleans, dates/times
_RAW_TYPES = frozenset({"smallint", "integer", "bigint", "real", "double precision"})
_INT_TYPES = {"smallint": 2**15, "integer": 2**31, "bigint": 2**63}
_TEXT_TYPES = frozenset({"text", "character varying", "character", "name", "citext"})
# Columns left out of "every column" unless listed: values no CRM field holds.
_SKIPPED_BY_DEFAULT = frozenset({"json", "jsonb", "bytea", "tsvector", "xml"})
# The separator of a multi-select written to an array column as text.
ARRAY_SEPARATOR = ";"


def quote_ident(name: str) -> str:
    """An SQL identifier, quoted so that any table or column name is safe."""
    return '"' + name.replace('"', '""') + '"'


def quote_text(value: str) -> str:
    """An SQL string literal (for DDL and function bodies, which take no parameters)."""
    return "'" + value.replace("'", "''") + "'"


def qualified(schema: str, table: str) -> str:
    return f"{quote_ident(schema)}.{quote_ident(table)}"


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    type_sql: str  # format_type(): what a value is cast to
    base_type: str  # the type without modifiers, e.g. "character varying", "integer"
    category: str  # pg_type.typcategory: A array, B bool, D date/time, E enum, N numeric, S string
    notnull: bool
    has_default: bool  # a DEFAULT, an identity or a serial: may be left out of an INSERT
    generated: bool  # GENERATED ALWAYS AS (...) STORED, or GENERATED ALWAYS AS IDENTITY
    options: tuple[str, ...] = ()  # enum labels, in their order

    @property
    def is_array(self) -> bool:
        return self.category == "A"

    def select_sql(self) -> str:
        """The expression that reads this column as a plain value."""
        q = quote_ident(self.name)
        if self.is_array:
            return f"{q}::text[]"
        if self.category in _RAW_CATEGORIES or self.base_type in _RAW_TYPES:
            return q
        return f"{q}::text"

    def field_type(self) -> str:
        if self.category == "B":
            return "bool"
        if self.category == "N":
            return "number"
        if self.category == "E":
            return "enumeration"
        if self.base_type == "date":
            return "date"
        if self.category == "D" and self.base_type.startswith("timestamp"):
            return "datetime"
        return "string"


def plain(value: Any) -> Any:
    """A value as psycopg loaded it, made plain (see the module doc)."""
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC)
        return value.isoformat()
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return str(value)
    return value


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, dt.date | dt.datetime | dt.time):
        return value.isoformat()
    if isinstance(value, str | int | uuid.UUID | Decimal):
        text = str(value)
    else:
        raise TypeError(f"a {type(value).__name__} cannot be stored in a column")
    if "\x00" in text:
        raise TypeError("PostgreSQL text cannot hold a NUL character")
    return text


def to_param(col: Column, value: Any) -> str | list[str | None] | None:
    """A value as it is sent for `col`: its text (or a list of texts for an array column),
    which `param_sql` casts to the column's type. Raises TypeError naming the column for what
    has no faithful column value."""
    try:
        if value is None:
            return None
        if col.is_array:
            if isinstance(value, str):
                return [p.strip() for p in value.split(ARRAY_SEPARATOR) if p.strip()]
            if isinstance(value, list | tuple):
                return [None if v is None else _text(v) for v in value]
        elif isinstance(value, list | tuple):
            raise TypeError(f"a list cannot be stored in a {col.type_sql} column")
        return _text(value)
    except TypeError as exc:
        raise TypeError(f"column {col.name!r}: {exc}") from None


def param_sql(col: Column) -> str:
    """The placeholder for a value of `col`: text read by the column type's input function."""
    return f"%s::{col.type_sql}"


@dataclass(frozen=True, slots=True)
class KeyType:
    """How a record id (a string outside) becomes the primary key's value."""

    column: Column

    def to_key(self, record_id: str) -> str:
        """The id as the key's text form; ValueError if no row can have it (so it names no
        row and needs no query)."""
        base = self.column.base_type
        if base in _INT_TYPES:
            n = int(record_id)
            if str(n) != record_id.strip() or not -_INT_TYPES[base] <= n < _INT_TYPES[base]:
                raise ValueError(record_id)
            return str(n)
        if base == "uuid":
            return str(uuid.UUID(record_id))
        return record_id

    def array_sql(self) -> str:
        """A placeholder for a list of keys (as text), cast to the key's array type."""
        return f"%s::text[]::{self.column.type_sql}[]"


@dataclass(frozen=True, slots=True)
class TableSpec:
    """One app object, resolved against the database."""

    object: str
    schema: str
    table: str
    oid: int
    primary_key: str
    updated_at: str
    columns: tuple[str, ...]  # what crmsync reads and may write (the record's properties)
    all_columns: dict[str, Column]
    unique: frozenset[str]  # columns with a single-column unique constraint or index
    key: KeyType
    pipeline_column: str = ""
    stage_column: str = ""
    # crmsync's schema, whose identity table gives each row's incarnation (capture.py);
    # "": none, every row reads incarnation "".
    log_schema: str = ""
    # An SQL expression drawing a new key as the key's own default would (its identity or
    # serial sequence, or its default expression; "": none crmsync may use), and whether an
    # explicit key needs OVERRIDING SYSTEM VALUE (GENERATED ALWAYS AS IDENTITY): how a
    # multi-row create knows which returned row is which input (rows.create_group).
    key_draw: str = ""
    key_always: bool = False

    @property
    def qualified(self) -> str:
        return qualified(self.schema, self.table)

    def keys(self, ids: Sequence[str]) -> list[tuple[str, str]]:
        """(id, key text) pairs for the ids a row can have, duplicates dropped."""
        out: list[tuple[str, str]] = []
        seen: set[str] = set()
        for i in ids:
            if i in seen:
                continue
            seen.add(i)
            try:
                out.append((i, self.key.to_key(i)))
            except (ValueError, OverflowError):
                continue
        return out

    def select(self, properties: Sequence[str]) -> tuple[str, ...]:
        """The columns to read for the requested properties (all configured ones when empty);
        names that are not columns are ignored, as HubSpot ignores unknown properties."""
        if not properties:
            return self.columns
        wanted = set(properties)
        return tuple(c for c in self.columns if c in wanted)

    def describe(self) -> ObjectInfo:
        fields = []
        for name in self.columns:
            col = self.all_columns[name]
            fields.append(FieldInfo(
                name=name,
                type=col.field_type(),
                read_only=name in (self.primary_key, self.updated_at) or col.generated,
                unique=name in self.unique,
                options=col.options,
            ))
        return ObjectInfo(name=self.object, fields=tuple(fields), updated_at_field=self.updated_at)


def _config_error(message: str, category: str = "not_found") -> ConnectorError:
    return ConnectorError("config", category, message)


def table_oid(conn: psycopg.Connection, schema: str, table: str) -> int | None:
    """The table's oid, or None when the schema has no such table (views are not tables:
    crmsync's triggers need a table or a partitioned table)."""
    row = conn.execute(
        "SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relname = %s AND c.relkind IN ('r', 'p')",
        (schema, table)).fetchone()
    return None if row is None else int(row[0])


def table_columns(conn: psycopg.Connection, oid: int) -> dict[str, Column]:
    """The table's columns in order, dropped ones left out."""
    rows = conn.execute(
        """
        SELECT a.attname, format_type(a.atttypid, a.atttypmod),
               format_type(a.atttypid, NULL), t.typcategory, a.attnotnull,
               a.atthasdef OR a.attidentity <> '', a.attgenerated <> '' OR a.attidentity = 'a',
               CASE WHEN t.typtype = 'e' THEN ARRAY(
                   SELECT e.enumlabel::text FROM pg_enum e WHERE e.enumtypid = t.oid
                   ORDER BY e.enumsortorder) END
        FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
        WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped
        ORDER BY a.attnum
        """, (oid,)).fetchall()
    return {r[0]: Column(r[0], r[1], r[2], r[3], r[4], r[5], r[6], tuple(r[7] or ()))
            for r in rows}


def unique_columns(conn: psycopg.Connection, oid: int) -> set[str]:
    """Columns with a unique, non-partial, single-column index (the primary key included)."""
    rows = conn.execute(
        """
        SELECT a.attname FROM pg_index i
        JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
        WHERE i.indrelid = %s AND i.indisunique AND i.indnkeyatts = 1
          AND i.indpred IS NULL AND i.indexprs IS NULL
        """, (oid,)).fetchall()
    return {r[0] for r in rows}


def key_default(conn: psycopg.Connection, oid: int, column: str) -> tuple[str, bool]:
    """(key_draw, key_always) of TableSpec for the key `column` of the table `oid`."""
    row = conn.execute(
        """
        SELECT a.attidentity, a.attgenerated,
               pg_get_serial_sequence(a.attrelid::regclass::text, a.attname),
               pg_get_expr(d.adbin, d.adrelid)
        FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid
             AND d.adnum = a.attnum
        WHERE a.attrelid = %s AND a.attname = %s
        """, (oid, column)).fetchone()
    if row is None or row[1]:
        return "", False  # a generated key cannot be given explicitly
    identity, _, sequence, default = row
    if sequence is not None:
        # Drawing from an identity column's sequence needs USAGE on it (the INSERT itself
        # does not); without it creates go a statement per row.
        usable = conn.execute("SELECT has_sequence_privilege(%s, 'USAGE')",
                              (sequence,)).fetchone()
        if not (usable and usable[0]):
            return "", False
        return f"nextval({quote_text(sequence)})", identity == "a"
    if default is not None:
        return f"({default})", False
    return "", False


def resolve_table(conn: psycopg.Connection, schema: str, t: AppTable,
                  log_schema: str = "") -> TableSpec:
    """Check a configured table against the database and resolve it (`log_schema`: crmsync's
    schema, see TableSpec).

    Raises ConnectorError(kind="config") naming the table or column that is missing, or a
    primary key that is not unique (paging by it would skip rows)."""
    where = f"app object {t.object!r} (table {schema}.{t.table})"
    oid = table_oid(conn, schema, t.table)
    if oid is None:
        raise _config_error(f"{where}: no such table in the app database")
    cols = table_columns(conn, oid)
    for label, name in (("primary_key", t.primary_key), ("updated_at_column", t.updated_at_column),
                        ("pipeline_column", t.pipeline_column), ("stage_column", t.stage_column)):
        if name and name not in cols:
            raise _config_error(f"{where}: {label} {name!r} is not a column of the table")
    missing = [c for c in t.columns if c not in cols]
    if missing:
        raise _config_error(f"{where}: no such column(s): {', '.join(missing)}")
    unique = unique_columns(conn, oid)
    if t.primary_key not in unique:
        raise _config_error(f"{where}: primary_key {t.primary_key!r} is neither the table's "
                            "primary key nor a column with a unique index", "invalid_value")
    if t.columns:
        columns = tuple(t.columns)
    else:
        columns = tuple(n for n, c in cols.items()
                        if c.base_type not in _SKIPPED_BY_DEFAULT
                        or n in (t.pipeline_column, t.stage_column))
    draw, always = key_default(conn, oid, t.primary_key)
    return TableSpec(
        object=t.object, schema=schema, table=t.table, oid=oid, primary_key=t.primary_key,
        updated_at=t.updated_at_column, columns=columns, all_columns=cols,
        unique=frozenset(unique), key=KeyType(cols[t.primary_key]),
        pipeline_column=t.pipeline_column, stage_column=t.stage_column, log_schema=log_schema,
        key_draw=draw, key_always=always)


@dataclass(frozen=True, slots=True)
class Association:
    """A configured association, resolved: a foreign-key `column` on `source`'s table holding
    `target`'s primary key, or a `join_table` whose `from_column` holds `source`'s key and
    `to_column` holds `target`'s."""

    source: TableSpec
    target: TableSpec
    column: str = ""
    join_table: str = ""
    join_oid: int = 0
    from_column: str = ""
    to_column: str = ""

    @property
    def is_join(self) -> bool:
        return bool(self.join_table)


def resolve_association(conn: psycopg.Connection, schema: str, specs: dict[str, TableSpec],
                        source: str, target: str, column: str, join_table: str,
                        from_column: str, to_column: str) -> Association:
    where = f"association {source!r} -> {target!r}"
    for obj in (source, target):
        if obj not in specs:
            raise _config_error(f"{where}: {obj!r} is not an app object of this connection "
                                "(add it to [[connections.tables]])")
    if bool(column) == bool(join_table):
        raise _config_error(f"{where}: give either `column` or `join_table`", "invalid_value")
    src, tgt = specs[source], specs[target]
    if column:
        if column not in src.all_columns:
            raise _config_error(f"{where}: {column!r} is not a column of {src.table!r}")
        return Association(src, tgt, column=column)
    oid = table_oid(conn, schema, join_table)
    if oid is None:
        raise _config_error(f"{where}: no such join table {schema}.{join_table}")
    have = table_columns(conn, oid)
    for label, name in (("from_column", from_column), ("to_column", to_column)):
        if not name or name not in have:
            raise _config_error(f"{where}: {label} {name!r} is not a column of join table "
                                f"{join_table!r}")
    return Association(src, tgt, join_table=join_table, join_oid=oid,
                       from_column=from_column, to_column=to_column)
