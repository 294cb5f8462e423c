"""The daemon on an OAuth install: access tokens refreshed before they expire, and every
refresh token HubSpot rotates into kept in the refresh token file (or, when that cannot be
written, in the state database), so a restart carries on (daemon/hub_tokens.py).

The daemon's start goes through the store's thread and the token file's: a virtual clock
would jump over those waits to the test's deadline, so these run on the real clock, with
access tokens of 4 seconds (refreshed every 2: the margin is half the lifetime at most).
"""

from __future__ import annotations

from pathlib import Path

import httpx
import trio

from crmsync.config import load_config
from crmsync.daemon.hub_tokens import account_key, refresh_token_keeper
from crmsync.daemon.main import Daemon
from crmsync.emulators.hubspot import HubSpotEmulator
from crmsync.emulators.hubspot.oauth import OAuthApp
from crmsync.runtime.object_sync import Timing
from crmsync.store import Store
from crmsync.store import tokens as store_tokens

from .harness import contacts_sync, make_app_db, write_config

CLIENT_ID = "cid-1"
SECRET = "oauth-secret-0123456789"


def oauth_setup(tmp: Path, *, token_line: str) -> Path:
    app_db = tmp / "app.db"
    make_app_db(app_db, [{"email": "a@example.com", "first_name": "A"}])
    cfg = write_config(tmp, app_db, contacts_sync())
    (tmp / "client-secret").write_text(SECRET)
    text = cfg.read_text().replace('kind = "private_app"\ntoken_file = "token"', f"""
kind = "oauth"
client_id = "{CLIENT_ID}"
client_secret_file = "client-secret"
{token_line}""")
    cfg.write_text(text)
    return cfg


def emulator(initial: str) -> HubSpotEmulator:
    return HubSpotEmulator(
        tokens=(), rotate_refresh_tokens=True, access_token_seconds=4,
        oauth_clients={CLIENT_ID: OAuthApp(CLIENT_ID, SECRET, refresh_token=initial)})


async def run_for(cfg: Path, emu: HubSpotEmulator, seconds: float) -> str:
    daemon = Daemon(cfg, hub_transport=httpx.ASGITransport(app=emu.app),
                    timing=Timing(hub_poll_interval=0.5, app_poll_interval=0.5),
                    configure_logging=False, hub_index_lag=0.0)
    async with trio.open_nursery() as nursery:
        await nursery.start(daemon.run)
        await trio.sleep(seconds)
        status = daemon.connections["shop"].status.state
        nursery.cancel_scope.cancel()
    return status


def current_refresh_token(emu: HubSpotEmulator, candidates: list[str]) -> list[str]:
    return [t for t in candidates if emu.auth.refresh_token_info(t) is not None]


async def test_rotated_refresh_tokens_go_to_the_file_and_a_restart_carries_on(
        tmp_path: Path):
    token_file = tmp_path / "state" / "hubspot-refresh-token"
    token_file.parent.mkdir()
    token_file.write_text("rt-initial\n")
    cfg = oauth_setup(tmp_path, token_line=f'refresh_token_file = "{token_file}"')
    emu = emulator("rt-initial")
    with trio.fail_after(60):
        assert await run_for(cfg, emu, 7) == "running"
    # Polling twice a second for 7 s with 4-second tokens: several refreshes, each rotating
    # the refresh token (the old one stops working).
    assert emu.auth.refresh_count >= 2
    held = token_file.read_text().strip()
    assert held != "rt-initial"
    assert emu.auth.refresh_token_info(held) is not None, "the file holds a dead token"
    assert emu.auth.refresh_token_info("rt-initial") is None
    # Nothing went to the state database: the file is where the token lives.
    async with Store.open(tmp_path / "state" / "crmsync.db") as store:
        hub = load_config(cfg)[0].hub
        assert await store.read(store_tokens.get_refresh_token, account_key(hub)) is None
    # A restart reads the file and goes on refreshing.
    before = emu.auth.refresh_count
    with trio.fail_after(60):
        assert await run_for(cfg, emu, 5) == "running"
    assert emu.auth.refresh_count > before
    assert emu.auth.refresh_token_info(token_file.read_text().strip()) is not None


async def test_a_refresh_token_from_the_environment_rotates_into_the_state_database(
        tmp_path: Path, monkeypatch):
    monkeypatch.setenv("HUBSPOT_REFRESH_TOKEN", "rt-env")
    cfg = oauth_setup(tmp_path, token_line='refresh_token_env = "HUBSPOT_REFRESH_TOKEN"')
    emu = emulator("rt-env")
    with trio.fail_after(60):
        await run_for(cfg, emu, 4)
    hub = load_config(cfg)[0].hub
    async with Store.open(tmp_path / "state" / "crmsync.db") as store:
        kept = await store.read(store_tokens.get_refresh_token, account_key(hub))
    assert kept is not None and emu.auth.refresh_token_info(kept) is not None
    with trio.fail_after(60):
        assert await run_for(cfg, emu, 4) == "running"  # the environment's token is dead
    assert emu.auth.refresh_token_info("rt-env") is None


async def test_a_token_kept_in_the_database_newer_than_the_file_moves_to_the_file(
        tmp_path: Path):
    """A rotated token the file could not take (a full disk) was kept in the database: at
    the next start it is the one used, and the file takes it."""
    token_file = tmp_path / "state" / "hubspot-refresh-token"
    token_file.parent.mkdir()
    token_file.write_text("rt-old\n")
    cfg = oauth_setup(tmp_path, token_line=f'refresh_token_file = "{token_file}"')
    hub = load_config(cfg)[0].hub
    seen: list[str] = []
    with trio.fail_after(30):
        async with Store.open(tmp_path / "state" / "crmsync.db") as store:
            await store.call(store_tokens.save_refresh_token, account_key(hub), "rt-newer")
            keeper = await refresh_token_keeper(hub, tmp_path, store, seen.append)
            assert keeper is not None and keeper.initial is None  # the file is read
            assert token_file.read_text() == "rt-newer\n"
            assert await store.read(store_tokens.get_refresh_token, account_key(hub)) is None
            # Written by `crmsync connect hubspot` after the database kept one: the file wins.
            await store.call(store_tokens.save_refresh_token, account_key(hub), "rt-stale")
            token_file.write_text("rt-connected\n")
            import os
            os.utime(token_file, (2e9, 2e9))
            await refresh_token_keeper(hub, tmp_path, store, seen.append)
            assert token_file.read_text() == "rt-connected\n"
            assert await keeper.reload() == "rt-connected"
    assert "rt-newer" in seen
