"""Fixtures for the Pipedrive emulator's contract tests: an emulator whose clocks follow
trio's (MockClock under `autojump_clock`), and an httpx client talking to it in process."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import trio

from crmsync.emulators.pipedrive import PipedriveEmulator

from ..conftest import TrioWallClock

TOKEN = "test-token"
BASE_URL = "http://pipedrive.test"
V2 = "/api/v2"


def make_emulator(**kwargs: Any) -> PipedriveEmulator:
    kwargs.setdefault("clock", trio.current_time)
    kwargs.setdefault("now_ms", TrioWallClock())
    return PipedriveEmulator(**kwargs)


def client_for(emu: PipedriveEmulator, token: str | None = TOKEN) -> httpx.AsyncClient:
    headers = {"x-api-token": token} if token else {}
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=emu.app), base_url=BASE_URL, headers=headers
    )


# Async so it is built inside the test's trio run (its clocks read trio's).
@pytest.fixture
async def emu() -> PipedriveEmulator:
    return make_emulator()


@pytest.fixture
async def client(emu: PipedriveEmulator) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(emu) as c:
        yield c
