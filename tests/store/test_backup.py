"""Backups of the state database (store/backup.py): consistent while the daemon's writer commits,
written atomically with mode 0600, and the checks a file passes before it may be restored."""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
import stat
from pathlib import Path

import pytest
import trio

from crmsync.store import Store, connect
from crmsync.store import backup as backup_mod
from crmsync.store.backup import (
    BackupError,
    StateFileError,
    inspect_state_file,
    write_backup,
)
from crmsync.store.items import IndexRow, index_records
from crmsync.store.schema import MIGRATIONS, SCHEMA_VERSION

S = "shop/contacts"


def _counter_commit(conn: sqlite3.Connection, n: int) -> None:
    """One transaction that keeps an invariant: the hub cursor names how many items exist."""
    index_records(conn, S, "hub", [IndexRow(f"H{n}", (f"k{n}",), "1")])
    conn.execute("INSERT INTO cursors (sync_id, name, value, updated_at) VALUES (?, 'hub', ?, 0)"
                 " ON CONFLICT (sync_id, name) DO UPDATE SET value = excluded.value",
                 (S, str(n)))


def _invariant(path: Path) -> tuple[int, int]:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        items = conn.execute("SELECT count(*) FROM items").fetchone()[0]
        cursor = conn.execute("SELECT value FROM cursors WHERE sync_id = ?", (S,)).fetchone()
    return items, int(cursor[0]) if cursor else 0


async def test_backups_taken_while_the_writer_commits_are_each_one_consistent_state(tmp_path):
    """Every backup shows a state some commit left: never half of a transaction, whatever the
    writer does meanwhile (SQLite's backup step reads under one read transaction)."""
    db = tmp_path / "state" / "crmsync.db"
    out = tmp_path / "backups"
    seen: list[tuple[int, int]] = []
    with trio.fail_after(60):
        async with Store.open(db) as store:
            # A few thousand rows, so that each copy takes a while.
            await store.call(lambda c: [_counter_commit(c, n) for n in range(1, 3001)])
            done = trio.Event()
            written = 3000

            async def writer() -> None:
                nonlocal written
                while not done.is_set():
                    written += 1
                    await store.call(_counter_commit, written)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(writer)
                for i in range(5):
                    target = out / f"b{i}.db"
                    info = await trio.to_thread.run_sync(
                        lambda t=target: write_backup(db, t, crmsync_version="test"))
                    assert info.path == str(target) and info.bytes == target.stat().st_size
                    assert info.schema_version == SCHEMA_VERSION
                    seen.append(_invariant(target))
                    assert info.items == seen[-1][0]
                    await trio.sleep(0.01)
                done.set()
    for items, cursor in seen:
        assert items == cursor, seen
    assert written > 3000


def test_the_backup_is_one_file_readable_only_by_its_owner_and_says_when(tmp_path):
    db = tmp_path / "crmsync.db"
    connect(db).close()
    old = os.umask(0)  # whatever the caller's umask
    try:
        info = write_backup(db, tmp_path / "new" / "dir" / "b.db", crmsync_version="9.9",
                            now=lambda: 1_700_000_000.0)
    finally:
        os.umask(old)
    target = Path(info.path)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert stat.S_IMODE(target.parent.stat().st_mode) & 0o077 == 0
    assert not (target.parent / "b.db-wal").exists()
    with sqlite3.connect(target) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
        assert conn.execute("SELECT taken_at, crmsync_version FROM backup_info").fetchall() \
            == [(1_700_000_000.0, "9.9")]
    got = inspect_state_file(target)
    assert (got.taken_at, got.taken_at_known, got.crmsync_version) == (1_700_000_000.0, True,
                                                                        "9.9")


def test_a_backup_that_fails_midway_leaves_the_previous_one_untouched(tmp_path, monkeypatch):
    db = tmp_path / "crmsync.db"
    connect(db).close()
    target = tmp_path / "b.db"
    target.write_bytes(b"the previous backup")

    def disk_full(source: sqlite3.Connection, tmp: Path) -> None:
        tmp.write_bytes(b"half a database")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(backup_mod, "copy_database", disk_full)
    with pytest.raises(BackupError, match="No space left"):
        write_backup(db, target, crmsync_version="test")
    assert target.read_bytes() == b"the previous backup"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.db", "crmsync.db"]


@pytest.mark.parametrize("target, message", [
    ("relative.db", "absolute path"),
    ("{tmp}", "is a directory"),
    ("{tmp}/crmsync.db", "the state database itself"),
    ("/proc/crmsync-backup.db", "cannot write in /proc"),
])
def test_backup_targets_that_cannot_be_used(tmp_path, target, message):
    db = tmp_path / "crmsync.db"
    connect(db).close()
    with pytest.raises(BackupError, match=message):
        write_backup(db, target.format(tmp=tmp_path), crmsync_version="test")


# --- what a file must be to be restored -------------------------------------------------------


def _old_schema(path: Path, version: int) -> None:
    with sqlite3.connect(path) as conn:
        for statements in MIGRATIONS[:version]:
            for sql in statements:
                conn.execute(sql)
        conn.execute("INSERT INTO items (sync_id, hub_id, state, created_at, updated_at) "
                     "VALUES (?, 'H1', 'pending', 5, 1234.5)", (S,))
        conn.execute(f"PRAGMA user_version = {version}")


def test_a_file_of_an_older_schema_is_accepted_with_its_time_estimated(tmp_path):
    path = tmp_path / "old.db"
    _old_schema(path, 5)
    got = inspect_state_file(path)
    assert got.schema_version == 5 and got.items == {S: 1}
    # No backup_info before version 6: the newest time in the file, no later than the copy.
    assert (got.taken_at, got.taken_at_known) == (1234.5, False)


def test_files_that_are_not_crmsync_state_databases_are_refused(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("hello " * 1000)
    with pytest.raises(StateFileError, match="not a SQLite database"):
        inspect_state_file(text)
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE t (x)")
    with pytest.raises(StateFileError, match="not a crmsync state database"):
        inspect_state_file(other)
    with pytest.raises(StateFileError, match="no such file"):
        inspect_state_file(tmp_path / "missing.db")


def test_a_file_of_a_newer_crmsync_is_refused(tmp_path):
    path = tmp_path / "new.db"
    connect(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(StateFileError, match=r"newer crmsync .* upgrade crmsync"):
        inspect_state_file(path)


def test_a_damaged_file_fails_the_integrity_check(tmp_path):
    path = tmp_path / "damaged.db"
    conn = connect(path)
    conn.execute("BEGIN")
    index_records(conn, S, "hub", [IndexRow(f"H{n}", (f"key-{n:06d}",), "1")
                                   for n in range(2000)])
    conn.execute("COMMIT")
    conn.execute("PRAGMA journal_mode=DELETE")
    page = conn.execute("PRAGMA page_size").fetchone()[0]
    conn.close()
    data = bytearray(path.read_bytes())
    # Scribble over a page in the middle of the file (an index or table page).
    middle = (len(data) // page // 2) * page
    data[middle + 8:middle + 200] = b"\xff" * 192
    path.write_bytes(bytes(data))
    with pytest.raises(StateFileError, match="integrity check"):
        inspect_state_file(path)
