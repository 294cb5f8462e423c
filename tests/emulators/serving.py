"""Serving an emulator over real loopback HTTP with hypercorn's trio worker."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio
from hypercorn.config import Config
from hypercorn.trio import serve

from crmsync.emulators.hubspot import SERVER_REQUEST_ROOM, HubSpotEmulator


@asynccontextmanager
async def serving(emu: HubSpotEmulator) -> AsyncIterator[str]:
    """Serves `emu.app` on a free 127.0.0.1 port; yields its base URL."""
    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.alpn_protocols = ["http/1.1"]
    config.graceful_timeout = 0.5
    # Room for request lines past HubSpot's URL limit, so the emulator answers them (414) rather
    # than the server (431, empty body).
    config.h11_max_incomplete_size = SERVER_REQUEST_ROOM
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(serve, emu.app, config)
        yield binds[0]
        nursery.cancel_scope.cancel()
