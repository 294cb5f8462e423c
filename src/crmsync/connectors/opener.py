"""`Opener`: what a connector's `open()` returns, to await or to use as `async with`."""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Generator
from typing import Any, Generic, TypeVar

import trio

C = TypeVar("C")


class Opener(Generic[C]):
    """`await opener` runs `open_` and returns the open connector, leaving the closing to the
    caller; `async with opener as connector:` also runs `close` on exit, shielded from
    cancellation so that a cancelled block still releases the connection."""

    def __init__(self, open_: Callable[[], Coroutine[Any, Any, C]],
                 close: Callable[[], Coroutine[Any, Any, None]]) -> None:
        self._open = open_
        self._close = close

    def __await__(self) -> Generator[Any, None, C]:
        return self._open().__await__()

    async def __aenter__(self) -> C:
        return await self._open()

    async def __aexit__(self, *exc_info: object) -> None:
        with trio.CancelScope(shield=True):
            await self._close()
