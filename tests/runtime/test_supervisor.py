"""The connection supervisor restarts failed children with capped, jittered backoff, shows why,
and pauses on configuration errors."""

import itertools
import random
from contextlib import asynccontextmanager

import pytest
import trio

from crmsync.connectors.base import ConnectorError
from crmsync.runtime import supervisor as sup
from crmsync.runtime.status import ConnectionStatus


def test_backoff_is_capped_and_jittered():
    rnd = random.Random(1)
    delays = [sup.backoff(n, rnd) for n in range(1, 20)]
    assert all(d <= sup.BACKOFF_CAP for d in delays)
    assert delays[0] <= sup.BACKOFF_BASE
    assert max(delays) > sup.BACKOFF_CAP / 2
    assert len({round(d, 6) for d in delays}) == len(delays)


async def test_a_crashing_child_is_restarted_with_growing_delays(autojump_clock):
    status = ConnectionStatus("shop", "sqlite")
    starts: list[float] = []

    @asynccontextmanager
    async def open_app():
        yield object()

    async def children(app, nursery):
        starts.append(trio.current_time())
        if len(starts) < 4:
            raise RuntimeError(f"boom {len(starts)}")

    s = sup.Supervisor("shop", status, open_app, children)
    with trio.fail_after(1000):
        await s.run()  # the 4th start returns normally
    assert len(starts) == 4
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert gaps[0] <= gaps[1] * 2 and all(g > 0 for g in gaps)
    assert status.restarts == 3


async def test_a_config_error_pauses_the_connection_with_its_reason(autojump_clock):
    status = ConnectionStatus("shop", "sqlite")

    @asynccontextmanager
    async def open_app():
        raise ConnectorError("config", "permission_denied", "HubSpot refused the token (401)")
        yield  # pragma: no cover

    s = sup.Supervisor("shop", status, open_app, lambda app, n: None)
    with trio.move_on_after(5):
        await s.run()
    assert status.state == "paused"
    assert "401" in status.reason
    assert status.restarts == 0


async def test_an_error_status_names_the_failure(autojump_clock):
    status = ConnectionStatus("shop", "sqlite")

    @asynccontextmanager
    async def open_app():
        yield object()

    async def children(app, nursery):
        raise ValueError("database is locked")

    s = sup.Supervisor("shop", status, open_app, children)
    with trio.move_on_after(0.1):
        await s.run()
    assert status.state == "error"
    assert "database is locked" in status.reason
    with pytest.raises(AssertionError):
        assert status.state == "running"


async def test_a_spent_daily_budget_pauses_until_it_is_tried_again(autojump_clock):
    """A rate limit of the whole account (Pipedrive's daily token budget) pauses the
    connection with its reason for the retry_after it names, then starts it again: no
    backoff, no restart counted, nothing lost (every sync resumes from what it committed)."""
    status = ConnectionStatus("pd", "pipedrive")
    starts: list[float] = []

    @asynccontextmanager
    async def open_app():
        yield object()

    async def children(app, nursery):
        starts.append(trio.current_time())
        if len(starts) == 1:
            err = ConnectorError("rate_limited", "rate_limited",
                                 "the daily Pipedrive token budget is spent", retry_after=30.0)
            err.pause = True
            raise err

    s = sup.Supervisor("pd", status, open_app, children)
    seen: list[tuple[str, str]] = []

    async def watch() -> None:
        while True:
            seen.append((status.state, status.reason))
            await trio.sleep(1)

    with trio.fail_after(1000):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch)
            await s.run()
            nursery.cancel_scope.cancel()
    assert starts[1] - starts[0] == pytest.approx(30.0)
    assert ("paused", "the daily Pipedrive token budget is spent") in seen
    assert status.restarts == 0
