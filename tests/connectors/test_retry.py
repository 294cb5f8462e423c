"""The error table and the retry loop (tenacity on trio.sleep, so MockClock sees the waits)."""

from __future__ import annotations

import httpx
import pytest
import trio

from crmsync.connectors.base import ConnectorError
from crmsync.connectors.retry import (
    DEFAULT_ERROR_MAPPING,
    Action,
    HttpFailure,
    RetryPolicy,
    call_with_retry,
    classify,
    failure_from_exception,
    failure_from_response,
    parse_error_body,
)

POLICY = RetryPolicy(service="HubSpot", hint="check hub.auth")
REQ = httpx.Request("GET", "https://api.hubapi.com/crm/v3/objects/contacts")


def answer(status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, content=body, headers=headers, request=REQ)


@pytest.mark.parametrize(("outcome", "action", "kind", "category", "ambiguous"), [
    (200, Action.SUCCESS, None, "", False),
    (207, Action.SUCCESS, None, "", False),
    (400, Action.FAIL_RECORD, "record", "invalid_value", False),
    ((401, "EXPIRED_AUTHENTICATION"), Action.REFRESH_TOKEN, "config", "permission_denied",
     False),
    ((401, "INVALID_AUTHENTICATION"), Action.CONFIG_ERROR, "config", "permission_denied", False),
    (403, Action.CONFIG_ERROR, "config", "permission_denied", False),
    (404, Action.FAIL_RECORD, "record", "not_found", False),
    (409, Action.FAIL_RECORD, "record", "conflict", False),
    (418, Action.FAIL_RECORD, "record", "invalid_value", False),
    (423, Action.RETRY, "transient", "api_unavailable", False),
    (429, Action.RATE_LIMITED, "rate_limited", "rate_limited", False),
    (500, Action.RETRY, "transient", "api_unavailable", True),
    (503, Action.RETRY, "transient", "api_unavailable", True),
    (599, Action.RETRY, "transient", "api_unavailable", True),
    (httpx.ConnectError("refused"), Action.RETRY, "transient", "api_unavailable", False),
    (httpx.ConnectTimeout("slow"), Action.RETRY, "transient", "api_unavailable", False),
    (httpx.PoolTimeout("pool"), Action.RETRY, "transient", "api_unavailable", False),
    (httpx.ReadTimeout("slow"), Action.RETRY, "transient", "api_unavailable", True),
    (httpx.ReadError("reset"), Action.RETRY, "transient", "api_unavailable", True),
    (httpx.RemoteProtocolError("closed"), Action.RETRY, "transient", "api_unavailable", True),
    (trio.TooSlowError(), Action.RETRY, "transient", "api_unavailable", True),
    (httpx.UnsupportedProtocol("ftp"), Action.CONFIG_ERROR, "config", "internal", False),
    (RuntimeError("bug"), Action.FAIL_RECORD, "record", "internal", False),
])
def test_table(outcome, action, kind, category, ambiguous):
    r = classify(outcome)
    assert (r.action, r.kind, r.category, r.ambiguous) == (action, kind, category, ambiguous)


def test_minimum_waits():
    assert classify(423).min_wait >= 2.0
    assert all(classify(s).min_wait >= 2.0 for s in (502, 503, 504))
    assert classify(500).min_wait == 0.0


def test_every_entry_names_a_design_category():
    from crmsync.engine.categories import CATEGORIES
    for r in DEFAULT_ERROR_MAPPING.values():
        assert r.category in ("", *CATEGORIES)


def test_config_messages_are_clear():
    f = failure_from_response(answer(
        401, b'{"status":"error","message":"Authentication credentials not found.",'
        b'"category":"INVALID_AUTHENTICATION"}'), POLICY)
    assert f is not None
    assert f.kind == "config"
    assert f.message == ("HubSpot refused the token (401 INVALID_AUTHENTICATION): "
                         "check hub.auth")
    f = failure_from_response(answer(
        403, b'{"status":"error","message":"This app hasn\'t been granted all required scopes",'
        b'"category":"MISSING_SCOPES"}'), POLICY)
    assert f is not None and f.kind == "config" and f.category == "permission_denied"
    assert "403 MISSING_SCOPES" in f.message and "scopes" in f.message
    assert failure_from_response(answer(204), POLICY) is None


def test_error_bodies():
    d = parse_error_body(b'{"status":"error","message":"You have reached your daily limit.",'
                         b'"errorType":"RATE_LIMIT","policyName":"DAILY"}')
    assert (d.code, d.policy) == ("RATE_LIMIT", "DAILY")
    assert parse_error_body(b"<html>bad gateway</html>").message == "<html>bad gateway</html>"
    assert parse_error_body(b"[" * 100_000).code is None
    assert parse_error_body(b"").message == ""
    f = failure_from_response(answer(477, b"", {"Retry-After": "120"}), POLICY)
    assert f is not None and f.retry_after == 120.0


class Script:
    """An attempt function that plays a list of outcomes and records when it was called."""

    def __init__(self, *outcomes: int | BaseException) -> None:
        self.outcomes = list(outcomes)
        self.times: list[float] = []

    async def __call__(self) -> str:
        self.times.append(trio.current_time())
        outcome = self.outcomes.pop(0) if self.outcomes else 200
        if isinstance(outcome, BaseException):
            raise failure_from_exception(outcome, POLICY)
        failure = failure_from_response(answer(outcome, b"{}"), POLICY)
        if failure is not None:
            raise failure
        return "ok"

    def gaps(self) -> list[float]:
        return [b - a for a, b in zip(self.times, self.times[1:], strict=False)]


async def test_5xx_then_success_backs_off_at_least_the_minimum(autojump_clock):
    script = Script(503, 502, 504)
    assert await call_with_retry(script, policy=POLICY) == "ok"
    assert len(script.times) == 4
    assert all(g >= 3.0 for g in script.gaps())


async def test_423_waits_two_seconds(autojump_clock):
    script = Script(423)
    await call_with_retry(script, policy=POLICY, idempotent=False)
    assert script.gaps()[0] >= 2.0


async def test_backoff_is_exponential_capped_and_jittered(autojump_clock):
    policy = RetryPolicy(max_attempts=10, initial_backoff=1.0, max_backoff=8.0,
                         max_elapsed=1000.0)
    script = Script(*([500] * 9))
    await call_with_retry(script, policy=policy)
    gaps = script.gaps()
    caps = [1, 2, 4, 8, 8, 8, 8, 8, 8]
    for gap, cap in zip(gaps, caps, strict=True):
        assert cap / 2 - 1e-9 <= gap <= cap + 1e-9


async def test_validation_errors_never_retry(autojump_clock):
    script = Script(400)
    with pytest.raises(HttpFailure) as info:
        await call_with_retry(script, policy=POLICY)
    assert len(script.times) == 1
    assert info.value.kind == "record" and info.value.category == "invalid_value"


async def test_gives_up_with_a_transient_error(autojump_clock):
    script = Script(*([503] * 100))
    with pytest.raises(ConnectorError) as info:
        await call_with_retry(script, policy=POLICY)
    assert len(script.times) == POLICY.max_attempts
    assert info.value.kind == "transient"
    assert info.value.category == "api_unavailable"
    assert "gave up after 6 attempts" in info.value.message


async def test_ambiguous_failures_are_not_repeated_for_writes(autojump_clock):
    for exc in (httpx.ReadTimeout("slow"), trio.TooSlowError(), httpx.RemoteProtocolError("x")):
        script = Script(exc)
        with pytest.raises(HttpFailure) as info:
            await call_with_retry(script, policy=POLICY, idempotent=False)
        assert info.value.ambiguous
        assert len(script.times) == 1
    script = Script(500)
    with pytest.raises(HttpFailure) as info:
        await call_with_retry(script, policy=POLICY, idempotent=False)
    assert info.value.ambiguous
    # A request that never left is repeated even for a write.
    script = Script(httpx.ConnectError("refused"), httpx.ConnectError("refused"))
    assert await call_with_retry(script, policy=POLICY, idempotent=False) == "ok"
    # Reads repeat after timeouts.
    script = Script(httpx.ReadTimeout("slow"))
    assert await call_with_retry(script, policy=POLICY) == "ok"


async def test_rate_limited_waits_on_the_budget_not_on_its_own(autojump_clock):
    script = Script(429, 429)
    assert await call_with_retry(script, policy=POLICY, rate_limit_delay=lambda: 0.0) == "ok"
    assert script.gaps() == [0.0, 0.0]  # the budget's acquire does the waiting


async def test_long_rate_limit_waits_raise_instead(autojump_clock):
    script = Script(429)
    with pytest.raises(ConnectorError) as info:
        await call_with_retry(script, policy=POLICY, rate_limit_delay=lambda: 7200.0)
    assert info.value.kind == "rate_limited"
    assert info.value.retry_after == 7200.0
    assert len(script.times) == 1


async def test_expired_token_refreshes_once(autojump_clock):
    async def expired() -> str:
        calls.append(1)
        raise failure_from_response(answer(
            401, b'{"category":"EXPIRED_AUTHENTICATION","message":"expired"}'), POLICY)

    calls: list[int] = []
    refreshes: list[int] = []

    async def refresh() -> bool:
        refreshes.append(1)
        return True

    with pytest.raises(ConnectorError) as info:
        await call_with_retry(expired, policy=POLICY, refresh_token=refresh)
    assert (len(calls), len(refreshes)) == (2, 1)
    assert info.value.kind == "config"
    assert "check hub.auth" in info.value.message
