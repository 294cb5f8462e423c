"""Pipedrive's token-based rate limits [PD-rate][PD-opt]:

- a daily budget of tokens per company, `30,000 × plan multiplier × seats` (+ purchased
  top-ups), every operation costing its `x-token-cost` [PD-spec-v2]; once spent, every request
  answers 429 until the reset at midnight [PD-rate] (UTC here [INF]);
- a burst limit per token over a rolling 2-second window, by plan and auth type; search
  endpoints 10 per 2 s on every plan [PD-rate];
- `x-ratelimit-limit` / `-remaining` / `-reset` for the burst window, and the daily
  `x-daily-ratelimit-token-limit` / `-remaining` that clients read although the docs do not
  name them [UNVERIFIED, community staff reply];
- a token that keeps calling after 429s is blocked with a 403 HTML page (api_token traffic
  only) [PD-rate]; how many 429s it takes is not documented: `hammer_limit` 429s within
  `hammer_window` seconds block it for `block_seconds` [INF]."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

from .values import day_of

WINDOW_SECONDS = 2.0
SEARCH_PER_WINDOW = 10
BASE_DAILY_TOKENS = 30_000


@dataclass(frozen=True)
class Plan:
    multiplier: int
    burst_api_token: int
    burst_oauth: int


# Current plan names and figures [PD-rate].
PLANS: dict[str, Plan | None] = {
    "essential": Plan(1, 20, 80),
    "advanced": Plan(2, 40, 160),
    "professional": Plan(3, 80, 320),
    "power": Plan(5, 100, 400),
    "enterprise": Plan(7, 120, 480),
    "unlimited": None,  # the emulator's own: no limits, no headers (tokens are still counted)
}


@dataclass
class RollingWindow:
    limit: int
    seconds: float = WINDOW_SECONDS
    times: deque[float] = field(default_factory=deque)

    def _expire(self, now: float) -> None:
        while self.times and self.times[0] <= now - self.seconds:
            self.times.popleft()

    def has_room(self, now: float) -> bool:
        self._expire(now)
        return len(self.times) < self.limit

    def take(self, now: float) -> None:
        self.times.append(now)

    def remaining(self, now: float) -> int:
        self._expire(now)
        return max(0, self.limit - len(self.times))

    def reset_in(self, now: float) -> int:
        """Whole seconds until the oldest counted request leaves the window."""
        self._expire(now)
        if not self.times:
            return 0
        return max(1, math.ceil(self.times[0] + self.seconds - now))


@dataclass(frozen=True)
class Verdict:
    status: int  # 200 admitted, 429 refused, 403 blocked
    headers: dict[str, str]
    reason: str = ""  # burst | search | daily | blocked


class RateLimiter:
    def __init__(
        self,
        plan: str,
        *,
        seats: int = 1,
        top_up_tokens: int = 0,
        hammer_limit: int = 50,
        hammer_window: float = 10.0,
        block_seconds: float = 60.0,
    ) -> None:
        if plan not in PLANS:
            raise ValueError(f"unknown plan {plan!r}; expected one of {', '.join(PLANS)}")
        if seats < 1:
            raise ValueError("seats must be at least 1")
        self.plan = plan
        self.seats = seats
        self.top_up_tokens = top_up_tokens
        self.hammer_limit = hammer_limit
        self.hammer_window = hammer_window
        self.block_seconds = block_seconds
        self.reset()

    def reset(self) -> None:
        self._windows: dict[tuple[str, bool], RollingWindow] = {}
        self._refusals: dict[str, deque[float]] = {}
        self._blocked_until: dict[str, float] = {}
        self.tokens_used = 0
        self._day: int | None = None

    @property
    def daily_budget(self) -> int | None:
        plan = PLANS[self.plan]
        if plan is None:
            return None
        return BASE_DAILY_TOKENS * plan.multiplier * self.seats + self.top_up_tokens

    def _roll_day(self, now_ms: int) -> None:
        day = day_of(now_ms)
        if self._day != day:
            self._day, self.tokens_used = day, 0

    def _window(self, key: str, *, oauth: bool, search: bool) -> RollingWindow:
        plan = PLANS[self.plan]
        assert plan is not None
        limit = (
            SEARCH_PER_WINDOW if search else (plan.burst_oauth if oauth else plan.burst_api_token)
        )
        window = self._windows.get((key, search))
        if window is None:
            window = self._windows[(key, search)] = RollingWindow(limit)
        return window

    def admit(
        self, key: str, *, oauth: bool, search: bool, cost: int, now: float, now_ms: int
    ) -> Verdict:
        """Counts one request of the token `key` costing `cost` tokens. Search requests take a
        place in the search window and in the token's general one [INF]. Refused requests
        spend no tokens and no window place [INF]."""
        self._roll_day(now_ms)
        budget = self.daily_budget
        if budget is None:
            self.tokens_used += cost
            return Verdict(200, {})
        if not oauth and self._blocked_until.get(key, -math.inf) > now:
            return Verdict(403, {}, "blocked")
        general = self._window(key, oauth=oauth, search=False)
        windows = [general]
        if search:
            windows.insert(0, self._window(key, oauth=oauth, search=True))
        reason = ""
        if self.tokens_used + cost > budget:
            reason = "daily"
        elif not all(w.has_room(now) for w in windows):
            reason = "search" if search and not windows[0].has_room(now) else "burst"
        else:
            for w in windows:
                w.take(now)
            self.tokens_used += cost
        shown = windows[0]
        headers = {
            "x-ratelimit-limit": str(shown.limit),
            "x-ratelimit-remaining": str(shown.remaining(now)),
            "x-ratelimit-reset": str(shown.reset_in(now)),
            "x-daily-ratelimit-token-limit": str(budget),
            "x-daily-ratelimit-token-remaining": str(max(0, budget - self.tokens_used)),
        }
        if reason:
            self._refused(key, oauth=oauth, now=now)
            return Verdict(429, headers, reason)
        return Verdict(200, headers)

    def storm_headers(self, key: str, *, oauth: bool, search: bool, now: float) -> dict[str, str]:
        """The headers of an injected 429: the window shown as exhausted."""
        if PLANS[self.plan] is None:
            return {}
        window = self._window(key, oauth=oauth, search=search)
        budget = self.daily_budget or 0
        return {
            "x-ratelimit-limit": str(window.limit),
            "x-ratelimit-remaining": "0",
            "x-ratelimit-reset": str(int(WINDOW_SECONDS)),
            "x-daily-ratelimit-token-limit": str(budget),
            "x-daily-ratelimit-token-remaining": str(max(0, budget - self.tokens_used)),
        }

    def note_refusal(self, key: str, *, oauth: bool, now: float) -> None:
        """A 429 answered outside `admit` (an injected storm) counts towards a block too."""
        self._refused(key, oauth=oauth, now=now)

    def _refused(self, key: str, *, oauth: bool, now: float) -> None:
        if oauth:
            return  # the block applies to api_token traffic only [PD-rate]
        times = self._refusals.setdefault(key, deque())
        times.append(now)
        while times and times[0] <= now - self.hammer_window:
            times.popleft()
        if len(times) >= self.hammer_limit:
            self._blocked_until[key] = now + self.block_seconds
            times.clear()

    def set_tokens_used(self, used: int, now_ms: int) -> None:
        """Lets a test start near the daily budget without spending it request by request."""
        self._roll_day(now_ms)
        self.tokens_used = used

    def statistics(self, now_ms: int) -> dict[str, int | None]:
        self._roll_day(now_ms)
        budget = self.daily_budget
        return {
            "tokens_used_today": self.tokens_used,
            "daily_budget": budget,
            "tokens_left_today": None if budget is None else max(0, budget - self.tokens_used),
            "resets_at_ms": ((day_of(now_ms) + 1) * 86_400_000),
        }
