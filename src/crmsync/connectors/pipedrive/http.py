"""One Pipedrive API call: its token cost, the account's budget, a deadline, the error table,
retries and the rate-limit headers.

`PipedriveHttp.request()` is the only place the connector sends anything. Per attempt it
charges the call's token cost to the account's `RateBudget` *before* sending (the daily budget
counts tokens, the burst window counts requests; search calls also take a place in the search
window of 10 per 2 s), sends under `trio.fail_after(request_timeout)`, feeds
`x-ratelimit-*` and `x-daily-ratelimit-token-*` back into the budget, tells it about 429s
(daily budget spent, or the burst window) and 403 blocks, and classifies the outcome by
`PIPEDRIVE_ERROR_MAPPING`. Facts: shared/reference/pipedrive-api.md (§A.6 limits, §A.7 errors).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import httpx
import msgspec
import structlog
import trio

from crmsync.connectors.ratelimit import LongWait, RateBudget, RateScope, RequestKind
from crmsync.connectors.retry import (
    DEFAULT_ERROR_MAPPING,
    Action,
    ErrorDetail,
    ErrorResolution,
    HttpFailure,
    RetryPolicy,
    call_with_retry,
    classify,
    failure_from_exception,
)

log = structlog.get_logger("crmsync.connectors.pipedrive")

# Pipedrive's limits per plan [PD-rate]: daily token multiplier, burst per 2 s for an API
# token and for OAuth. The daily budget is 30,000 x multiplier x seats (+ top-ups).
BASE_DAILY_TOKENS = 30_000
WINDOW_SECONDS = 2.0
SEARCH_PER_WINDOW = 10  # search endpoints, every plan and auth type [PD-rate]
PLANS: dict[str, tuple[int, int, int] | None] = {
    "essential": (1, 20, 80),
    "advanced": (2, 40, 160),
    "professional": (3, 80, 320),
    "power": (5, 100, 400),
    "enterprise": (7, 120, 480),
    "unlimited": None,  # no limits enforced (an emulator, or a negotiated contract)
}
# Pipedrive blocks a token that keeps calling after 429s with a 403 HTML page [PD-rate]; for
# how long is not documented.
BLOCK_SECONDS = 60.0

# Error codes the table knows, besides Pipedrive's own `code` values.
BLOCKED = "blocked"  # the Cloudflare HTML page after hammering


def _config(message: str) -> ErrorResolution:
    return ErrorResolution(Action.CONFIG_ERROR, "config", "permission_denied", message=message)


def _record(category: str, message: str) -> ErrorResolution:
    return ErrorResolution(Action.FAIL_RECORD, "record", category, message=message)


# Status (or (status, code)) → what it means [PD-status]. Exceptions and 5xx as for every API.
PIPEDRIVE_ERROR_MAPPING: Mapping[Any, ErrorResolution] = {
    **DEFAULT_ERROR_MAPPING,
    400: _record("invalid_value", "{service} rejected the request ({status}): {detail}"),
    401: _config("{service} refused the credentials ({status}): {detail} — {hint}"),
    402: _config("the {service} account is not open ({status}): {detail}"),
    (403, BLOCKED): ErrorResolution(
        Action.RATE_LIMITED, "rate_limited", "rate_limited",
        message="{service} blocked the token for calling on after 429s ({status})"),
    # A plan limit (e.g. the number of deals): the record cannot be written, the rest can.
    (403, "feature_capping_deals_limit"): _record(
        "permission_denied", "{service} plan limit reached ({status}): {detail}"),
    403: _config("{service} refused access ({status}): {detail} — {hint}"),
    404: _record("not_found", "not found ({status}): {detail}"),
    405: _record("internal", "{service} does not allow this call ({status}): {detail}"),
    410: _record("not_found", "gone ({status}): {detail}"),
    415: _config("a {service} feature this call needs is not enabled ({status}): {detail}"),
    422: _record("invalid_value", "{service} refused the request ({status}): {detail}"),
    501: _record("internal", "{service} does not implement this call ({status}): {detail}"),
}

PIPEDRIVE_RETRY_POLICY = RetryPolicy(
    service="Pipedrive", hint="check the connection's auth (token or OAuth client)",
    mapping=PIPEDRIVE_ERROR_MAPPING)

_JSON_HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}


def _int_header(headers: httpx.Headers, name: str) -> int | None:
    value = headers.get(name)
    if value is None:
        return None
    try:
        return int(value.strip())
    except ValueError:
        return None


def parse_error(response: httpx.Response) -> ErrorDetail:
    """Pipedrive's error envelope `{success: false, error, error_info, code?}` [PD-resp]; the
    Cloudflare block is an HTML page (code `blocked` for a 403) [PD-rate]."""
    content = response.content
    ctype = response.headers.get("content-type", "")
    if "html" in ctype.lower() or content[:1] == b"<":
        code = BLOCKED if response.status_code == 403 else None
        return ErrorDetail(code=code, message="an HTML page instead of a JSON answer")
    try:
        body = msgspec.json.decode(content) if content else None
    except (msgspec.DecodeError, RecursionError):
        return ErrorDetail(message=content[:200].decode("utf-8", "replace"))
    if not isinstance(body, dict):
        return ErrorDetail(message=str(body)[:200], body=body)
    code = body.get("code")
    error = body.get("error")
    if not isinstance(error, str):
        error = str(body.get("error_description") or body.get("message") or "")
    info = body.get("error_info")
    # Field errors of the v1 webhooks API: {errors: {field: [message]}}.
    errors = body.get("errors")
    if isinstance(errors, dict) and errors:
        field, messages = next(iter(errors.items()))
        first = messages[0] if isinstance(messages, list) and messages else messages
        error = f"{error + ': ' if error else ''}{field}: {first}"
    if not error and isinstance(info, str):
        error = info
    return ErrorDetail(code=str(code) if isinstance(code, str | int) else None,
                       message=error[:500], body=body)


def failure_from_response(response: httpx.Response, policy: RetryPolicy) -> HttpFailure | None:
    """None for a success, else the classified failure (the body must have been read)."""
    status = response.status_code
    if 200 <= status < 300:
        return None
    detail = parse_error(response)
    resolution = classify((status, detail.code), policy.mapping)
    if resolution.action is Action.SUCCESS:
        return None
    status_text = f"{status} {detail.code}" if detail.code else str(status)
    message = resolution.message.format(service=policy.service, status=status_text,
                                        detail=detail.message or "no details", hint=policy.hint)
    return HttpFailure(resolution, message, status=status, detail=detail)


def daily_refusal(failure: HttpFailure, headers: httpx.Headers, cost: int) -> bool:
    """Whether a 429 says the daily token budget is spent: the daily remaining header below
    the call's cost, or an error naming the daily limit (the 429 body is not documented)."""
    left = _int_header(headers, "x-daily-ratelimit-token-remaining")
    if left is not None and left < cost:
        return True
    text = f"{failure.detail.code or ''} {failure.detail.message}".lower()
    return "daily" in text


def decode(response: httpx.Response) -> Any:
    """The decoded JSON body of a successful answer ({} when empty)."""
    if not response.content:
        return {}
    try:
        return msgspec.json.decode(response.content)
    except (msgspec.DecodeError, RecursionError) as exc:
        raise HttpFailure(PIPEDRIVE_ERROR_MAPPING[httpx.DecodingError],
                          f"Pipedrive sent an unreadable answer ({exc})",
                          status=response.status_code) from exc


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    if hours:
        return f"{hours} h {rest // 60:02d} min"
    return f"{rest // 60} min {rest % 60:02d} s" if rest >= 60 else f"{rest} s"


def budget_for(plan: str, *, seats: int = 1, top_up_tokens: int = 0, oauth: bool = False,
               daily: int | None = None, burst: int | None = None,
               name: str = "") -> RateBudget:
    """The account's budget: daily tokens and the burst window of `plan` [PD-rate], replaced
    by explicit `daily` / `burst` figures where given."""
    figures = PLANS[plan]
    if figures is not None:
        multiplier, api_burst, oauth_burst = figures
        daily = daily or BASE_DAILY_TOKENS * multiplier * seats + top_up_tokens
        burst = burst or (oauth_burst if oauth else api_burst)
    return RateBudget(per_window=burst, window_seconds=WINDOW_SECONDS, daily=daily,
                      search_per_second=SEARCH_PER_WINDOW if figures or burst else None,
                      search_window_seconds=WINDOW_SECONDS, search_in_window=True, name=name)


class PipedriveHttp:
    """Sends requests through one shared `httpx.AsyncClient` (base URL, auth) and the
    account's `RateBudget`."""

    def __init__(self, client: httpx.AsyncClient, budget: RateBudget, *,
                 request_timeout: float = 30.0, policy: RetryPolicy = PIPEDRIVE_RETRY_POLICY,
                 refresh_token: Callable[[], Awaitable[bool]] | None = None,
                 probe_interval: float = 900.0) -> None:
        self.client = client
        self.budget = budget
        self.request_timeout = request_timeout
        self.policy = policy
        # A spent daily budget is reported with at most this retry_after: Pipedrive resets at
        # midnight in a time zone it does not state, so the connection looks again this often.
        self.probe_interval = probe_interval
        self.refresh_token = refresh_token
        self.requests_sent = 0
        self.tokens_charged = 0
        self.rate_limited = 0

    async def request(self, method: str, path: str, *, cost: int, json: Any = None,
                      params: Mapping[str, str | int] | None = None, search: bool = False,
                      idempotent: bool = True, probe: bool = False) -> httpx.Response:
        """Send one call costing `cost` tokens, retrying what the table says to retry.

        Returns the successful response with its body read. Raises `HttpFailure` (a
        ConnectorError) otherwise; kind "rate_limited" with `retry_after` when the budget
        would make it wait longer than the policy allows (the daily budget is spent). With
        `idempotent=False` a failure after which the call may have been applied is raised at
        once with `ambiguous=True`. A `probe` is sent even when the daily budget looks spent:
        its success says Pipedrive's day began again, and the count starts afresh."""
        content = msgspec.json.encode(json) if json is not None else None
        headers = _JSON_HEADERS if content is not None else None
        kind: RequestKind = "search" if search else "default"
        budget = self.budget

        async def attempt() -> httpx.Response:
            # A probe sent while the daily budget looks spent: its success means a new day.
            spent = probe and (budget.delay(kind, cost)
                               > budget.delay(kind, cost, check_daily=False))
            try:
                permit = await budget.acquire(kind, cost, check_daily=not probe,
                                              max_wait=self.policy.max_rate_limit_wait)
            except LongWait as exc:
                # Not waited for inside a call (the daily budget: hours): the caller pauses.
                raise self._spent(exc.wait, cost) from None
            self.requests_sent += 1
            self.tokens_charged += cost
            try:
                with trio.fail_after(self.request_timeout):
                    response = await self.client.request(method, path, content=content,
                                                         params=params, headers=headers)
            except (httpx.HTTPError, httpx.InvalidURL, trio.TooSlowError) as exc:
                sent = failure_from_exception(exc, self.policy)
                log.debug("pipedrive_request_failed", method=method, path=path,
                          error=sent.message)
                raise sent from exc
            finally:
                permit.done()
            rh = response.headers
            # A search answer shows the search window in x-ratelimit-* [PD-rate].
            budget.observe(
                window_remaining=None if search else _int_header(rh, "x-ratelimit-remaining"),
                window_max=None if search else _int_header(rh, "x-ratelimit-limit"),
                daily_remaining=_int_header(rh, "x-daily-ratelimit-token-remaining"),
                cost=cost)
            daily_left = _int_header(rh, "x-daily-ratelimit-token-remaining")
            failure = failure_from_response(response, self.policy)
            if failure is None:
                if spent and daily_left is None and budget.delay(kind, cost) > budget.delay(
                        kind, cost, check_daily=False):
                    # The daily budget looked spent, yet Pipedrive took the call (without
                    # a daily header saying so): its day began again.
                    log.info("pipedrive_daily_budget_reset", method=method, path=path)
                    budget.reset_day()
                return response
            if failure.action is Action.RATE_LIMITED:
                self.rate_limited += 1
                scope: RateScope
                retry_after = None
                if response.status_code == 403:
                    scope, retry_after = "unknown", BLOCK_SECONDS
                elif daily_refusal(failure, rh, cost):
                    scope = "daily"
                    failure.pause = True
                else:
                    scope = "search" if search else "window"
                    reset = _int_header(rh, "x-ratelimit-reset")
                    retry_after = float(reset) if reset else None
                blocked = budget.note_rate_limited(scope, retry_after)
                if scope == "daily":
                    # Said as a spent budget is said before a call (ctl status shows it).
                    failure.message = self._spent(blocked, cost).message
                    failure.args = (failure.message,)
                log.info("pipedrive_rate_limited", method=method, path=path, scope=scope,
                         status=response.status_code, blocked_seconds=round(blocked, 3))
            else:
                log.debug("pipedrive_request_failed", method=method, path=path,
                          status=response.status_code, error=failure.message)
            raise failure

        try:
            return await call_with_retry(
                attempt, policy=self.policy, idempotent=idempotent,
                rate_limit_delay=lambda: budget.delay(kind, cost),
                refresh_token=self.refresh_token)
        except HttpFailure as exc:
            if exc.kind == "rate_limited" and exc.retry_after is not None:
                exc.retry_after = min(exc.retry_after, self.probe_interval)
            raise

    def _spent(self, wait: float, cost: int) -> HttpFailure:
        st = self.budget.statistics()
        daily = st.daily_remaining is not None and st.daily_remaining < cost
        if daily and st.daily_limit:
            used = st.daily_limit - (st.daily_remaining or 0)
            what = (f"the daily Pipedrive token budget is spent ({used:,} of "
                    f"{st.daily_limit:,} tokens used today)")
        elif daily:
            what = "the daily Pipedrive token budget is spent"
        else:
            what = "Pipedrive's rate limit blocks calls"
        again = min(wait, self.probe_interval)
        when = (f"calls resume in {_duration(wait)}" if again >= wait else
                f"crmsync tries again every {_duration(again)} until Pipedrive's reset "
                f"(expected in {_duration(wait)})")
        failure = HttpFailure(self.policy.mapping[429], f"{what}; {when}", status=429,
                              retry_after=again)
        failure.pause = daily
        return failure

    async def json(self, method: str, path: str, **kwargs: Any) -> Any:
        """`request()` and decode the JSON answer."""
        return decode(await self.request(method, path, **kwargs))
