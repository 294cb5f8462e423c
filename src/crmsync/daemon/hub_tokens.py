"""Where the daemon keeps the hub's OAuth refresh token as HubSpot rotates it.

- In the refresh token file (`hub.auth.refresh_token_file`, written by `crmsync connect
  hubspot`) when the daemon may replace it: every new token is written there atomically
  (connectors/hubspot/token_file.py), so the file always holds the newest one.
- Otherwise (the token comes from the environment or from systemd credentials) in the state
  database, which then wins over the configured token at start.

A token the file could not take (a full disk) goes to the state database as well; at start the
newer of the two is used and written back to the file, so nothing HubSpot handed out is lost.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import structlog
import trio

from crmsync.config.model import HubSettings, OAuthAuth
from crmsync.connectors.hubspot.token_file import (
    read_token_file,
    writable_token_file,
    write_token_file,
)
from crmsync.store import Store
from crmsync.store import tokens as store_tokens

log = structlog.get_logger("crmsync.daemon")


@dataclass
class RefreshTokenKeeper:
    """`initial`: the refresh token to start with (None: the configured one); `save`: keeps
    a new one (the OAuth flow's `on_refresh_token`); `reload`: the one kept now (another
    process may have refreshed and kept a rotated one)."""

    initial: str | None
    save: Callable[[str], Awaitable[None]]
    reload: Callable[[], Awaitable[str | None]]


def account_key(hub: HubSettings) -> str:
    return f"hub:{hub.base_url}"


def app_account_key(connection: str) -> str:
    """Where an app connection's rotated OAuth refresh token is kept in the state database."""
    return f"app:{connection}"


async def refresh_token_keeper(hub: HubSettings, base_dir: Path, store: Store,
                               on_new: Callable[[str], None]) -> RefreshTokenKeeper | None:
    """How the hub's refresh token is kept (None: the hub does not use OAuth). `on_new` is
    told every new token first (to redact it from logs)."""
    auth = hub.auth
    if not isinstance(auth, OAuthAuth):
        return None
    account = account_key(hub)
    path = writable_token_file(auth, base_dir)
    kept = await store.read(store_tokens.get_refresh_token_at, account)

    async def save_in_store(token: str) -> None:
        on_new(token)
        await store.call(store_tokens.save_refresh_token, account, token)

    async def reload_from_store() -> str | None:
        return await store.read(store_tokens.get_refresh_token, account)

    if path is None:
        return RefreshTokenKeeper(kept[0] if kept else None, save_in_store, reload_from_store)

    async def reload_from_file() -> str | None:
        try:
            token = await trio.to_thread.run_sync(read_token_file, path)
        except OSError:
            return None
        if token:
            on_new(token)
        return token

    async def save(token: str) -> None:
        on_new(token)
        try:
            await trio.to_thread.run_sync(write_token_file, path, token)
        except OSError as exc:
            log.error("the rotated HubSpot refresh token could not be written to its file; "
                      "it is kept in the state database", file=str(path), error=exc.strerror)
            await store.call(store_tokens.save_refresh_token, account, token)

    if kept is not None:
        token, saved_at = kept
        try:
            file_time: float | None = os.stat(path).st_mtime
        except OSError:
            file_time = None
        if file_time is None or saved_at > file_time:
            # Newer than the file (an earlier write failed, or a configuration that kept
            # rotations in the database before): the file takes it.
            on_new(token)
            await trio.to_thread.run_sync(write_token_file, path, token)
            log.info("the HubSpot refresh token kept in the state database moved to its file",
                     file=str(path))
        await store.call(store_tokens.delete_refresh_token, account)
    return RefreshTokenKeeper(None, save, reload_from_file)
