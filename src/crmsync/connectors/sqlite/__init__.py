"""The SQLite app connector: each app object is a table of the app's SQLite database.

    async with SqliteAppConnector(settings).open() as app:
        page = await app.scan("customers", None, [])

What it does, and the choices it makes about a database that belongs to someone else:

**Tables.** Each `[[connections.tables]]` entry names a table, its primary key (the table's
primary key or a column with a unique index: pages are ordered by it), its updated-at column,
and the columns crmsync reads and writes (empty: every column, from `PRAGMA table_info`).
A record is `Record(id=str(pk), properties={column: value}, updated_at=<epoch ms parsed from
the updated-at column: ISO text or epoch seconds / ms>)`. crmsync's writes set the updated-at
column in the format the app already uses (detected from an existing row, else from the
column's declared type).

**Transactions.** One `sqlite3` connection, one worker thread at a time; every call is one
transaction in one thread hop; writes are `BEGIN IMMEDIATE` transactions of `batch_size`
inputs with a SAVEPOINT per input, so a constraint violation fails only its input (a
`WriteResult(ok=False, error=RecordError(category=...))`). `busy_timeout` is 5 s; a database
still busy after that raises ConnectorError(kind="transient"). `foreign_keys` is ON and
`synchronous` FULL on crmsync's connection only (both are per-connection settings).

**Journal mode: left alone.** WAL is recommended (readers and the one writer do not block each
other, and crmsync's short reads never delay the app's writes), but the journal mode is a
property of the database file that every program using it lives with: switching it could
break an app on a network filesystem, one that opens the file read-only, or one that ships
the file around without its -wal file. So crmsync never changes it. In rollback-journal mode
everything still works — transactions are short and the busy timeout absorbs the waits; the
mode in use is in `statistics().journal_mode`. To switch, the app's owner runs
`PRAGMA journal_mode=WAL` once while the app is stopped.

**Change capture.** On open, AFTER INSERT / UPDATE / DELETE triggers are installed (idempotently)
on each table; they append to the change-log table (`changelog_table`), whoever writes.
`changes_since` reads it after a cursor (the last `seq`, a decimal string), collapses several
entries of one record into its current row (or an archived record when the row is gone), and
returns the new cursor. Association changes (a foreign key set or cleared, a join-table row
added or removed) log both records. `prune_changelog(cursor)` deletes what every reader has
passed. See `changelog.py`.

**Echoes of crmsync's own writes: not suppressed by default.** They land in the change log
like any write (tagged `origin = 'crmsync'`) and come back from `changes_since`; the runtime
re-reads the record, finds it equal to its snapshot and decides a no-op. Suppressing them
would be cheaper, but a write of ours can make the app change more than we wrote — its own
triggers deriving columns, generated columns, ON DELETE/UPDATE cascades — and those changes are
logged inside our transaction with our tag; dropping them would lose app changes until the
next reconciliation. `SqliteAppConnector(..., suppress_echoes=True)` drops records whose every
entry in a page is our own, for deployments that know their schema has no such reactions.

**Crash between a create and its link.** The INSERT carries every mapped value, including the
match key (the email column of a contact), and commits with its change-log entry. If crmsync
dies before committing the link, the runtime's `find(object, match_column, value)` finds the
row (case-insensitively) and links it, so no second row is created; a create refused by a
UNIQUE constraint reports `existing_id`.

**Pipelines, associations, events** (`relations.py`): deal pipelines and stages from the
configured tables; associations through a foreign-key column or a join table, readable and
writable in both directions; contact events from the events table in rowid order.

Generic app webhooks (`POST /webhooks/<connection>`) are verified and parsed by
`crmsync.connectors.app_webhooks`.
"""

from __future__ import annotations

from crmsync.connectors.sqlite.changelog import remove_change_capture
from crmsync.connectors.sqlite.connector import SqliteAppConnector, SqliteConnectorStatistics
from crmsync.connectors.sqlite.schema import parse_timestamp

__all__ = [
    "SqliteAppConnector",
    "SqliteConnectorStatistics",
    "parse_timestamp",
    "remove_change_capture",
]
