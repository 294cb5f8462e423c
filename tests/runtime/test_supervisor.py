"""The connection supervisor: reports started once its children started (an error while
starting comes out of `start`, at the caller), restarts children that fail later with capped,
jittered backoff, shows why, and pauses on configuration errors."""

import itertools
import random
from contextlib import asynccontextmanager

import pytest
import trio

from crmsync.connectors.base import ConnectorError
from crmsync.runtime import supervisor as sup
from crmsync.runtime.connection import ConnectionHandle
from crmsync.runtime.status import ConnectionStatus


def test_backoff_is_capped_and_jittered():
    rnd = random.Random(1)
    delays = [sup.backoff(n, rnd) for n in range(1, 20)]
    assert all(d <= sup.BACKOFF_CAP for d in delays)
    assert delays[0] <= sup.BACKOFF_BASE
    assert max(delays) > sup.BACKOFF_CAP / 2
    assert len({round(d, 6) for d in delays}) == len(delays)


@asynccontextmanager
async def open_app():
    yield object()


async def test_started_means_the_children_started(autojump_clock):
    status = ConnectionStatus("shop", "sqlite")
    ready_at: list[float] = []

    async def slow_child(*, task_status=trio.TASK_STATUS_IGNORED):
        await trio.sleep(5)  # setting itself up (describe, checks)
        ready_at.append(trio.current_time())
        task_status.started()
        await trio.sleep_forever()

    async def children(app, nursery):
        await nursery.start(slow_child)

    s = sup.Supervisor("shop", status, open_app, children)
    async with trio.open_nursery() as nursery:
        handle = await nursery.start(s.run)
        assert isinstance(handle, ConnectionHandle)
        assert ready_at == [trio.current_time()]
        assert status.state == "running"
        nursery.cancel_scope.cancel()


async def test_an_error_while_starting_comes_out_of_start(autojump_clock):
    status = ConnectionStatus("shop", "sqlite")
    starts: list[float] = []

    async def children(app, nursery):
        starts.append(trio.current_time())
        raise TypeError("a defect in the wiring")

    s = sup.Supervisor("shop", status, open_app, children)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            with pytest.RaisesGroup(pytest.RaisesExc(TypeError, match="defect"),
                                    flatten_subgroups=True):
                await nursery.start(s.run)
    assert len(starts) == 1, "not retried in a restart loop"
    assert status.restarts == 0


async def test_a_connection_error_while_starting_is_the_status_and_retried(autojump_clock):
    status = ConnectionStatus("shop", "sqlite")
    starts: list[float] = []

    async def children(app, nursery):
        starts.append(trio.current_time())
        if len(starts) == 1:
            raise ConnectorError("transient", "api_unavailable", "the app's API answered 503")

    s = sup.Supervisor("shop", status, open_app, children)
    async with trio.open_nursery() as nursery:
        await nursery.start(s.run)
        # Started: the status already says why it is not running, and when it retries.
        assert status.state == "error" and "503" in status.reason
        with trio.fail_after(100):
            while len(starts) < 2:
                await trio.sleep(1)
        assert status.state == "running"
        nursery.cancel_scope.cancel()


async def test_a_crashing_child_is_restarted_with_growing_delays(autojump_clock):
    status = ConnectionStatus("shop", "sqlite")
    starts: list[float] = []

    async def crash(n):
        await trio.sleep(1)
        raise RuntimeError(f"boom {n}")

    async def children(app, nursery):
        starts.append(trio.current_time())
        if len(starts) < 4:
            nursery.start_soon(crash, len(starts))

    s = sup.Supervisor("shop", status, open_app, children)
    with trio.fail_after(1000):
        async with trio.open_nursery() as nursery:
            await nursery.start(s.run)  # the 4th start returns normally
    assert len(starts) == 4
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert gaps[0] <= gaps[1] * 2 and all(g > 0 for g in gaps)
    assert status.restarts == 3


async def test_a_config_error_pauses_the_connection_with_its_reason(autojump_clock):
    status = ConnectionStatus("shop", "sqlite")

    @asynccontextmanager
    async def refused():
        raise ConnectorError("config", "permission_denied", "HubSpot refused the token (401)")
        yield  # pragma: no cover

    async def children(app, nursery):
        pass  # pragma: no cover

    s = sup.Supervisor("shop", status, refused, children)
    with trio.move_on_after(5):
        async with trio.open_nursery() as nursery:
            await nursery.start(s.run)
            assert status.state == "paused"
    assert status.state == "paused"
    assert "401" in status.reason
    assert status.restarts == 0


async def test_an_error_status_names_the_failure(autojump_clock):
    status = ConnectionStatus("shop", "sqlite")

    async def fail():
        await trio.sleep(0.01)
        raise ValueError("database is locked")

    async def children(app, nursery):
        nursery.start_soon(fail)

    s = sup.Supervisor("shop", status, open_app, children)
    with trio.move_on_after(0.1):
        async with trio.open_nursery() as nursery:
            await nursery.start(s.run)
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
