"""`crmsync ctl`'s command line: its arguments, the request each command sends, the socket it
talks to and how long it waits for a reply. A command line that cannot be one of these raises
`UsageError` (exit 2)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from crmsync.control import protocol as p
from crmsync.control.paths import DEFAULT_CONFIG, client_socket_paths
from crmsync.control.views import MAX_PAGE

STATES = ["failed", "excluded", "syncing", "queued", "pending", "deleted"]
# Commands that may take long (they wait for syncs or API writes): no reply timeout by default.
LONG = {"approve", "resync", "restore-deleted", "deletes", "disable", "enable", "delete-sync",
        "reload", "webhooks", "backup"}


class UsageError(Exception):
    """A command line `crmsync ctl` cannot carry out (exit 2)."""


def _common(parser: argparse.ArgumentParser, suppress: bool) -> None:
    d: Any = argparse.SUPPRESS if suppress else None
    parser.add_argument("--socket", metavar="PATH", default=d,
                        help="the control socket (default: from --config, else "
                             "/run/crmsync/control.sock)")
    parser.add_argument("--config", metavar="PATH", default=d,
                        help="the daemon's configuration file, to find its socket "
                             f"(default {DEFAULT_CONFIG} if readable)")
    parser.add_argument("--json", action="store_true", default=d if suppress else False,
                        help="print the reply as JSON")
    parser.add_argument("--timeout", type=float, metavar="SECONDS", default=d,
                        help="give up waiting for the daemon after this long (default 30 s; "
                             "none for commands that wait for syncs)")


def add_parser(sub: Any) -> None:
    ctl = sub.add_parser("ctl", help="control a running daemon (status, records, resync, ...)",
                         description="Talk to a running crmsync daemon through its control "
                                     "socket.")
    _common(ctl, suppress=False)
    common = argparse.ArgumentParser(add_help=False)
    _common(common, suppress=True)
    cmds = ctl.add_subparsers(dest="ctl_command", metavar="COMMAND")

    def cmd(name: str, help: str) -> argparse.ArgumentParser:
        return cmds.add_parser(name, parents=[common], help=help, description=help)

    def conn_obj(c: argparse.ArgumentParser, obj: str = "required") -> None:
        c.add_argument("connection", metavar="CONN", help="connection name")
        if obj == "required":
            c.add_argument("object", metavar="OBJECT", help="hub or app object name")
        else:
            c.add_argument("object", metavar="OBJECT", nargs="?", default="",
                           help="hub or app object name (default: every object sync)")

    def record(c: argparse.ArgumentParser, required: bool = False) -> None:
        c.add_argument("--record", metavar="ID", default="", required=required,
                       help="a hub or app record id (hub:ID / app:ID when both exist)")
        c.add_argument("--side", choices=["hub", "app"], default="",
                       help="the side the record id belongs to")

    c = cmd("ping", "check that the daemon answers")
    c = cmd("status", "daemon, connections and object syncs with their counts")
    c.add_argument("connection", metavar="CONN", nargs="?", default="")

    c = cmd("records", "records of an object sync in one state, with how to fix them")
    conn_obj(c)
    c.add_argument("--state", required=True, choices=STATES)
    c.add_argument("--category", default="", help="only this error category / reason")
    c.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    c.add_argument("--after", type=int, default=0, help="continue after this item id")

    c = cmd("history", "a record's sync decisions: per field old/new value, winner and why")
    conn_obj(c)
    record(c, required=True)
    c.add_argument("--limit", type=int, default=20)

    c = cmd("preview", "the initial-sync plan of object syncs started in preview")
    conn_obj(c, "optional")
    c.add_argument("--limit", type=int, default=10, help="entries shown per kind")

    c = cmd("approve", "let a previewed initial sync run for real")
    conn_obj(c, "optional")

    c = cmd("resync", "sync records again now: one, the failed ones, or all")
    conn_obj(c, "optional")
    g = c.add_mutually_exclusive_group()
    g.add_argument("--failed", action="store_true", help="every failed record")
    g.add_argument("--record", metavar="ID", default="", help="one record (needs OBJECT)")
    c.add_argument("--side", choices=["hub", "app"], default="")

    c = cmd("restore-deleted", "re-create records on the side they were deleted from, and "
                               "relink them")
    conn_obj(c)
    c.add_argument("--to", required=True, choices=["hub", "app"],
                   help="the side the records were deleted on")
    record(c)
    c.add_argument("--yes", action="store_true",
                   help="do it (without: list what would be re-created)")
    c.add_argument("--limit", type=int, default=100, help="rows listed (default 100)")

    c = cmd("deletes", "deletes parked for review (on_delete = \"review\"): list, approve "
                       "or ignore")
    c.add_argument("words", nargs="+", metavar="[approve|ignore] CONN OBJECT",
                   help="`deletes CONN OBJECT` lists; `deletes approve|ignore CONN OBJECT` "
                        "resolves")
    record(c)
    c.add_argument("--all", action="store_true", help="every parked delete")
    c.add_argument("--limit", type=int, default=100)

    c = cmd("disable", "stop a connection and keep it stopped (persisted)")
    c.add_argument("connection", metavar="CONN")
    c.add_argument("--reason", default="", help="shown in status")

    c = cmd("enable", "start a disabled connection again")
    c.add_argument("connection", metavar="CONN")

    c = cmd("delete-sync", "forget crmsync's index, links, states, history and unsynced "
                           "webhook events for a connection (never touches either side's data)")
    c.add_argument("connection", metavar="CONN")
    c.add_argument("--yes", action="store_true", help="do it (without: show what would go)")

    cmd("reload", "re-read the configuration file (as SIGHUP does)")

    c = cmd("poll-now", "poll both sides for changes now")
    conn_obj(c, "optional")

    c = cmd("webhooks", "the webhooks crmsync keeps in an app (Pipedrive): list, register "
                        "or remove them through the app's API")
    c.add_argument("action", choices=["list", "register", "remove"])
    c.add_argument("connection", metavar="CONN")

    c = cmd("backup", "write a consistent copy of the state database while the daemon runs "
                      "(restore it with `crmsync restore-state`)")
    c.add_argument("--out", required=True, metavar="FILE",
                   help="the backup file, written by the daemon (so a path it may write: under "
                        "systemd, in its state directory); replaced atomically, mode 0600")

    c = cmd("export", "write an object sync's records in one state to a file")
    conn_obj(c)
    c.add_argument("--state", required=True, choices=STATES)
    c.add_argument("--category", default="")
    c.add_argument("--format", required=True, choices=["csv", "xlsx", "jsonl"])
    c.add_argument("--out", required=True, metavar="FILE", help="'-' writes csv/jsonl to stdout")
    c.add_argument("--page", type=int, default=MAX_PAGE, help=argparse.SUPPRESS)

    c = cmd("watch", "a live status view (progress of initial syncs, counts per state)")
    c.add_argument("connection", metavar="CONN", nargs="?", default="")
    c.add_argument("--interval", type=float, default=1.0, help="seconds between refreshes")
    c.add_argument("--count", type=int, default=0,
                   help="stop after this many refreshes (default: until Ctrl-C)")


def find_socket(args: argparse.Namespace) -> Path:
    if getattr(args, "socket", None):
        return Path(args.socket)
    if os.environ.get("CRMSYNC_SOCKET"):
        return Path(os.environ["CRMSYNC_SOCKET"])
    from crmsync.config import ConfigError, parse_config

    config = getattr(args, "config", None)
    cfg = None
    path = Path(config) if config else DEFAULT_CONFIG
    if config or os.access(DEFAULT_CONFIG, os.R_OK):
        try:
            cfg, _ = parse_config(path.read_text(encoding="utf-8"), check_host=False,
                                  base_dir=path.resolve().parent)
        except OSError as exc:
            raise UsageError(f"{path}: {exc.strerror}") from None
        except ConfigError as exc:
            raise UsageError(f"{path}: the configuration is not valid: {exc}") from None
    candidates = client_socket_paths(cfg, config_path=path if config else None)
    return next((c for c in candidates if c.exists()), candidates[0])


def build_request(args: argparse.Namespace) -> p.Request:
    c = args.ctl_command
    match c:
        case "ping":
            return p.Ping()
        case "status" | "watch":
            return p.Status(connection=args.connection)
        case "records":
            return p.Records(connection=args.connection, object=args.object, state=args.state,
                             category=args.category, limit=args.limit, after=args.after)
        case "history":
            return p.History(connection=args.connection, object=args.object,
                             record=args.record, side=args.side, limit=args.limit)
        case "preview":
            return p.Preview(connection=args.connection, object=args.object, limit=args.limit)
        case "approve":
            return p.Approve(connection=args.connection, object=args.object)
        case "resync":
            if args.record and not args.object:
                raise UsageError("resync --record needs the OBJECT")
            return p.Resync(connection=args.connection, object=args.object,
                            failed=args.failed, record=args.record, side=args.side)
        case "restore-deleted":
            return p.RestoreDeleted(connection=args.connection, object=args.object, to=args.to,
                                    record=args.record, side=args.side, yes=args.yes,
                                    limit=args.limit)
        case "deletes":
            words = list(args.words)
            action = words.pop(0) if words and words[0] in ("list", "approve", "ignore") \
                else "list"
            if len(words) != 2:
                raise UsageError("usage: crmsync ctl deletes [approve|ignore] CONN OBJECT "
                                 "[--record ID | --all]")
            conn, obj = words
            if action == "list":
                return p.Deletes(connection=conn, object=obj, limit=args.limit)
            if bool(args.record) == bool(args.all):
                raise UsageError(f"deletes {action} needs --record ID or --all")
            return p.ResolveDeletes(connection=conn, object=obj,
                                    action="approve" if action == "approve" else "ignore",
                                    record=args.record, side=args.side, all=args.all)
        case "disable":
            return p.Disable(connection=args.connection, reason=args.reason)
        case "enable":
            return p.Enable(connection=args.connection)
        case "delete-sync":
            return p.DeleteSync(connection=args.connection, yes=args.yes)
        case "reload":
            return p.Reload()
        case "poll-now":
            return p.PollNow(connection=args.connection, object=args.object)
        case "webhooks":
            return p.Webhooks(connection=args.connection, action=args.action)
        case "backup":
            # The daemon writes the file: a relative path means the caller's directory.
            return p.Backup(out=str(Path(args.out).absolute()))
    raise UsageError(f"unknown command {c!r}")


def reply_timeout(args: argparse.Namespace) -> float | None:
    """Seconds to wait for a reply, None for no limit: --timeout (0 or less: none), else 30 s,
    or none for the commands that wait for syncs."""
    t = getattr(args, "timeout", None)
    if t is not None:
        return t if t > 0 else None
    return None if args.ctl_command in LONG else 30.0
