"""OAuth refresh as an httpx.Auth (MockClock), private-app tokens, and build_hub_connector."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import parse_qs

import httpx
import pytest
import trio

from crmsync.config.model import HubSettings, OAuthAuth, PrivateAppAuth, RateLimits
from crmsync.connectors.base import ConnectorError
from crmsync.connectors.hubspot import (
    HubSpotConnector,
    HubSpotOAuth,
    budget_for,
    build_hub_connector,
)
from crmsync.connectors.ratelimit import RateBudget

BASE = "https://api.hubapi.com"


class TokenServer:
    """HubSpot's token endpoint and one API route that checks the bearer token."""

    def __init__(self, *, rotate: bool = True, token_latency: float = 0.5) -> None:
        self.refreshes: list[dict[str, list[str]]] = []
        self.valid: set[str] = set()
        self.rotate = rotate
        self.token_latency = token_latency
        self.token_answer: httpx.Response | None = None
        self.api_calls = 0
        self.creates = 0
        self.refresh_token = "rt-0"

    async def handler(self, request: httpx.Request) -> httpx.Response:
        # The current token endpoint (hubspot-onboarding.md §1: v1 is sunset on 2027-02-16).
        if request.url.path == "/oauth/v3/token":
            await trio.sleep(self.token_latency)
            form = parse_qs(request.content.decode())
            self.refreshes.append(form)
            if self.token_answer is not None:
                return self.token_answer
            if form.get("refresh_token") != [self.refresh_token]:
                return httpx.Response(400, json={"status": "BAD_REFRESH_TOKEN",
                                                 "message": "missing or unknown refresh token"})
            n = len(self.refreshes)
            access = f"at-{n}"
            self.valid = {access}
            if self.rotate:
                self.refresh_token = f"rt-{n}"
            return httpx.Response(200, json={"access_token": access,
                                             "refresh_token": self.refresh_token,
                                             "expires_in": 1800, "token_type": "bearer"})
        self.api_calls += 1
        auth = request.headers.get("Authorization", "")
        if auth.removeprefix("Bearer ") not in self.valid:
            return httpx.Response(401, json={"status": "error", "message": "The OAuth token "
                                             "used to make this call expired 1 second(s) ago.",
                                             "category": "EXPIRED_AUTHENTICATION"})
        if request.url.path.endswith("/batch/create"):
            self.creates += 1
            inputs = json.loads(request.content)["inputs"]
            return httpx.Response(201, json={"status": "COMPLETE", "results": [
                {"id": str(1000 + i), "properties": inp["properties"], "archived": False,
                 "createdAt": "2024-01-01T00:00:00Z", "updatedAt": "2024-01-01T00:00:00Z",
                 "objectWriteTraceId": inp["objectWriteTraceId"]}
                for i, inp in enumerate(inputs)]})
        return httpx.Response(200, json={"results": []})


def oauth_connector(server: TokenServer, saved: list[str]) -> tuple[HubSpotConnector,
                                                                    HubSpotOAuth]:
    async def save(token: str) -> None:
        await trio.sleep(0.1)  # a database write
        saved.append(token)

    auth = HubSpotOAuth(client_id="cid", client_secret="csecret", refresh_token="rt-0",
                        on_refresh_token=save)
    client = httpx.AsyncClient(base_url=BASE, auth=auth,
                               transport=httpx.MockTransport(server.handler))
    return HubSpotConnector(client, RateBudget()), auth


async def test_one_refresh_for_50_concurrent_callers(autojump_clock):
    server = TokenServer()
    saved: list[str] = []
    c, auth = oauth_connector(server, saved)
    done: list[int] = []

    async def call() -> None:
        page = await c.scan("contacts", None, [])
        assert page.records == []
        done.append(1)

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            for _ in range(50):
                nursery.start_soon(call)
    assert len(done) == 50
    assert len(server.refreshes) == 1
    assert server.refreshes[0] == {"grant_type": ["refresh_token"], "client_id": ["cid"],
                                   "client_secret": ["csecret"], "refresh_token": ["rt-0"]}
    assert saved == ["rt-1"]  # the rotated refresh token was persisted
    assert server.api_calls == 50
    assert auth.statistics().refreshes == 1


async def test_refreshes_before_expiry_from_expires_in(autojump_clock):
    server = TokenServer(rotate=False)
    saved: list[str] = []
    c, _auth = oauth_connector(server, saved)
    with trio.fail_after(4000):
        await c.scan("contacts", None, [])
        await trio.sleep(1400)  # 23 minutes later: still fresh
        await c.scan("contacts", None, [])
        assert len(server.refreshes) == 1
        await trio.sleep(120)  # within 5 minutes of expiry: refreshed before using it
        await c.scan("contacts", None, [])
    assert len(server.refreshes) == 2
    assert saved == []  # the refresh token did not rotate: nothing to persist
    assert server.api_calls == 3  # no 401 on the way


async def test_expired_authentication_refreshes_once_for_all(autojump_clock):
    server = TokenServer()
    saved: list[str] = []
    c, _ = oauth_connector(server, saved)
    with trio.fail_after(60):
        await c.scan("contacts", None, [])
        server.valid = set()  # HubSpot expires the token early

        async with trio.open_nursery() as nursery:
            for _ in range(50):
                nursery.start_soon(c.scan, "contacts", None, [])
    assert len(server.refreshes) == 2
    assert saved == ["rt-1", "rt-2"]


async def test_refused_refresh_is_a_config_error(autojump_clock):
    server = TokenServer()
    server.refresh_token = "rt-other"
    c, _ = oauth_connector(server, [])
    with trio.fail_after(60), pytest.raises(ConnectorError) as info:
        await c.scan("contacts", None, [])
    assert info.value.kind == "config"
    assert "HubSpot refused the OAuth refresh (400 BAD_REFRESH_TOKEN)" in info.value.message
    assert "check hub.auth" in info.value.message
    assert "csecret" not in info.value.message and "rt-0" not in info.value.message
    assert len(server.refreshes) == 1


async def test_a_refresh_token_another_process_rotated_is_reloaded(autojump_clock):
    """`crmsync doctor` (or a second connect) refreshed with the kept token and HubSpot rotated
    it: the daemon's token is refused, the kept one is read again and used."""
    server = TokenServer()
    server.refresh_token = "rt-rotated-elsewhere"
    reloads: list[int] = []

    async def reload() -> str | None:
        reloads.append(1)
        return "rt-rotated-elsewhere"

    auth = HubSpotOAuth(client_id="cid", client_secret="csecret", refresh_token="rt-0",
                        reload_refresh_token=reload)
    client = httpx.AsyncClient(base_url=BASE, auth=auth,
                               transport=httpx.MockTransport(server.handler))
    c = HubSpotConnector(client, RateBudget())
    with trio.fail_after(60):
        page = await c.scan("contacts", None, [])
    assert page.records == []
    assert [r["refresh_token"] for r in server.refreshes] == [["rt-0"],
                                                              ["rt-rotated-elsewhere"]]
    assert reloads == [1]


async def test_a_refused_refresh_token_that_is_still_the_kept_one_is_a_config_error(
        autojump_clock):
    server = TokenServer()
    server.refresh_token = "rt-other"

    async def reload() -> str | None:
        return "rt-0"  # nobody kept another

    auth = HubSpotOAuth(client_id="cid", client_secret="csecret", refresh_token="rt-0",
                        reload_refresh_token=reload)
    client = httpx.AsyncClient(base_url=BASE, auth=auth,
                               transport=httpx.MockTransport(server.handler))
    with trio.fail_after(60), pytest.raises(ConnectorError) as info:
        await HubSpotConnector(client, RateBudget()).scan("contacts", None, [])
    assert info.value.kind == "config"
    assert len(server.refreshes) == 1


async def test_token_endpoint_outage_is_retried(autojump_clock):
    server = TokenServer()
    server.token_answer = httpx.Response(503, text="unavailable")
    c, _ = oauth_connector(server, [])

    async def heal() -> None:
        await trio.sleep(5)
        server.token_answer = None

    with trio.fail_after(300):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(heal)
            await c.scan("contacts", None, [])
    assert len(server.refreshes) >= 2


async def test_token_endpoint_outage_during_a_create_is_not_ambiguous(autojump_clock):
    server = TokenServer()
    server.token_answer = httpx.Response(502, text="bad gateway")
    c, _ = oauth_connector(server, [])

    async def heal() -> None:
        await trio.sleep(5)
        server.token_answer = None

    with trio.fail_after(300):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(heal)
            [r] = await c.create("contacts", [{"email": "a@example.com"}])
    assert r.ok
    # The create was never sent while the token could not be had: sent once, no read-back.
    assert server.creates == 1 and server.api_calls == 1


async def test_cancelled_refresh_releases_the_lock(autojump_clock):
    server = TokenServer(token_latency=100)
    c, _ = oauth_connector(server, [])
    with trio.move_on_after(1):
        await c.scan("contacts", None, [])
    server.token_latency = 0.1
    with trio.fail_after(60):
        await c.scan("contacts", None, [])


# --- build_hub_connector ----------------------------------------------------------------------

def api(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json={"results": [], "auth": request.headers.get("Authorization")},
                          headers={"X-HubSpot-RateLimit-Max": "190",
                                   "X-HubSpot-RateLimit-Remaining": "189",
                                   "X-HubSpot-RateLimit-Interval-Milliseconds": "10000"})


async def test_build_with_a_private_app_token(monkeypatch, autojump_clock):
    monkeypatch.setenv("HUB_TOKEN", "pat-na1-secret\n")
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["Authorization"])
        seen.append(str(request.url))
        return api(request)

    settings = HubSettings(auth=PrivateAppAuth(token_env="HUB_TOKEN"), tier="starter",
                           base_url="https://hub.example")
    c = build_hub_connector(settings, None, transport=httpx.MockTransport(handler))
    try:
        stats = c.budget.statistics()
        assert (stats.window_limit, stats.daily_limit, stats.search_limit) == (
            100, 250_000, 5)
        with trio.fail_after(30):
            await c.scan("contacts", None, [])
        assert seen[0] == "Bearer pat-na1-secret"
        assert seen[1].startswith("https://hub.example/crm/v3/objects/contacts")
        # The API's headers are authoritative on the window's size.
        assert c.budget.statistics().window_limit == 190
        assert c.client.timeout.read == 30.0
        assert "pat-na1" not in repr(c.client.auth.__dict__)
    finally:
        await c.aclose()
    assert c.client.is_closed


async def test_build_with_oauth_and_a_rotated_token(tmp_path: Path, autojump_clock):
    (tmp_path / "secret").write_text("csecret\n")
    server = TokenServer()
    server.refresh_token = "rt-from-store"
    saved: list[str] = []

    async def save(token: str) -> None:
        saved.append(token)

    settings = HubSettings(auth=OAuthAuth(client_id="cid", client_secret_file="secret",
                                          refresh_token_env="UNSET_ENV_VAR"))
    c = build_hub_connector(settings, tmp_path, transport=httpx.MockTransport(server.handler),
                            refresh_token="rt-from-store", on_refresh_token=save)
    with trio.fail_after(30):
        await c.scan("contacts", None, [])
    await c.aclose()
    assert server.refreshes[0]["client_secret"] == ["csecret"]
    assert saved == ["rt-1"]


def test_build_reports_missing_secrets(monkeypatch):
    monkeypatch.delenv("NOPE_TOKEN", raising=False)
    settings = HubSettings(auth=PrivateAppAuth(token_env="NOPE_TOKEN"))
    with pytest.raises(ConnectorError) as info:
        build_hub_connector(settings, None)
    assert info.value.kind == "config"
    assert "NOPE_TOKEN is not set" in info.value.message


async def test_budgets_by_tier():
    assert budget_for("professional").statistics().window_limit == 190
    assert budget_for("enterprise").statistics().daily_limit == 1_000_000
    assert budget_for("unlimited").unlimited
    custom = budget_for("custom", RateLimits(per_10_seconds=250, daily=2_000_000,
                                             search_per_second=4)).statistics()
    assert (custom.window_limit, custom.daily_limit, custom.search_limit) == (250, 2_000_000, 4)
    with pytest.raises(ConnectorError):
        budget_for("custom")


async def test_injected_client_is_used_as_is(autojump_clock):
    client = httpx.AsyncClient(base_url=BASE, transport=httpx.MockTransport(api))
    settings = HubSettings(auth=PrivateAppAuth(token_env="NOT_READ"))
    c = build_hub_connector(settings, None, client=client, budget=RateBudget())
    assert c.client is client
    await c.aclose()
    assert not client.is_closed
    await client.aclose()
