"""The `crmsync` command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from crmsync import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="crmsync",
        description="Keep a HubSpot account and other apps in sync, record by record.",
    )
    parser.add_argument("--version", action="version", version=f"crmsync {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("check-config", help="validate a configuration file")
    p.add_argument("path", help="the TOML configuration file")

    from crmsync.cli import app, ctl, demo, emulator

    app.add_parser(sub)
    demo.add_parser(sub)
    emulator.add_parser(sub)
    ctl.add_parser(sub)

    p = sub.add_parser("run", help="run the daemon")
    p.add_argument("--config", required=True, help="the TOML configuration file")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "check-config":
        from crmsync.cli import check_config

        return check_config.run(args.path)
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
    parser.print_help(sys.stderr)
    return 2


def _run(config: str) -> int:
    import trio

    from crmsync.config import ConfigError
    from crmsync.control.server import serve as serve_control
    from crmsync.daemon.main import Daemon

    async def run_daemon() -> int:
        # The control server sits above the daemon's layer: the command line wires it in.
        await Daemon(config).run(extra_tasks=[serve_control])
        return 0

    try:
        return trio.run(run_daemon)
    except ConfigError as exc:
        print(f"{config}: the configuration is not valid:", file=sys.stderr)
        for p in exc.problems:
            print(f"  {p}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
