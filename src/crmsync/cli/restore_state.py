"""`crmsync restore-state FILE`: put a backup in place of a stopped daemon's state database.

Refuses while a daemon runs (its control socket answers, or the state database is open), and
any file that is not a sound crmsync state database this crmsync can read or migrate. The
replaced state is kept aside. What the daemon does on its next start to heal what happened
after the backup is in docs/backup-and-restore.md.

Exit status: 0 restored; 1 refused (a daemon runs, the file is not usable); 2 bad usage or
configuration.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import msgspec

from crmsync.config.model import Config
from crmsync.control import protocol as p
from crmsync.control.client import ControlClient, ControlUnavailable
from crmsync.control.paths import DEFAULT_CONFIG, client_socket_paths, instance_runtime_dir
from crmsync.runtime.context import sync_id_of
from crmsync.store.backup import StateFileError
from crmsync.store.restores import RestoreResult, StateInUse, restore_state

EXIT_OK, EXIT_REFUSED, EXIT_USAGE = 0, 1, 2
# How long a daemon's control socket may take to answer the check.
PING_SECONDS = 5.0


def add_parser(sub: Any) -> None:
    c = sub.add_parser(
        "restore-state", help="replace a stopped daemon's state database with a backup",
        description="Replace the state database of a stopped crmsync with a backup written by "
                    "`crmsync ctl backup` (the replaced one is kept aside). On its next start "
                    "crmsync catches up with what happened after the backup.")
    c.add_argument("backup", metavar="FILE", help="the backup file")
    c.add_argument("--config", metavar="PATH", default=str(DEFAULT_CONFIG),
                   help=f"the daemon's configuration file (default {DEFAULT_CONFIG})")
    c.add_argument("--forget-refresh-tokens", action="store_true",
                   help="keep no rotated OAuth refresh token in the restored state: the daemon "
                        "starts from the one its configuration names (after authorizing the "
                        "app again, when the backup's token was rotated away)")
    c.add_argument("--json", action="store_true", help="print the result as JSON")


class Refused(Exception):
    pass


def _load(path: Path) -> Config:
    from crmsync.config import ConfigError, parse_config

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"{path}: {exc.strerror}") from None
    try:
        cfg, _ = parse_config(text, check_host=False, base_dir=path.resolve().parent)
    except ConfigError as exc:
        raise ValueError(f"{path}: the configuration is not valid: {exc}") from None
    return cfg


def check_stopped(cfg: Config, config_path: Path) -> None:
    """Raise Refused if a daemon answers on a control socket of this configuration."""
    for sock in client_socket_paths(cfg, config_path=config_path):
        if not sock.exists():
            continue
        try:
            with ControlClient(sock, PING_SECONDS) as client:
                reply = client.request(p.Ping())
        except ControlUnavailable:
            continue  # a stale socket; a daemon we may not talk to still holds the database
        if isinstance(reply, p.PingReply):
            unit = "crmsync" if instance_runtime_dir(config_path) is None \
                else f"crmsync@{config_path.stem}"
            raise Refused(f"crmsync is running (pid {reply.pid}, control socket {sock}): stop "
                          f"it first (systemctl stop {unit})")


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


def render(r: RestoreResult, out: TextIO) -> None:
    b = r.backup
    when = _iso(b.taken_at) + ("" if b.taken_at_known else
                               " (estimated from its newest entry: not written by "
                               "`crmsync ctl backup`)")
    out.write(f"restored {r.state_db} from {b.path}\n")
    out.write(f"  the backup: state as of {when}, schema version {b.schema_version}"
              + (f" (now {r.migrated_to})" if r.migrated_to != b.schema_version else "")
              + f", {b.bytes:,} bytes"
              + (f", written by crmsync {b.crmsync_version}" if b.crmsync_version else "")
              + "\n")
    for sync_id in sorted(set(b.items) | set(b.phases)):
        out.write(f"  {sync_id}: {b.items.get(sync_id, 0):,} records, initial sync "
                  f"{b.phases.get(sync_id, 'not started')}\n")
    if r.replaced:
        out.write(f"  the replaced state is kept at {r.replaced}\n")
        if not r.replaced_readable:
            out.write("  (it could not be read: no refresh token was carried over from it)\n")
    for account in r.tokens_kept:
        out.write(f"  kept the newer refresh token of {account} from the replaced state\n")
    if r.tokens_forgotten:
        out.write("  no refresh token kept: the daemon starts from the one its configuration "
                  "names\n")
    if r.catch_up:
        out.write(f"On its next start crmsync catches up ({', '.join(r.catch_up)}): a create "
                  "first looks for a record crmsync may have made after the backup, a conflict "
                  "that may postdate the backup is held as failed (conflict_after_restore) for "
                  "you to settle, and one full reconciliation runs. See "
                  "docs/backup-and-restore.md.\n")


def run(args: argparse.Namespace, *, out: TextIO | None = None,
        err: TextIO | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        cfg = _load(Path(args.config))
    except ValueError as exc:
        err.write(f"crmsync restore-state: {exc}\n")
        return EXIT_USAGE
    sync_ids = [sync_id_of(s.connection, s.hub_object) for s in cfg.syncs]
    try:
        check_stopped(cfg, Path(args.config))
        result = restore_state(cfg.daemon.state_dir, args.backup, sync_ids=sync_ids,
                               forget_tokens=args.forget_refresh_tokens)
    except (Refused, StateInUse, StateFileError) as exc:
        err.write(f"crmsync restore-state: {exc}\n")
        return EXIT_REFUSED
    except OSError as exc:
        err.write(f"crmsync restore-state: {exc.filename or ''}: {exc.strerror or exc}\n")
        return EXIT_REFUSED
    except sqlite3.Error as exc:
        err.write(f"crmsync restore-state: nothing was changed: {exc}\n")
        return EXIT_REFUSED
    if args.json:
        out.write(msgspec.json.format(msgspec.json.encode(result), indent=2).decode() + "\n")
    else:
        render(result, out)
    return EXIT_OK
