"""Request channels: how one task asks an actor to act now (poll, read its inbox, check an
approval) — a message on a channel of one slot, which the actor receives between its timed
waits. A request already waiting covers a new one, so asking never blocks."""

from __future__ import annotations

import trio

RequestSender = trio.MemorySendChannel[None]
RequestReceiver = trio.MemoryReceiveChannel[None]


def open_request_channel() -> tuple[RequestSender, RequestReceiver]:
    return trio.open_memory_channel[None](1)


def ask(requests: RequestSender) -> None:
    """Ask the actor behind `requests` to act now (never blocks; a no-op once it stopped)."""
    try:
        requests.send_nowait(None)
    except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
        pass


async def wait_asked(requests: RequestReceiver, seconds: float) -> bool:
    """Wait up to `seconds` for a request; False once every sender is closed."""
    with trio.move_on_after(seconds):
        try:
            await requests.receive()
        except trio.EndOfChannel:
            return False
    return True
