"""A daemon on the emulator + a SQLite app (tests/daemon/harness.py) with its control server
on a real Unix socket, and `crmsync ctl` run against it as the CLI runs it.

The control server is started here, in the test's nursery (`nursery.start(serve, daemon)`),
the way the daemon's root nursery starts it. `ctl` runs in a worker thread (the CLI's client
is blocking), so these tests use the real clock with `fail_after` bounds: virtual time would
race ahead while the thread waits on the socket.
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from crmsync.cli import ctl
from crmsync.control.server import ControlServer, serve
from crmsync.runtime.object_sync import Timing

from ..daemon.harness import Env, running
from ..daemon.harness import wait_for as wait_for  # the ctl tests import it from here

CUSTOMERS = [{"email": f"c{i}@example.com", "first_name": f"C{i}", "last_name": "App"}
             for i in range(5)]
HUB = [{"email": f"c{i}@example.com", "firstname": f"C{i}", "lastname": "App"}
       for i in range(5)]
# Fast app polling on the real clock; hub changes arrive through the in-process webhooks.
FAST = Timing(hub_poll_interval=300.0, app_poll_interval=0.2, writer_linger=0.0)


@dataclass
class CtlEnv:
    env: Env
    server: ControlServer
    socket: Path

    @property
    def daemon(self) -> Any:
        return self.env.daemon


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="crmsync")
    sub = parser.add_subparsers(dest="command")
    ctl.add_parser(sub)
    return parser.parse_args(["ctl", *argv])


async def run_ctl(socket: Path | None, *argv: str) -> tuple[int, str, str]:
    """`crmsync ctl ARGV --socket SOCKET`: (exit status, stdout, stderr)."""
    args = parse([*argv, *(["--socket", str(socket)] if socket is not None else [])])
    out, err = io.StringIO(), io.StringIO()
    code = await trio.to_thread.run_sync(lambda: ctl.run(args, out=out, err=err))
    return code, out.getvalue(), err.getvalue()


async def ctl_json(c: CtlEnv, *argv: str, code: int = 0) -> Any:
    """Run with --json, check the exit status, return the parsed reply."""
    got, out, err = await run_ctl(c.socket, *argv, "--json")
    assert got == code, (got, out, err)
    return json.loads(out)


@asynccontextmanager
async def ctl_daemon(tmp: Path, **kwargs: Any) -> AsyncIterator[CtlEnv]:
    # A short directory: a socket path must fit in 107 bytes, pytest's tmp_path may not.
    sock_dir = Path(tempfile.mkdtemp(prefix="crmsync-ctl-", dir="/tmp"))
    sock = sock_dir / "control.sock"
    config = dict(kwargs.pop("config_kwargs", {}) or {})
    config["daemon_extra"] = (config.get("daemon_extra", "")
                              + f'\n[daemon.control]\nsocket_path = "{sock}"\n')
    kwargs.setdefault("timing", FAST)
    try:
        async with running(tmp, config_kwargs=config, **kwargs) as env, \
                trio.open_nursery() as nursery:
            server = await nursery.start(serve, env.daemon)
            yield CtlEnv(env, server, sock)
            nursery.cancel_scope.cancel()
    finally:
        shutil.rmtree(sock_dir, ignore_errors=True)
