"""`crmsync app uninstall CONN`: remove what crmsync installed in a connection's app database
(change-capture triggers and their functions, the change log, crmsync's schema), after a
preview.

Without `--yes` it only shows what would go. Stop the daemon (or remove the connection from
its configuration) first: a daemon that opens the connection installs it all again, and the
object syncs' cursors no longer fit the new log (they then ask for a reconciliation).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, TextIO

from crmsync.config import ConfigError, load_config
from crmsync.connectors.base import ConnectorError
from crmsync.connectors.registry import app_removal_plan, app_remove

DEFAULT_CONFIG = "/etc/crmsync/crmsync.toml"


def add_parser(sub: Any) -> None:
    app = sub.add_parser("app", help="act on a connection's app database directly",
                         description="Act on a connection's app database directly (the "
                                     "daemon need not run).")
    cmds = app.add_subparsers(dest="app_command", metavar="COMMAND")
    c = cmds.add_parser("uninstall", help="remove what crmsync installed in the app database",
                        description=__doc__)
    c.add_argument("connection", metavar="CONN", help="connection name")
    c.add_argument("--config", default=DEFAULT_CONFIG, help="the TOML configuration file")
    c.add_argument("--yes", action="store_true",
                   help="remove it (without: only show what would be removed)")


def run(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    if getattr(args, "app_command", None) != "uninstall":
        err.write("crmsync app: give a command (crmsync app --help)\n")
        return 2
    path = Path(args.config)
    try:
        # The file alone: removing one connection's footprint needs neither the hub's
        # credentials nor the daemon's sockets, nor every other connection's database.
        cfg, _ = load_config(path, check_host=False)
    except ConfigError as exc:
        err.write(f"{path}: the configuration is not valid:\n")
        for p in exc.problems:
            err.write(f"  {p}\n")
        return 2
    conn = next((c for c in cfg.connections if c.name == args.connection), None)
    if conn is None:
        known = ", ".join(c.name for c in cfg.connections) or "none"
        err.write(f"crmsync app: no connection {args.connection!r} in {path} (known: {known})\n")
        return 2
    base_dir = path.resolve().parent
    try:
        if not args.yes:
            lines = app_removal_plan(conn, base_dir)
            out.write(f"crmsync would remove from {conn.name} ({conn.describe()}):\n")
            out.writelines(f"  {line}\n" for line in lines)
            out.write("Stop the daemon first (it installs them again when it opens the "
                      "connection), then run again with --yes.\n")
            return 0
        lines = app_remove(conn, base_dir)
    except ConnectorError as exc:
        err.write(f"crmsync app: {exc.message}\n")
        return 2
    except Exception as exc:  # a SQLite file that cannot be opened, and the like
        err.write(f"crmsync app: {type(exc).__name__}: {exc}\n")
        return 1
    out.write(f"removed from {conn.name} ({conn.describe()}):\n")
    out.writelines(f"  {line}\n" for line in lines)
    return 0
