"""`crmsync connect hubspot`: install the configured OAuth app in a HubSpot account from a
terminal on a server, and store its refresh token.

1. The authorize URL is printed, with the scopes the configured object syncs need
   (connectors/hubspot/scopes.py) and a fresh random `state`.
2. The person opens it in any browser, signs in and installs the app. HubSpot redirects the
   browser to `hub.auth.redirect_uri`, which must be registered in the app's settings:
   - `http://localhost:PORT/…`: crmsync listens there. On a server reached over ssh, forward
     the port first (`ssh -L PORT:localhost:PORT server`), or
   - paste the address the browser ends on (it fails to load on a laptop without the
     forwarding: its address still holds the code) into this terminal.
3. The redirect's `state` must be this run's; the code is exchanged at HubSpot's token
   endpoint, and the refresh token is written, mode 0600, to `hub.auth.refresh_token_file`
   (a path in the state directory), replacing the file atomically.

Exit status: 0 connected, 1 HubSpot refused or nothing arrived in time, 2 a configuration
problem.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit

import httpx
import trio

from crmsync.config import ConfigError, load_config
from crmsync.config.model import Config, OAuthAuth
from crmsync.config.secrets import Secret, SecretError, read_secret
from crmsync.connectors.hubspot.oauth_flow import (
    AuthorizationError,
    TokenGrant,
    authorize_url,
    code_from_redirect,
    exchange_code,
    query_of,
)
from crmsync.connectors.hubspot.scopes import authorize_scopes, missing, sync_needs
from crmsync.connectors.hubspot.token_file import token_path, write_token_file

DEFAULT_CONFIG = "/etc/crmsync/crmsync.toml"
DEFAULT_TIMEOUT = 600.0
EXCHANGE_SECONDS = 30.0
MAX_PASTED_CHARS = 8192


def add_parser(sub: Any) -> None:
    p = sub.add_parser("connect", help="install an OAuth app in a HubSpot account",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    services = p.add_subparsers(dest="service", metavar="SERVICE", required=True)
    h = services.add_parser("hubspot", help="HubSpot (hub.auth.kind = \"oauth\")",
                            description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    h.add_argument("--config", default=DEFAULT_CONFIG, help="the TOML configuration file")
    h.add_argument("--no-listen", action="store_true",
                   help="do not listen on the redirect URL: only take a pasted address")
    h.add_argument("--create-properties", action="store_true",
                   help="also ask for the scopes that let `crmsync doctor --create-properties` "
                        "create missing properties (crm.schemas.<object>.write)")
    h.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, metavar="SECONDS",
                   help=f"give up after this long (default {DEFAULT_TIMEOUT:g})")


class _Fail(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def run(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None,
        stdin: TextIO | None = None, *, transport: httpx.AsyncBaseTransport | None = None
        ) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    stdin = stdin or sys.stdin
    try:
        cfg, auth, secret, target = _prepare(Path(args.config))
        grant = trio.run(_connect, cfg, auth, secret, args, out, err, stdin, transport)
        _store(target, grant.refresh_token)
    except _Fail as exc:
        err.write(f"crmsync connect hubspot: {exc.message}\n")
        return exc.status
    _report(cfg, grant, target, args.config, out)
    return 0


def _prepare(path: Path) -> tuple[Config, OAuthAuth, Secret, Path]:
    try:
        # The refresh token is what this command makes: its file need not exist yet.
        cfg, _ = load_config(path, check_host=False)
    except ConfigError as exc:
        raise _Fail(2, f"{path}: the configuration is not valid:\n"
                       + "".join(f"  {p}\n" for p in exc.problems)) from None
    auth = cfg.hub.auth
    if not isinstance(auth, OAuthAuth):
        kind = auth.__struct_config__.tag
        raise _Fail(2, f"$.hub.auth.kind is {kind!r}: only an OAuth app is connected this "
                       f"way; a {kind} token is put in hub.auth.token_file as HubSpot shows it")
    base_dir = path.resolve().parent
    try:
        secret = read_secret(auth.client_secret_env, auth.client_secret_file, base_dir)
    except SecretError as exc:
        raise _Fail(2, f"$.hub.auth: the client secret: {exc}") from None
    target = token_path(auth, base_dir)
    if target is None:
        suggestion = Path(cfg.daemon.state_dir) / "hubspot-refresh-token"
        raise _Fail(2, "$.hub.auth.refresh_token_file is not set: give the file this command "
                       f"writes the refresh token to, in the state directory "
                       f"(refresh_token_file = \"{suggestion}\")")
    try:
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise _Fail(2, f"$.hub.auth.refresh_token_file: cannot create {target.parent}: "
                       f"{exc.strerror}") from None
    if not os.access(target.parent, os.W_OK | os.X_OK):
        raise _Fail(2, f"$.hub.auth.refresh_token_file: {target.parent} is not writable by "
                       "this user (run as the service user, e.g. `sudo -u crmsync crmsync "
                       "connect hubspot …`)")
    return cfg, auth, secret, target


async def _connect(cfg: Config, auth: OAuthAuth, secret: Secret, args: argparse.Namespace,
                   out: TextIO, err: TextIO, stdin: TextIO,
                   transport: httpx.AsyncBaseTransport | None) -> TokenGrant:
    state = secrets.token_urlsafe(32)
    scopes = authorize_scopes(cfg.syncs, create_properties=args.create_properties)
    url = authorize_url(auth.authorize_url, auth.client_id, auth.redirect_uri, scopes, state)
    redirect = urlsplit(auth.redirect_uri)
    listen = (not args.no_listen and redirect.scheme == "http"
              and redirect.hostname == "localhost")
    out.write("Open this address in a browser, sign in to HubSpot and install the app:\n\n"
              f"  {url}\n\n")
    out.write(f"Scopes asked for: {' '.join(scopes)}\n")
    if listen:
        port = redirect.port or 80
        out.write(f"Waiting for HubSpot's redirect to {auth.redirect_uri} … On a server over "
                  f"ssh, forward the port first (ssh -L {port}:localhost:{port} SERVER), or "
                  "paste here the address your browser ends on.\n")
    else:
        out.write("Then paste here the address your browser ends on (it holds the code).\n")
    out.flush()

    found_send, found_recv = trio.open_memory_channel[tuple[str, str]](1)

    def take(query: str) -> str | None:
        """Check a redirect; None when it is ours (the code is sent on), else the reason."""
        try:
            code = code_from_redirect(query, state)
        except AuthorizationError as exc:
            if exc.final:
                _offer(found_send, ("error", exc.message))
            return exc.message
        _offer(found_send, ("code", code))
        return None

    with trio.move_on_after(args.timeout) as waited:
        async with trio.open_nursery() as nursery:
            if listen:
                from crmsync.cli.loopback import Answer, open_listeners, serve_redirect

                def judge(query: str) -> Answer:
                    problem = take(query)
                    if problem is None:
                        return Answer(200, "crmsync received the authorization: go back to "
                                           "your terminal. You may close this window.")
                    return Answer(400, problem)

                try:
                    listeners = await open_listeners(redirect.port or 80)
                except OSError as exc:
                    raise _Fail(2, f"cannot listen on {auth.redirect_uri} ({exc.strerror}): "
                                   "stop what uses the port, or run with --no-listen and "
                                   "paste the address") from None
                await nursery.start(serve_redirect, listeners, redirect.path or "/", judge)
            nursery.start_soon(_read_pasted, stdin, take, err,
                               None if listen else found_send)
            kind, value = await found_recv.receive()
            nursery.cancel_scope.cancel()
    if waited.cancelled_caught:
        raise _Fail(1, f"no authorization arrived within {args.timeout:g} s (HubSpot sends "
                       "nothing when the install is not approved): run it again")
    if kind == "error":
        raise _Fail(1, value)
    out.write("Authorization received; exchanging the code …\n")
    out.flush()
    try:
        async with httpx.AsyncClient(timeout=httpx.Timeout(EXCHANGE_SECONDS),
                                     transport=transport, follow_redirects=False) as client:
            with trio.fail_after(EXCHANGE_SECONDS):
                return await exchange_code(client, cfg.hub.base_url, client_id=auth.client_id,
                                           client_secret=secret, code=value,
                                           redirect_uri=auth.redirect_uri)
    except AuthorizationError as exc:
        raise _Fail(1, str(exc)) from None
    except (httpx.HTTPError, trio.TooSlowError) as exc:
        raise _Fail(1, f"cannot reach HubSpot at {cfg.hub.base_url}: "
                       f"{exc or type(exc).__name__}") from None


def _offer(channel: trio.MemorySendChannel[tuple[str, str]], item: tuple[str, str]) -> None:
    try:
        channel.send_nowait(item)
    except trio.WouldBlock:
        pass  # one outcome is enough


async def _read_pasted(stdin: TextIO, take: Callable[[str], str | None], err: TextIO,
                       only: trio.MemorySendChannel[tuple[str, str]] | None) -> None:
    """Take pasted redirect addresses, one per line, until one is ours. `only`: pasting is
    the only way in, so the end of the input ends the wait (told there)."""
    while True:
        line = await trio.to_thread.run_sync(stdin.readline, MAX_PASTED_CHARS,
                                             abandon_on_cancel=True)
        if not line:
            if only is not None:
                _offer(only, ("error", "the input ended before an address was pasted"))
            return  # no terminal input: the listener may still get the redirect
        if not line.strip():
            continue
        problem = take(query_of(line))
        if problem is not None:
            err.write(f"not accepted: {problem}\n")
            err.flush()


def _store(target: Path, token: str) -> None:
    try:
        write_token_file(target, token)
    except OSError as exc:
        raise _Fail(1, f"cannot write {target}: {exc.strerror} (the app is installed: run "
                       "connect again once the file can be written)") from None


def _report(cfg: Config, grant: TokenGrant, target: Path, config: str, out: TextIO) -> None:
    account = f"account {grant.hub_id}" if grant.hub_id is not None else "the account"
    out.write(f"✓ connected to HubSpot {account}; the refresh token is in {target} "
              "(mode 0600)\n")
    if grant.scopes is not None:
        lacking = missing(sync_needs(cfg.syncs), grant.scopes)
        if lacking:
            out.write("✗ the install lacks scopes the object syncs need: "
                      + ", ".join(f"{n.scope} ({n.why})" for n in lacking)
                      + " — add them to the app's scopes and connect again\n")
    out.write(f"Next: crmsync doctor --config {config}\n")
    out.flush()
