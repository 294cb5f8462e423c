"""HubSpot's request limits (fact sheet §3): the ten-secondly rolling window per app, the daily
quota per account, and search's own per-second limit — with the headers and 429 bodies."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

# Requests per 10 s per app, requests per day per account (fact sheet §3.1).
TIERS: dict[str, tuple[int, int] | None] = {
    "starter": (100, 250_000),
    "professional": (190, 625_000),
    "enterprise": (190, 1_000_000),
    "unlimited": None,
}
# Public OAuth apps: 110 / 10 s per installing account, whatever the tier (fact sheet §3.1).
OAUTH_TEN_SECONDLY = 110
WINDOW_SECONDS = 10.0
SEARCH_PER_SECOND = 5
_DAY_MS = 86_400_000


@dataclass
class RollingWindow:
    """Requests admitted in the last `seconds` (a true rolling window, as HubSpot's policy name
    says)."""

    limit: int
    seconds: float
    _times: deque[float] = field(default_factory=deque)

    def _expire(self, now: float) -> None:
        while self._times and self._times[0] <= now - self.seconds:
            self._times.popleft()

    def try_acquire(self, now: float) -> bool:
        self._expire(now)
        if len(self._times) >= self.limit:
            return False
        self._times.append(now)
        return True

    def remaining(self, now: float) -> int:
        self._expire(now)
        return max(0, self.limit - len(self._times))


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    headers: dict[str, str]
    policy: str | None = None  # TEN_SECONDLY_ROLLING | DAILY | SECONDLY when refused


def rate_limit_body(policy: str, correlation_id: str, request_id: str) -> dict[str, str]:
    """The 429 body (fact sheet §3.3): note `errorType`, not `category`."""
    message = {
        "TEN_SECONDLY_ROLLING": "You have reached your ten_secondly_rolling limit.",
        "DAILY": "You have reached your daily limit.",
        "SECONDLY": "You have reached your secondly limit.",
    }[policy]
    return {
        "status": "error",
        "message": message,
        "errorType": "RATE_LIMIT",
        "correlationId": correlation_id,
        "policyName": policy,
        "requestId": request_id,
    }


class RateLimiter:
    def __init__(self, tier: str) -> None:
        if tier not in TIERS:
            raise ValueError(f"unknown tier {tier!r}; expected one of {', '.join(TIERS)}")
        self.tier = tier
        self.reset()

    def reset(self) -> None:
        self._windows: dict[str, RollingWindow] = {}
        self._daily_used = 0
        self._day: int | None = None  # adopted on the first request
        self._search = RollingWindow(SEARCH_PER_SECOND, 1.0)

    def check(self, key: str, *, oauth: bool, now: float, now_ms: int) -> Verdict:
        """Counts one request of the app `key` (a private-app token, or an OAuth client)."""
        limits = TIERS[self.tier]
        if limits is None:
            return Verdict(True, {})
        per_ten, per_day = limits
        if oauth:
            per_ten = OAUTH_TEN_SECONDLY
        window = self._windows.get(key)
        if window is None or window.limit != per_ten:
            window = self._windows[key] = RollingWindow(per_ten, WINDOW_SECONDS)
        self._roll_day(now_ms)

        policy: str | None = None
        if self._daily_used >= per_day:
            policy = "DAILY"
        elif not window.try_acquire(now):
            policy = "TEN_SECONDLY_ROLLING"
        else:
            self._daily_used += 1
        headers = {
            "X-HubSpot-RateLimit-Interval-Milliseconds": str(int(WINDOW_SECONDS * 1000)),
            "X-HubSpot-RateLimit-Max": str(per_ten),
            "X-HubSpot-RateLimit-Remaining": str(window.remaining(now)),
        }
        if not oauth:
            # Not sent for OAuth-authorised calls (fact sheet §3.2).
            headers["X-HubSpot-RateLimit-Daily"] = str(per_day)
            headers["X-HubSpot-RateLimit-Daily-Remaining"] = str(max(0, per_day - self._daily_used))
        return Verdict(policy is None, headers, policy)

    def exhausted_headers(self, *, oauth: bool) -> dict[str, str]:
        """The headers of a 429 during a storm: nothing left in the window."""
        limits = TIERS[self.tier]
        if limits is None:
            return {}
        headers = {
            "X-HubSpot-RateLimit-Interval-Milliseconds": str(int(WINDOW_SECONDS * 1000)),
            "X-HubSpot-RateLimit-Max": str(OAUTH_TEN_SECONDLY if oauth else limits[0]),
            "X-HubSpot-RateLimit-Remaining": "0",
        }
        if not oauth:
            headers["X-HubSpot-RateLimit-Daily"] = str(limits[1])
            headers["X-HubSpot-RateLimit-Daily-Remaining"] = str(
                max(0, limits[1] - self._daily_used)
            )
        return headers

    def check_search(self, *, now: float, now_ms: int) -> Verdict:
        """Search: 5 requests/second per account, no rate-limit headers; it still counts
        against the daily quota [INF] but not the ten-secondly window (SPEC exemption)."""
        limits = TIERS[self.tier]
        if limits is None:
            return Verdict(True, {})
        self._roll_day(now_ms)
        if self._daily_used >= limits[1]:
            return Verdict(False, {}, "DAILY")
        if not self._search.try_acquire(now):
            return Verdict(False, {}, "SECONDLY")
        self._daily_used += 1
        return Verdict(True, {})

    def _roll_day(self, now_ms: int) -> None:
        # The daily quota resets at midnight in the account's time zone, UTC here.
        day = now_ms // _DAY_MS
        if self._day is None:
            self._day = day
        elif day != self._day:
            self._day, self._daily_used = day, 0

    def set_daily_used(self, used: int) -> None:
        """Lets a test start near the daily quota without sending a quarter million requests."""
        self._daily_used = used
