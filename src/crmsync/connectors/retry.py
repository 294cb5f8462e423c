"""What an HTTP outcome means, as a table, and the retry loop that acts on it.

`DEFAULT_ERROR_MAPPING` maps a status code, a (status, API error code) pair or an exception
class to an `ErrorResolution`: the action (retry, rate-limited, refresh the token, fail the
record, configuration error), the `ConnectorError.kind` and the DESIGN.md error category
(after Airbyte CDK's `default_error_mapping.py`). `classify()` looks an outcome up:
(status, code) first, then the status, then the status class; exceptions through their MRO.

`call_with_retry()` runs one attempt at a time under `tenacity` (sleeping through
`trio.sleep`, so MockClock tests see the backoff): transient failures retry with capped,
jittered exponential backoff (with a per-status minimum: 423 ≥ 2 s, 502/503/504 a few seconds,
`Retry-After` when the API gives one); rate-limited ones retry as soon as the shared rate budget
allows (the budget does the waiting, nobody sleeps on their own); everything else raises at
once. A write that may have been applied (timeout, dropped connection, 5xx) is never repeated
by this loop when the caller says it is not idempotent: the `HttpFailure` comes back with
`ambiguous=True` and the caller reconciles by the record's match key.

Nothing here knows a particular API: the service name and the hint for configuration errors
come from the `RetryPolicy`, error bodies are read by `parse_error_body` (which understands
the usual `{category|errorType|error|code, message}` shapes).
"""

from __future__ import annotations

import enum
import random
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import httpx
import msgspec
import tenacity
import trio

from crmsync.connectors.base import ConnectorError, ErrorKind

__all__ = [
    "DEFAULT_ERROR_MAPPING",
    "Action",
    "ErrorDetail",
    "ErrorResolution",
    "HttpFailure",
    "RetryPolicy",
    "backoff_delay",
    "call_with_retry",
    "classify",
    "failure_from_exception",
    "failure_from_response",
    "parse_error_body",
]

T = TypeVar("T")


class Action(enum.Enum):
    SUCCESS = "success"
    RETRY = "retry"  # transient: back off, then try again
    RATE_LIMITED = "rate_limited"  # wait for the rate budget, then try again
    REFRESH_TOKEN = "refresh_token"  # the access token expired: refresh once, then again
    FAIL_RECORD = "fail_record"  # this input is wrong: fail the record(s), never retry
    CONFIG_ERROR = "config_error"  # an operator must act: pause the connection


class ErrorResolution(msgspec.Struct, frozen=True):
    action: Action
    kind: ErrorKind | None  # None on success
    category: str  # a DESIGN.md error category ("" on success)
    # The shortest pause before the next attempt (HubSpot: 423 → 2 s, 502/503/504 → a few s).
    min_wait: float = 0.0
    # The request may have been applied although its answer says otherwise (or was lost).
    ambiguous: bool = False
    # Formatted with service, status (e.g. "401 INVALID_AUTHENTICATION"), detail and hint.
    message: str = "{service}: {status} {detail}"


def _ok() -> ErrorResolution:
    return ErrorResolution(Action.SUCCESS, None, "", message="")


def _retry(min_wait: float = 0.0, *, ambiguous: bool = True,
           message: str = "{service} is unavailable ({status}): {detail}") -> ErrorResolution:
    return ErrorResolution(Action.RETRY, "transient", "api_unavailable", min_wait, ambiguous,
                           message)


def _record(category: str, message: str) -> ErrorResolution:
    return ErrorResolution(Action.FAIL_RECORD, "record", category, message=message)


_TIMEOUT = "{service} did not answer in time ({detail})"
_DROPPED = "the connection to {service} failed ({detail})"
_NOT_SENT = "cannot reach {service} ({detail})"

# Status (or (status, API error code)) or exception class → what it means.
DEFAULT_ERROR_MAPPING: Mapping[int | tuple[int, str] | type[BaseException], ErrorResolution] = {
    200: _ok(),
    201: _ok(),
    202: _ok(),
    204: _ok(),
    207: _ok(),  # multi-status: the caller reads the per-input errors
    400: _record("invalid_value", "{service} rejected the request ({status}): {detail}"),
    (401, "EXPIRED_AUTHENTICATION"): ErrorResolution(
        Action.REFRESH_TOKEN, "config", "permission_denied",
        message="{service} says the access token expired ({status}) and it could not be "
        "refreshed: {hint}"),
    401: ErrorResolution(Action.CONFIG_ERROR, "config", "permission_denied",
                         message="{service} refused the token ({status}): {hint}"),
    403: ErrorResolution(Action.CONFIG_ERROR, "config", "permission_denied",
                         message="{service} refused access ({status}): {detail} — grant the "
                         "missing scopes to the app ({hint})"),
    404: _record("not_found", "not found ({status}): {detail}"),
    409: _record("conflict", "conflict ({status}): {detail}"),
    413: _record("invalid_value", "request too large ({status}): {detail}"),
    414: _record("invalid_value", "request too large ({status}): {detail}"),
    # 423 Locked comes during high-volume upserts; the write was not applied.
    423: _retry(2.0, ambiguous=False, message="{service} reports a locked record ({status})"),
    429: ErrorResolution(Action.RATE_LIMITED, "rate_limited", "rate_limited",
                         message="{service} rate limit reached ({status}): {detail}"),
    # 477 Migration in Progress, with Retry-After.
    477: _retry(1.0, ambiguous=False),
    500: _retry(),
    502: _retry(3.0),
    503: _retry(3.0),
    504: _retry(3.0),
    521: _retry(3.0),
    522: _retry(3.0),
    523: _retry(3.0),
    524: _retry(3.0),
    525: _retry(3.0),
    526: _retry(3.0),
    # --- exceptions (looked up along the MRO: the most specific class wins) -------------------
    # The request never left: safe to repeat even for a create.
    httpx.ConnectError: _retry(ambiguous=False, message=_NOT_SENT),
    httpx.ConnectTimeout: _retry(ambiguous=False, message=_NOT_SENT),
    httpx.PoolTimeout: _retry(ambiguous=False, message=_NOT_SENT),
    # The request may have been applied.
    httpx.TimeoutException: _retry(message=_TIMEOUT),
    trio.TooSlowError: _retry(message=_TIMEOUT),
    httpx.NetworkError: _retry(message=_DROPPED),
    httpx.RemoteProtocolError: _retry(message=_DROPPED),
    # Our own mistakes or a wrong base URL: nothing to retry.
    httpx.LocalProtocolError: ErrorResolution(Action.FAIL_RECORD, "record", "internal",
                                              message="invalid request: {detail}"),
    httpx.UnsupportedProtocol: ErrorResolution(Action.CONFIG_ERROR, "config", "internal",
                                               message="bad {service} URL ({detail}): {hint}"),
    httpx.InvalidURL: ErrorResolution(Action.CONFIG_ERROR, "config", "internal",
                                      message="bad {service} URL ({detail}): {hint}"),
    httpx.DecodingError: _retry(message="{service} sent an unreadable answer ({detail})"),
}

_CLIENT_ERROR = _record("invalid_value", "{service} rejected the request ({status}): {detail}")
_SERVER_ERROR = _retry()
_UNEXPECTED = ErrorResolution(Action.FAIL_RECORD, "record", "internal",
                              message="unexpected answer from {service} ({status}): {detail}")
_UNKNOWN_EXC = ErrorResolution(Action.FAIL_RECORD, "record", "internal",
                               message="unexpected failure calling {service}: {detail}")


def classify(outcome: int | tuple[int, str | None] | BaseException,
             mapping: Mapping[Any, ErrorResolution] = DEFAULT_ERROR_MAPPING) -> ErrorResolution:
    """The resolution for a status, a (status, API error code) pair or an exception."""
    if isinstance(outcome, BaseException):
        for cls in type(outcome).__mro__:
            if cls in mapping:
                return mapping[cls]
        return _UNKNOWN_EXC
    status, code = outcome if isinstance(outcome, tuple) else (outcome, None)
    if code is not None and (status, code) in mapping:
        return mapping[(status, code)]
    if status in mapping:
        return mapping[status]
    if 200 <= status < 300:
        return _ok()
    if 400 <= status < 500:
        return _CLIENT_ERROR
    if status >= 500:
        return _SERVER_ERROR
    return _UNEXPECTED


class ErrorDetail(msgspec.Struct, frozen=True):
    """What an error body says, whatever the API's dialect."""

    code: str | None = None  # HubSpot `category` (or `errorType` on 429s)
    message: str = ""
    policy: str | None = None  # HubSpot `policyName` on 429s
    body: Any = None  # the decoded JSON body, if it was JSON


def parse_error_body(content: bytes) -> ErrorDetail:
    """Read `{category|errorType|error|code, message, policyName}` from a JSON error body;
    any other body becomes the (shortened) message."""
    if not content:
        return ErrorDetail()
    try:
        body = msgspec.json.decode(content)
    except (msgspec.DecodeError, RecursionError):
        return ErrorDetail(message=content[:200].decode("utf-8", "replace"))
    if not isinstance(body, dict):
        return ErrorDetail(message=str(body)[:200], body=body)
    code = next((str(body[k]) for k in ("category", "errorType", "error", "code")
                 if isinstance(body.get(k), str | int)), None)
    message = body.get("message")
    if not isinstance(message, str):
        message = str(body.get("error_description") or "")
    policy = body.get("policyName")
    return ErrorDetail(code=code, message=message,
                       policy=policy if isinstance(policy, str) else None, body=body)


def parse_retry_after(value: str | None) -> float | None:
    """`Retry-After` in seconds (the HTTP-date form is not used by the APIs we call)."""
    if not value:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


class HttpFailure(ConnectorError):
    """A classified failed outcome: an error status or an exception while sending.

    `kind`/`category` come from the resolution; `status`, `code`, `detail`, `body` from the
    answer (None / empty for exceptions). `ambiguous` is True when the request may have been
    applied, so a create must be reconciled, never repeated.
    """

    def __init__(self, resolution: ErrorResolution, message: str, *, status: int | None = None,
                 detail: ErrorDetail | None = None, retry_after: float | None = None,
                 cause: BaseException | None = None) -> None:
        kind: ErrorKind = resolution.kind or "record"
        super().__init__(kind, resolution.category or "internal", message,
                         retry_after=retry_after, status=status)
        self.resolution = resolution
        self.detail = detail or ErrorDetail()
        self.cause = cause

    @property
    def action(self) -> Action:
        return self.resolution.action

    @property
    def ambiguous(self) -> bool:
        return self.resolution.ambiguous

    @property
    def code(self) -> str | None:
        return self.detail.code

    @property
    def body(self) -> Any:
        return self.detail.body


class RetryPolicy(msgspec.Struct, frozen=True, kw_only=True):
    service: str = "the API"
    hint: str = "check the connection's credentials"  # shown with configuration errors
    mapping: Mapping[Any, ErrorResolution] = msgspec.field(
        default_factory=lambda: DEFAULT_ERROR_MAPPING)
    max_attempts: int = 6  # attempts for transient failures (the first included)
    max_elapsed: float = 120.0  # give up on transient failures after this long
    initial_backoff: float = 0.5
    max_backoff: float = 30.0
    max_rate_limited_attempts: int = 50
    # A rate-limit wait longer than this (e.g. the daily quota) is not waited for inside one
    # call: the call raises ConnectorError(kind="rate_limited", retry_after=...) instead.
    max_rate_limit_wait: float = 120.0


def _format(resolution: ErrorResolution, policy: RetryPolicy, status: str, detail: str) -> str:
    return resolution.message.format(service=policy.service, status=status,
                                     detail=detail or "no details", hint=policy.hint)


def failure_from_response(response: httpx.Response, policy: RetryPolicy) -> HttpFailure | None:
    """None for a success, else the classified failure (the body must have been read)."""
    status = response.status_code
    if 200 <= status < 300 and status not in policy.mapping:
        return None
    detail = parse_error_body(response.content) if status >= 300 else ErrorDetail()
    resolution = classify((status, detail.code), policy.mapping)
    if resolution.action is Action.SUCCESS:
        return None
    status_text = f"{status} {detail.code}" if detail.code else str(status)
    return HttpFailure(resolution, _format(resolution, policy, status_text, detail.message),
                       status=status, detail=detail,
                       retry_after=parse_retry_after(response.headers.get("Retry-After")))


def failure_from_exception(exc: BaseException, policy: RetryPolicy) -> HttpFailure:
    resolution = classify(exc, policy.mapping)
    text = str(exc) or type(exc).__name__
    return HttpFailure(resolution, _format(resolution, policy, type(exc).__name__, text),
                       cause=exc)


def backoff_delay(policy: RetryPolicy, attempt: int, failure: HttpFailure | None = None) -> float:
    """The pause after the `attempt`-th transient failure (1-based): capped exponential
    backoff with jitter (between half and all of the cap), never shorter than the failure's
    minimum (423: 2 s, 502/503/504: 3 s) or its Retry-After."""
    cap = min(policy.max_backoff, policy.initial_backoff * (2 ** max(0, attempt - 1)))
    delay = random.uniform(cap / 2, cap)
    if failure is not None:
        delay = max(delay, failure.resolution.min_wait, failure.retry_after or 0.0)
    return delay


async def call_with_retry(
    attempt: Callable[[], Awaitable[T]],
    *,
    policy: RetryPolicy,
    idempotent: bool = True,
    rate_limit_delay: Callable[[], float] | None = None,
    refresh_token: Callable[[], Awaitable[bool]] | None = None,
) -> T:
    """Run `attempt` until it returns, retrying the failures the table says to retry.

    `attempt` raises `HttpFailure` for a failed outcome (see `failure_from_response` /
    `failure_from_exception`); it is expected to wait for the rate budget itself.
    `rate_limit_delay()` says how long the budget will make the next attempt wait (to give up
    early on long waits such as the daily quota). `refresh_token()` refreshes an expired access
    token and says whether it did (once per call). A non-idempotent call is not repeated after
    an ambiguous failure: that `HttpFailure` (with `ambiguous=True`) is raised at once.

    Raises the last `HttpFailure` (a `ConnectorError`) when the table says not to retry or the
    retries are exhausted; its message tells how many attempts were made.
    """
    start = trio.current_time()
    transient = 0
    limited = 0
    refreshed = False

    def should_retry(exc: BaseException) -> bool:
        nonlocal transient, limited
        if not isinstance(exc, HttpFailure):
            return False
        if exc.action is Action.RETRY:
            if exc.ambiguous and not idempotent:
                return False
            transient += 1
            return True
        if exc.action is Action.RATE_LIMITED:
            limited += 1
            return True
        return False

    def stop(state: tenacity.RetryCallState) -> bool:
        exc = state.outcome.exception() if state.outcome else None
        if not isinstance(exc, HttpFailure):
            return True
        if exc.action is Action.RATE_LIMITED:
            if limited >= policy.max_rate_limited_attempts:
                return True
            wait = rate_limit_delay() if rate_limit_delay else (exc.retry_after or 0.0)
            if wait > policy.max_rate_limit_wait:
                exc.retry_after = wait
                return True
            return False
        return (transient >= policy.max_attempts
                or trio.current_time() - start >= policy.max_elapsed)

    def wait(state: tenacity.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if not isinstance(exc, HttpFailure):
            return 0.0
        if exc.action is Action.RATE_LIMITED:
            # The rate budget was told and makes the next acquire wait; with no budget fall
            # back on Retry-After.
            return 0.0 if rate_limit_delay else (exc.retry_after or 1.0)
        return backoff_delay(policy, transient, exc)

    retrying = tenacity.AsyncRetrying(
        sleep=trio.sleep,
        retry=tenacity.retry_if_exception(should_retry),
        stop=stop,
        wait=wait,
        reraise=True,
    )
    while True:
        try:
            async for attempt_ctx in retrying:
                with attempt_ctx:
                    return await attempt()
        except HttpFailure as exc:
            if exc.action is Action.REFRESH_TOKEN and refresh_token and not refreshed:
                refreshed = True
                if await refresh_token():
                    continue
            if exc.action in (Action.RETRY, Action.RATE_LIMITED) and (transient + limited) > 1:
                exc.message = f"{exc.message} (gave up after {transient + limited} attempts)"
                exc.args = (exc.message,)
            raise
        raise AssertionError("unreachable")  # pragma: no cover
