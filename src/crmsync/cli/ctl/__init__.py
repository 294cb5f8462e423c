"""`crmsync ctl`: drive a running daemon through its control socket.

Every command prints tables for people and, with `--json`, the daemon's reply as JSON (the
protocol's reply object, see docs/control-protocol.md) for scripts. `export` writes a file
instead, fetched page by page so memory stays bounded whatever the number of records.

Exit status: 0 done; 1 the daemon refused or part of the work failed; 2 bad usage or
configuration; 3 the daemon cannot be reached.

    parsing   the arguments, the request each command sends, the socket, the reply timeout
    render    what is printed for people (per reply), --json, the error line
    export    `export` and its csv / jsonl / xlsx writers
    watch     `watch`, the live status view
    exits     the exit statuses
"""

from __future__ import annotations

import argparse
import sys
from typing import TextIO

from crmsync.cli.ctl.exits import EXIT_FAILED, EXIT_OK, EXIT_UNREACHABLE, EXIT_USAGE
from crmsync.cli.ctl.export import export
from crmsync.cli.ctl.parsing import (
    UsageError,
    add_parser,
    build_request,
    find_socket,
    reply_timeout,
)
from crmsync.cli.ctl.render import (
    console_for,
    partly_failed,
    print_error,
    print_json,
    render,
)
from crmsync.cli.ctl.watch import watch
from crmsync.control import protocol as p
from crmsync.control.client import ControlClient, ControlUnavailable

__all__ = ["add_parser", "run"]


def run(args: argparse.Namespace, *, out: TextIO | None = None,
        err: TextIO | None = None) -> int:
    """Run one `crmsync ctl` command; returns the exit status."""
    out = out or sys.stdout
    err = err or sys.stderr
    if not getattr(args, "ctl_command", None):
        err.write("crmsync ctl: give a command (crmsync ctl --help)\n")
        return EXIT_USAGE
    try:
        path = find_socket(args)
        if args.ctl_command == "watch":
            return watch(args, path, out, err)
        with ControlClient(path, reply_timeout(args)) as client:
            if args.ctl_command == "export":
                return export(args, client, out, err)
            reply = client.request(build_request(args))
    except UsageError as exc:
        err.write(f"crmsync ctl: {exc}\n")
        return EXIT_USAGE
    except ControlUnavailable as exc:
        err.write(f"crmsync ctl: cannot reach the daemon at {exc}\n")
        return EXIT_UNREACHABLE
    except KeyboardInterrupt:
        return 130
    if args.json:
        print_json(reply, out)
    elif not isinstance(reply, p.ErrorReply):
        render(reply, console_for(out))
    if isinstance(reply, p.ErrorReply):
        print_error(reply, err, args)
        # A configuration the daemon refused (reload) exits as check-config does.
        return EXIT_USAGE if reply.code == "config" else EXIT_FAILED
    return EXIT_FAILED if partly_failed(reply) else EXIT_OK

