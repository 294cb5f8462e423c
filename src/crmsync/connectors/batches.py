"""Finding the inputs a batch call was refused for.

Some APIs refuse a whole batch for the fault of one input without saying which (HubSpot
answers 400 to a batch holding one invalid value). Halving the batch and sending each half
again finds the faulty inputs in about log2(n) calls per fault, and lets the others through.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

T = TypeVar("T")
E = TypeVar("E", bound=BaseException)


async def bisect(items: Sequence[T], failure: E,
                 again: Callable[[list[T]], Awaitable[None]],
                 alone: Callable[[T, E], None]) -> None:
    """A batch of `items` was refused with `failure`, for a reason that belongs to some of its
    inputs: a single input gets the failure (`alone`); a larger batch is halved and each half
    sent through `again`, which calls `bisect` again when that half is refused too."""
    if len(items) == 1:
        alone(items[0], failure)
        return
    mid = len(items) // 2
    await again(list(items[:mid]))
    await again(list(items[mid:]))
