"""The emulator's time: one monotonic clock (burst windows, bans, token expiry, webhook retries)
and one wall clock (record timestamps, the daily budget's day), both movable forward by the admin
API so a standalone emulator can reach tomorrow's budget reset without waiting a day."""

from __future__ import annotations

import time
from collections.abc import Callable

import trio


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


class EmulatorClock:
    """`monotonic` is `trio.current_time` in tests on MockClock (then every sleep here autojumps)
    and `time.monotonic` when serving; `wall_ms` the epoch-milliseconds clock of timestamps."""

    def __init__(
        self,
        monotonic: Callable[[], float] | None = None,
        wall_ms: Callable[[], int] | None = None,
    ) -> None:
        self._monotonic = monotonic or time.monotonic
        self._wall_ms = wall_ms or _wall_ms
        self.offset = 0.0
        self._advanced = trio.Event()

    def now(self) -> float:
        return self._monotonic() + self.offset

    def now_ms(self) -> int:
        return self._wall_ms() + round(self.offset * 1000)

    def advance(self, seconds: float) -> None:
        """Moves both clocks forward; waiters in `sleep` re-check their deadline."""
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        self.offset += seconds
        self._advanced.set()
        self._advanced = trio.Event()

    async def sleep(self, seconds: float) -> None:
        """Sleeps `seconds` of this clock: ends early when `advance` passes the deadline."""
        deadline = self.now() + seconds
        while (left := deadline - self.now()) > 0:
            with trio.move_on_after(left):
                await self._advanced.wait()
