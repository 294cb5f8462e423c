"""One rate budget per API account, shared by every actor that calls that account.

A `RateBudget` enforces, on the caller's side, the limits the API enforces on its side:

- a rolling window (`per_window` requests in any `window_seconds`; HubSpot: 100 or 190 per
  10 s), kept as the times the requests were made, so that no request goes before the window
  allows it;
- a daily quota (`daily` units per day), reset when the account's day ends; a request costs
  one unit (HubSpot counts requests) or the `cost` its `acquire` names (Pipedrive counts
  tokens, a different number per operation), charged before it is sent;
- a separate rolling window for search requests (`search_per_second` per
  `search_window_seconds`), which are exempt from the main window on HubSpot
  (`search_in_window=False`) and take a place in both windows on Pipedrive.

It is updated from what the API reports (`observe`: remaining / max / interval / daily
remaining, typically read from rate-limit response headers) and told about refusals
(`note_rate_limited`: a 429 and which limit it names), after which nobody acquires until the
limit has passed. It is generic: nothing here knows HubSpot; the HubSpot connector maps its
headers and 429 policy names onto these calls.

All times come from `trio.current_time()`, so tests run on `MockClock`.

Accounting is conservative on purpose. A request is counted from the moment `acquire` lets it
go until `window_seconds` after its response arrived (`Permit.done()`): the API counted it at
some instant in between, so the local window never frees a slot before the API's does.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Literal

import msgspec
import trio

__all__ = [
    "LongWait",
    "Permit",
    "RateBudget",
    "RateBudgetStatistics",
    "RateScope",
    "RequestKind",
    "seconds_until_utc_midnight",
]

RequestKind = Literal["default", "search"]
# Which limit a refusal (429) names: the main rolling window, the daily quota, the search
# window, or an unnamed one.
RateScope = Literal["window", "daily", "search", "unknown"]


def seconds_until_utc_midnight() -> float:
    """Seconds from now (wall clock) until the next midnight UTC."""
    now = time.time()
    return 86400.0 - (now % 86400.0)


class LongWait(Exception):
    """`acquire(max_wait=...)` would have to wait longer than that: `wait` seconds."""

    def __init__(self, wait: float) -> None:
        super().__init__(f"the rate budget would wait {wait:.0f} s")
        self.wait = wait


class RateBudgetStatistics(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    window_limit: int | None
    window_seconds: float
    window_used: int  # requests counted in the rolling window right now (in flight included)
    search_limit: int | None
    search_used: int
    daily_limit: int | None
    daily_used: int  # units (requests or tokens) acquired since the current day began
    daily_remaining: int | None  # None: no daily quota
    # Seconds until the day (and the daily quota) resets; None before the first request.
    daily_resets_in: float | None = None
    in_flight: int
    requests: int  # acquired since the budget was made
    waits: int  # acquires that had to wait
    waited_seconds: float
    rate_limited: int  # refusals reported through note_rate_limited
    blocked_for: float  # seconds until a refusal's block lifts (0: not blocked)


class _Slot:
    """One request counted in a rolling window until `expires`."""

    __slots__ = ("expires",)

    def __init__(self, expires: float) -> None:
        self.expires = expires


class _Window:
    """At most `limit` requests in any `period` seconds; `limit=None` means no limit."""

    def __init__(self, limit: int | None, period: float) -> None:
        self.limit = limit
        self.period = period
        self.slots: list[_Slot] = []
        self.blocked_until = -math.inf

    def purge(self, now: float) -> None:
        if self.slots and min(s.expires for s in self.slots) <= now:
            self.slots = [s for s in self.slots if s.expires > now]

    def used(self, now: float) -> int:
        self.purge(now)
        return len(self.slots)

    def delay(self, now: float) -> float:
        wait = max(0.0, self.blocked_until - now)
        if self.limit is not None:
            self.purge(now)
            excess = len(self.slots) - self.limit + 1
            if excess > 0:
                # The `excess`-th earliest expiry frees enough room for one more request.
                expiries = sorted(s.expires for s in self.slots)
                wait = max(wait, expiries[excess - 1] - now)
        return wait

    def take(self, now: float) -> _Slot:
        slot = _Slot(now + self.period)
        self.slots.append(slot)
        return slot

    def fill_to(self, used: int, now: float) -> None:
        """Count requests made by someone else: pad the window to `used` requests."""
        self.purge(now)
        for _ in range(used - len(self.slots)):
            self.slots.append(_Slot(now + self.period))


class Permit:
    """Leave to send one request. Call `done()` when its response (or failure) arrived: the
    request then stays counted for a full window from that moment."""

    __slots__ = ("_budget", "_done", "_slots", "cost")

    def __init__(self, budget: RateBudget, slots: list[tuple[_Slot, float]],
                 cost: int = 1) -> None:
        self._budget = budget
        self._slots = slots
        self._done = False
        self.cost = cost

    def done(self) -> None:
        if self._done:
            return
        self._done = True
        now = trio.current_time()
        for slot, period in self._slots:
            slot.expires = max(slot.expires, now + period)
        self._budget._in_flight -= 1
        self._budget._in_flight_cost -= self.cost


class RateBudget:
    """The rate budget of one API account. See the module docstring.

    `per_window` / `daily` / `search_per_second` of None mean "no such limit".
    `seconds_until_daily_reset` says (in wall-clock terms) when the account's day ends;
    HubSpot resets at midnight in the account's time zone, which the API does not tell, so the
    default is midnight UTC and a DAILY refusal always blocks until the next reset.
    """

    def __init__(
        self,
        *,
        per_window: int | None = None,
        window_seconds: float = 10.0,
        daily: int | None = None,
        search_per_second: int | None = None,
        search_window_seconds: float = 1.0,
        search_in_window: bool = False,
        seconds_until_daily_reset: Callable[[], float] = seconds_until_utc_midnight,
        name: str = "",
    ) -> None:
        if per_window is not None and per_window <= 0:
            raise ValueError("per_window must be positive")
        if window_seconds <= 0:
            raise ValueError("window_seconds must be positive")
        self.name = name
        self._window = _Window(per_window, window_seconds)
        self._search = _Window(search_per_second, search_window_seconds)
        self._search_in_window = search_in_window
        self._daily_limit = daily
        self._seconds_until_daily_reset = seconds_until_daily_reset
        self._day_ends: float | None = None
        self._daily_used = 0
        # The API's own count of what is left today, minus what we sent since it said so.
        self._daily_reported: int | None = None
        self._daily_blocked_until = -math.inf
        self._locks: dict[str, trio.Lock] = {"default": trio.Lock(), "search": trio.Lock()}
        self._in_flight = 0
        self._in_flight_cost = 0
        self._requests = 0
        self._waits = 0
        self._waited = 0.0
        self._rate_limited = 0

    @property
    def unlimited(self) -> bool:
        return (self._window.limit is None and self._search.limit is None
                and self._daily_limit is None)

    # --- the day ----------------------------------------------------------------------------

    def _roll_day(self, now: float) -> None:
        if self._day_ends is None:
            self._day_ends = now + max(0.0, self._seconds_until_daily_reset())
        elif now >= self._day_ends:
            self._daily_used = 0
            self._daily_reported = None
            self._day_ends = now + max(1.0, self._seconds_until_daily_reset())

    def _daily_remaining(self) -> int | None:
        if self._daily_reported is not None:
            if self._daily_limit is None:
                return self._daily_reported
            return min(self._daily_reported, self._daily_limit - self._daily_used)
        if self._daily_limit is None:
            return None
        return self._daily_limit - self._daily_used

    def _daily_delay(self, now: float, cost: int = 1) -> float:
        self._roll_day(now)
        wait = max(0.0, self._daily_blocked_until - now)
        remaining = self._daily_remaining()
        if remaining is not None and remaining < max(1, cost):
            assert self._day_ends is not None
            wait = max(wait, self._day_ends - now)
        return wait

    # --- acquiring ----------------------------------------------------------------------------

    def _windows(self, kind: RequestKind) -> list[_Window]:
        if kind != "search":
            return [self._window]
        return [self._search, self._window] if self._search_in_window else [self._search]

    def delay(self, kind: RequestKind = "default", cost: int = 1, *,
              check_daily: bool = True) -> float:
        """Seconds `acquire(kind, cost)` would wait right now (0: a request may go at once)."""
        now = trio.current_time()
        wait = self._daily_delay(now, cost) if check_daily else 0.0
        for w in self._windows(kind):
            wait = max(wait, w.delay(now))
        return wait

    async def acquire(self, kind: RequestKind = "default", cost: int = 1, *,
                      check_daily: bool = True, max_wait: float | None = None) -> Permit:
        """Wait until a request of `kind` costing `cost` daily units may go, count it, and
        return its `Permit`. With `check_daily=False` the daily quota does not hold it back
        (a probe: is the API's day over already?); the windows still do. Raises `LongWait`
        instead of waiting longer than `max_wait` at a time (a spent daily quota: hours).

        Waiters are served first come, first served (one FIFO lock per kind). Cancellation
        while waiting leaves nothing counted. Call `Permit.done()` once the response arrived.
        """
        await trio.lowlevel.checkpoint()
        async with self._locks[kind]:
            waited = False
            while True:
                wait = self.delay(kind, cost, check_daily=check_daily)
                if wait <= 0:
                    break
                if max_wait is not None and wait > max_wait:
                    raise LongWait(wait)
                if not waited:
                    waited = True
                    self._waits += 1
                start = trio.current_time()
                await trio.sleep(wait)
                self._waited += trio.current_time() - start
            now = trio.current_time()
            slots = [(w.take(now), w.period) for w in self._windows(kind) if w.limit is not None]
            self._daily_used += cost
            if self._daily_reported is not None:
                self._daily_reported -= cost
            self._in_flight += 1
            self._in_flight_cost += cost
            self._requests += 1
            return Permit(self, slots, cost)

    # --- what the API says ----------------------------------------------------------------------

    def observe(
        self,
        *,
        window_remaining: int | None = None,
        window_max: int | None = None,
        window_seconds: float | None = None,
        daily_remaining: int | None = None,
        cost: int = 1,
    ) -> None:
        """Take in the limits the API reported with a response (any subset); `cost` is what
        the request that brought them was charged.

        The API is authoritative on the window's size; when it counts more requests in the
        window than we made (another process uses the same account), the difference is added.
        """
        now = trio.current_time()
        w = self._window
        if window_seconds is not None and window_seconds > 0:
            w.period = window_seconds
        if window_max is not None and window_max > 0:
            w.limit = window_max
        if window_remaining is not None and w.limit is not None:
            # Requests in flight besides this one may not be counted by the API yet.
            w.fill_to(w.limit - max(0, window_remaining), now)
        if daily_remaining is not None:
            self._roll_day(now)
            # Requests still in flight besides this one may not be counted by the API yet.
            others = max(0, self._in_flight_cost - cost)
            self._daily_reported = max(0, daily_remaining - others)
            if self._daily_limit is not None:
                # The API counts what the whole account used today (other clients included,
                # and from its own midnight): it is authoritative both ways.
                more = self._daily_reported > self._daily_limit - self._daily_used
                self._daily_used = max(0, self._daily_limit - self._daily_reported)
                if more:
                    self._daily_blocked_until = -math.inf

    def reset_day(self) -> None:
        """The API's day began again (a request the daily quota should have refused went
        through): count from zero until the next reset."""
        now = trio.current_time()
        self._daily_used = 0
        self._daily_reported = None
        self._daily_blocked_until = -math.inf
        self._day_ends = now + max(1.0, self._seconds_until_daily_reset())

    def note_rate_limited(self, scope: RateScope, retry_after: float | None = None) -> float:
        """The API refused a request for the limit `scope`: block acquires until it passes.

        window: a full window from now. daily: until the day ends. search: one search window.
        unknown: `retry_after`, else one second. A `retry_after` longer than that wins.
        Returns the seconds blocked.
        """
        now = trio.current_time()
        self._rate_limited += 1
        extra = max(0.0, retry_after or 0.0)
        if scope == "daily":
            self._roll_day(now)
            assert self._day_ends is not None
            self._daily_reported = 0
            until = max(self._day_ends, now + extra)
            self._daily_blocked_until = max(self._daily_blocked_until, until)
            return until - now
        if scope == "search":
            w = self._search
            base = w.period
        elif scope == "window":
            w = self._window
            base = w.period
        else:
            w = self._window
            base = 1.0
        until = now + max(base, extra)
        w.blocked_until = max(w.blocked_until, until)
        if scope == "unknown":
            self._search.blocked_until = max(self._search.blocked_until, until)
        return until - now

    def statistics(self) -> RateBudgetStatistics:
        now = trio.current_time()
        self._roll_day(now)
        blocked = max(self._window.blocked_until, self._search.blocked_until,
                      self._daily_blocked_until)
        resets_in = None if self._day_ends is None else max(0.0, self._day_ends - now)
        return RateBudgetStatistics(
            name=self.name,
            window_limit=self._window.limit,
            window_seconds=self._window.period,
            window_used=self._window.used(now),
            search_limit=self._search.limit,
            search_used=self._search.used(now),
            daily_limit=self._daily_limit,
            daily_used=self._daily_used,
            daily_remaining=self._daily_remaining(),
            in_flight=self._in_flight,
            requests=self._requests,
            waits=self._waits,
            waited_seconds=self._waited,
            rate_limited=self._rate_limited,
            blocked_for=max(0.0, blocked - now),
            daily_resets_in=resets_in,
        )
