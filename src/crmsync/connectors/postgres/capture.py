"""Change capture by triggers into a change log that readers acknowledge.

crmsync installs, in a schema of its own (`changelog_schema`, default `crmsync`):

    changelog  id (identity), kind ('record' | 'event'), object, op, record_id, old_id,
               at, origin, payload, claim
    claims     a sequence numbering the batches readers take
    identity   object, record_id, born: the incarnation of each row inserted since capture
    births     the sequence `born` is taken from
    capture_*  one trigger function per captured table (SECURITY DEFINER: the app's roles
               need no grant on crmsync's schema)

and on each synced table AFTER INSERT OR DELETE and AFTER UPDATE (of the columns crmsync reads)
row triggers calling them; join tables of associations and the events table get theirs too.
Every entry says what happened (`op`: insert, update, delete, or associate for a record whose
associations changed), the key it concerns (`record_id`: the new row's for insert and update,
the old row's for delete) and the old row's key (`old_id`, for update and delete), so a reader
sees a changed primary key and can tell a delete followed by an insert of the same key.
Each trigger also calls `pg_notify(<schema>, '<kind>:<object>')`: a wake-up only (delivered at
commit, folded per transaction, lost when nobody listens) — the table is the truth.

**Reading by acknowledgement, never by a high-water mark.** Entry ids are handed out when a
transaction writes, not when it commits, so a transaction that started earlier but commits
later puts a *lower* id behind entries already read; a reader keeping "the last id seen"
would skip it for ever. So a reader instead *claims* the entries it reads (sets `claim` to a
new number from `claims`, returned as its cursor) and deletes them only when it is next
called with that cursor — which the runtime does only after the syncs they caused committed.
Entries claimed under a cursor that was never committed (a crash) are claimed again. One
reader per (kind, object): check-config refuses two object syncs of one table.

**Identity.** A table's primary key can be given again to a later row (a text or natural
key inserted again, a uuid reused, an identity column reset or given explicitly), and that row
is another record. The insert trigger of a synced table gives the row a new `born` number in
`identity` (replacing any number the key still had, e.g. after a TRUNCATE, which fires no row
trigger); the delete trigger removes it; an update that changes the key does both. A record's
incarnation (records.py) is its row's `born` as text, and "" for a row inserted before its
table was captured with identity (installations from before it keep the links they stored,
which recorded "", and such a row deleted and inserted again gets a number).

**Echoes.** crmsync's own connection sets `crmsync.origin = 'crmsync'`; the triggers copy it
into `origin`, so crmsync's writes are recognised in the log (whose reactions — the app's
triggers, cascades — carry the tag too, which is why they are not dropped by default).

**Names.** Functions and triggers are named by a hash of their definition, so installing is
idempotent: what exists and is wanted stays, what differs is replaced, what is no longer
configured is dropped (ours are the triggers whose function lives in crmsync's schema).
TRUNCATE is not captured (it fires no row trigger); the periodic reconciliation finds it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg

from crmsync.connectors.base import ConnectorError
from crmsync.connectors.postgres.schema import (
    Association,
    TableSpec,
    qualified,
    quote_ident,
    quote_text,
    table_oid,
)

ORIGIN_SETTING = "crmsync.origin"
ORIGIN_CRMSYNC = "crmsync"
LOG_TABLE = "changelog"
CLAIMS = "claims"
IDENTITY_TABLE = "identity"
BIRTHS = "births"


def log_table(schema: str) -> str:
    return qualified(schema, LOG_TABLE)


def claims_sequence(schema: str) -> str:
    return qualified(schema, CLAIMS)


def identity_table(schema: str) -> str:
    return qualified(schema, IDENTITY_TABLE)


def births_sequence(schema: str) -> str:
    return qualified(schema, BIRTHS)


def born_sql(schema: str, obj: str, key_text: str) -> str:
    """An SQL expression: the incarnation (text; "" when it has none) of the row of `obj`
    whose primary key as text is `key_text`. A scalar subquery, so that it adds no column
    names to the statement it is used in."""
    return (f"COALESCE((SELECT crmsync_identity.born::text FROM {identity_table(schema)} "
            f"AS crmsync_identity WHERE crmsync_identity.object = {quote_text(obj)} "
            f"AND crmsync_identity.record_id = {key_text}), '')")


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# --- what to install -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Capture:
    """One table's triggers: what they log and the function doing it."""

    table_oid: int
    table_sql: str  # schema-qualified, quoted
    table_label: str  # schema.table, for messages
    function_body: str
    update_columns: tuple[str, ...]  # UPDATE of these columns is logged (all: empty)
    events: tuple[str, ...] = ("INSERT", "UPDATE", "DELETE")

    def function_name(self) -> str:
        return "capture_" + _hash(self.function_body)

    def triggers(self, schema: str) -> dict[str, str]:
        """Trigger name -> CREATE TRIGGER statement."""
        fn = qualified(schema, self.function_name())
        out: dict[str, str] = {}
        other = [e for e in self.events if e != "UPDATE"]
        if other:
            sql = (f"AFTER {' OR '.join(other)} ON {self.table_sql} FOR EACH ROW "
                   f"EXECUTE FUNCTION {fn}()")
            out["crmsync_" + _hash(schema + sql)] = sql
        if "UPDATE" in self.events:
            cols = self.update_columns
            when = ""
            if cols:
                when = " WHEN (" + " OR ".join(
                    f"OLD.{quote_ident(c)} IS DISTINCT FROM NEW.{quote_ident(c)}"
                    for c in cols) + ")"
            sql = f"AFTER UPDATE ON {self.table_sql} FOR EACH ROW{when} EXECUTE FUNCTION {fn}()"
            out["crmsync_" + _hash(schema + sql)] = sql
        return {name: f"CREATE TRIGGER {quote_ident(name)} {sql}" for name, sql in out.items()}


def _entry(schema: str, kind: str, obj: str, op: str, rid: str, old: str = "NULL",
           payload: str = "NULL") -> str:
    return (f"INSERT INTO {log_table(schema)} (kind, object, op, record_id, old_id, origin, "
            f"payload) VALUES ({quote_text(kind)}, {quote_text(obj)}, {quote_text(op)}, {rid}, "
            f"{old}, origin, {payload});")


def _body(schema: str, insert: list[str], update: list[str], delete: list[str],
          notify: str) -> str:
    def block(lines: list[str]) -> str:
        return "\n    ".join(lines) if lines else "NULL;"

    return (
        "DECLARE origin text := current_setting(" + quote_text(ORIGIN_SETTING) + ", true);\n"
        "BEGIN\n"
        "  IF TG_OP = 'INSERT' THEN\n    " + block(insert) + "\n"
        "  ELSIF TG_OP = 'UPDATE' THEN\n    " + block(update) + "\n"
        "  ELSE\n    " + block(delete) + "\n"
        "  END IF;\n"
        f"  PERFORM pg_notify({quote_text(schema)}, {quote_text(notify)});\n"
        "  RETURN NULL;\n"
        "END")


def _if(cond: str, stmt: str) -> str:
    return f"IF {cond} THEN {stmt} END IF;"


def _born(schema: str, obj: str, rid: str) -> str:
    """Give the row keyed `rid` a new incarnation (see the module doc, "Identity")."""
    return (f"INSERT INTO {identity_table(schema)} (object, record_id, born) VALUES "
            f"({quote_text(obj)}, {rid}, nextval({quote_text(births_sequence(schema))})) "
            "ON CONFLICT (object, record_id) DO UPDATE SET born = EXCLUDED.born;")


def _unborn(schema: str, obj: str, rid: str) -> str:
    return (f"DELETE FROM {identity_table(schema)} WHERE object = {quote_text(obj)} "
            f"AND record_id = {rid};")


def record_capture(schema: str, spec: TableSpec, associations: Sequence[Association]) -> Capture:
    pk = quote_ident(spec.primary_key)
    new_id, old_id = f"NEW.{pk}::text", f"OLD.{pk}::text"
    fks = [(a.target.object, quote_ident(a.column))
           for a in associations if not a.is_join and a.source.object == spec.object]

    def touch(row: str) -> list[str]:
        return [_if(f"{row}.{c} IS NOT NULL",
                    _entry(schema, "record", to, "associate", f"{row}.{c}::text"))
                for to, c in fks]

    insert = [_entry(schema, "record", spec.object, "insert", new_id),
              _born(schema, spec.object, new_id), *touch("NEW")]
    update = [_entry(schema, "record", spec.object, "update", new_id, old_id)]
    # A changed primary key: the old key is gone, the new one names a new record.
    moved_pk = f"OLD.{pk} IS DISTINCT FROM NEW.{pk}"
    update.append(_if(moved_pk, _unborn(schema, spec.object, old_id)))
    update.append(_if(moved_pk, _born(schema, spec.object, new_id)))
    for to, c in fks:
        moved = f"OLD.{c} IS DISTINCT FROM NEW.{c}"
        update.append(_if(f"{moved} AND OLD.{c} IS NOT NULL",
                          _entry(schema, "record", to, "associate", f"OLD.{c}::text")))
        update.append(_if(f"{moved} AND NEW.{c} IS NOT NULL",
                          _entry(schema, "record", to, "associate", f"NEW.{c}::text")))
    delete = [_entry(schema, "record", spec.object, "delete", old_id, old_id),
              _unborn(schema, spec.object, old_id), *touch("OLD")]
    # Only changes of what crmsync reads (and association columns) are logged, so the app
    # touching other columns creates no work.
    watched = list(dict.fromkeys([spec.primary_key, spec.updated_at, *spec.columns,
                                  *(a.column for a in associations
                                    if not a.is_join and a.source.object == spec.object)]))
    # updated_at alone changing is no change of a value crmsync syncs.
    watched = [c for c in watched if c != spec.updated_at]
    body = _body(schema, insert, update, delete, f"record:{spec.object}")
    return Capture(spec.oid, spec.qualified, f"{spec.schema}.{spec.table}", body,
                   tuple(watched))


def join_capture(schema: str, a: Association) -> Capture:
    ends = [(a.source.object, quote_ident(a.from_column)),
            (a.target.object, quote_ident(a.to_column))]

    def touch(row: str) -> list[str]:
        return [_if(f"{row}.{c} IS NOT NULL",
                    _entry(schema, "record", obj, "associate", f"{row}.{c}::text"))
                for obj, c in ends]

    body = _body(schema, touch("NEW"), touch("OLD") + touch("NEW"), touch("OLD"),
                 f"record:{a.source.object}")
    return Capture(a.join_oid, qualified(a.source.schema, a.join_table),
                   f"{a.source.schema}.{a.join_table}", body,
                   (a.from_column, a.to_column))


def event_capture(schema: str, table_schema: str, table: str, oid: int) -> Capture:
    body = _body(schema, [_entry(schema, "event", table, "insert", "NULL",
                                 payload="to_jsonb(NEW)")], [], [], f"event:{table}")
    return Capture(oid, qualified(table_schema, table), f"{table_schema}.{table}", body, (),
                   events=("INSERT",))


# --- installing ----------------------------------------------------------------------------


def _function_sql(schema: str, c: Capture) -> str:
    return (f"CREATE OR REPLACE FUNCTION {qualified(schema, c.function_name())}() "
            "RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER "
            "SET search_path = pg_catalog, pg_temp AS $crmsync$\n"
            f"{c.function_body}\n$crmsync$")


@dataclass(frozen=True, slots=True)
class Installed:
    """A trigger crmsync owns (its function lives in crmsync's schema)."""

    table_oid: int
    table_label: str
    name: str
    function: str


def installed(conn: psycopg.Connection, schema: str) -> list[Installed]:
    return [Installed(int(r[0]), r[1], r[2], r[3]) for r in conn.execute(
        """
        SELECT t.tgrelid::oid, t.tgrelid::regclass::text, t.tgname, p.proname
        FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid
        JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname = %s AND NOT t.tgisinternal
        ORDER BY 2, 3
        """, (schema,))]


def _role(conn: psycopg.Connection) -> str:
    return str(conn.execute("SELECT current_user").fetchone()[0])  # type: ignore[index]


def _schema_exists(conn: psycopg.Connection, schema: str) -> bool:
    return conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s",
                        (schema,)).fetchone() is not None


def _grant_error(message: str) -> ConnectorError:
    return ConnectorError("config", "permission_denied", message)


def check_privileges(conn: psycopg.Connection, schema: str, captures: Iterable[Capture],
                     changing: set[int]) -> None:
    """Fail with the GRANT that is missing, before anything is changed: SELECT on every
    captured table, TRIGGER on those whose triggers change, CREATE on crmsync's schema (or on
    the database, to create it)."""
    role = _role(conn)
    if _schema_exists(conn, schema):
        row = conn.execute("SELECT has_schema_privilege(%s, 'CREATE'), "
                           "has_schema_privilege(%s, 'USAGE')", (schema, schema)).fetchone()
        if not (row and row[0] and row[1]):
            raise _grant_error(
                f"role {role!r} may not create objects in schema {schema!r}: "
                f"GRANT USAGE, CREATE ON SCHEMA {quote_ident(schema)} TO {quote_ident(role)}")
    else:
        row = conn.execute("SELECT has_database_privilege(current_database(), 'CREATE')"
                           ).fetchone()
        if not (row and row[0]):
            raise _grant_error(
                f"role {role!r} may not create crmsync's schema {schema!r}: run "
                f"CREATE SCHEMA {quote_ident(schema)} AUTHORIZATION {quote_ident(role)} "
                "as the database owner (or GRANT CREATE ON DATABASE ... TO the role)")
    for c in captures:
        row = conn.execute("SELECT has_table_privilege(%s::oid, 'SELECT'), "
                           "has_table_privilege(%s::oid, 'TRIGGER')",
                           (c.table_oid, c.table_oid)).fetchone()
        assert row is not None
        if not row[0]:
            raise _grant_error(f"role {role!r} may not read table {c.table_label}: "
                               f"GRANT SELECT ON {c.table_sql} TO {quote_ident(role)}")
        if c.table_oid in changing and not row[1]:
            raise _grant_error(
                f"role {role!r} may not create triggers on table {c.table_label}: "
                f"GRANT TRIGGER ON {c.table_sql} TO {quote_ident(role)} "
                "(or make the role the table's owner)")


def ensure_log(conn: psycopg.Connection, schema: str) -> None:
    """Create crmsync's schema, the change log, its index, the claims sequence, the identity
    table and its sequence — each when missing, so an installation made by an earlier crmsync
    gains what it lacks."""
    if not _schema_exists(conn, schema):
        # Not CREATE SCHEMA IF NOT EXISTS: that needs CREATE on the database even when a DBA
        # created the schema for crmsync.
        conn.execute(f"CREATE SCHEMA {quote_ident(schema)}")
    conn.execute(
        f"CREATE TABLE IF NOT EXISTS {log_table(schema)} ("
        "id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
        "kind text NOT NULL, "
        "object text NOT NULL, "
        "op text NOT NULL, "
        "record_id text, "
        "old_id text, "
        "at timestamptz NOT NULL DEFAULT now(), "
        # NULL: written by anyone else; 'crmsync': by crmsync's own connection.
        "origin text, "
        "payload jsonb, "
        # The batch a reader took this entry in; deleted once that batch is acknowledged.
        "claim bigint)")
    conn.execute(f"CREATE INDEX IF NOT EXISTS changelog_reading ON {log_table(schema)} "
                 "(kind, object, claim, id)")
    conn.execute(f"CREATE SEQUENCE IF NOT EXISTS {claims_sequence(schema)}")
    conn.execute(f"CREATE SEQUENCE IF NOT EXISTS {births_sequence(schema)}")
    conn.execute(
        f"CREATE TABLE IF NOT EXISTS {identity_table(schema)} ("
        "object text NOT NULL, record_id text NOT NULL, born bigint NOT NULL, "
        "PRIMARY KEY (object, record_id))")


def install(conn: psycopg.Connection, schema: str, captures: Sequence[Capture]) -> int:
    """Bring crmsync's triggers in line with `captures`, inside the caller's transaction;
    returns how many triggers were created or dropped. Checks privileges first."""
    existing = installed(conn, schema)
    have = {(t.table_oid, t.name) for t in existing}
    desired: dict[tuple[int, str], tuple[Capture, str]] = {}
    for c in captures:
        for name, sql in c.triggers(schema).items():
            desired[(c.table_oid, name)] = (c, sql)
    drop = [t for t in existing if (t.table_oid, t.name) not in desired]
    create = [(key, v) for key, v in desired.items() if key not in have]
    changing = {t.table_oid for t in drop} | {key[0] for key, _ in create}
    check_privileges(conn, schema, captures, changing)
    ensure_log(conn, schema)
    for t in drop:
        conn.execute(f"DROP TRIGGER IF EXISTS {quote_ident(t.name)} ON "
                     f"{_regclass(conn, t.table_oid)}")
    functions = {c.function_name(): c for c in captures}
    for c in functions.values():
        conn.execute(_function_sql(schema, c))
    for (_oid, _name), (_c, sql) in create:
        conn.execute(sql)
    # Functions no longer used by any trigger.
    for (name,) in conn.execute(
            "SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
            "WHERE n.nspname = %s AND p.proname LIKE 'capture\\_%%' "
            "AND NOT EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgfoid = p.oid)",
            (schema,)).fetchall():
        if name not in functions:
            conn.execute(f"DROP FUNCTION IF EXISTS {qualified(schema, name)}()")
    return len(drop) + len(create)


def _regclass(conn: psycopg.Connection, oid: int) -> str:
    row = conn.execute("SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname) "
                       "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                       "WHERE c.oid = %s", (oid,)).fetchone()
    assert row is not None
    return str(row[0])


# --- removing ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RemovalPlan:
    """What `crmsync app uninstall` removes from a PostgreSQL database."""

    schema: str
    schema_exists: bool
    triggers: list[Installed] = field(default_factory=list)
    functions: list[str] = field(default_factory=list)
    log_entries: int = 0
    identities: int = 0
    # Objects in crmsync's schema that crmsync did not create: the schema then stays.
    foreign_objects: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        if not self.schema_exists and not self.triggers:
            return [f"nothing to remove: schema {self.schema!r} does not exist"]
        out = [f"trigger {t.name} on {t.table_label}" for t in self.triggers]
        out += [f"function {self.schema}.{f}()" for f in self.functions]
        if self.schema_exists:
            out.append(f"table {self.schema}.{LOG_TABLE} ({self.log_entries} unread entries)")
            out.append(f"sequence {self.schema}.{CLAIMS}")
            out.append(f"table {self.schema}.{IDENTITY_TABLE} ({self.identities} rows)")
            out.append(f"sequence {self.schema}.{BIRTHS}")
            if self.foreign_objects:
                out.append(f"schema {self.schema} stays: it also holds "
                           + ", ".join(self.foreign_objects))
            else:
                out.append(f"schema {self.schema}")
        return out


_OURS = frozenset({LOG_TABLE, CLAIMS, "changelog_reading", "changelog_pkey", "changelog_id_seq",
                   IDENTITY_TABLE, "identity_pkey", BIRTHS})


def removal_plan(conn: psycopg.Connection, schema: str) -> RemovalPlan:
    if not _schema_exists(conn, schema):
        return RemovalPlan(schema, False)
    triggers = installed(conn, schema)
    functions = [r[0] for r in conn.execute(
        "SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
        "WHERE n.nspname = %s ORDER BY 1", (schema,))]
    ours = [f for f in functions if f.startswith("capture_")]
    others = [f"function {f}" for f in functions if not f.startswith("capture_")]
    others += [f"{r[1]} {r[0]}" for r in conn.execute(
        "SELECT c.relname, CASE c.relkind WHEN 'r' THEN 'table' WHEN 'S' THEN 'sequence' "
        "WHEN 'i' THEN 'index' WHEN 'v' THEN 'view' ELSE 'relation' END "
        "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s ORDER BY 1", (schema,)) if r[0] not in _OURS]
    entries = 0
    if table_oid(conn, schema, LOG_TABLE) is not None:
        entries = int(conn.execute(f"SELECT count(*) FROM {log_table(schema)}"
                                   ).fetchone()[0])  # type: ignore[index]
    identities = 0
    if table_oid(conn, schema, IDENTITY_TABLE) is not None:
        identities = int(conn.execute(f"SELECT count(*) FROM {identity_table(schema)}"
                                      ).fetchone()[0])  # type: ignore[index]
    return RemovalPlan(schema, True, triggers, ours, entries, identities, others)


def remove(conn: psycopg.Connection, schema: str) -> RemovalPlan:
    """Drop every trigger and object crmsync installed, inside the caller's transaction;
    the schema itself only when nothing else is in it. Returns what was removed."""
    plan = removal_plan(conn, schema)
    for t in plan.triggers:
        conn.execute(f"DROP TRIGGER IF EXISTS {quote_ident(t.name)} ON "
                     f"{_regclass(conn, t.table_oid)}")
    for f in plan.functions:
        conn.execute(f"DROP FUNCTION IF EXISTS {qualified(schema, f)}()")
    if plan.schema_exists:
        conn.execute(f"DROP TABLE IF EXISTS {log_table(schema)}")
        conn.execute(f"DROP SEQUENCE IF EXISTS {claims_sequence(schema)}")
        conn.execute(f"DROP TABLE IF EXISTS {identity_table(schema)}")
        conn.execute(f"DROP SEQUENCE IF EXISTS {births_sequence(schema)}")
        if not plan.foreign_objects:
            conn.execute(f"DROP SCHEMA IF EXISTS {quote_ident(schema)} RESTRICT")
    return plan


# --- reading -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Entry:
    id: int
    op: str
    record_id: str | None
    old_id: str | None
    origin: str | None
    at_ms: int
    payload: Any = None


def claim_end(conn: psycopg.Connection, schema: str) -> int:
    """The last claim number handed out (0: none yet)."""
    row = conn.execute(f"SELECT last_value, is_called FROM {claims_sequence(schema)}"
                       ).fetchone()
    assert row is not None
    return int(row[0]) if row[1] else 0


def forget(conn: psycopg.Connection, schema: str, kind: str, obj: str) -> int:
    """Delete every entry of (kind, object): a reader starting from now on."""
    return conn.execute(f"DELETE FROM {log_table(schema)} WHERE kind = %s AND object = %s",
                        (kind, obj)).rowcount


def acknowledge(conn: psycopg.Connection, schema: str, kind: str, obj: str,
                through: int) -> int:
    """Delete the entries of (kind, object) claimed under cursors up to `through`: the
    runtime committed what they caused."""
    return conn.execute(
        f"DELETE FROM {log_table(schema)} WHERE kind = %s AND object = %s AND claim <= %s",
        (kind, obj, through)).rowcount


def claim(conn: psycopg.Connection, schema: str, kind: str, obj: str, after: int,
          limit: int) -> tuple[int, list[Entry]]:
    """Take up to `limit` entries of (kind, object) that no committed cursor covers — never
    claimed, or claimed after `after` by a reader that did not get to commit — in id order,
    under a new claim number. Returns the number and the entries."""
    row = conn.execute(f"SELECT nextval('{claims_sequence(schema)}')").fetchone()
    assert row is not None
    number = int(row[0])
    log = log_table(schema)
    rows = conn.execute(
        f"UPDATE {log} l SET claim = %s FROM ("
        f"  SELECT id FROM {log} WHERE kind = %s AND object = %s "
        "   AND (claim IS NULL OR claim > %s) ORDER BY id LIMIT %s) AS pick "
        "WHERE l.id = pick.id "
        "RETURNING l.id, l.op, l.record_id, l.old_id, l.origin, "
        "  (extract(epoch FROM l.at) * 1000)::bigint, l.payload",
        (number, kind, obj, after, limit)).fetchall()
    entries = sorted((Entry(int(r[0]), r[1], r[2], r[3], r[4], int(r[5]), r[6]) for r in rows),
                     key=lambda e: e.id)
    return number, entries


@dataclass(frozen=True, slots=True)
class Collapsed:
    """Every entry of one record within a batch, collapsed."""

    record_id: str
    last_at: int
    own_only: bool  # every entry was written by crmsync's own connection


def collapse(entries: Sequence[Entry]) -> list[Collapsed]:
    """One item per record, in the order of each record's last entry. An update that changed
    the primary key concerns both the old key (gone) and the new one."""
    merged: dict[str, Collapsed] = {}
    for e in entries:
        own = e.origin == ORIGIN_CRMSYNC
        ids = [e.record_id] if e.record_id is not None else []
        if e.old_id is not None and e.old_id != e.record_id:
            ids.insert(0, e.old_id)
        for rid in ids:
            prev = merged.pop(rid, None)
            merged[rid] = Collapsed(rid, e.at_ms, own and (prev is None or prev.own_only))
    return list(merged.values())
