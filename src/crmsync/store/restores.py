"""Restoring the state database from a backup, and the marks a restore leaves for the daemon.

A restored state is older than the sides: whatever crmsync did after the backup (records it
created, values it copied, links, events it acknowledged, cursors it moved) is not in it.
`restore_state` therefore records the restore (`restores`) and, for every object sync
configured at the time, a catch-up to do (`restore_catch_up`). While an object sync catches up
(runtime/object_sync.py: its initial sync completes, then one full reconciliation runs) the
runtime looks for an existing record before every create and holds conflicts it cannot tell
from its own lost copies (engine/restored.py); `catching_up` tells it so, `caught_up` ends it.

`restore_state` swaps the files of a stopped daemon's state directory: it refuses while the
state database is open elsewhere (a probe for an exclusive lock: a WAL connection, even an idle
one, holds a shared lock on the file), prepares the new database next to the old one (0600,
migrated, marked), keeps the replaced one aside under a dated name, then renames the new one
into place.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

import msgspec

from crmsync.store.backup import (
    StateFileError,
    StateFileInfo,
    copy_database,
    fsync_path,
    inspect_state_file,
    integrity_problems,
    open_read_only,
)
from crmsync.store.schema import SCHEMA_VERSION, migrate

STATE_FILE = "crmsync.db"


class StateInUse(Exception):
    """The state database is open in another process (a running daemon)."""


class RestoreMark(msgspec.Struct, frozen=True):
    """An object sync catching up after a restore."""

    restore_id: int
    restored_at: float
    backup_taken_at: float


class RestoreResult(msgspec.Struct, frozen=True, kw_only=True):
    state_db: str
    backup: StateFileInfo
    migrated_to: int  # the schema version of the restored state
    replaced: str = ""  # where the replaced state was kept ("" if there was none)
    replaced_readable: bool = True  # its refresh tokens could be read (if it existed)
    tokens_kept: list[str] = []  # accounts whose newer refresh token was carried over
    tokens_forgotten: bool = False
    catch_up: list[str] = []  # object syncs that catch up on their next start
    restored_at: float = 0.0


# --- the marks (units of work for the daemon's store) -----------------------------------------


def catching_up(conn: sqlite3.Connection, sync_id: str) -> RestoreMark | None:
    """The restore `sync_id` still catches up after: only the latest restore counts."""
    row = conn.execute(
        "SELECT r.id, r.restored_at, r.backup_taken_at FROM restores r JOIN restore_catch_up c "
        "ON c.restore_id = r.id WHERE c.sync_id = ? AND c.done_at IS NULL "
        "AND r.id = (SELECT max(id) FROM restores)", (sync_id,)).fetchone()
    return None if row is None else RestoreMark(int(row[0]), float(row[1]), float(row[2]))


def caught_up(conn: sqlite3.Connection, restore_id: int, sync_id: str) -> None:
    conn.execute("UPDATE restore_catch_up SET done_at = ? WHERE restore_id = ? AND sync_id = ?",
                 (time.time(), restore_id, sync_id))


def record_restore(conn: sqlite3.Connection, *, restored_at: float, backup_taken_at: float,
                   backup_file: str, replaced: str, sync_ids: Sequence[str]) -> int:
    cur = conn.execute("INSERT INTO restores (restored_at, backup_taken_at, backup_file, "
                       "replaced) VALUES (?, ?, ?, ?)",
                       (restored_at, backup_taken_at, backup_file, replaced))
    rid = int(cur.lastrowid or 0)
    conn.executemany("INSERT INTO restore_catch_up (restore_id, sync_id) VALUES (?, ?)",
                     [(rid, s) for s in dict.fromkeys(sync_ids)])
    return rid


# --- the files --------------------------------------------------------------------------------


@contextlib.contextmanager
def exclusive(db: Path) -> Iterator[sqlite3.Connection | None]:
    """Hold an exclusive lock on the state database `db` (None: there is none, or it is not
    a database any more, which no daemon can be using). Raises StateInUse if another process
    has it open. On exit the database is checkpointed into one file and closed."""
    if not db.exists():
        yield None
        return
    conn = sqlite3.connect(db, isolation_level=None, timeout=0)
    try:
        try:
            conn.execute("PRAGMA locking_mode=EXCLUSIVE")
            conn.execute("BEGIN EXCLUSIVE")
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                raise StateInUse(f"{db} is in use by another process (is crmsync running? "
                                 "stop it first)") from None
            yield None
            return
        except sqlite3.DatabaseError:
            yield None
            return
        conn.execute("COMMIT")  # the lock stays: locking_mode is exclusive
        yield conn
        with contextlib.suppress(sqlite3.Error):
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()


def _tokens(conn: sqlite3.Connection | None) -> dict[str, tuple[str, float]] | None:
    """The refresh tokens of the state being replaced (None: unreadable)."""
    if conn is None:
        return None
    try:
        return {str(a): (str(t), float(u)) for a, t, u in conn.execute(
            "SELECT account, refresh_token, updated_at FROM tokens")}
    except sqlite3.DatabaseError:
        return None


def _keep_newer_tokens(conn: sqlite3.Connection, old: dict[str, tuple[str, float]]
                       ) -> list[str]:
    """A refresh token rotated after the backup is the only one the hub still accepts (when
    it rotates them): the replaced state's newer ones win."""
    kept = []
    mine = {str(a): float(u) for a, u in conn.execute("SELECT account, updated_at FROM tokens")}
    for account, (token, updated) in sorted(old.items()):
        if updated > mine.get(account, float("-inf")):
            conn.execute("INSERT INTO tokens (account, refresh_token, updated_at) VALUES "
                         "(?, ?, ?) ON CONFLICT (account) DO UPDATE SET "
                         "refresh_token = excluded.refresh_token, "
                         "updated_at = excluded.updated_at", (account, token, updated))
            kept.append(account)
    return kept


def _aside_name(db: Path, now: float) -> Path:
    stamp = datetime.fromtimestamp(now, UTC).strftime("%Y%m%dT%H%M%SZ")
    aside = db.with_name(f"{db.name}.replaced-{stamp}")
    n = 1
    while aside.exists():
        n += 1
        aside = db.with_name(f"{db.name}.replaced-{stamp}-{n}")
    return aside


def _owner(db: Path) -> tuple[int, int]:
    st = db.stat() if db.exists() else db.parent.stat()
    return st.st_uid, st.st_gid


def restore_state(state_dir: str | Path, backup: str | Path, *, sync_ids: Sequence[str],
                  forget_tokens: bool = False,
                  now: Callable[[], float] = time.time) -> RestoreResult:
    """Replace the state database in `state_dir` with the backup file `backup`.

    The daemon must be stopped: raises StateInUse while the state database is open
    elsewhere, StateFileError if `backup` is not a sound crmsync state database this crmsync
    can read or migrate. Nothing is changed unless everything succeeds; the replaced state is
    kept aside (with its WAL folded in) under `crmsync.db.replaced-<UTC time>`. `sync_ids`
    are the object syncs that catch up on their next start. `forget_tokens`: keep no rotated
    OAuth refresh token (neither the backup's nor the replaced state's): the daemon starts from
    the one its configuration names, after a new authorization."""
    state_dir = Path(state_dir)
    db = state_dir / STATE_FILE
    backup = Path(backup)
    if backup.resolve() == db.resolve():
        raise StateFileError(f"{backup} is the state database itself: give a backup file")
    info = inspect_state_file(backup)
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    restored_at = now()
    parts = [db.with_name(db.name + suffix) for suffix in ("", "-wal", "-shm")]
    aside = _aside_name(db, restored_at) if any(p.exists() for p in parts) else None
    catch_up = list(dict.fromkeys(sync_ids))
    with exclusive(db) as old:
        old_tokens = _tokens(old)
        fd, name = tempfile.mkstemp(prefix=f".{STATE_FILE}.restore-", suffix=".part",
                                    dir=state_dir)
        os.close(fd)
        tmp = Path(name)
        try:
            with contextlib.closing(open_read_only(backup)) as src:
                copy_database(src, tmp)
            with contextlib.closing(sqlite3.connect(tmp, isolation_level=None)) as conn:
                conn.execute("BEGIN IMMEDIATE")
                migrate(conn)
                # The restored state is not a backup any more.
                conn.execute("DELETE FROM backup_info")
                record_restore(conn, restored_at=restored_at, backup_taken_at=info.taken_at,
                               backup_file=str(backup.resolve()),
                               replaced=str(aside) if aside else "", sync_ids=catch_up)
                if forget_tokens:
                    conn.execute("DELETE FROM tokens")
                    kept = []
                else:
                    kept = _keep_newer_tokens(conn, old_tokens) if old_tokens else []
                conn.execute("COMMIT")
                problems = integrity_problems(conn)
                if problems:
                    raise StateFileError("the restored copy failed its integrity check: "
                                         + "; ".join(problems))
                conn.execute("PRAGMA journal_mode=WAL")
            if os.geteuid() == 0:
                # Root restores for a service user (DynamicUser= included): the file gets
                # the owner of the state it replaces, else of the state directory.
                os.chown(tmp, *_owner(db))
            fsync_path(tmp)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    # The old database is closed now, its WAL folded in: set it aside, then put the new one
    # in its place (two renames in one directory).
    try:
        if aside is not None:
            for part in parts:
                if part.exists():
                    os.rename(part, aside.with_name(aside.name + part.name[len(db.name):]))
        os.replace(tmp, db)
        fsync_path(state_dir, directory=True)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return RestoreResult(state_db=str(db), backup=info, migrated_to=SCHEMA_VERSION,
                         replaced=str(aside) if aside else "",
                         replaced_readable=aside is None or old_tokens is not None,
                         tokens_kept=kept, tokens_forgotten=forget_tokens,
                         catch_up=catch_up, restored_at=restored_at)
