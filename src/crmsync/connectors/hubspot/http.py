"""One HubSpot API call: rate budget, deadline, classification, retries, rate-limit headers.

`HubSpotHttp.request()` is the only place the connector sends anything. Per attempt it waits
for the account's rate budget (`acquire("search")` for search endpoints, which HubSpot limits
to 5/s separately and exempts from the ten-secondly window), sends under
`trio.fail_after(request_timeout)` (httpx's ASGITransport ignores httpx timeouts, and this
keeps MockClock tests honest), feeds the `X-HubSpot-RateLimit-*` headers back into the budget,
tells the budget about 429s by their `policyName`, and classifies the outcome by the table of
`crmsync.connectors.retry`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import urlencode

import httpx
import msgspec
import structlog
import trio

from crmsync.connectors.ratelimit import RateBudget, RateScope, RequestKind
from crmsync.connectors.retry import (
    HttpFailure,
    RetryPolicy,
    call_with_retry,
    failure_from_exception,
    failure_from_response,
)

log = structlog.get_logger("crmsync.connectors.hubspot")

HUBSPOT_RETRY_POLICY = RetryPolicy(service="HubSpot", hint="check hub.auth")

# 429 policyName → the budget's scope (fact sheet §3.3).
_POLICY_SCOPES: dict[str, RateScope] = {
    "TEN_SECONDLY_ROLLING": "window",
    "DAILY": "daily",
    "SECONDLY": "search",
}

_JSON_HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}
_FORM_HEADERS = {"Content-Type": "application/x-www-form-urlencoded",
                 "Accept": "application/json"}


def _int_header(headers: httpx.Headers, name: str) -> int | None:
    value = headers.get(name)
    if value is None:
        return None
    try:
        return int(value.strip())
    except ValueError:
        return None


def observe_rate_headers(budget: RateBudget, headers: httpx.Headers) -> None:
    """Feed HubSpot's X-HubSpot-RateLimit-* headers (fact sheet §3.2) into a budget."""
    interval = _int_header(headers, "X-HubSpot-RateLimit-Interval-Milliseconds")
    budget.observe(
        window_remaining=_int_header(headers, "X-HubSpot-RateLimit-Remaining"),
        window_max=_int_header(headers, "X-HubSpot-RateLimit-Max"),
        window_seconds=interval / 1000.0 if interval else None,
        daily_remaining=_int_header(headers, "X-HubSpot-RateLimit-Daily-Remaining"),
    )


def rate_scope(failure: HttpFailure, kind: RequestKind) -> RateScope:
    """Which limit a 429 names: by policyName, else by its message, else by the endpoint."""
    if failure.detail.policy in _POLICY_SCOPES:
        return _POLICY_SCOPES[failure.detail.policy]
    message = failure.detail.message.lower()
    if "daily" in message:
        return "daily"
    if "secondly limit" in message or kind == "search":
        return "search"
    if "ten_secondly" in message:
        return "window"
    return "unknown"


def decode(response: httpx.Response) -> Any:
    """The JSON body of a successful answer ({} when empty)."""
    if not response.content:
        return {}
    try:
        return msgspec.json.decode(response.content)
    except (msgspec.DecodeError, RecursionError) as exc:
        raise HttpFailure(
            HUBSPOT_RETRY_POLICY.mapping[httpx.DecodingError],
            f"HubSpot sent an unreadable answer ({exc})", status=response.status_code,
        ) from exc


class HubSpotHttp:
    """Sends requests to HubSpot through one shared `httpx.AsyncClient` and rate budget."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        budget: RateBudget,
        *,
        search_budget: RateBudget | None = None,
        request_timeout: float = 30.0,
        policy: RetryPolicy = HUBSPOT_RETRY_POLICY,
        refresh_token: Callable[[], Awaitable[bool]] | None = None,
    ) -> None:
        self.client = client
        self.budget = budget
        self.search_budget = search_budget or budget
        self.request_timeout = request_timeout
        self.policy = policy
        self.refresh_token = refresh_token

    def _budget(self, kind: RequestKind) -> RateBudget:
        return self.search_budget if kind == "search" else self.budget

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        form: Mapping[str, str] | None = None,
        params: Mapping[str, str | int] | None = None,
        kind: RequestKind = "default",
        idempotent: bool = True,
    ) -> httpx.Response:
        """Send one API call, retrying what the table says to retry. The body is `json`, or
        `form` form-encoded (HubSpot's OAuth endpoints).

        Returns the successful response (2xx, including 207) with its body read. Raises
        `HttpFailure` (a ConnectorError) otherwise; with `idempotent=False` a failure after
        which the request may have been applied is raised at once with `ambiguous=True`.
        """
        content = msgspec.json.encode(json) if json is not None else None
        headers = _JSON_HEADERS if content is not None else None
        if form is not None:
            content = urlencode(form).encode()
            headers = _FORM_HEADERS
        budget = self._budget(kind)

        async def attempt() -> httpx.Response:
            permit = await budget.acquire(kind)
            try:
                with trio.fail_after(self.request_timeout):
                    response = await self.client.request(
                        method, path, content=content, params=params, headers=headers)
            except (httpx.HTTPError, httpx.InvalidURL, trio.TooSlowError) as exc:
                sent = failure_from_exception(exc, self.policy)
                log.debug("hubspot_request_failed", method=method, path=path,
                          error=sent.message)
                raise sent from exc
            finally:
                permit.done()
            if kind != "search":
                observe_rate_headers(budget, response.headers)
            failure = failure_from_response(response, self.policy)
            if failure is None:
                return response
            if response.status_code == 429:
                scope = rate_scope(failure, kind)
                blocked = budget.note_rate_limited(scope, failure.retry_after)
                log.info("hubspot_rate_limited", method=method, path=path, scope=scope,
                         policy=failure.detail.policy, blocked_seconds=round(blocked, 3))
            else:
                log.debug("hubspot_request_failed", method=method, path=path,
                          status=response.status_code, error=failure.message)
            raise failure

        return await call_with_retry(
            attempt,
            policy=self.policy,
            idempotent=idempotent,
            rate_limit_delay=lambda: budget.delay(kind),
            refresh_token=self.refresh_token,
        )

    async def json(self, method: str, path: str, **kwargs: Any) -> Any:
        """`request()` and decode the JSON answer."""
        return decode(await self.request(method, path, **kwargs))
