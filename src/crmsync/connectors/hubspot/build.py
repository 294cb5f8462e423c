"""Build the hub connector from the configuration: secrets, rate budget, HTTP client."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx

from crmsync.config.model import HubSettings, OAuthAuth, RateLimits, Tier
from crmsync.config.secrets import Secret, SecretError, read_secret
from crmsync.connectors.base import ConnectorError
from crmsync.connectors.hubspot.auth import HubSpotOAuth, PrivateAppToken
from crmsync.connectors.hubspot.connector import HubSpotConnector
from crmsync.connectors.ratelimit import RateBudget

__all__ = ["TIER_LIMITS", "budget_for", "build_hub_connector", "hub_limits"]

# Private apps (fact sheet §3.1): requests per 10 s (per app), per day (per account). Search is
# limited to 5/s per account on every tier.
TIER_LIMITS: dict[str, RateLimits | None] = {
    "starter": RateLimits(per_10_seconds=100, daily=250_000),
    "professional": RateLimits(per_10_seconds=190, daily=625_000),
    "enterprise": RateLimits(per_10_seconds=190, daily=1_000_000),
    "unlimited": None,
}

USER_AGENT = "crmsync/0.1 (+https://github.com/crmsync)"


def hub_limits(tier: Tier, limits: RateLimits | None = None) -> RateLimits | None:
    """The limits to enforce: explicit `limits` win; `custom` requires them; None: none."""
    if limits is not None:
        return limits
    if tier == "custom":
        raise ConnectorError("config", "internal",
                             "hub.tier = \"custom\" needs hub.limits (per_10_seconds, daily)")
    return TIER_LIMITS[tier]


def budget_for(tier: Tier, limits: RateLimits | None = None, *, name: str = "hub") -> RateBudget:
    """The account's rate budget for a tier (or explicit limits)."""
    lim = hub_limits(tier, limits)
    if lim is None:
        return RateBudget(name=name)
    return RateBudget(per_window=lim.per_10_seconds, window_seconds=10.0, daily=lim.daily,
                      search_per_second=lim.search_per_second, name=name)


def _secret(env: str | None, file: str | None, base_dir: Path | None, what: str) -> Secret:
    try:
        return read_secret(env, file, base_dir)
    except SecretError as exc:
        raise ConnectorError("config", "permission_denied", f"{what}: {exc}") from None


def build_auth(settings: HubSettings, base_dir: Path | None, *,
               refresh_token: str | None = None,
               on_refresh_token: Callable[[str], Awaitable[None]] | None = None,
               reload_refresh_token: Callable[[], Awaitable[str | None]] | None = None,
               ) -> httpx.Auth:
    """The httpx auth for `hub.auth`. `refresh_token` (OAuth) is the latest rotated token kept
    in the state database; without it the configured one is used. `on_refresh_token` keeps a
    new one, `reload_refresh_token` reads the kept one again (see HubSpotOAuth)."""
    auth = settings.auth
    if isinstance(auth, OAuthAuth):
        secret = _secret(auth.client_secret_env, auth.client_secret_file, base_dir,
                         "hub.auth client secret")
        token: Secret | str
        if refresh_token:
            token = refresh_token
        else:
            token = _secret(auth.refresh_token_env, auth.refresh_token_file, base_dir,
                            "hub.auth refresh token")
        return HubSpotOAuth(client_id=auth.client_id, client_secret=secret,
                            refresh_token=token, on_refresh_token=on_refresh_token,
                            reload_refresh_token=reload_refresh_token)
    # A service key, a project app's static token and a legacy private-app token are all sent
    # as a bearer token (hubspot-onboarding.md §0).
    return PrivateAppToken(_secret(auth.token_env, auth.token_file, base_dir,
                                   f"hub.auth {auth.__struct_config__.tag} token"))


def build_hub_connector(
    settings: HubSettings,
    base_dir: Path | None,
    *,
    client: httpx.AsyncClient | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    budget: RateBudget | None = None,
    refresh_token: str | None = None,
    on_refresh_token: Callable[[str], Awaitable[None]] | None = None,
    reload_refresh_token: Callable[[], Awaitable[str | None]] | None = None,
    index_lag: float = 30.0,
    max_connections: int = 16,
    name: str = "hub",
) -> HubSpotConnector:
    """The hub connector for `settings`.

    Reads the secrets (`ConnectorError(kind="config")` naming what is missing), sizes the rate
    budget from `hub.tier` / `hub.limits` (unless one is given: there must be ONE per account),
    and builds the `httpx.AsyncClient` (base URL, auth, explicit Timeout and Limits; `transport`
    lets tests put the emulator underneath). A given `client` is used as it is. Close the
    connector with `await connector.aclose()` (it closes only a client it built).
    """
    owned = None
    if client is None:
        auth = build_auth(settings, base_dir, refresh_token=refresh_token,
                          on_refresh_token=on_refresh_token,
                          reload_refresh_token=reload_refresh_token)
        timeout = settings.request_timeout_seconds
        client = owned = httpx.AsyncClient(
            base_url=settings.base_url,
            auth=auth,
            timeout=httpx.Timeout(timeout, connect=min(10.0, timeout)),
            limits=httpx.Limits(max_connections=max_connections,
                                max_keepalive_connections=max_connections,
                                keepalive_expiry=30.0),
            headers={"User-Agent": USER_AGENT},
            transport=transport,
            follow_redirects=False,
        )
    connector = HubSpotConnector(
        client,
        budget or budget_for(settings.tier, settings.limits, name=name),
        request_timeout=settings.request_timeout_seconds,
        index_lag=index_lag,
        name=name,
    )
    connector._owned_client = owned
    return connector
