"""`crmsync doctor [--config PATH] [--json] [--create-properties [--yes]]` and
`crmsync check-config --online PATH`: everything `check-config` checks, then HubSpot and the
apps as they are (cli/doctor_checks.py).

One line per check: `✓` fine, `✗` must be fixed (with the fix), `!` works with a caveat.
Exit status 0 when nothing failed, 2 otherwise. `--json` prints one JSON object instead.

`--create-properties` creates the missing HubSpot properties whose app field exists (type
from the app column, cli/doctor_properties.py) after showing them and asking (`--yes`: without
asking; without a terminal to ask on, only with `--yes`), then checks again.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

import httpx
import msgspec
import trio

from crmsync.cli.doctor_checks import Check, Doctor
from crmsync.cli.doctor_properties import PropertyPlan
from crmsync.config import ConfigError, load_config
from crmsync.config.model import Config, OAuthAuth

DEFAULT_CONFIG = "/etc/crmsync/crmsync.toml"
MARKS = {"ok": "✓", "fail": "✗", "warn": "!"}


def add_parser(sub: Any) -> None:
    p = sub.add_parser("doctor", help="check the configuration against HubSpot and the apps",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=DEFAULT_CONFIG, help="the TOML configuration file")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--create-properties", action="store_true",
                   help="create missing HubSpot properties (type from the app column)")
    p.add_argument("--yes", action="store_true",
                   help="with --create-properties: create them without asking")


def run_online_check(path: str) -> int:
    """`crmsync check-config --online PATH`."""
    return run(argparse.Namespace(config=path, json=False, create_properties=False, yes=False))


def run(args: argparse.Namespace, out: TextIO | None = None, stdin: TextIO | None = None, *,
        hub_transport: httpx.AsyncBaseTransport | None = None,
        app_transports: Mapping[str, httpx.AsyncBaseTransport] | None = None) -> int:
    """The command. `hub_transport` / `app_transports` (by connection name) put emulators
    under the clients (tests)."""
    out = out or sys.stdout
    stdin = stdin or sys.stdin
    path = Path(args.config)
    started = time.monotonic()
    checks: list[Check] = []
    try:
        cfg, warnings = load_config(path)
    except ConfigError as exc:
        checks = [Check("config", "fail" if p.severity == "error" else "warn", str(p))
                  for p in exc.problems]
        return _finish(args, out, checks, None, started)
    checks.append(Check("config", "ok", f"{path} is valid ({_count(cfg.connections, 'connection')}"
                                        f", {_count(cfg.syncs, 'object sync')})"))
    checks.extend(Check("config", "warn", str(w)) for w in warnings)
    if uses_oauth(cfg):
        Path(cfg.daemon.state_dir).mkdir(parents=True, exist_ok=True)
    doctor = trio.run(_examine, cfg, path, args, out, stdin, hub_transport, app_transports)
    return _finish(args, out, checks + doctor.checks, doctor, started)


async def _examine(cfg: Config, path: Path, args: argparse.Namespace, out: TextIO,
                   stdin: TextIO, hub_transport: httpx.AsyncBaseTransport | None,
                   app_transports: Mapping[str, httpx.AsyncBaseTransport] | None) -> Doctor:
    async def confirm(plans: list[PropertyPlan]) -> bool:
        if not args.json:
            out.write("crmsync doctor will create these HubSpot properties:\n")
            out.writelines(f"  {p.describe()}\n" for p in plans)
            out.flush()
        if args.yes:
            return True
        if args.json or not stdin.isatty():
            return False
        out.write("Create them? [y/N] ")
        out.flush()
        answer = await trio.to_thread.run_sync(stdin.readline, 16, abandon_on_cancel=True)
        return answer.strip().lower() in ("y", "yes")

    if not uses_oauth(cfg):
        doctor = Doctor(cfg, path, hub_transport=hub_transport, app_transports=app_transports)
        await doctor.run(create_properties=args.create_properties, confirm=confirm)
        return doctor
    # An OAuth refresh may rotate the refresh token: it is kept where the daemon keeps it.
    from crmsync.daemon.hub_tokens import refresh_token_keeper
    from crmsync.store import Store

    async with Store.open(Path(cfg.daemon.state_dir) / "crmsync.db") as store:
        keeper = await refresh_token_keeper(cfg.hub, doctor_base(path), store,
                                            lambda token: None)
        doctor = Doctor(cfg, path, hub_transport=hub_transport, keeper=keeper, store=store,
                        app_transports=app_transports)
        await doctor.run(create_properties=args.create_properties, confirm=confirm)
    return doctor


def uses_oauth(cfg: Config) -> bool:
    """Does the hub or an app connection authenticate with OAuth (refresh tokens that
    HubSpot or the app may rotate)?"""
    return isinstance(cfg.hub.auth, OAuthAuth) or any(
        hasattr(getattr(c, "auth", None), "client_id") for c in cfg.connections)


def doctor_base(path: Path) -> Path:
    """Where relative secret files are found: next to the configuration (as the daemon)."""
    return path.resolve().parent


def _count(items: list[Any], noun: str) -> str:
    return f"{len(items)} {noun}{'' if len(items) == 1 else 's'}"


def _finish(args: argparse.Namespace, out: TextIO, checks: list[Check], doctor: Doctor | None,
            started: float) -> int:
    failed = any(c.status == "fail" for c in checks)
    if args.json:
        out.write(msgspec.json.encode({
            "ok": not failed,
            "checks": [{"name": c.name, "status": c.status, "message": c.message,
                        "fix": c.fix} for c in checks],
            "created": [{"object": p.object_name, "definition": p.definition}
                        for p in (doctor.created if doctor else [])],
            "hub_requests": doctor.requests if doctor else 0,
            "seconds": round(time.monotonic() - started, 3),
        }).decode() + "\n")
    else:
        for c in checks:
            line = f"{MARKS[c.status]} {c.name}: {c.message}"
            if c.fix:
                line += f" — fix: {c.fix}"
            out.write(line + "\n")
        out.write(("✗ " if failed else "✓ ") + ("problems found: fix the lines marked ✗, then "
                                                "run the doctor again" if failed
                                                else "ready to run") + "\n")
    out.flush()
    return 2 if failed else 0
