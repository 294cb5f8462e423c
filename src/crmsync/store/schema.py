"""The state database's schema, versioned by `PRAGMA user_version` with forward migrations.

A migration is a list of statements run inside the opening transaction; a database written by
a newer crmsync (a higher user_version) is refused rather than misread.
"""

from __future__ import annotations

import sqlite3

# One sync item per record in an object sync: a hub record, an app record, or a linked pair.
# `state` is pending | syncing | failed | excluded | queued | deleted; `category` holds the
# failure category or the exclusion reason. `snapshot` is NULL until the pair is first synced.
# `creating` names the side a create was sent to but not yet linked (healed by matching).
_V1 = [
    """
    CREATE TABLE items (
        item_id      INTEGER PRIMARY KEY,
        sync_id      TEXT NOT NULL,
        hub_id       TEXT,
        app_id       TEXT,
        state        TEXT NOT NULL,
        category     TEXT NOT NULL DEFAULT '',
        detail       TEXT NOT NULL DEFAULT '',
        match_key    TEXT NOT NULL DEFAULT '',
        snapshot     BLOB,
        hub_version  TEXT NOT NULL DEFAULT '',
        app_version  TEXT NOT NULL DEFAULT '',
        deleted_side TEXT NOT NULL DEFAULT '',
        creating     TEXT NOT NULL DEFAULT '',
        attempts     INTEGER NOT NULL DEFAULT 0,
        created_at   REAL NOT NULL,
        updated_at   REAL NOT NULL
    )
    """,
    # NULL ids may repeat in a UNIQUE index; the full (not partial) index also serves
    # count(*) per sync.
    "CREATE UNIQUE INDEX items_hub ON items(sync_id, hub_id)",
    "CREATE UNIQUE INDEX items_app ON items(sync_id, app_id)",
    # Most items are `syncing` once the initial sync is done; leaving them out of the state
    # index means keeping a record in sync never touches it.
    "CREATE INDEX items_state ON items(sync_id, state, category) WHERE state != 'syncing'",
    # Match keys per side; the first record to claim a key holds it (duplicates fail). Keys
    # point at a record id, not an item, so that claiming needs no item lookup and an item
    # folded into another keeps its keys.
    """
    CREATE TABLE match_keys (
        sync_id   TEXT NOT NULL,
        side      TEXT NOT NULL,
        key       TEXT NOT NULL,
        record_id TEXT NOT NULL,
        PRIMARY KEY (sync_id, side, key)
    ) WITHOUT ROWID
    """,
    """
    CREATE TABLE history (
        id       INTEGER PRIMARY KEY,
        sync_id  TEXT NOT NULL,
        item_id  INTEGER NOT NULL,
        at       REAL NOT NULL,
        hub_id   TEXT,
        app_id   TEXT,
        action   TEXT NOT NULL,
        changes  BLOB NOT NULL,
        detail   TEXT NOT NULL DEFAULT ''
    )
    """,
    "CREATE INDEX history_item ON history(sync_id, item_id, id)",
    """
    CREATE TABLE cursors (
        sync_id    TEXT NOT NULL,
        name       TEXT NOT NULL,
        value      TEXT NOT NULL,
        updated_at REAL NOT NULL,
        PRIMARY KEY (sync_id, name)
    ) WITHOUT ROWID
    """,
    # Initial sync progress and checkpoint per object sync.
    """
    CREATE TABLE initial_syncs (
        sync_id      TEXT PRIMARY KEY,
        config_hash  TEXT NOT NULL,
        phase        TEXT NOT NULL,
        cursor       TEXT NOT NULL DEFAULT '',
        done         INTEGER NOT NULL DEFAULT 0,
        total        INTEGER NOT NULL DEFAULT 0,
        preview      INTEGER NOT NULL DEFAULT 0,
        approved     INTEGER NOT NULL DEFAULT 0,
        started_at   REAL NOT NULL,
        completed_at REAL,
        updated_at   REAL NOT NULL
    )
    """,
    # The plan an initial sync in preview would carry out.
    """
    CREATE TABLE plan (
        id      INTEGER PRIMARY KEY,
        sync_id TEXT NOT NULL,
        kind    TEXT NOT NULL,
        hub_id  TEXT,
        app_id  TEXT,
        detail  TEXT NOT NULL DEFAULT ''
    )
    """,
    "CREATE INDEX plan_sync ON plan(sync_id, kind)",
    # Webhook events, committed before the HTTP answer; `done` is set in the transaction
    # that records their sync. Kept for a while after that to drop redeliveries.
    """
    CREATE TABLE inbox (
        id          INTEGER PRIMARY KEY,
        source      TEXT NOT NULL,
        event_key   TEXT NOT NULL,
        received_at REAL NOT NULL,
        payload     BLOB NOT NULL,
        done        INTEGER NOT NULL DEFAULT 0,
        UNIQUE (source, event_key)
    )
    """,
    "CREATE INDEX inbox_pending ON inbox(source, done, id)",
    """
    CREATE TABLE parked_deletes (
        sync_id   TEXT NOT NULL,
        item_id   INTEGER NOT NULL,
        side      TEXT NOT NULL,
        record_id TEXT NOT NULL,
        parked_at REAL NOT NULL,
        PRIMARY KEY (sync_id, item_id)
    ) WITHOUT ROWID
    """,
    # A rotated OAuth refresh token outlives the (immutable) systemd credential.
    """
    CREATE TABLE tokens (
        account       TEXT PRIMARY KEY,
        refresh_token TEXT NOT NULL,
        updated_at    REAL NOT NULL
    )
    """,
    """
    CREATE TABLE sent_events (
        sync_id  TEXT NOT NULL,
        event_id TEXT NOT NULL,
        sent_at  REAL NOT NULL,
        PRIMARY KEY (sync_id, event_id)
    ) WITHOUT ROWID
    """,
    """
    CREATE TABLE connection_states (
        name       TEXT PRIMARY KEY,
        disabled   INTEGER NOT NULL DEFAULT 0,
        reason     TEXT NOT NULL DEFAULT '',
        updated_at REAL NOT NULL
    )
    """,
]

# Associations waiting for a partner record to be linked (issue 4 of 5), and counters of
# skipped events.
_V2 = [
    """
    CREATE TABLE pending_associations (
        id          INTEGER PRIMARY KEY,
        connection  TEXT NOT NULL,
        from_object TEXT NOT NULL,
        from_side   TEXT NOT NULL,
        from_id     TEXT NOT NULL,
        to_object   TEXT NOT NULL,
        to_id       TEXT NOT NULL,
        removed     INTEGER NOT NULL DEFAULT 0,
        attempts    INTEGER NOT NULL DEFAULT 0,
        detail      TEXT NOT NULL DEFAULT '',
        created_at  REAL NOT NULL,
        UNIQUE (connection, from_object, from_side, from_id, to_object, to_id)
    )
    """,
    """
    CREATE TABLE event_counts (
        sync_id TEXT NOT NULL,
        outcome TEXT NOT NULL,
        count   INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (sync_id, outcome)
    ) WITHOUT ROWID
    """,
]

# Associations as each side last showed them, per pair of object types of one connection
# (x_object < y_object, ids of that side's records), to tell additions from removals.
_V3 = [
    """
    CREATE TABLE assoc_pairs (
        connection TEXT NOT NULL,
        side       TEXT NOT NULL,
        x_object   TEXT NOT NULL,
        x_id       TEXT NOT NULL,
        y_object   TEXT NOT NULL,
        y_id       TEXT NOT NULL,
        PRIMARY KEY (connection, side, x_object, x_id, y_object, y_id)
    ) WITHOUT ROWID
    """,
    "CREATE INDEX assoc_pairs_y ON assoc_pairs(connection, side, y_object, y_id)",
    "CREATE INDEX pending_associations_to ON pending_associations(connection, to_object, "
    "from_side, to_id)",
]

# The snapshot a sync will store once its writes succeed, committed before the writes are
# sent: after a crash in between, a write that landed is recognised as ours.
_V4 = [
    "ALTER TABLE items ADD COLUMN intent BLOB",
]

# A record's claims are found by its id when its key changes or it is deleted.
_V5 = [
    "CREATE INDEX match_keys_record ON match_keys(sync_id, side, record_id)",
]

# What decides which records match (keys, filters, direction), apart from the other
# settings: a saved change of it starts the initial sync in preview again (when configured).
_V6 = [
    "ALTER TABLE initial_syncs ADD COLUMN match_hash TEXT NOT NULL DEFAULT ''",
]

# The incarnation of an item's app record (records.py): an app that reuses ids gives a deleted
# record's id to a later one, which must not pass for it. NULL: not known yet.
_V7 = [
    "ALTER TABLE items ADD COLUMN app_incarnation TEXT",
]

# The last write of a sync to the hub record (runtime-encoded: what was written, the version
# read before it and the version it made): a hub edit that write overwrote is seen by it.
_V8 = [
    "ALTER TABLE items ADD COLUMN hub_write BLOB",
]

# Backups and restores (issue 15). `backup_info` holds one row in a backup file only (written
# into the copy by `crmsync ctl backup`): when its snapshot was taken. `restores` records each
# `crmsync restore-state`, and `restore_catch_up` the object syncs that were configured then:
# until an object sync has caught up (`done_at` set), what happened on the sides after the
# backup is healed by matching and ambiguous conflicts are held (store/restores.py).
_V9 = [
    """
    CREATE TABLE backup_info (
        id              INTEGER PRIMARY KEY CHECK (id = 1),
        taken_at        REAL NOT NULL,
        crmsync_version TEXT NOT NULL,
        source          TEXT NOT NULL DEFAULT ''
    )
    """,
    """
    CREATE TABLE restores (
        id              INTEGER PRIMARY KEY,
        restored_at     REAL NOT NULL,
        backup_taken_at REAL NOT NULL,
        backup_file     TEXT NOT NULL DEFAULT '',
        replaced        TEXT NOT NULL DEFAULT ''
    )
    """,
    """
    CREATE TABLE restore_catch_up (
        restore_id INTEGER NOT NULL,
        sync_id    TEXT NOT NULL,
        done_at    REAL,
        PRIMARY KEY (restore_id, sync_id)
    ) WITHOUT ROWID
    """,
]

# The hub records as the initial sync's hub index listed them (store/scanned.py): the app pass
# and the hub pass decide on them instead of reading them from HubSpot again. Emptied when an
# initial sync starts, restarts or completes.
_V10 = [
    """
    CREATE TABLE scanned (
        sync_id    TEXT NOT NULL,
        side       TEXT NOT NULL,
        record_id  TEXT NOT NULL,
        record     BLOB NOT NULL,
        PRIMARY KEY (sync_id, side, record_id)
    ) WITHOUT ROWID
    """,
]

# Association writes a sync is about to send, committed before it sends them (like an item's
# intent): after a crash before the sync committed what it saw, a write that landed is
# recognised as ours, not taken for a change made on that side (store/associations.py).
_V11 = [
    """
    CREATE TABLE assoc_intents (
        connection TEXT NOT NULL,
        side       TEXT NOT NULL,
        x_object   TEXT NOT NULL,
        x_id       TEXT NOT NULL,
        y_object   TEXT NOT NULL,
        y_id       TEXT NOT NULL,
        removed    INTEGER NOT NULL,
        src_x_id   TEXT NOT NULL,
        src_y_id   TEXT NOT NULL,
        PRIMARY KEY (connection, side, x_object, x_id, y_object, y_id)
    ) WITHOUT ROWID
    """,
    "CREATE INDEX assoc_intents_y ON assoc_intents(connection, side, y_object, y_id)",
]

MIGRATIONS: list[list[str]] = [_V1, _V2, _V3, _V4, _V5, _V6, _V7, _V8, _V9, _V10, _V11]
SCHEMA_VERSION = len(MIGRATIONS)


class SchemaTooNew(Exception):
    pass


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the schema to SCHEMA_VERSION inside the caller's transaction; returns the old one."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise SchemaTooNew(
            f"the state database has schema version {version}; this crmsync knows up to "
            f"{SCHEMA_VERSION}: upgrade crmsync"
        )
    for statements in MIGRATIONS[version:]:
        for sql in statements:
            conn.execute(sql)
    if version != SCHEMA_VERSION:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    return int(version)
