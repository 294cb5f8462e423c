"""HubSpot authentication as `httpx.Auth` flows (fact sheet §9).

- `PrivateAppToken`: a static token (a legacy private app's, a service key, a project app's
  static token), revealed only when a request is sent.
- `HubSpotOAuth`: OAuth with a refresh token. The access token is refreshed at
  `POST /oauth/v3/token` (form-encoded `grant_type=refresh_token`; the v1 path is deprecated
  and sunset on 2027-02-16, hubspot-onboarding.md §1) before it expires (from
  `expires_in`, less a margin; access tokens live 30 minutes), and once more if HubSpot answers
  401 EXPIRED_AUTHENTICATION anyway. Many concurrent callers share ONE refresh (a `trio.Lock`;
  whoever holds it refreshes, the others then find a fresh token). A rotated refresh token is
  handed to `on_refresh_token` before any request uses the new access token (the daemon keeps
  it in the refresh token file, or in its state database when that file cannot be written).

The refresh request is yielded from the auth flow, so it goes through the same client and
transport as the API calls (a MockTransport or the emulator's ASGI app in tests).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable
from urllib.parse import urlencode

import httpx
import msgspec
import structlog
import trio

from crmsync.config.secrets import Secret
from crmsync.connectors.retry import (
    Action,
    ErrorResolution,
    HttpFailure,
    classify,
    parse_error_body,
)

log = structlog.get_logger("crmsync.connectors.hubspot")

TOKEN_PATH = "/oauth/v3/token"


def _reveal(value: Secret | str) -> str:
    return value.reveal() if isinstance(value, Secret) else value


class PrivateAppToken(httpx.Auth):
    """`Authorization: Bearer <token>` for a credential that does not expire."""

    def __init__(self, token: Secret | str) -> None:
        self._token = token

    def auth_flow(self, request: httpx.Request):  # type: ignore[no-untyped-def]
        request.headers["Authorization"] = f"Bearer {_reveal(self._token)}"
        yield request


class OAuthStatistics(msgspec.Struct, frozen=True, kw_only=True):
    refreshes: int
    refresh_failures: int
    expires_in: float | None  # seconds until the access token expires (None: no token yet)


class _TokenAnswer(msgspec.Struct):
    access_token: str
    expires_in: float = 1800.0
    refresh_token: str | None = None
    # Optional in AccessTokenResponse (hubspot-onboarding.md §1).
    hub_id: int | None = None
    scopes: list[str] | None = None


class HubSpotOAuth(httpx.Auth):
    """OAuth refresh-token auth for HubSpot. See the module docstring.

    `token_url` defaults to `/oauth/v3/token` on the API request's own host.
    `refresh_margin` seconds before expiry the token counts as expired (capped at half its
    lifetime). When HubSpot refuses the refresh token, `reload_refresh_token` is asked for the
    kept one: another process (`crmsync doctor`, a second `connect`) may have refreshed with it
    and kept the token HubSpot rotated it into; a different token is tried once. Raises (from the request) `HttpFailure` with kind "config" when HubSpot refuses
    the refresh token or client credentials, "transient" when the token endpoint is down.
    """

    def __init__(
        self,
        *,
        client_id: str,
        client_secret: Secret | str,
        refresh_token: Secret | str,
        on_refresh_token: Callable[[str], Awaitable[None]] | None = None,
        reload_refresh_token: Callable[[], Awaitable[str | None]] | None = None,
        token_url: str | None = None,
        refresh_margin: float = 300.0,
    ) -> None:
        self.client_id = client_id
        self._reload = reload_refresh_token
        self._client_secret = client_secret
        self._refresh_token = _reveal(refresh_token)
        self._on_refresh_token = on_refresh_token
        self._token_url = token_url
        self.refresh_margin = refresh_margin
        self._access_token: str | None = None
        self._refresh_at = 0.0  # trio time after which the token counts as expired
        self._expires_at = 0.0
        self._lock = trio.Lock()
        self._refreshes = 0
        self._failures = 0
        # What the last token answer said of the install (None: it did not say).
        self.hub_id: int | None = None
        self.scopes: list[str] | None = None

    def statistics(self) -> OAuthStatistics:
        left = self._expires_at - trio.current_time() if self._access_token else None
        return OAuthStatistics(refreshes=self._refreshes, refresh_failures=self._failures,
                               expires_in=left)

    def _fresh(self) -> bool:
        return self._access_token is not None and trio.current_time() < self._refresh_at

    def _refresh_request(self, request: httpx.Request) -> httpx.Request:
        url = (httpx.URL(self._token_url) if self._token_url
               else request.url.copy_with(path=TOKEN_PATH, query=None))
        form = urlencode({
            "grant_type": "refresh_token",
            "client_id": self.client_id,
            "client_secret": _reveal(self._client_secret),
            "refresh_token": self._refresh_token,
        })
        return httpx.Request("POST", url, content=form.encode(), headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "Accept": "application/json",
        })

    async def _kept_elsewhere(self, response: httpx.Response) -> bool:
        """After a refused refresh: is another refresh token kept now? (It becomes ours.)"""
        if response.status_code not in (400, 401) or self._reload is None:
            return False
        kept = await self._reload()
        if not kept or kept == self._refresh_token:
            return False
        await response.aread()
        log.info("hubspot_oauth_refresh_token_reloaded",
                 reason="HubSpot refused the refresh token held; another is kept now")
        self._refresh_token = kept
        return True

    def current_access_token(self) -> str | None:
        """The access token in use (for token introspection), None before the first call."""
        return self._access_token

    async def _take(self, response: httpx.Response) -> None:
        """Apply the token endpoint's answer, or raise a classified failure."""
        await response.aread()
        if response.status_code != 200:
            self._failures += 1
            detail = parse_error_body(response.content)
            code = detail.code or ""
            body = detail.body if isinstance(detail.body, dict) else {}
            if not code and isinstance(body.get("status"), str) and body["status"] != "error":
                code = body["status"]  # HubSpot's OAuth errors: {"status":"BAD_REFRESH_TOKEN"}
            if 400 <= response.status_code < 500 and response.status_code != 429:
                # BAD_REFRESH_TOKEN, BAD_CLIENT_ID, invalid_grant...: an operator must act.
                resolution = ErrorResolution(Action.CONFIG_ERROR, "config",
                                             "permission_denied")
                message = (f"HubSpot refused the OAuth refresh ({response.status_code} "
                           f"{code}): {detail.message or 'no details'} — check hub.auth "
                           "(client id, client secret, refresh token)")
            else:
                # The API request itself was not sent yet: never an ambiguous write.
                resolution = msgspec.structs.replace(classify(response.status_code),
                                                     ambiguous=False)
                message = (f"the HubSpot OAuth token endpoint failed "
                           f"({response.status_code} {code}): {detail.message or 'no details'}")
            raise HttpFailure(resolution, message, status=response.status_code, detail=detail)
        try:
            answer = msgspec.json.decode(response.content, type=_TokenAnswer)
        except msgspec.DecodeError as exc:
            self._failures += 1
            raise HttpFailure(msgspec.structs.replace(classify(502), ambiguous=False),
                              f"unreadable HubSpot OAuth token answer: {exc}",
                              status=response.status_code) from None
        now = trio.current_time()
        margin = min(self.refresh_margin, answer.expires_in / 2)
        self._access_token = answer.access_token
        self._expires_at = now + answer.expires_in
        self._refresh_at = now + answer.expires_in - margin
        self._refreshes += 1
        self.hub_id = answer.hub_id
        self.scopes = answer.scopes
        rotated = answer.refresh_token and answer.refresh_token != self._refresh_token
        if answer.refresh_token:
            self._refresh_token = answer.refresh_token
        log.info("hubspot_oauth_refreshed", expires_in=answer.expires_in,
                 refresh_token_rotated=bool(rotated))
        if rotated and self._on_refresh_token is not None:
            await self._on_refresh_token(self._refresh_token)

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        if not self._fresh():
            # One refresh for everybody: the lock holder refreshes, the others then see a
            # fresh token. (The lock is released if the flow is closed mid-way: httpx acloses
            # the flow when the request is cancelled.)
            await self._lock.acquire()
            try:
                if not self._fresh():
                    response = yield self._refresh_request(request)
                    if await self._kept_elsewhere(response):
                        response = yield self._refresh_request(request)
                    await self._take(response)
            finally:
                self._lock.release()
        used = self._access_token
        request.headers["Authorization"] = f"Bearer {used}"
        response = yield request
        if response.status_code != 401:
            return
        await response.aread()
        if parse_error_body(response.content).code != "EXPIRED_AUTHENTICATION":
            return
        # HubSpot says the token expired before we thought: refresh once (unless somebody
        # already did) and send the request again.
        await self._lock.acquire()
        try:
            if self._access_token == used:
                response = yield self._refresh_request(request)
                if await self._kept_elsewhere(response):
                    response = yield self._refresh_request(request)
                await self._take(response)
        finally:
            self._lock.release()
        request.headers["Authorization"] = f"Bearer {self._access_token}"
        yield request
