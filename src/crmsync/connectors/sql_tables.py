"""What the SQL app connectors (SQLite, PostgreSQL) do the same way with the app's tables.

Quoting names into SQL, checking a configured table or association against the columns the
database reports, turning record ids into keys and requested properties into columns, and
checking an input's values before any SQL. Each connector's `schema` resolves its tables from
its own catalog into its own `TableSpec` (which has the attributes of `TableShape`); what
differs between the databases (types, keys, value conversion) stays there.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any, Protocol, TypeVar

import msgspec

from crmsync.config.model import AppTable
from crmsync.connectors.base import ConnectorError, RecordError
from crmsync.records import Record

K = TypeVar("K")


class ColumnShape(Protocol):
    @property
    def generated(self) -> bool: ...


class TableShape(Protocol):
    """What the shared checks read of a connector's resolved table."""

    @property
    def object(self) -> str: ...
    @property
    def primary_key(self) -> str: ...
    @property
    def updated_at(self) -> str: ...
    @property
    def columns(self) -> tuple[str, ...]: ...
    @property
    def all_columns(self) -> Mapping[str, ColumnShape]: ...


def quote_ident(name: str) -> str:
    """An SQL identifier, quoted so that any table or column name is safe."""
    return '"' + name.replace('"', '""') + '"'


def quote_text(value: str) -> str:
    """An SQL string literal (for trigger and function bodies and DDL, which take no
    parameters)."""
    return "'" + value.replace("'", "''") + "'"


def config_error(message: str, category: str = "not_found") -> ConnectorError:
    return ConnectorError("config", category, message)


def check_table(where: str, t: AppTable, columns: Collection[str], unique: Collection[str]
                ) -> None:
    """Check a configured table against its `columns` and its single-column `unique` ones.

    Raises ConnectorError(kind="config") naming the configured column that is missing, or a
    primary key that is not unique (paging by it would skip rows); `where` names the table."""
    for label, name in (("primary_key", t.primary_key), ("updated_at_column", t.updated_at_column),
                        ("pipeline_column", t.pipeline_column), ("stage_column", t.stage_column)):
        if name and name not in columns:
            raise config_error(f"{where}: {label} {name!r} is not a column of the table")
    missing = [c for c in t.columns if c not in columns]
    if missing:
        raise config_error(f"{where}: no such column(s): {', '.join(missing)}")
    if t.primary_key not in unique:
        raise config_error(f"{where}: primary_key {t.primary_key!r} is neither the table's "
                           "primary key nor a column with a unique index", "invalid_value")


def check_association(where: str, objects: Collection[str], source: str, target: str,
                      column: str, join_table: str) -> None:
    """Check that a configured association joins two app `objects` of the connection and
    names either a foreign-key `column` or a `join_table` (ConnectorError kind="config")."""
    for obj in (source, target):
        if obj not in objects:
            raise config_error(f"{where}: {obj!r} is not an app object of this connection "
                               "(add it to [[connections.tables]])")
    if bool(column) == bool(join_table):
        raise config_error(f"{where}: give either `column` or `join_table`", "invalid_value")


def keys_of(ids: Sequence[str], to_key: Callable[[str], K]) -> list[tuple[str, K]]:
    """(id, key) pairs for the ids a row can have (`to_key` raises ValueError or
    OverflowError for the others), duplicates dropped."""
    out: list[tuple[str, K]] = []
    seen: set[str] = set()
    for i in ids:
        if i in seen:
            continue
        seen.add(i)
        try:
            out.append((i, to_key(i)))
        except (ValueError, OverflowError):
            continue
    return out


def select_columns(columns: tuple[str, ...], properties: Sequence[str]) -> tuple[str, ...]:
    """The columns to read for the requested properties (all configured ones when empty);
    names that are not columns are ignored, as HubSpot ignores unknown properties."""
    if not properties:
        return columns
    wanted = set(properties)
    return tuple(c for c in columns if c in wanted)


def under_asked_ids(keys: Sequence[tuple[str, Any]], found: Mapping[str, Record]
                    ) -> dict[str, Record]:
    """The records `found` (by their key's text) under the ids asked for, as `keys_of`
    paired them ("05" for the row 5 of an integer key)."""
    out: dict[str, Record] = {}
    for rid, key in keys:
        rec = found.get(str(key))
        if rec is not None:
            out[rid] = rec if rec.id == rid else msgspec.structs.replace(rec, id=rid)
    return out


def chunks(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def invalid(message: str) -> RecordError:
    return RecordError(category="invalid_value", message=message)


def prepare(spec: TableShape, values: Mapping[str, Any], record_id: str | None,
            convert: Callable[[str, Any], Any]) -> dict[str, Any] | RecordError:
    """Check one input's columns and values before any SQL; the updated-at column is dropped
    (crmsync sets it) and so is an update's unchanged primary key. `convert(column, value)`
    gives the value as the database takes it, raising TypeError for one it cannot hold."""
    allowed = set(spec.columns)
    out: dict[str, Any] = {}
    for name, value in values.items():
        if name == spec.updated_at:
            continue
        if name not in allowed:
            return invalid(f"app object {spec.object!r} has no writable column {name!r}")
        if spec.all_columns[name].generated:
            return invalid(f"column {name!r} is generated by the app database")
        if name == spec.primary_key:
            if record_id is None:
                if value is None:
                    continue
            elif value is None or str(value) != record_id:
                return invalid(f"the primary key {name!r} of a record cannot be changed")
            else:
                continue
        try:
            out[name] = convert(name, value)
        except TypeError as exc:
            return invalid(str(exc))
    return out
