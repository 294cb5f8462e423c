"""RateBudget on MockClock: rolling window, daily quota, search window, API feedback."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from crmsync.connectors.ratelimit import RateBudget, RateBudgetStatistics


async def take(budget: RateBudget, n: int, kind: str = "default") -> list[float]:
    """Acquire n permits one after the other (each done at once); their start times."""
    times = []
    for _ in range(n):
        permit = await budget.acquire(kind)  # type: ignore[arg-type]
        times.append(trio.current_time())
        permit.done()
    return times


async def test_window_blocks_until_the_oldest_request_leaves(autojump_clock):
    budget = RateBudget(per_window=100, window_seconds=10.0)
    t0 = trio.current_time()
    times = await take(budget, 250)
    offsets = [t - t0 for t in times]
    assert offsets[:100] == [0.0] * 100
    assert offsets[100] == pytest.approx(10.0)
    assert offsets[199] == pytest.approx(10.0)
    assert offsets[200] == pytest.approx(20.0)
    # Invariant: never more than 100 starts in any 10-second window.
    for i in range(100, len(offsets)):
        assert offsets[i] - offsets[i - 100] >= 10.0 - 1e-9


async def test_a_slow_request_counts_from_its_answer(autojump_clock):
    budget = RateBudget(per_window=1, window_seconds=10.0)
    t0 = trio.current_time()
    permit = await budget.acquire()
    await trio.sleep(3)  # the request takes 3 s; the API counted it somewhere in between
    permit.done()
    await budget.acquire()
    assert trio.current_time() - t0 == pytest.approx(13.0)


async def test_search_has_its_own_window_and_is_exempt_from_the_main_one(autojump_clock):
    budget = RateBudget(per_window=2, window_seconds=10.0, search_per_second=5)
    t0 = trio.current_time()
    await take(budget, 2)
    times = await take(budget, 11, "search")
    assert [round(t - t0, 6) for t in times] == [0.0] * 5 + [1.0] * 5 + [2.0]
    stats = budget.statistics()
    assert stats.window_used == 2  # search requests did not enter the main window
    assert stats.requests == 13


async def test_daily_quota_waits_for_the_next_day(autojump_clock):
    budget = RateBudget(daily=3, seconds_until_daily_reset=lambda: 500.0)
    t0 = trio.current_time()
    times = await take(budget, 5)
    assert [t - t0 for t in times] == [0.0, 0.0, 0.0, pytest.approx(500.0),
                                       pytest.approx(500.0)]
    assert budget.statistics().daily_used == 2


async def test_headers_adopt_the_api_window_and_count_other_users(autojump_clock):
    budget = RateBudget(per_window=190, window_seconds=10.0)
    permit = await budget.acquire()
    permit.done()
    # The API says the window is 100 requests and 95 are left: 5 used, we made 1.
    budget.observe(window_remaining=95, window_max=100, window_seconds=10.0)
    stats = budget.statistics()
    assert stats.window_limit == 100
    assert stats.window_used == 5
    t0 = trio.current_time()
    times = await take(budget, 96)
    assert times[94] == t0
    assert times[95] - t0 == pytest.approx(10.0)


async def test_daily_remaining_header_blocks_until_reset(autojump_clock):
    budget = RateBudget(seconds_until_daily_reset=lambda: 60.0)
    await take(budget, 1)
    budget.observe(daily_remaining=0)
    assert budget.delay() == pytest.approx(60.0)
    assert budget.statistics().daily_remaining == 0
    t0 = trio.current_time()
    await take(budget, 1)
    assert trio.current_time() - t0 == pytest.approx(60.0)
    # A new day forgets the old count.
    assert budget.statistics().daily_remaining is None


@pytest.mark.parametrize(("scope", "retry_after", "blocked"), [
    ("window", None, 10.0),
    ("window", 25.0, 25.0),
    ("search", None, 1.0),
    ("unknown", None, 1.0),
    ("unknown", 7.0, 7.0),
    ("daily", None, 3600.0),
])
async def test_refusals_block_acquire(autojump_clock, scope, retry_after, blocked):
    budget = RateBudget(per_window=190, search_per_second=5,
                        seconds_until_daily_reset=lambda: 3600.0)
    assert budget.note_rate_limited(scope, retry_after) == pytest.approx(blocked)
    kind = "search" if scope == "search" else "default"
    t0 = trio.current_time()
    await take(budget, 1, kind)
    assert trio.current_time() - t0 == pytest.approx(blocked)
    assert budget.statistics().rate_limited == 1


async def test_window_refusal_does_not_block_search(autojump_clock):
    budget = RateBudget(per_window=190, search_per_second=5)
    budget.note_rate_limited("window")
    t0 = trio.current_time()
    await take(budget, 1, "search")
    assert trio.current_time() == t0


async def test_waiters_are_served_in_order_and_cancellation_counts_nothing(autojump_clock):
    budget = RateBudget(per_window=1, window_seconds=10.0)
    await take(budget, 1)
    order: list[int] = []

    async def waiter(i: int) -> None:
        permit = await budget.acquire()
        order.append(i)
        permit.done()

    async with trio.open_nursery() as nursery:
        for i in range(4):
            nursery.start_soon(waiter, i)
            await trio.testing.wait_all_tasks_blocked()
        # A waiter that gives up leaves no trace in the window.
        with trio.move_on_after(1) as cancelled:
            await budget.acquire()
        assert cancelled.cancelled_caught
    assert order == [0, 1, 2, 3]
    stats = budget.statistics()
    assert stats.requests == 5
    assert stats.waits == 4


async def test_unlimited_never_waits(autojump_clock):
    budget = RateBudget()
    assert budget.unlimited
    t0 = trio.current_time()
    await take(budget, 1000)
    await take(budget, 1000, "search")
    assert trio.current_time() == t0


async def test_statistics_is_a_frozen_struct(autojump_clock):
    budget = RateBudget(per_window=10, daily=100, search_per_second=5)
    permit = await budget.acquire()
    stats = budget.statistics()
    assert isinstance(stats, RateBudgetStatistics)
    assert (stats.window_used, stats.in_flight, stats.daily_remaining) == (1, 1, 99)
    permit.done()
    permit.done()  # idempotent
    assert budget.statistics().in_flight == 0
    with pytest.raises(AttributeError):
        stats.window_used = 3  # type: ignore[misc]
