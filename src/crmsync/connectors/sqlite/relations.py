"""Units of work for what hangs off the records: associations, pipelines and stages, events."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from crmsync.config.model import SqlitePipelines
from crmsync.connectors.base import AppEvent, AssociationChange, ConnectorError, RecordError
from crmsync.connectors.sqlite import changelog
from crmsync.connectors.sqlite.rows import IN_CHUNK, RowFailed, RowOp, chunks
from crmsync.connectors.sqlite.schema import (
    Association,
    TableSpec,
    parse_timestamp,
    quote_ident,
    table_columns,
    table_exists,
)
from crmsync.records import PipelineInfo, StageInfo

# --- associations -------------------------------------------------------------------------


def read_associations(conn: sqlite3.Connection, a: Association, forward: bool,
                      ids: Sequence[str]) -> dict[str, list[str]]:
    """For each id (of `a.source` when `forward`, else of `a.target`), its partners' ids,
    sorted. Every id asked for is in the result, with [] when it has none."""
    own = a.source if forward else a.target
    keys = own.keys(ids)
    by_key: dict[str, list[str]] = {}
    for rid, key in keys:
        by_key.setdefault(str(key), []).append(rid)
    if a.is_join:
        t = quote_ident(a.join_table)
        mine, theirs = ((a.from_column, a.to_column) if forward
                        else (a.to_column, a.from_column))
    elif forward:
        t = quote_ident(a.source.table)
        mine, theirs = a.source.primary_key, a.column
    else:
        t = quote_ident(a.source.table)
        mine, theirs = a.column, a.source.primary_key
    found: dict[str, set[str]] = {rid: set() for rid in ids}
    for part in chunks([k for _, k in keys], IN_CHUNK):
        marks = ",".join("?" * len(part))
        for mine_v, theirs_v in conn.execute(
                f"SELECT {quote_ident(mine)}, {quote_ident(theirs)} FROM {t} "
                f"WHERE {quote_ident(mine)} IN ({marks})", part):
            if theirs_v is None:
                continue
            for rid in by_key.get(str(mine_v), ()):
                found[rid].add(str(theirs_v))
    return {rid: sorted(v) for rid, v in found.items()}


def _fail(message: str) -> RowFailed:
    return RowFailed(RecordError(category="association_failed", message=message))


def _exists(conn: sqlite3.Connection, spec: TableSpec, key: Any) -> bool:
    return conn.execute(
        f"SELECT 1 FROM {quote_ident(spec.table)} WHERE {quote_ident(spec.primary_key)} = ?",
        (key,)).fetchone() is not None


def association_ops(a: Association, forward: bool, changes: Sequence[AssociationChange],
                    stamp: Any) -> list[RowOp | RecordError]:
    """One op per change. A foreign key holds one partner: creating sets it (replacing any
    other), removing clears it only while it still points at that partner. A join table gets
    its row added (once) or deleted. Removing what is not there succeeds."""
    ops: list[RowOp | RecordError] = []
    for ch in changes:
        src_id, tgt_id = (ch.from_id, ch.to_id) if forward else (ch.to_id, ch.from_id)
        src_inc, tgt_inc = ((ch.from_incarnation, ch.to_incarnation) if forward
                            else (ch.to_incarnation, ch.from_incarnation))
        try:
            src = a.source.to_key(src_id)
            tgt = a.target.to_key(tgt_id)
        except (ValueError, OverflowError):
            if ch.removed:
                ops.append(lambda conn: None)
            else:
                ops.append(RecordError(category="association_failed",
                                       message=f"no such record: {src_id!r} / {tgt_id!r}"))
            continue
        ops.append(_assoc_op(a, src, tgt, src_id, tgt_id, ch.removed, stamp,
                             (src_inc, tgt_inc)))
    return ops


def _reborn(conn: sqlite3.Connection, spec: TableSpec, key: Any, incarnation: str) -> bool:
    """Whether the row `key` of `spec` is another record than the one of `incarnation` (""
    or a table without change capture: unknown, taken as the same)."""
    if not incarnation or not spec.log:
        return False
    (born,) = conn.execute(f"SELECT {changelog.born_sql(spec.log, spec.object, '?')}",
                           (key,)).fetchone()
    return str(born) != incarnation


def _assoc_op(a: Association, src: Any, tgt: Any, src_id: str, tgt_id: str, removed: bool,
              stamp: Any, incarnations: tuple[str, str] = ("", "")) -> RowOp:
    s = a.source
    st, spk, upd = quote_ident(s.table), quote_ident(s.primary_key), quote_ident(s.updated_at)

    def reborn(conn: sqlite3.Connection) -> str | None:
        """The end that is another record now than the one the change was decided for."""
        for spec, key, rid, inc in ((s, src, src_id, incarnations[0]),
                                    (a.target, tgt, tgt_id, incarnations[1])):
            if _reborn(conn, spec, key, inc):
                return f"{spec.object} {rid}"
        return None

    def check_ends(conn: sqlite3.Connection) -> None:
        if not _exists(conn, s, src):
            raise _fail(f"{s.object} {src_id} does not exist in the app")
        if not _exists(conn, a.target, tgt):
            raise _fail(f"{a.target.object} {tgt_id} does not exist in the app")
        other = reborn(conn)
        if other is not None:
            raise _fail(f"{other} is another record now (the app deleted the one meant and "
                        f"gave its id to a new one)")

    if not a.is_join:
        col = quote_ident(a.column)

        def fk(conn: sqlite3.Connection) -> None:
            if removed:
                if reborn(conn) is not None:
                    return
                conn.execute(f"UPDATE {st} SET {col} = NULL, {upd} = ? "
                             f"WHERE {spk} = ? AND {col} = ?", (stamp, src, tgt))
                return
            check_ends(conn)
            conn.execute(f"UPDATE {st} SET {col} = ?, {upd} = ? "
                         f"WHERE {spk} = ? AND {col} IS NOT ?", (tgt, stamp, src, tgt))

        return fk

    jt = quote_ident(a.join_table)
    fc, tc = quote_ident(a.from_column), quote_ident(a.to_column)

    def join(conn: sqlite3.Connection) -> None:
        if removed:
            if reborn(conn) is not None:
                return
            conn.execute(f"DELETE FROM {jt} WHERE {fc} = ? AND {tc} = ?", (src, tgt))
            return
        check_ends(conn)
        # Not INSERT OR IGNORE: that also silently ignores NOT NULL and CHECK failures, and
        # it adds a second row when the join table has no unique constraint.
        conn.execute(f"INSERT INTO {jt} ({fc}, {tc}) SELECT ?, ? WHERE NOT EXISTS "
                     f"(SELECT 1 FROM {jt} WHERE {fc} = ? AND {tc} = ?)",
                     (src, tgt, src, tgt))

    return join


# --- pipelines ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PipelineTables:
    pipelines: str
    stages: str
    pipelines_ordered: bool  # has a display_order column
    stages_ordered: bool


def resolve_pipelines(conn: sqlite3.Connection, cfg: SqlitePipelines) -> PipelineTables:
    needs = {cfg.pipelines_table: ("id", "label"),
             cfg.stages_table: ("id", "pipeline_id", "label")}
    for table, cols in needs.items():
        if not table_exists(conn, table):
            raise ConnectorError("config", "not_found",
                                 f"pipelines: no such table {table!r} in the app database")
        have = table_columns(conn, table)
        missing = [c for c in cols if c not in have]
        if missing:
            raise ConnectorError("config", "not_found",
                                 f"pipelines: table {table!r} lacks column(s) "
                                 f"{', '.join(missing)}")
    return PipelineTables(
        cfg.pipelines_table, cfg.stages_table,
        "display_order" in table_columns(conn, cfg.pipelines_table),
        "display_order" in table_columns(conn, cfg.stages_table))


def read_pipelines(conn: sqlite3.Connection, p: PipelineTables) -> list[PipelineInfo]:
    """Pipelines with their stages, each in display_order (when the table has it), then id
    order. Stages of an unknown pipeline are left out."""
    def order(ordered: bool) -> str:
        return "ORDER BY display_order, id" if ordered else "ORDER BY id"

    stages: dict[str, list[StageInfo]] = {}
    for sid, pid, label in conn.execute(
            f"SELECT id, pipeline_id, label FROM {quote_ident(p.stages)} "
            f"{order(p.stages_ordered)}"):
        stages.setdefault(str(pid), []).append(StageInfo(id=str(sid), label=_label(label)))
    return [PipelineInfo(id=str(pid), label=_label(label), stages=tuple(stages.get(str(pid), ())))
            for pid, label in conn.execute(
                f"SELECT id, label FROM {quote_ident(p.pipelines)} {order(p.pipelines_ordered)}")]


def _label(value: object) -> str:
    return "" if value is None else str(value)


# --- events -------------------------------------------------------------------------------

EVENT_COLUMNS = ("event_id", "contact_email", "name", "occurred_at")


@dataclass(frozen=True, slots=True)
class EventTable:
    table: str
    has_properties: bool


def resolve_events(conn: sqlite3.Connection, table: str) -> EventTable:
    if not table_exists(conn, table):
        raise ConnectorError("config", "not_found",
                             f"events: no such table {table!r} in the app database")
    have = table_columns(conn, table)
    missing = [c for c in EVENT_COLUMNS if c not in have]
    if missing:
        raise ConnectorError("config", "not_found",
                             f"events: table {table!r} lacks column(s) {', '.join(missing)}")
    try:
        conn.execute(f"SELECT rowid FROM {quote_ident(table)} LIMIT 0")
    except sqlite3.OperationalError:
        raise ConnectorError("config", "invalid_value",
                             f"events: table {table!r} has no rowid (WITHOUT ROWID); "
                             "crmsync reads events in rowid order") from None
    return EventTable(table, "properties" in have)


def read_events(conn: sqlite3.Connection, e: EventTable, after: int,
                limit: int) -> tuple[list[AppEvent], int]:
    props = "properties" if e.has_properties else "NULL"
    rows = conn.execute(
        f"SELECT rowid, event_id, contact_email, name, occurred_at, {props} "
        f"FROM {quote_ident(e.table)} WHERE rowid > ? ORDER BY rowid LIMIT ?",
        (after, limit)).fetchall()
    events = [
        AppEvent(
            # A row without an id still needs one that never changes: its rowid.
            event_id=str(event_id) if event_id not in (None, "") else f"rowid:{rowid}",
            contact_key="" if email is None else str(email).strip(),
            name=_label(name),
            occurred_at=parse_timestamp(occurred),
            properties=event_properties(raw),
        )
        for rowid, event_id, email, name, occurred, raw in rows
    ]
    return events, (int(rows[-1][0]) if rows else after)


def event_properties(raw: object) -> dict[str, str]:
    """A JSON object's members as strings (non-strings JSON-encoded, nulls dropped). Text that
    is not a JSON object gives {}: the event itself is still worth sending."""
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", "replace")
    if not isinstance(raw, str) or not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {str(k): v if isinstance(v, str) else json.dumps(v, separators=(",", ":"))
            for k, v in data.items() if v is not None}
