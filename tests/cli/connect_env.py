"""`crmsync connect hubspot` against the HubSpot emulator served on loopback, with the test as
the person at the browser.

`connect.run` runs in a worker thread (it runs its own Trio loop, as the command does); its
output and input are pipes the test reads and writes. Real sockets and threads: the real clock,
bounded by `trio.fail_after` in the tests.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import trio

from crmsync.cli import connect
from crmsync.emulators.hubspot import HubSpotEmulator
from crmsync.emulators.hubspot.oauth import OAuthApp

from ..daemon.procs import free_port
from ..emulators.serving import serving

CLIENT_ID = "client-0f3c9a"
CLIENT_SECRET = "oauth-canary-CLIENT-SECRET-77a1"


def oauth_config(tmp: Path, base_url: str, redirect_uri: str, *, syncs: str = "",
                 token_file: str | None = None, extra_auth: str = "") -> Path:
    """A configuration with an OAuth hub pointing at the emulator."""
    (tmp / "client-secret").write_text(CLIENT_SECRET + "\n")
    state = tmp / "state"
    token_file = token_file or str(state / "hubspot-refresh-token")
    cfg = tmp / "crmsync.toml"
    cfg.write_text(f"""
[daemon]
state_dir = "{state}"

[daemon.webhooks]
enabled = false

[hub]
base_url = "{base_url}"
tier = "unlimited"

[hub.auth]
kind = "oauth"
client_id = "{CLIENT_ID}"
client_secret_file = "client-secret"
refresh_token_file = "{token_file}"
redirect_uri = "{redirect_uri}"
authorize_url = "{base_url}/oauth/authorize"
{extra_auth}

{syncs}
""")
    return cfg


@dataclass
class Connecting:
    """One `crmsync connect hubspot` in a worker thread."""

    out_read: trio.lowlevel.FdStream
    stdin_write: Any
    done: trio.Event = field(default_factory=trio.Event)
    status: int | None = None
    text: str = ""
    errors: list[str] = field(default_factory=list)

    async def line_matching(self, pattern: str) -> re.Match[str]:
        rx = re.compile(pattern)
        while True:
            m = rx.search(self.text)
            if m:
                return m
            chunk = await self.out_read.receive_some(65536)
            if not chunk:
                raise AssertionError(f"connect ended without printing {pattern!r}:\n{self.text}")
            self.text += chunk.decode()

    async def authorize_url(self) -> str:
        return (await self.line_matching(r"\n  (http\S+/oauth/authorize\?\S+)\n")).group(1)

    def paste(self, text: str) -> None:
        self.stdin_write.write(text + "\n")
        self.stdin_write.flush()

    async def finished(self) -> int:
        """The exit status, once the command ended; all its output is in `text` then."""
        await self.done.wait()
        while chunk := await self.out_read.receive_some(65536):
            self.text += chunk.decode()
        assert self.status is not None
        return self.status


class _ErrSink:
    def __init__(self, into: list[str]) -> None:
        self.into = into

    def write(self, s: str) -> int:
        self.into.append(s)
        return len(s)

    def flush(self) -> None:
        pass


@asynccontextmanager
async def connecting(config: Path, *extra: str) -> AsyncIterator[Connecting]:
    out_r, out_w = os.pipe()
    in_r, in_w = os.pipe()
    out_file = os.fdopen(out_w, "w", buffering=1, encoding="utf-8")
    in_file = os.fdopen(in_r, "r", encoding="utf-8")
    stdin_write = os.fdopen(in_w, "w", buffering=1, encoding="utf-8")
    args = connect_args(config, *extra)
    run = Connecting(trio.lowlevel.FdStream(out_r), stdin_write)

    def call() -> int:
        try:
            return connect.run(args, out=out_file, err=_ErrSink(run.errors), stdin=in_file)
        finally:
            out_file.close()

    async with trio.open_nursery() as nursery:
        async def runner() -> None:
            run.status = await trio.to_thread.run_sync(call)
            run.done.set()

        nursery.start_soon(runner)
        try:
            yield run
            await run.done.wait()
        finally:
            stdin_write.close()  # ends a pasted-input reader still waiting
            await run.out_read.aclose()
    in_file.close()


def connect_args(config: Path, *extra: str) -> argparse.Namespace:
    from crmsync.cli.main import build_parser

    return build_parser().parse_args(["connect", "hubspot", "--config", str(config), *extra])


@asynccontextmanager
async def oauth_emulator(redirect_uri: str | None = None, **app: Any
                         ) -> AsyncIterator[tuple[HubSpotEmulator, str]]:
    """The emulator with one OAuth app, served on loopback: (emulator, base URL)."""
    redirects = (redirect_uri,) if redirect_uri else ()
    emu = HubSpotEmulator(oauth_clients={CLIENT_ID: OAuthApp(
        CLIENT_ID, CLIENT_SECRET, redirect_uris=redirects, **app)},
        rotate_refresh_tokens=True)
    async with serving(emu) as base:
        yield emu, base


def callback_uri() -> str:
    return f"http://localhost:{free_port()}/oauth-callback"


async def browse(url: str) -> httpx.Response:
    """What a browser does with a URL: GET it (the redirect is followed by the caller)."""
    async with httpx.AsyncClient(timeout=10) as client:
        return await client.get(url)
