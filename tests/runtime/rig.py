"""One object sync's context for testing its actors alone: the HubSpot emulator behind
`httpx.ASGITransport`, a SQLite app and a state store, all in this process, no daemon.
Tests take the actors they test (lock queue, workers, intake, pollers, initial sync) and wire
them themselves, on the test's clock."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import trio

from crmsync.config import load_config
from crmsync.config.model import ObjectSync
from crmsync.connectors.base import Connector
from crmsync.connectors.hubspot.build import build_hub_connector
from crmsync.connectors.registry import open_app_connector
from crmsync.emulators.hubspot import HubSpotEmulator
from crmsync.runtime.context import ObjectSyncContext
from crmsync.runtime.object_sync import Timing, make_context
from crmsync.runtime.status import ObjectStatus
from crmsync.store import Store

from ..daemon.harness import TOKEN, contacts_sync, make_app_db, write_config


@dataclass
class Rig:
    ctx: ObjectSyncContext
    emu: HubSpotEmulator
    app_db: Path

    def app_rows(self) -> list[dict[str, Any]]:
        conn = sqlite3.connect(self.app_db)
        conn.row_factory = sqlite3.Row
        try:
            return [dict(r) for r in conn.execute("SELECT * FROM customers ORDER BY id")]
        finally:
            conn.close()


@dataclass
class Parts:
    """What an object sync is started with: its settings, the store, both connectors."""

    sync: ObjectSync
    store: Store
    hub: Connector
    app: Connector
    emu: HubSpotEmulator
    app_db: Path

    def status(self) -> ObjectStatus:
        return ObjectStatus(self.sync.hub_object, self.sync.app_object, self.sync.direction)

    def app_rows(self) -> list[dict[str, Any]]:
        return Rig.app_rows(self)  # type: ignore[arg-type]


@asynccontextmanager
async def parts(tmp: Path, *, customers: Iterable[dict[str, Any]] = (),
                hub_contacts: Iterable[dict[str, Any]] = (), syncs: str | None = None
                ) -> AsyncIterator[Parts]:
    app_db = tmp / "app.db"
    make_app_db(app_db, customers)
    cfg, _ = load_config(write_config(tmp, app_db, syncs or contacts_sync()))
    emu = HubSpotEmulator(tokens=(TOKEN,), tier="unlimited", seed=0, clock=trio.current_time)
    if hub_contacts:
        emu.add_records("contacts", list(hub_contacts))
    hub = build_hub_connector(cfg.hub, tmp, transport=httpx.ASGITransport(app=emu.app),
                              index_lag=0)
    (tmp / "state").mkdir(exist_ok=True)
    try:
        async with (Store.open(tmp / "state" / "crmsync.db") as store,
                    open_app_connector(cfg.connections[0], tmp) as app,
                    trio.open_nursery() as nursery):
            nursery.start_soon(tick)
            yield Parts(cfg.syncs[0], store, hub, app, emu, app_db)
            nursery.cancel_scope.cancel()
    finally:
        await hub.aclose()


@asynccontextmanager
async def rig(tmp: Path, *, customers: Iterable[dict[str, Any]] = (),
              hub_contacts: Iterable[dict[str, Any]] = (), syncs: str | None = None
              ) -> AsyncIterator[Rig]:
    """The contacts object sync's context, its batch writers running."""
    async with parts(tmp, customers=customers, hub_contacts=hub_contacts, syncs=syncs) as p:
        ctx = await make_context("shop", "sqlite", p.sync, p.store, p.hub, p.app, p.status(),
                                 Timing())
        async with ctx.hub_writer, ctx.app_writer, trio.open_nursery() as nursery:
            await nursery.start(ctx.hub_writer.run)
            await nursery.start(ctx.app_writer.run)
            yield Rig(ctx, p.emu, p.app_db)
            nursery.cancel_scope.cancel()


async def tick() -> None:
    """A timer every virtual second. The store and the app run in worker threads; on a busy
    machine a call can take longer than `slow_autojump`'s 20 ms, and virtual time then jumps
    to the next deadline — without this, straight to a test's `fail_after`."""
    while True:
        await trio.sleep(1)
