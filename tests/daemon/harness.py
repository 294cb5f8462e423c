"""A daemon against the HubSpot emulator and a SQLite app, all in one Trio run.

The hub is the emulator behind `httpx.ASGITransport`; the emulator's webhooks are delivered to
the daemon's webhook application in process. So the whole system runs on the test's clock:
tests use `slow_autojump` (conftest.py: a MockClock that jumps once every task has been blocked
for 20 ms of real time and no worker thread is running). A plain autojump clock counts a task
waiting for the store's or the SQLite app's worker thread as blocked, so it lets virtual time
race ahead while that thread works (~0.2 ms idle, tens of ms on a busy machine), firing poll
intervals and deadlines no real deployment would see in that order. A test therefore never
sees virtual time pass while the daemon still has work in hand; it still must not assume that
work finishes before a *virtual* deadline it did not arrange.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import trio

from crmsync.daemon.main import Daemon
from crmsync.emulators.hubspot import HubSpotEmulator
from crmsync.runtime.object_sync import Timing
from crmsync.store import inbox as store_inbox
from crmsync.store import items as store_items

TOKEN = "test-token-0123456789"
HUB_SECRET = "hub-client-secret-0123456789"
APP_SECRET = "app-webhook-secret-0123456789"
PUBLIC = "http://crmsync.test"

APP_SCHEMA = """
CREATE TABLE IF NOT EXISTS customers (
    id INTEGER PRIMARY KEY,
    email TEXT,
    first_name TEXT,
    last_name TEXT,
    phone TEXT,
    job_title TEXT,
    company_name TEXT,
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE TABLE IF NOT EXISTS organisations (
    id INTEGER PRIMARY KEY,
    name TEXT,
    domain TEXT,
    city TEXT,
    phone TEXT,
    industry TEXT,
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
"""

CONTACTS = """
[[syncs]]
connection = "shop"
hub_object = "contacts"
app_object = "customers"
direction = "{direction}"
conflict_winner = "{winner}"
on_delete = "{on_delete}"
start_in_preview = {preview}
"""

COMPANIES = """
[[syncs]]
connection = "shop"
hub_object = "companies"
app_object = "organisations"
direction = "{direction}"
conflict_winner = "{winner}"
on_delete = "{on_delete}"
"""


def contacts_sync(direction: str = "both", winner: str = "hub", on_delete: str = "mark",
                  preview: bool = False, extra: str = "") -> str:
    return CONTACTS.format(direction=direction, winner=winner, on_delete=on_delete,
                           preview=str(preview).lower()) + extra


def companies_sync(direction: str = "both", winner: str = "hub", on_delete: str = "mark",
                   extra: str = "") -> str:
    return COMPANIES.format(direction=direction, winner=winner, on_delete=on_delete) + extra


def make_app_db(path: Path, customers: Iterable[dict[str, Any]] = (),
                organisations: Iterable[dict[str, Any]] = (), schema: str = APP_SCHEMA) -> None:
    conn = sqlite3.connect(path)
    try:
        conn.executescript(schema)
        for table, rows in (("customers", customers), ("organisations", organisations)):
            for row in rows:
                cols = list(row)
                conn.execute(f"INSERT INTO {table} ({', '.join(cols)}) VALUES "
                             f"({', '.join('?' * len(cols))})", [row[c] for c in cols])
        conn.commit()
    finally:
        conn.close()


def write_config(tmp: Path, app_db: Path, syncs: str, *, daemon_extra: str = "",
                 hub_extra: str = "", connection_extra: str = "", serve_webhooks: bool = False,
                 listen: str = "127.0.0.1:0", app: str | None = None) -> Path:
    """`app`: the connection's type and location lines (default: the SQLite file `app_db`)."""
    if app is None:
        app = f'type = "sqlite"\ndatabase = "{app_db}"'

    (tmp / "token").write_text(TOKEN)
    (tmp / "hub-secret").write_text(HUB_SECRET)
    (tmp / "app-secret").write_text(APP_SECRET)
    cfg = tmp / "crmsync.toml"
    cfg.write_text(f"""
[daemon]
state_dir = "{tmp / 'state'}"
shutdown_grace_seconds = 5
{daemon_extra}

[daemon.webhooks]
enabled = {str(serve_webhooks).lower()}
listen = "{listen}"
public_base_url = "{PUBLIC}"

[hub]
base_url = "http://hubspot.test"
tier = "unlimited"
webhook_client_secret_file = "hub-secret"
{hub_extra}

[hub.auth]
kind = "private_app"
token_file = "token"

[[connections]]
name = "shop"
{app}
poll_interval_seconds = 2
webhook_secret_file = "app-secret"
{connection_extra}

[[connections.tables]]
object = "customers"
table = "customers"

[[connections.tables]]
object = "organisations"
table = "organisations"

{syncs}
""")
    return cfg


@dataclass
class Env:
    tmp: Path
    emu: HubSpotEmulator
    daemon: Daemon
    app_db: Path

    # --- the app side -------------------------------------------------------------------

    def app_rows(self, table: str = "customers") -> list[dict[str, Any]]:
        conn = sqlite3.connect(self.app_db)
        conn.row_factory = sqlite3.Row
        # Tests may plant text that is not UTF-8 (as an app may): read it as crmsync does.
        conn.text_factory = lambda b: b.decode("utf-8", "replace")
        try:
            return [dict(r) for r in conn.execute(f"SELECT * FROM {table} ORDER BY id")]
        finally:
            conn.close()

    def app_exec(self, sql: str, *params: Any) -> int:
        conn = sqlite3.connect(self.app_db)
        try:
            cur = conn.execute(sql, params)
            conn.commit()
            return int(cur.lastrowid or 0)
        finally:
            conn.close()

    def app_by_email(self) -> dict[str, dict[str, Any]]:
        return {str(r["email"]).strip().lower(): r for r in self.app_rows() if r["email"]}

    # --- the hub side -------------------------------------------------------------------

    def hub(self, obj: str = "contacts") -> list[dict[str, Any]]:
        return self.emu.records(obj)

    def hub_by_email(self) -> dict[str, dict[str, Any]]:
        return {str(r["properties"].get("email") or "").lower(): r for r in self.hub()}

    # --- crmsync ------------------------------------------------------------------------

    async def webhooks_settled(self, objects: Iterable[str]) -> bool:
        """No HubSpot webhook delivery pending or in flight, and no event of these objects
        waiting in the daemon's inbox."""
        dispatcher = self.emu.dispatcher
        assert dispatcher is not None
        waiting = await self.daemon.store.read(store_inbox.count_waiting,
                                               [f"hub:shop:{o}" for o in objects])
        return not dispatcher.pending and dispatcher.in_flight == 0 and waiting == 0

    async def items(self, obj: str = "contacts", state: str | None = None) -> list[Any]:
        assert self.daemon.store is not None
        return await self.daemon.store.read(store_items.list_items, f"shop/{obj}", state, None,
                                            None)

    async def counts(self, obj: str = "contacts") -> dict[str, int]:
        assert self.daemon.store is not None
        return await self.daemon.store.read(store_items.counts, f"shop/{obj}")

    async def wait_ready(self, objects: Iterable[str] = ("contacts",),
                         timeout: float = 600) -> None:
        # Polled in small steps of the test's clock (not `wait_running()`): a store or app
        # thread slower than the autojump threshold then moves virtual time by one step, not
        # to the next far deadline.
        with trio.fail_after(timeout):
            for obj in objects:
                while True:
                    h = self.daemon.handle("shop", obj)
                    if h is not None and h.is_running:
                        break
                    await trio.sleep(0.05)

    async def eventually(self, check: Callable[[], bool], timeout: float = 600,
                         step: float = 0.5) -> None:
        """Wait (in the test's time) until `check()` holds."""
        with trio.fail_after(timeout):
            while not check():
                await trio.sleep(step)


async def wait_for(check: Any, timeout: float = 30.0, step: float = 0.05) -> None:
    """Wait (in the test's time) until `await check()` (or `check()`) is true."""
    with trio.fail_after(timeout):
        while True:
            got = check()
            if hasattr(got, "__await__"):
                got = await got
            if got:
                return
            await trio.sleep(step)


@asynccontextmanager
async def running(tmp: Path, *, syncs: str | None = None,
                  customers: Iterable[dict[str, Any]] = (),
                  organisations: Iterable[dict[str, Any]] = (),
                  hub_contacts: Iterable[dict[str, Any]] = (),
                  hub_companies: Iterable[dict[str, Any]] = (),
                  webhooks: bool = True, tier: str = "unlimited",
                  timing: Timing | None = None, hub_index_lag: float = 0.0,
                  emulator: HubSpotEmulator | None = None, app_db: Path | None = None,
                  config_kwargs: dict[str, Any] | None = None,
                  configure: Callable[[HubSpotEmulator], None] | None = None,
                  daemon_kwargs: dict[str, Any] | None = None
                  ) -> AsyncIterator[Env]:
    tmp.mkdir(parents=True, exist_ok=True)
    if app_db is None:
        app_db = tmp / "app.db"
        make_app_db(app_db, customers, organisations)
    cfg = write_config(tmp, app_db, syncs if syncs is not None else contacts_sync(),
                       **(config_kwargs or {}))
    emu = emulator or HubSpotEmulator(
        tokens=(TOKEN,), tier=tier, seed=0, clock=trio.current_time,
        webhook_url=f"{PUBLIC}/webhooks/hubspot" if webhooks else None,
        webhook_secret=HUB_SECRET if webhooks else None)
    if emulator is None:
        if hub_contacts:
            emu.add_records("contacts", list(hub_contacts))
        if hub_companies:
            emu.add_records("companies", list(hub_companies))
    if configure is not None:
        configure(emu)
    daemon = Daemon(cfg, hub_transport=httpx.ASGITransport(app=emu.app),
                    timing=timing or Timing(hub_poll_interval=300.0, app_poll_interval=2.0),
                    configure_logging=False, hub_index_lag=hub_index_lag,
                    **{"hub_events": webhooks, **(daemon_kwargs or {})})
    async with daemon_running(daemon, emu, webhooks=webhooks):
        yield Env(tmp, emu, daemon, app_db)


@asynccontextmanager
async def daemon_running(daemon: Daemon, emu: HubSpotEmulator, *, webhooks: bool,
                         start_timeout: float = float("inf")) -> AsyncIterator[None]:
    """Runs `daemon` (started within `start_timeout`) and, with `webhooks`, the emulator's
    webhook deliveries to the daemon's webhook application; on exit stops both.

    The webhook client is closed only once the delivery task has stopped: until a cancelled
    task reaches its next checkpoint it still runs — a delivery just started, or a retry whose
    backoff just ended, posts once more — and a closed client fails that post with a
    RuntimeError ("the client has been closed") instead of the cancellation."""
    async with AsyncExitStack() as clients, trio.open_nursery() as nursery:
        with trio.fail_after(start_timeout):
            await nursery.start(daemon.run)
        if webhooks:
            assert daemon.webhooks is not None
            client = await clients.enter_async_context(httpx.AsyncClient(
                transport=httpx.ASGITransport(app=daemon.webhooks.app), base_url=PUBLIC))
            nursery.start_soon(emu.run_webhooks, client)
        try:
            yield
        finally:
            nursery.cancel_scope.cancel()
