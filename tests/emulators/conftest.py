"""Fixtures for the HubSpot emulator's contract tests: an emulator whose clocks follow trio's
(MockClock under `autojump_clock`), and an httpx client talking to it in process."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
import trio

from crmsync.emulators.hubspot import HubSpotEmulator

TOKEN = "test-token"
BASE_URL = "http://hubspot.test"
EPOCH_MS = 1_700_000_000_000  # 2023-11-14T22:13:20Z, the wall clock at trio time 0


class TrioWallClock:
    """A wall clock that reads EPOCH_MS when first asked and then advances with trio's clock,
    so MockClock tests see deterministic createdAt / updatedAt values."""

    def __init__(self) -> None:
        self._start: float | None = None

    def __call__(self) -> int:
        now = trio.current_time()
        if self._start is None:
            self._start = now
        return EPOCH_MS + round((now - self._start) * 1000)


def make_emulator(**kwargs: object) -> HubSpotEmulator:
    kwargs.setdefault("clock", trio.current_time)
    kwargs.setdefault("now_ms", TrioWallClock())
    return HubSpotEmulator(**kwargs)  # type: ignore[arg-type]


def client_for(emu: HubSpotEmulator, token: str | None = TOKEN) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=emu.app), base_url=BASE_URL, headers=headers
    )


@pytest.fixture
def emu() -> HubSpotEmulator:
    return make_emulator()


# pytest-trio hands a clock to trio.run only when the test function itself asks for it, so
# tests that rely on virtual time take `autojump_clock` as a parameter.
@pytest.fixture
async def client(emu: HubSpotEmulator) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(emu) as c:
        yield c
