"""Restoring the state database (store/restores.py): only for a stopped daemon, only a sound
crmsync state file, the replaced state kept aside whole, and the catch-up marks a restore
leaves for the object syncs."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from crmsync.store import Store, connect
from crmsync.store import restores as restores_mod
from crmsync.store.backup import StateFileError, write_backup
from crmsync.store.items import IndexRow, index_records
from crmsync.store.restores import (
    StateInUse,
    catching_up,
    caught_up,
    restore_state,
)
from crmsync.store.schema import MIGRATIONS, SCHEMA_VERSION
from crmsync.store.tokens import save_refresh_token

S = "shop/contacts"
OTHER = "shop/companies"

# Commits one row and dies without closing its connection (as under SIGKILL).
KILLED_WRITER = """
import os, sys
from crmsync.store import connect
from crmsync.store.items import IndexRow, index_records
conn = connect(sys.argv[1])
conn.execute("BEGIN")
index_records(conn, "shop/contacts", "hub", [IndexRow("H3", ("h3@example.com",), "1")])
conn.execute("COMMIT")
os._exit(0)
"""


def _state(path: Path, hub_ids: list[str], token: str | None = None) -> None:
    conn = connect(path)
    conn.execute("BEGIN")
    index_records(conn, S, "hub", [IndexRow(h, (f"{h}@example.com",), "1") for h in hub_ids])
    if token is not None:
        save_refresh_token(conn, "hub:acct", token)
    conn.execute("COMMIT")
    conn.close()


def _hub_ids(path: Path) -> list[str]:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return [r[0] for r in conn.execute("SELECT hub_id FROM items ORDER BY hub_id")]


def _files(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir())


def test_restore_puts_the_backup_in_place_and_keeps_the_replaced_state_aside(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    _state(state / "crmsync.db", ["H1", "H2"])
    backup = write_backup(state / "crmsync.db", tmp_path / "b.db", crmsync_version="t")
    # The daemon went on after the backup: H3 is only in the state being replaced, and only
    # in its WAL (the daemon was killed, its WAL not checkpointed).
    subprocess.run([sys.executable, "-c", KILLED_WRITER, str(state / "crmsync.db")],
                   check=True, timeout=60)
    assert (state / "crmsync.db-wal").stat().st_size > 0
    result = restore_state(state, backup.path, sync_ids=[S, OTHER], now=lambda: 1.7e9)
    db = state / "crmsync.db"
    assert _hub_ids(db) == ["H1", "H2"]
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
    aside = Path(result.replaced)
    assert aside.name == "crmsync.db.replaced-20231114T221320Z"
    # The replaced state is whole on its own: its WAL was folded in.
    assert _hub_ids(aside) == ["H1", "H2", "H3"]
    assert not [f for f in _files(state) if f.endswith(".part")]
    assert result.migrated_to == SCHEMA_VERSION and result.catch_up == [S, OTHER]
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("SELECT count(*) FROM backup_info").fetchone()[0] == 0
        row = conn.execute("SELECT restored_at, backup_taken_at, backup_file, replaced "
                           "FROM restores").fetchone()
    assert row == (1.7e9, backup.taken_at, str(Path(backup.path).resolve()), str(aside))


def test_restore_refuses_while_a_daemon_has_the_state_open(tmp_path):
    state = tmp_path / "state"

    async def main() -> None:
        async with Store.open(state / "crmsync.db") as store:
            await store.call(lambda c: index_records(c, S, "hub", [IndexRow("H1")]))
            backup = await trio.to_thread.run_sync(
                lambda: write_backup(store.path, tmp_path / "b.db", crmsync_version="t"))
            # An idle daemon holds no transaction, only its open connection.
            with pytest.raises(StateInUse):
                restore_state(state, backup.path, sync_ids=[S])

    trio.run(main)
    assert _files(state) == ["crmsync.db"]  # untouched, nothing left behind


def test_a_file_that_fails_its_checks_changes_nothing(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    _state(state / "crmsync.db", ["H1"])
    before = (state / "crmsync.db").read_bytes()
    bad = tmp_path / "bad.db"
    bad.write_text("not a database " * 100)
    with pytest.raises(StateFileError):
        restore_state(state, bad, sync_ids=[S])
    with pytest.raises(StateFileError, match="the state database itself"):
        restore_state(state, state / "crmsync.db", sync_ids=[S])
    assert _files(state) == ["crmsync.db"]
    assert (state / "crmsync.db").read_bytes() == before


def test_a_backup_of_an_older_schema_is_migrated(tmp_path):
    old = tmp_path / "v5.db"
    with sqlite3.connect(old) as conn:
        for statements in MIGRATIONS[:5]:
            for sql in statements:
                conn.execute(sql)
        conn.execute("INSERT INTO items (sync_id, hub_id, state, created_at, updated_at) "
                     "VALUES (?, 'H9', 'pending', 1, 2)", (S,))
        conn.execute("PRAGMA user_version = 5")
    result = restore_state(tmp_path / "state", old, sync_ids=[S])
    assert (result.backup.schema_version, result.migrated_to) == (5, SCHEMA_VERSION)
    assert result.replaced == ""  # there was no state
    db = tmp_path / "state" / "crmsync.db"
    assert _hub_ids(db) == ["H9"]
    connect(db).close()  # the daemon opens it as it is


def test_a_refresh_token_rotated_after_the_backup_is_kept(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    _state(state / "crmsync.db", ["H1"], token="old-refresh")
    backup = write_backup(state / "crmsync.db", tmp_path / "b.db", crmsync_version="t")
    conn = connect(state / "crmsync.db")
    conn.execute("BEGIN")
    save_refresh_token(conn, "hub:acct", "rotated-refresh")
    conn.execute("COMMIT")
    conn.close()
    result = restore_state(state, backup.path, sync_ids=[S])
    assert result.tokens_kept == ["hub:acct"]
    with sqlite3.connect(state / "crmsync.db") as c:
        assert c.execute("SELECT refresh_token FROM tokens").fetchall() == [("rotated-refresh",)]


def test_refresh_tokens_can_be_forgotten(tmp_path):
    """After a lost disk the backup's token may have been rotated away: the operator
    authorizes again and restores without any stored token, so the new credential is used."""
    _state(tmp_path / "src.db", ["H1"], token="rotated-away")
    backup = write_backup(tmp_path / "src.db", tmp_path / "b.db", crmsync_version="t")
    result = restore_state(tmp_path / "state", backup.path, sync_ids=[S], forget_tokens=True)
    assert result.tokens_forgotten and result.tokens_kept == []
    with contextlib.closing(sqlite3.connect(tmp_path / "state" / "crmsync.db")) as c:
        assert c.execute("SELECT count(*) FROM tokens").fetchone()[0] == 0


def test_a_damaged_current_state_is_set_aside_as_it_is(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    _state(tmp_path / "good.db", ["H1"])
    backup = write_backup(tmp_path / "good.db", tmp_path / "b.db", crmsync_version="t")
    (state / "crmsync.db").write_bytes(b"\0garbage" * 512)
    result = restore_state(state, backup.path, sync_ids=[S])
    assert not result.replaced_readable
    assert Path(result.replaced).read_bytes() == b"\0garbage" * 512
    assert _hub_ids(state / "crmsync.db") == ["H1"]


def test_a_restore_that_fails_midway_changes_nothing(tmp_path, monkeypatch):
    state = tmp_path / "state"
    state.mkdir()
    _state(state / "crmsync.db", ["H1"])
    backup = write_backup(state / "crmsync.db", tmp_path / "b.db", crmsync_version="t")
    before = (state / "crmsync.db").read_bytes()

    def broken(conn: sqlite3.Connection) -> int:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(restores_mod, "migrate", broken)
    with pytest.raises(sqlite3.OperationalError):
        restore_state(state, backup.path, sync_ids=[S])
    assert _files(state) == ["crmsync.db"]
    assert (state / "crmsync.db").read_bytes() == before


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can hand a file to another user")
def test_root_restores_the_file_for_the_owner_of_the_state(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    _state(state / "crmsync.db", ["H1"])
    os.chown(state / "crmsync.db", 4242, 4243)
    backup = write_backup(state / "crmsync.db", tmp_path / "b.db", crmsync_version="t")
    restore_state(state, backup.path, sync_ids=[S])
    st = (state / "crmsync.db").stat()
    assert (st.st_uid, st.st_gid) == (4242, 4243)


# --- the catch-up marks ---------------------------------------------------------------------


def test_each_configured_sync_catches_up_once_after_the_latest_restore(tmp_path):
    state = tmp_path / "state"
    _state(tmp_path / "src.db", ["H1"])
    backup = write_backup(tmp_path / "src.db", tmp_path / "b.db", crmsync_version="t",
                          now=lambda: 1000.0)
    restore_state(state, backup.path, sync_ids=[S, OTHER], now=lambda: 2000.0)
    conn = connect(state / "crmsync.db")
    mark = catching_up(conn, S)
    assert mark is not None and (mark.restored_at, mark.backup_taken_at) == (2000.0, 1000.0)
    assert catching_up(conn, "shop/deals") is None  # not configured at the restore
    conn.execute("BEGIN")
    caught_up(conn, mark.restore_id, S)
    conn.execute("COMMIT")
    assert catching_up(conn, S) is None
    assert catching_up(conn, OTHER) is not None
    conn.close()
    # A second restore (of a backup taken after the first) starts over for every sync.
    again = write_backup(state / "crmsync.db", tmp_path / "b2.db", crmsync_version="t",
                         now=lambda: 3000.0)
    restore_state(state, again.path, sync_ids=[S], now=lambda: 4000.0)
    conn = connect(state / "crmsync.db")
    mark2 = catching_up(conn, S)
    assert mark2 is not None and mark2.backup_taken_at == 3000.0
    assert catching_up(conn, OTHER) is None  # only the latest restore counts
    conn.close()
