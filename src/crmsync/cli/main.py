"""The `crmsync` command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from functools import partial
from importlib import import_module
from typing import Any

from crmsync import __version__

# Subcommands defined in their own modules. A module is imported only to parse its own command
# (or every one, for `crmsync --help`): `crmsync run` must not load the emulators that `demo` and
# `emulator` serve, nor the ctl client, nor what `connect` and `doctor` check with.
LAZY_COMMANDS = ("app", "connect", "doctor", "demo", "emulator", "ctl", "restore-state")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The `crmsync` parser. With `command`, only that subcommand's module is imported (the
    others are there by name only, so a wrong name still lists every command)."""
    parser = argparse.ArgumentParser(
        prog="crmsync",
        description="Keep a HubSpot account and other apps in sync, record by record.",
    )
    parser.add_argument("--version", action="version", version=f"crmsync {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("check-config", help="validate a configuration file")
    p.add_argument("path", help="the TOML configuration file")
    p.add_argument("--offline", action="store_true",
                   help="check the document alone, not this machine (secrets, the control "
                        "group and socket path, the app databases)")
    p.add_argument("--online", action="store_true",
                   help="then check it against HubSpot and the apps (as `crmsync doctor`)")

    for name in LAZY_COMMANDS:
        if command is None or command == name:
            import_module(f"crmsync.cli.{name.replace('-', '_')}").add_parser(sub)
        else:
            sub.add_parser(name)

    p = sub.add_parser("run", help="run the daemon")
    p.add_argument("--config", required=True, help="the TOML configuration file")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    # The command is the first word that is not an option (the top level's options take
    # no value); none (`crmsync --help`): every command's module is loaded for the help.
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(command)
    args = parser.parse_args(argv)
    if args.command == "check-config":
        if args.online and args.offline:
            parser.error("check-config: --online and --offline exclude each other")
        if args.online:
            from crmsync.cli import doctor

            _quiet_logs()
            return doctor.run_online_check(args.path)
        from crmsync.cli import check_config

        return check_config.run(args.path, offline=args.offline)
    if args.command == "connect":
        from crmsync.cli import connect

        _quiet_logs()
        return connect.run(args)
    if args.command == "doctor":
        from crmsync.cli import doctor

        _quiet_logs()
        return doctor.run(args)
    if args.command == "demo":
        from crmsync.cli import demo

        return demo.run(args)
    if args.command == "run":
        return _run(args.config)
    if args.command == "emulator":
        from crmsync.cli import emulator

        return emulator.run(args)
    if args.command == "ctl":
        from crmsync.cli import ctl

        return ctl.run(args)
    if args.command == "app":
        from crmsync.cli import app

        return app.run(args)
    if args.command == "restore-state":
        from crmsync.cli import restore_state

        return restore_state.run(args)
    parser.print_help(sys.stderr)
    return 2


def _quiet_logs() -> None:
    """Commands that answer on stdout (one line per check, or JSON) log only warnings and
    errors, to stderr, and never a secret."""
    from crmsync.daemon import logging as daemon_logging

    daemon_logging.configure("warning", "console", stream=sys.stderr)


def _config_errors(exc: BaseException) -> list[Any] | None:
    """The problems of `exc` when it is a ConfigError, or a group of nothing but ConfigErrors
    (what a start-up task raises inside the daemon's nursery); else None."""
    from crmsync.config import ConfigError

    if isinstance(exc, ConfigError):
        return list(exc.problems)
    if isinstance(exc, BaseExceptionGroup):
        problems: list[Any] = []
        for inner in exc.exceptions:
            found = _config_errors(inner)
            if found is None:
                return None
            problems.extend(found)
        return problems
    return None


def _run(config: str) -> int:
    """`crmsync run`: exit 2 with every problem on a configuration error (in the file, of
    this machine, or met while starting: an address in use, a socket path taken), never a
    traceback: under `Restart=on-failure` that would be a restart loop
    (the unit sets RestartPreventExitStatus=2)."""
    import trio

    from crmsync.control.server import serve as serve_control
    from crmsync.daemon.main import Daemon

    try:
        # The configuration and its secrets are read here, before the event loop starts.
        daemon = Daemon(config)
        # The control server sits above the daemon's layer: the command line wires it in.
        trio.run(partial(daemon.run, extra_tasks=[serve_control]))
        return 0
    except KeyboardInterrupt:
        return 130
    except BaseException as exc:
        problems = _config_errors(exc)
        if problems is None:
            raise
        print(f"{config}: the configuration is not valid:", file=sys.stderr)
        for p in problems:
            print(f"  {p}", file=sys.stderr)
        return 2
