"""Authentication and the token-based rate limits (fact sheet A.5, A.6)."""

from __future__ import annotations

import base64

import httpx
import pytest
import trio
from trio.testing import MockClock

from crmsync.emulators.pipedrive import PipedriveEmulator

from .conftest import BASE_URL, V2, client_for, make_emulator

PERSONS = f"{V2}/persons"


def _anonymous(emu: PipedriveEmulator) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=emu.app), base_url=BASE_URL)


async def test_token_in_header_query_or_nowhere(autojump_clock: MockClock) -> None:
    emu = make_emulator()
    async with _anonymous(emu) as client:
        with trio.fail_after(5):
            header = await client.get(PERSONS, headers={"x-api-token": "test-token"})
            query = await client.get(PERSONS, params={"api_token": "test-token"})
            missing = await client.get(PERSONS)
            wrong = await client.get(PERSONS, headers={"x-api-token": "nope"})
    assert header.status_code == 200 and query.status_code == 200
    for r in (missing, wrong):
        assert r.status_code == 401
        # The v1 spec's 401 body (A.7).
        assert r.json() == {"success": False, "error": "unauthorized access", "errorCode": 401}


def _basic(client_id: str, secret: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()}


async def test_oauth_refresh_grant_and_bearer(autojump_clock: MockClock) -> None:
    emu = make_emulator(oauth_clients={"cid": ("secret", "rt-1")}, rotate_refresh_tokens=True)
    async with _anonymous(emu) as client:
        with trio.fail_after(5000):
            form = {"grant_type": "refresh_token", "refresh_token": "rt-1"}
            r = await client.post("/oauth/token", data=form, headers=_basic("cid", "secret"))
            token = r.json()
            bearer = {"Authorization": f"Bearer {token['access_token']}"}
            ok = await client.get(PERSONS, headers=bearer)
            me = await client.get("/v1/users/me", headers=bearer)
            await trio.sleep(3599)
            expired = await client.get(PERSONS, headers=bearer)
            old_refresh = await client.post(
                "/oauth/token", data=form, headers=_basic("cid", "secret")
            )
            bad_secret = await client.post(
                "/oauth/token",
                data={"grant_type": "refresh_token", "refresh_token": token["refresh_token"]},
                headers=_basic("cid", "wrong"),
            )
    # Token answer with api_domain, the base the official client adopts (A.5).
    assert token["token_type"] == "Bearer" and token["expires_in"] == 3599
    assert token["api_domain"] == BASE_URL
    assert ok.status_code == 200 and me.json()["data"]["id"] == 1
    assert expired.status_code == 401
    assert old_refresh.status_code == 400 and old_refresh.json()["error"] == "invalid_grant"
    assert bad_secret.status_code == 401


@pytest.mark.parametrize(
    ("plan", "burst", "daily"), [("essential", 20, 30_000), ("power", 100, 150_000)]
)
async def test_burst_window_and_headers(
    autojump_clock: MockClock, plan: str, burst: int, daily: int
) -> None:
    emu = make_emulator(plan=plan)
    async with client_for(emu) as client:
        with trio.fail_after(60):
            answers = [await client.get(PERSONS) for _ in range(burst + 1)]
            await trio.sleep(2)
            after = await client.get(PERSONS)
    first, last_ok, refused = answers[0], answers[burst - 1], answers[burst]
    # Burst per token per rolling 2 s, by plan (A.6); list costs 10 tokens (A.1).
    assert first.headers["x-ratelimit-limit"] == str(burst)
    assert first.headers["x-ratelimit-remaining"] == str(burst - 1)
    assert first.headers["x-ratelimit-reset"] == "2"
    assert first.headers["x-daily-ratelimit-token-limit"] == str(daily)
    assert first.headers["x-daily-ratelimit-token-remaining"] == str(daily - 10)
    assert last_ok.status_code == 200 and last_ok.headers["x-ratelimit-remaining"] == "0"
    assert refused.status_code == 429 and refused.json()["success"] is False
    assert after.status_code == 200
    assert emu.tokens_used_today() == (burst + 1) * 10  # refused requests cost nothing


async def test_oauth_has_the_larger_burst(autojump_clock: MockClock) -> None:
    emu = make_emulator(plan="essential", oauth_clients={"cid": ("s", "rt")})
    async with _anonymous(emu) as client:
        with trio.fail_after(60):
            token = (
                await client.post(
                    "/oauth/token",
                    data={"grant_type": "refresh_token", "refresh_token": "rt"},
                    headers=_basic("cid", "s"),
                )
            ).json()["access_token"]
            r = await client.get(PERSONS, headers={"Authorization": f"Bearer {token}"})
    assert r.headers["x-ratelimit-limit"] == "80"  # Essential OAuth: 80 per 2 s (A.6)


async def test_search_has_its_own_window(
    autojump_clock: MockClock,
) -> None:
    emu = make_emulator(plan="enterprise")
    async with client_for(emu) as client:
        with trio.fail_after(60):
            searches = [
                await client.get(f"{PERSONS}/search", params={"term": "ab"}) for _ in range(11)
            ]
            other = await client.get(PERSONS)
    # Search: 10 per 2 s on every plan (A.6).
    assert [r.status_code for r in searches] == [200] * 10 + [429]
    assert searches[0].headers["x-ratelimit-limit"] == "10"
    assert other.status_code == 200
    assert emu.tokens_used_today() == 10 * 20 + 10  # search costs 20 (A.1)


async def test_token_costs_per_operation(autojump_clock: MockClock) -> None:
    emu = make_emulator(plan="essential")
    async with client_for(emu) as client:
        with trio.fail_after(60):
            spent = []
            before = 0
            pid = (await client.post(PERSONS, json={"name": "A"})).json()["data"]["id"]
            calls = [
                ("GET", f"{PERSONS}/{pid}", None),
                ("PATCH", f"{PERSONS}/{pid}", {"name": "B"}),
                ("GET", f"{V2}/pipelines", None),
                ("GET", f"{V2}/deals/archived", None),
                ("GET", f"{V2}/personFields", None),
                ("GET", "/v1/webhooks", None),
                ("DELETE", f"{PERSONS}/{pid}", None),
            ]
            before = emu.tokens_used_today()
            for method, path, body in calls:
                await client.request(method, path, json=body)
                spent.append(emu.tokens_used_today() - before)
                before = emu.tokens_used_today()
                await trio.sleep(2)
    # x-token-cost of each operation (A.1).
    assert spent == [1, 5, 5, 20, 10, 10, 3]


async def test_daily_budget_runs_out_until_midnight(autojump_clock: MockClock) -> None:
    emu = make_emulator(plan="essential")
    emu.rate_limiter.set_tokens_used(30_000 - 10, emu.clock.now_ms())
    async with client_for(emu) as client:
        with trio.fail_after(86_400):
            last = await client.get(PERSONS)
            over = [await client.get(f"{PERSONS}/1") for _ in range(3)]
            # 2023-11-14T22:13:20Z: midnight UTC is 1 h 46 min 40 s later.
            await trio.sleep(6399)
            still = await client.get(PERSONS)
            await trio.sleep(2)
            tomorrow = await client.get(PERSONS)
    assert last.status_code == 200 and last.headers["x-daily-ratelimit-token-remaining"] == "0"
    # Once spent, every request gets 429 until the reset (A.6).
    assert {r.status_code for r in over} == {429}
    assert over[0].headers["x-daily-ratelimit-token-remaining"] == "0"
    assert still.status_code == 429
    assert tomorrow.status_code == 200
    assert tomorrow.headers["x-daily-ratelimit-token-remaining"] == str(30_000 - 10)


async def test_hammering_after_429_is_blocked_with_html(autojump_clock: MockClock) -> None:
    emu = make_emulator(
        plan="essential", hammer_limit=5, hammer_window=10, block_seconds=60,
        oauth_clients={"cid": ("s", "rt")},
    )  # fmt: skip
    async with client_for(emu) as client:
        with trio.fail_after(600):
            answers = [await client.get(PERSONS) for _ in range(30)]
            await trio.sleep(30)
            still_blocked = await client.get(PERSONS)
            await trio.sleep(31)
            unblocked = await client.get(PERSONS)
    statuses = [r.status_code for r in answers]
    assert statuses[:20] == [200] * 20 and statuses[20:25] == [429] * 5
    assert set(statuses[25:]) == {403}
    blocked = answers[25]
    # 403 with an HTML Cloudflare page, not JSON (A.6).
    assert blocked.headers["content-type"].startswith("text/html")
    assert b"Cloudflare" in blocked.content
    assert still_blocked.status_code == 403 and unblocked.status_code == 200
