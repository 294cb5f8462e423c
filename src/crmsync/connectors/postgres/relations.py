"""Units of work for what hangs off the records: associations, pipelines and stages, events."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg

from crmsync.config.model import AppPipelines
from crmsync.connectors.base import AppEvent, AssociationChange, ConnectorError, RecordError
from crmsync.connectors.postgres import capture
from crmsync.connectors.postgres.rows import IN_CHUNK, Finish, RowFailed, RowOp, chunks
from crmsync.connectors.postgres.schema import (
    Association,
    Column,
    TableSpec,
    qualified,
    table_columns,
    table_oid,
)
from crmsync.connectors.sql_tables import quote_ident
from crmsync.connectors.sqlite.relations import event_properties
from crmsync.connectors.sqlite.schema import parse_timestamp
from crmsync.records import PipelineInfo, StageInfo

# --- associations -------------------------------------------------------------------------


def _ends(a: Association, forward: bool) -> tuple[str, str, str, TableSpec]:
    """(table, my column, their column, my spec) of the direction asked for."""
    own = a.source if forward else a.target
    if a.is_join:
        mine, theirs = ((a.from_column, a.to_column) if forward
                        else (a.to_column, a.from_column))
        return qualified(a.source.schema, a.join_table), mine, theirs, own
    if forward:
        return a.source.qualified, a.source.primary_key, a.column, own
    return a.source.qualified, a.column, a.source.primary_key, own


def read_associations(conn: psycopg.Connection, a: Association, forward: bool,
                      ids: Sequence[str]) -> dict[str, list[str]]:
    """For each id (of `a.source` when `forward`, else of `a.target`), its partners' ids,
    sorted. Every id asked for is in the result, with [] when it has none."""
    table, mine, theirs, own = _ends(a, forward)
    keys = own.keys(ids)
    by_key: dict[str, list[str]] = {}
    for rid, key in keys:
        by_key.setdefault(key, []).append(rid)
    found: dict[str, set[str]] = {rid: set() for rid in ids}
    for part in chunks([k for _, k in keys], IN_CHUNK):
        for mine_v, theirs_v in conn.execute(
                f"SELECT {quote_ident(mine)}::text, {quote_ident(theirs)}::text FROM {table} "
                f"WHERE {quote_ident(mine)}::text = ANY(%s::text[])", (list(part),)):
            if theirs_v is None:
                continue
            for rid in by_key.get(mine_v, ()):
                found[rid].add(theirs_v)
    return {rid: sorted(v) for rid, v in found.items()}


def _fail(message: str) -> RowFailed:
    return RowFailed(RecordError(category="association_failed", message=message))


def _exists(conn: psycopg.Connection, spec: TableSpec, key: str) -> bool:
    return conn.execute(
        f"SELECT 1 FROM {spec.qualified} WHERE {quote_ident(spec.primary_key)} = "
        f"%s::{spec.key.column.type_sql}", (key,)).fetchone() is not None


def association_ops(a: Association, forward: bool, changes: Sequence[AssociationChange],
                    stamp: str | None, columns: dict[str, Column]
                    ) -> list[RowOp | RecordError]:
    """One op per change. A foreign key holds one partner: creating sets it (replacing any
    other), removing clears it only while it still points at that partner. A join table gets
    its row added (once) or deleted. Removing what is not there succeeds."""
    ops: list[RowOp | RecordError] = []
    for ch in changes:
        src_id, tgt_id = (ch.from_id, ch.to_id) if forward else (ch.to_id, ch.from_id)
        try:
            src = a.source.key.to_key(src_id)
            tgt = a.target.key.to_key(tgt_id)
        except (ValueError, OverflowError):
            if ch.removed:
                ops.append(RowOp(lambda conn: lambda: None))
            else:
                ops.append(RecordError(category="association_failed",
                                       message=f"no such record: {src_id!r} / {tgt_id!r}"))
            continue
        ops.append(RowOp(_assoc_op(a, src, tgt, src_id, tgt_id, ch.removed, stamp, columns)))
    return ops


def _assoc_op(a: Association, src: str, tgt: str, src_id: str, tgt_id: str, removed: bool,
              stamp: str | None, columns: dict[str, Column]) -> Any:
    s = a.source
    spk = quote_ident(s.primary_key)
    src_cast = f"%s::{s.key.column.type_sql}"

    def check_ends(conn: psycopg.Connection) -> None:
        if not _exists(conn, s, src):
            raise _fail(f"{s.object} {src_id} does not exist in the app")
        if not _exists(conn, a.target, tgt):
            raise _fail(f"{a.target.object} {tgt_id} does not exist in the app")

    if not a.is_join:
        col = quote_ident(a.column)
        fk_cast = f"%s::{s.all_columns[a.column].type_sql}"
        upd = f", {quote_ident(s.updated_at)} = {stamp}" if stamp else ""

        def fk(conn: psycopg.Connection) -> Finish:
            if removed:
                conn.execute(f"UPDATE {s.qualified} SET {col} = NULL{upd} "
                             f"WHERE {spk} = {src_cast} AND {col} = {fk_cast}", (src, tgt))
                return lambda: None
            check_ends(conn)
            conn.execute(f"UPDATE {s.qualified} SET {col} = {fk_cast}{upd} "
                         f"WHERE {spk} = {src_cast} AND {col} IS DISTINCT FROM {fk_cast}",
                         (tgt, src, tgt))
            return lambda: None

        return fk

    jt = qualified(s.schema, a.join_table)
    fc, tc = quote_ident(a.from_column), quote_ident(a.to_column)
    f_cast = f"%s::{columns[a.from_column].type_sql}"
    t_cast = f"%s::{columns[a.to_column].type_sql}"

    def join(conn: psycopg.Connection) -> Finish:
        if removed:
            conn.execute(f"DELETE FROM {jt} WHERE {fc} = {f_cast} AND {tc} = {t_cast}",
                         (src, tgt))
            return lambda: None
        check_ends(conn)
        # Not ON CONFLICT DO NOTHING: a join table without a unique constraint would get a
        # second row.
        conn.execute(f"INSERT INTO {jt} ({fc}, {tc}) SELECT {f_cast}, {t_cast} WHERE NOT EXISTS "
                     f"(SELECT 1 FROM {jt} WHERE {fc} = {f_cast} AND {tc} = {t_cast})",
                     (src, tgt, src, tgt))
        return lambda: None

    return join


# --- pipelines ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PipelineTables:
    pipelines: str  # qualified
    stages: str
    pipelines_ordered: bool  # has a display_order column
    stages_ordered: bool


def resolve_pipelines(conn: psycopg.Connection, schema: str,
                      cfg: AppPipelines) -> PipelineTables:
    needs = {cfg.pipelines_table: ("id", "label"),
             cfg.stages_table: ("id", "pipeline_id", "label")}
    ordered: dict[str, bool] = {}
    for table, cols in needs.items():
        oid = table_oid(conn, schema, table)
        if oid is None:
            raise ConnectorError("config", "not_found",
                                 f"pipelines: no such table {schema}.{table} in the app database")
        have = table_columns(conn, oid)
        missing = [c for c in cols if c not in have]
        if missing:
            raise ConnectorError("config", "not_found",
                                 f"pipelines: table {schema}.{table} lacks column(s) "
                                 f"{', '.join(missing)}")
        ordered[table] = "display_order" in have
    return PipelineTables(qualified(schema, cfg.pipelines_table),
                          qualified(schema, cfg.stages_table),
                          ordered[cfg.pipelines_table], ordered[cfg.stages_table])


def read_pipelines(conn: psycopg.Connection, p: PipelineTables) -> list[PipelineInfo]:
    """Pipelines with their stages, each in display_order (when the table has it), then id
    order. Stages of an unknown pipeline are left out."""
    # Ordered by the columns themselves (t.id), not by the output's id::text.
    def order(ordered: bool) -> str:
        return "ORDER BY t.display_order, t.id" if ordered else "ORDER BY t.id"

    stages: dict[str, list[StageInfo]] = {}
    for sid, pid, label in conn.execute(
            f"SELECT t.id::text, t.pipeline_id::text, t.label::text FROM {p.stages} AS t "
            f"{order(p.stages_ordered)}"):
        stages.setdefault(str(pid), []).append(StageInfo(id=str(sid), label=label or ""))
    return [PipelineInfo(id=str(pid), label=label or "", stages=tuple(stages.get(str(pid), ())))
            for pid, label in conn.execute(
                f"SELECT t.id::text, t.label::text FROM {p.pipelines} AS t "
                f"{order(p.pipelines_ordered)}")]


# --- events -------------------------------------------------------------------------------

EVENT_COLUMNS = ("event_id", "contact_email", "name", "occurred_at")


@dataclass(frozen=True, slots=True)
class EventTable:
    schema: str
    table: str
    oid: int
    has_properties: bool
    # The primary key the backfill pages by ("": none, then the physical order, ctid).
    key: str
    key_type: str

    @property
    def qualified(self) -> str:
        return qualified(self.schema, self.table)


def resolve_events(conn: psycopg.Connection, schema: str, table: str) -> EventTable:
    oid = table_oid(conn, schema, table)
    if oid is None:
        raise ConnectorError("config", "not_found",
                             f"events: no such table {schema}.{table} in the app database")
    have = table_columns(conn, oid)
    missing = [c for c in EVENT_COLUMNS if c not in have]
    if missing:
        raise ConnectorError("config", "not_found",
                             f"events: table {schema}.{table} lacks column(s) "
                             f"{', '.join(missing)}")
    pk = conn.execute(
        "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
        "AND a.attnum = i.indkey[0] WHERE i.indrelid = %s AND i.indisprimary "
        "AND i.indnkeyatts = 1", (oid,)).fetchone()
    key = pk[0] if pk else ""
    return EventTable(schema, table, oid, "properties" in have, key,
                      have[key].type_sql if key else "tid")


def _event(row: dict[str, Any], fallback_id: str) -> AppEvent:
    event_id = row.get("event_id")
    email = row.get("contact_email")
    raw = row.get("properties")
    if raw is not None and not isinstance(raw, str):
        import json

        raw = json.dumps(raw)
    return AppEvent(
        # A row without an id still needs one that never changes: its key.
        event_id=str(event_id) if event_id not in (None, "") else fallback_id,
        contact_key="" if email is None else str(email).strip(),
        name="" if row.get("name") is None else str(row["name"]),
        occurred_at=parse_timestamp(row.get("occurred_at")),
        properties=event_properties(raw),
    )


def scan_events(conn: psycopg.Connection, e: EventTable, after: str | None,
                limit: int) -> tuple[list[AppEvent], str | None]:
    """A backfill page of the events table in key order after `after` (the last key read),
    and the next `after` (None when the table was read to its end)."""
    props = "t.properties::text" if e.has_properties else "NULL"
    # t.<key>: the column itself, never the output's <key>::text (which orders 10 before 2).
    key = "t." + (quote_ident(e.key) if e.key else "ctid")
    where = f"WHERE {key} > %s::{e.key_type}" if after is not None else ""
    params: list[Any] = [after] if after is not None else []
    rows = conn.execute(
        f"SELECT {key}::text, t.event_id::text, t.contact_email::text, t.name::text, "
        f"t.occurred_at::text, {props} FROM {e.qualified} AS t {where} ORDER BY {key} "
        "LIMIT %s", [*params, limit]).fetchall()
    events = [_event({"event_id": r[1], "contact_email": r[2], "name": r[3],
                      "occurred_at": r[4], "properties": r[5]}, f"key:{r[0]}") for r in rows]
    return events, (rows[-1][0] if len(rows) >= limit else None)


def logged_events(entries: Sequence[capture.Entry], e: EventTable) -> list[AppEvent]:
    """The events of change-log entries (each carries the inserted row)."""
    out = []
    for entry in entries:
        row = entry.payload if isinstance(entry.payload, dict) else {}
        key = row.get(e.key) if e.key else None
        fallback = f"key:{key}" if key is not None else f"log:{entry.id}"
        out.append(_event(row, fallback))
    return out
