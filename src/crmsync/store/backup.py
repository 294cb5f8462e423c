"""Backups of the state database, and reading a state file (a backup, or a copy) before it is
restored.

A backup is made with SQLite's online backup API from a connection of its own, in one step:
the step runs inside one read transaction, so the copy is the state as of one instant, while
the daemon's writer goes on committing (WAL lets readers and the writer run side by side; a
stepwise backup would restart every time the writer commits). The copy is written to a
temporary file (mode 0600) next to the target, switched to a rollback journal so that it is
one self-contained file, stamped with the time of its snapshot (`backup_info`), checked with
`PRAGMA integrity_check`, flushed to disk and only then renamed over the target: the target
path never holds half a backup.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import msgspec

from crmsync.store.schema import SCHEMA_VERSION

# Tables every crmsync state database has had since schema version 1.
CORE_TABLES = frozenset({"items", "match_keys", "history", "cursors", "initial_syncs", "inbox",
                         "tokens"})
# A failing integrity check lists at most this many problems.
MAX_PROBLEMS = 5


class BackupError(Exception):
    """The backup could not be written (the message says where and why)."""


class StateFileError(Exception):
    """A file that cannot be restored: not a crmsync state database, damaged, or written by a
    newer crmsync."""


class BackupInfo(msgspec.Struct, frozen=True, kw_only=True):
    path: str
    bytes: int
    schema_version: int
    taken_at: float  # when the snapshot was taken (epoch seconds, before its read began)
    duration_ms: float
    items: int = 0  # records crmsync indexes, over every object sync


class StateFileInfo(msgspec.Struct, frozen=True, kw_only=True):
    """What a state file holds, as `crmsync restore-state` reports it."""

    path: str
    bytes: int
    schema_version: int
    # When the backup's snapshot was taken; for a file not written by `crmsync ctl backup`
    # (an older crmsync, a copy), the newest time found in it, which is no later than that.
    taken_at: float
    taken_at_known: bool
    crmsync_version: str = ""
    items: dict[str, int] = {}  # per object sync
    phases: dict[str, str] = {}  # initial sync phase per object sync


def fsync_path(path: Path, directory: bool = False) -> None:
    """Flush a file (or a directory's entries) to disk."""
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def integrity_problems(conn: sqlite3.Connection) -> list[str]:
    """`PRAGMA integrity_check`'s problems (empty: the file is sound)."""
    rows = [str(r[0]) for r in conn.execute(f"PRAGMA integrity_check({MAX_PROBLEMS})")]
    return [] if rows == ["ok"] else rows


def _item_count(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT count(*) FROM items").fetchone()[0])


@contextlib.contextmanager
def _closing(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    try:
        yield conn
    finally:
        conn.close()


def copy_database(source: sqlite3.Connection, target: Path) -> None:
    """Copy `source` into the (empty) file `target` in one backup step, and make the copy a
    single file with a rollback journal."""
    with _closing(sqlite3.connect(target, isolation_level=None)) as dst:
        source.backup(dst)
        dst.execute("PRAGMA journal_mode=DELETE")


def write_backup(source: str | Path, target: str | Path, *, crmsync_version: str,
                 now: Callable[[], float] = time.time) -> BackupInfo:
    """Write a consistent backup of the state database `source` to the absolute path `target`
    (replacing a file there; missing directories are created 0700). Runs in the caller's
    thread, for as long as the copy and its check take; raises BackupError."""
    started = time.perf_counter()
    if str(source) == ":memory:":
        raise BackupError("the state database is in memory: nothing to back up")
    target = Path(target)
    if not target.is_absolute():
        raise BackupError(f"{target}: give an absolute path")
    if target.is_dir():
        raise BackupError(f"{target} is a directory: name the backup file")
    directory = target.parent
    if Path(source).resolve() == target.resolve():
        raise BackupError(f"{target} is the state database itself")
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        # mkstemp creates the file 0600: the copy holds refresh tokens and the index.
        fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=directory)
    except OSError as exc:
        raise BackupError(f"cannot write in {directory}: {exc.strerror or exc} (under systemd, "
                          "back up into the state directory or a directory named in "
                          "ReadWritePaths=)") from None
    os.close(fd)
    tmp = Path(name)
    try:
        with _closing(sqlite3.connect(source, isolation_level=None, timeout=5.0)) as src:
            src.execute("PRAGMA query_only=1")
            # Before the read begins: everything in the copy was committed by then or
            # moments after, never earlier than this (what restores rely on, see
            # store/restores.py).
            taken_at = now()
            copy_database(src, tmp)
        with _closing(sqlite3.connect(tmp, isolation_level=None)) as dst:
            dst.execute("BEGIN IMMEDIATE")
            dst.execute("DELETE FROM backup_info")
            dst.execute("INSERT INTO backup_info (id, taken_at, crmsync_version, source) "
                        "VALUES (1, ?, ?, ?)", (taken_at, crmsync_version, str(source)))
            dst.execute("COMMIT")
            problems = integrity_problems(dst)
            if problems:
                raise BackupError(f"the copy failed its integrity check: {'; '.join(problems)}")
            version = int(dst.execute("PRAGMA user_version").fetchone()[0])
            items = _item_count(dst)
        fsync_path(tmp)
        os.replace(tmp, target)
        fsync_path(directory, directory=True)
    except sqlite3.Error as exc:
        tmp.unlink(missing_ok=True)
        raise BackupError(f"backup to {target} failed: {exc}") from None
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise BackupError(f"backup to {target} failed: {exc.strerror or exc}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return BackupInfo(path=str(target), bytes=target.stat().st_size, schema_version=version,
                      taken_at=taken_at, items=items,
                      duration_ms=round((time.perf_counter() - started) * 1000, 1))


def open_read_only(path: Path) -> sqlite3.Connection:
    """A read-only connection to a state file at rest (raises StateFileError)."""
    if not path.is_file():
        raise StateFileError(f"{path}: no such file")
    try:
        return sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True,
                               isolation_level=None, timeout=5.0)
    except sqlite3.Error as exc:
        raise StateFileError(f"{path} cannot be opened: {exc}") from None


def _newest_time(conn: sqlite3.Connection, tables: set[str]) -> float:
    """The latest time written anywhere in the file: no later than its snapshot."""
    newest = 0.0
    for table, col in (("items", "updated_at"), ("history", "at"), ("cursors", "updated_at"),
                       ("inbox", "received_at"), ("initial_syncs", "updated_at"),
                       ("tokens", "updated_at")):
        if table in tables:
            got = conn.execute(f"SELECT max({col}) FROM {table}").fetchone()[0]
            newest = max(newest, float(got or 0))
    return newest


def inspect_state_file(path: str | Path) -> StateFileInfo:
    """Check that `path` is a sound crmsync state database this crmsync can read or migrate,
    and say what it holds. Reads the whole file (`PRAGMA integrity_check`); raises
    StateFileError naming what is wrong."""
    path = Path(path)
    with _closing(open_read_only(path)) as conn:
        try:
            tables = {str(r[0]) for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")}
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        except sqlite3.DatabaseError as exc:
            raise StateFileError(f"{path} is not a SQLite database ({exc})") from None
        missing = CORE_TABLES - tables
        if version == 0 or missing:
            raise StateFileError(f"{path} is not a crmsync state database (schema version "
                                 f"{version}, missing tables: {', '.join(sorted(missing))})")
        if version > SCHEMA_VERSION:
            raise StateFileError(f"{path} was written by a newer crmsync (schema version "
                                 f"{version}; this one knows up to {SCHEMA_VERSION}): upgrade "
                                 "crmsync first")
        try:
            problems = integrity_problems(conn)
        except sqlite3.DatabaseError as exc:
            problems = [str(exc)]
        if problems:
            raise StateFileError(f"{path} failed its integrity check: {'; '.join(problems)}")
        taken: float | None = None
        made_by = ""
        if "backup_info" in tables:
            row = conn.execute("SELECT taken_at, crmsync_version FROM backup_info").fetchone()
            if row is not None:
                taken, made_by = float(row[0]), str(row[1])
        items = {str(s): int(n) for s, n in conn.execute(
            "SELECT sync_id, count(*) FROM items GROUP BY sync_id ORDER BY sync_id")}
        phases = {str(s): str(p) for s, p in conn.execute(
            "SELECT sync_id, phase FROM initial_syncs ORDER BY sync_id")}
        return StateFileInfo(
            path=str(path), bytes=path.stat().st_size, schema_version=version,
            taken_at=taken if taken is not None else _newest_time(conn, tables),
            taken_at_known=taken is not None, crmsync_version=made_by, items=items,
            phases=phases)
