"""`crmsync ctl backup` against a running daemon, and `crmsync restore-state` before and after
the daemon stops (docs/backup-and-restore.md)."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sqlite3
import stat
import time
from pathlib import Path

import trio

from crmsync.cli import restore_state as restore_cli
from crmsync.cli.main import build_parser
from crmsync.store.schema import SCHEMA_VERSION

from .ctl_env import CUSTOMERS, HUB, ctl_daemon, run_ctl


def _args(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["restore-state", *argv])


async def restore(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    args = _args(*argv)
    code = await trio.to_thread.run_sync(lambda: restore_cli.run(args, out=out, err=err))
    return code, out.getvalue(), err.getvalue()


def _emails(db: Path) -> list[str]:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return [r[0] for r in conn.execute(
            "SELECT match_key FROM items WHERE hub_id IS NOT NULL ORDER BY match_key")]


async def test_backup_while_running_then_restore_once_stopped(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "crmsync.toml"
    state_db = tmp_path / "state" / "crmsync.db"
    with trio.fail_after(60):
        async with ctl_daemon(tmp_path, customers=CUSTOMERS, hub_contacts=HUB) as c:
            await c.env.wait_ready()
            before = time.time()
            # A relative path is the caller's: the CLI sends the daemon an absolute one.
            code, out, err = await run_ctl(c.socket, "backup", "--out", "backups/one.db",
                                           "--json")
            assert code == 0, err
            reply = json.loads(out)
            target = tmp_path / "backups" / "one.db"
            assert reply["op"] == "backup" and reply["path"] == str(target)
            assert reply["bytes"] == target.stat().st_size > 0
            assert reply["schema_version"] == SCHEMA_VERSION
            assert before <= reply["taken_at"] <= time.time()
            assert reply["items"] == len(await c.env.items()) == 5
            assert stat.S_IMODE(target.stat().st_mode) == 0o600
            code, out, _ = await run_ctl(c.socket, "backup", "--out", str(target))
            assert code == 0 and out.startswith(f"backup written to {target}: ")
            assert f"schema version {SCHEMA_VERSION}, 5 records indexed" in out

            # A path the daemon cannot write: refused with the reason, nothing written.
            code, out, err = await run_ctl(c.socket, "backup", "--out", "/proc/nope.db")
            assert code == 1 and "cannot write in /proc" in err and "(failed)" in err

            # The daemon runs: its socket answers, the restore is refused, nothing changes.
            code, out, err = await restore("--config", str(config), str(target))
            assert code == 1 and "crmsync is running (pid " in err, err
            assert sorted(p.name for p in state_db.parent.iterdir()
                          if p.name.startswith("crmsync.db")) == [
                "crmsync.db", "crmsync.db-shm", "crmsync.db-wal"]
            # After the backup, the daemon links one more contact.
            c.env.app_exec("INSERT INTO customers (email, first_name) VALUES "
                           "('late@example.com', 'Late')")
            await c.env.eventually(lambda: "late@example.com" in c.env.hub_by_email(),
                                   step=0.05)
    assert "email:late@example.com" in _emails(state_db)

    code, out, err = await restore("--config", str(config), str(target))
    assert code == 0, err
    assert out.startswith(f"restored {state_db} from {target}\n")
    assert "shop/contacts: 5 records, initial sync complete" in out
    assert "the replaced state is kept at " in out and "catches up (shop/contacts)" in out
    assert "email:late@example.com" not in _emails(state_db)
    aside = next(p for p in state_db.parent.iterdir() if ".replaced-" in p.name)
    assert "email:late@example.com" in _emails(aside)


async def test_restore_state_refuses_what_it_cannot_restore(tmp_path):
    config = tmp_path / "crmsync.toml"
    config.write_text(f'[daemon]\nstate_dir = "{tmp_path / "state"}"\n'
                      '[hub.auth]\nkind = "private_app"\ntoken_env = "T"\n')
    junk = tmp_path / "junk.db"
    junk.write_text("hello")
    code, out, err = await restore("--config", str(config), str(junk))
    assert (code, out) == (1, "") and "is not a SQLite database" in err
    assert not (tmp_path / "state" / "crmsync.db").exists()
    code, out, err = await restore("--config", str(tmp_path / "missing.toml"), str(junk))
    assert code == 2 and "missing.toml" in err


async def test_restore_state_prints_json(tmp_path):
    source = tmp_path / "src.db"
    from crmsync.store import connect
    from crmsync.store.backup import write_backup

    connect(source).close()
    backup = write_backup(source, tmp_path / "b.db", crmsync_version="1.2.3")
    config = tmp_path / "crmsync.toml"
    config.write_text(f'[daemon]\nstate_dir = "{tmp_path / "state"}"\n'
                      '[hub.auth]\nkind = "private_app"\ntoken_env = "T"\n')
    code, out, err = await restore("--config", str(config), "--json", backup.path)
    assert code == 0, err
    got = json.loads(out)
    assert got["state_db"] == str(tmp_path / "state" / "crmsync.db")
    assert got["backup"]["crmsync_version"] == "1.2.3" and got["backup"]["taken_at_known"]
    assert got["replaced"] == "" and got["catch_up"] == []
    assert os.path.exists(got["state_db"])
