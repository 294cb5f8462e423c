"""Authentication, OAuth refresh and rate limits (fact sheet §3, §9)."""

from __future__ import annotations

import httpx
import pytest
import trio
from trio.testing import MockClock

from .conftest import BASE_URL, client_for, make_emulator

CONTACTS = "/crm/v3/objects/contacts"


async def test_missing_or_unknown_token_is_401(autojump_clock: MockClock) -> None:
    emu = make_emulator()
    async with client_for(emu, token=None) as anonymous, client_for(emu, token="nope") as wrong:
        with trio.fail_after(5):
            r1 = await anonymous.get(CONTACTS)
            r2 = await wrong.get(CONTACTS)
    for r in (r1, r2):
        assert r.status_code == 401
        assert r.json()["category"] == "INVALID_AUTHENTICATION"
        assert r.json()["status"] == "error" and r.json()["correlationId"]


def _oauth_emulator(**kwargs: object):  # type: ignore[no-untyped-def]
    return make_emulator(oauth_clients={"cid": ("secret", "rt-1")}, **kwargs)


async def _refresh(
    client: httpx.AsyncClient, refresh_token: str, secret: str = "secret"
) -> httpx.Response:
    return await client.post(
        "/oauth/v1/token",
        data={
            "grant_type": "refresh_token",
            "client_id": "cid",
            "client_secret": secret,
            "refresh_token": refresh_token,
        },
    )


async def test_oauth_refresh_and_expiry(autojump_clock: MockClock) -> None:
    emu = _oauth_emulator()
    async with client_for(emu, token=None) as client:
        with trio.fail_after(4000):
            r = await _refresh(client, "rt-1")
            assert r.status_code == 200
            token = r.json()
            assert token["expires_in"] == 1800 and token["token_type"] == "bearer"
            assert token["refresh_token"] == "rt-1"  # no rotation unless asked
            auth = {"Authorization": f"Bearer {token['access_token']}"}
            assert (await client.get(CONTACTS, headers=auth)).status_code == 200
            await trio.sleep(1800)
            expired = await client.get(CONTACTS, headers=auth)
            bad = await _refresh(client, "rt-wrong")
            bad_secret = await _refresh(client, "rt-1", secret="nope")
    assert expired.status_code == 401 and expired.json()["category"] == "EXPIRED_AUTHENTICATION"
    assert bad.status_code == 400 and bad.json()["status"] == "BAD_REFRESH_TOKEN"
    assert bad_secret.status_code == 400


async def test_oauth_refresh_token_rotation(autojump_clock: MockClock) -> None:
    emu = _oauth_emulator(rotate_refresh_tokens=True)
    async with client_for(emu, token=None) as client:
        with trio.fail_after(5):
            first = (await _refresh(client, "rt-1")).json()
            old_again = await _refresh(client, "rt-1")
            second = await _refresh(client, first["refresh_token"])
    assert first["refresh_token"] != "rt-1"
    assert old_again.status_code == 400
    assert second.status_code == 200


@pytest.mark.parametrize(
    ("tier", "limit", "daily"),
    [("starter", 100, 250_000), ("professional", 190, 625_000), ("enterprise", 190, 1_000_000)],
)
async def test_ten_secondly_window_by_tier(
    autojump_clock: MockClock, tier: str, limit: int, daily: int
) -> None:
    emu = make_emulator(tier=tier)
    async with client_for(emu) as client:
        with trio.fail_after(60):
            answers = [await client.get(CONTACTS) for _ in range(limit + 1)]
            await trio.sleep(10)
            after_window = await client.get(CONTACTS)
    first, last_ok, refused = answers[0], answers[limit - 1], answers[limit]
    assert first.headers["X-HubSpot-RateLimit-Interval-Milliseconds"] == "10000"
    assert first.headers["X-HubSpot-RateLimit-Max"] == str(limit)
    assert first.headers["X-HubSpot-RateLimit-Remaining"] == str(limit - 1)
    assert first.headers["X-HubSpot-RateLimit-Daily"] == str(daily)
    assert first.headers["X-HubSpot-RateLimit-Daily-Remaining"] == str(daily - 1)
    assert last_ok.status_code == 200 and last_ok.headers["X-HubSpot-RateLimit-Remaining"] == "0"
    assert refused.status_code == 429
    body = refused.json()
    assert body == {
        "status": "error",
        "message": "You have reached your ten_secondly_rolling limit.",
        "errorType": "RATE_LIMIT",
        "correlationId": body["correlationId"],
        "policyName": "TEN_SECONDLY_ROLLING",
        "requestId": body["requestId"],
    }
    assert "category" not in body  # the key is errorType on 429s (fact sheet §3.3)
    assert after_window.status_code == 200


async def test_window_is_rolling(autojump_clock: MockClock) -> None:
    emu = make_emulator(tier="starter")
    async with client_for(emu) as client:
        with trio.fail_after(60):
            for _ in range(50):
                await client.get(CONTACTS)
            await trio.sleep(6)
            for _ in range(50):
                assert (await client.get(CONTACTS)).status_code == 200
            await trio.sleep(3)
            assert (await client.get(CONTACTS)).status_code == 429  # the first 50 are 9 s old
            await trio.sleep(1.5)
            r = await client.get(CONTACTS)
    assert r.status_code == 200
    assert r.headers["X-HubSpot-RateLimit-Remaining"] == "49"


async def test_window_is_per_token(autojump_clock: MockClock) -> None:
    emu = make_emulator(tier="starter", tokens=("a", "b"))
    async with client_for(emu, "a") as a, client_for(emu, "b") as b:
        with trio.fail_after(60):
            for _ in range(100):
                await a.get(CONTACTS)
            assert (await a.get(CONTACTS)).status_code == 429
            other = await b.get(CONTACTS)
    assert other.status_code == 200
    # The daily quota is shared by the account's apps.
    assert other.headers["X-HubSpot-RateLimit-Daily-Remaining"] == str(250_000 - 101)


async def test_daily_limit(autojump_clock: MockClock) -> None:
    emu = make_emulator(tier="starter")
    emu.rate_limiter.set_daily_used(250_000 - 1)
    async with client_for(emu) as client:
        with trio.fail_after(5):
            last = await client.get(CONTACTS)
            over = await client.get(CONTACTS)
    assert last.status_code == 200 and last.headers["X-HubSpot-RateLimit-Daily-Remaining"] == "0"
    assert over.status_code == 429
    assert over.json()["policyName"] == "DAILY"
    assert over.json()["message"] == "You have reached your daily limit."


async def test_oauth_calls_have_no_daily_headers(autojump_clock: MockClock) -> None:
    emu = _oauth_emulator(tier="professional")
    async with client_for(emu, token=None) as client:
        with trio.fail_after(5):
            token = (await _refresh(client, "rt-1")).json()["access_token"]
            r = await client.get(CONTACTS, headers={"Authorization": f"Bearer {token}"})
    assert r.headers["X-HubSpot-RateLimit-Max"] == "110"  # public OAuth apps: 110 / 10 s
    assert "X-HubSpot-RateLimit-Daily" not in r.headers
    assert "X-HubSpot-RateLimit-Daily-Remaining" not in r.headers


async def test_unlimited_tier_has_no_limits_or_headers(autojump_clock: MockClock) -> None:
    emu = make_emulator()
    async with client_for(emu) as client:
        with trio.fail_after(30):
            answers = [await client.get(CONTACTS) for _ in range(300)]
    assert {r.status_code for r in answers} == {200}
    assert "X-HubSpot-RateLimit-Max" not in answers[0].headers


async def test_admin_and_oauth_paths_need_no_token(autojump_clock: MockClock) -> None:
    emu = make_emulator()
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=emu.app), base_url=BASE_URL
    ) as client:
        with trio.fail_after(5):
            r = await client.get("/_emulator/dump")
    assert r.status_code == 200
