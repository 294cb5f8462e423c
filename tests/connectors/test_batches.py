"""connectors.batches.bisect: the inputs a whole-batch refusal was for are found."""

from __future__ import annotations

import math

import trio
from hypothesis import given
from hypothesis import strategies as st

from crmsync.connectors.batches import bisect


class Refused(Exception):
    pass


def _send_all(items: list[int], bad: set[int]) -> tuple[dict[int, str], list[list[int]]]:
    """Send `items` to an API that refuses any batch holding a bad input."""
    results: dict[int, str] = {}
    calls: list[list[int]] = []

    async def send(batch: list[int]) -> None:
        calls.append(batch)
        if bad & set(batch):
            await bisect(batch, Refused(), send, lambda i, e: results.__setitem__(i, "failed"))
            return
        for i in batch:
            results[i] = "ok"

    trio.run(send, items)
    return results, calls


@given(st.integers(1, 100).flatmap(
    lambda n: st.tuples(st.just(n), st.sets(st.integers(0, n - 1), max_size=5))))
def test_only_the_refused_inputs_fail_and_every_input_has_one_result(case) -> None:
    n, bad = case
    results, calls = _send_all(list(range(n)), bad)
    assert results == {i: "failed" if i in bad else "ok" for i in range(n)}
    # Every input is in each call at most once, and each fault costs about log2(n) calls.
    assert all(len(set(c)) == len(c) for c in calls)
    assert len(calls) <= 1 + 2 * max(1, len(bad)) * math.ceil(math.log2(n) + 1)
