import math
from collections.abc import Iterator
from typing import Any

import pytest
import trio.testing

# How long every task must have been blocked, in real time, before virtual time jumps.
AUTOJUMP_THRESHOLD = 0.02


@pytest.fixture
def slow_autojump(monkeypatch: pytest.MonkeyPatch) -> Iterator[trio.testing.MockClock]:
    """Virtual time that jumps once every task has been blocked for 20 ms of real time and no
    worker thread is running (see harness.py for why).

    A task waiting on `trio.to_thread.run_sync` counts as blocked to Trio, so a plain MockClock
    jumps while the store's or the SQLite app's thread is still working — every time that
    thread takes longer than the threshold, which a busy machine makes common: deadlines and
    poll intervals then fire in an order no real deployment sees. So autojumping is switched
    off while any such thread runs (`autojump_threshold` may be changed at any time: Trio's
    MockClock documentation)."""
    clock = trio.testing.MockClock(autojump_threshold=AUTOJUMP_THRESHOLD)
    run_sync = trio.to_thread.run_sync
    running = 0

    async def run_sync_holding_time(*args: Any, **kwargs: Any) -> Any:
        nonlocal running
        running += 1
        clock.autojump_threshold = math.inf
        try:
            return await run_sync(*args, **kwargs)
        finally:
            running -= 1
            if not running:
                clock.autojump_threshold = AUTOJUMP_THRESHOLD

    monkeypatch.setattr(trio.to_thread, "run_sync", run_sync_holding_time)
    yield clock
