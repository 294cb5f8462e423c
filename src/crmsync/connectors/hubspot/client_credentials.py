"""An app-level HubSpot token from the client-credentials grant, as an `httpx.Auth` flow.

The webhooks journal is read with such a token (hubspot-onboarding.md §6): `POST
/oauth/v3/token`, form-encoded `grant_type=client_credentials`, `client_id`, `client_secret`,
`scope` (the journal's scopes, space-separated). The answer has the shape of the other grants
without a `refresh_token` and with `token_use=client_credentials` (§1), and the token lives
`expires_in` seconds (access tokens: 30 minutes). So there is nothing to refresh with: a new
token is asked for before the old one expires (`expires_in` less a margin), and once more if
HubSpot answers 401 `EXPIRED_AUTHENTICATION` anyway. Concurrent callers share one grant (a
`trio.Lock`).

The token request is yielded from the auth flow, so it goes through the same client and
transport as the journal calls (the emulator's ASGI app in tests). `/oauth/v3/token` is the
current endpoint; `/oauth/v1/token` is deprecated and sunsets on 2027-02-16 (§1).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
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


class ClientCredentialsStatistics(msgspec.Struct, frozen=True, kw_only=True):
    grants: int  # tokens obtained
    failures: int  # token requests refused or failed
    expires_in: float | None  # seconds until the current token expires (None: no token yet)


class _TokenAnswer(msgspec.Struct):
    access_token: str
    expires_in: float = 1800.0


class ClientCredentialsAuth(httpx.Auth):
    """`Authorization: Bearer <client-credentials token>`, renewed before it expires.

    `refresh_margin` seconds before expiry the token counts as expired (capped at half its
    lifetime). A refused grant raises (from the request) `HttpFailure` with kind "config"
    (wrong client id or secret, a scope the app lacks: an operator must act); a token endpoint
    that is down raises a transient one.
    """

    def __init__(self, *, client_id: str, client_secret: Secret | str, scopes: Sequence[str],
                 token_url: str | None = None, refresh_margin: float = 300.0,
                 what: str = "hub.journal") -> None:
        self.client_id = client_id
        self._client_secret = client_secret
        self.scopes = tuple(scopes)
        self._token_url = token_url
        self.refresh_margin = refresh_margin
        self._what = what
        self._access_token: str | None = None
        self._renew_at = 0.0  # trio time after which the token counts as expired
        self._expires_at = 0.0
        self._lock = trio.Lock()
        self._grants = 0
        self._failures = 0

    def statistics(self) -> ClientCredentialsStatistics:
        left = self._expires_at - trio.current_time() if self._access_token else None
        return ClientCredentialsStatistics(grants=self._grants, failures=self._failures,
                                           expires_in=left)

    def _fresh(self) -> bool:
        return self._access_token is not None and trio.current_time() < self._renew_at

    def _grant_request(self, request: httpx.Request) -> httpx.Request:
        url = (httpx.URL(self._token_url) if self._token_url
               else request.url.copy_with(path=TOKEN_PATH, query=None))
        secret = self._client_secret
        form = urlencode({
            "grant_type": "client_credentials",
            "client_id": self.client_id,
            "client_secret": secret.reveal() if isinstance(secret, Secret) else secret,
            "scope": " ".join(self.scopes),
        })
        return httpx.Request("POST", url, content=form.encode(), headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "Accept": "application/json",
        })

    async def _take(self, response: httpx.Response) -> None:
        """Apply the token endpoint's answer, or raise a classified failure."""
        await response.aread()
        if response.status_code != 200:
            self._failures += 1
            detail = parse_error_body(response.content)
            body = detail.body if isinstance(detail.body, dict) else {}
            code = detail.code or ""
            if not code and isinstance(body.get("status"), str):
                code = body["status"]  # the legacy `status` field (hubspot-onboarding.md §1)
            if 400 <= response.status_code < 500 and response.status_code != 429:
                resolution = ErrorResolution(Action.CONFIG_ERROR, "config", "permission_denied")
                message = (f"HubSpot refused the client-credentials token "
                           f"({response.status_code} {code}): {detail.message or 'no details'}"
                           f" — check {self._what} (client_id, client secret, scopes "
                           f"{' '.join(self.scopes)})")
            else:
                # The journal call itself was not sent yet: never ambiguous.
                resolution = msgspec.structs.replace(classify(response.status_code),
                                                     ambiguous=False)
                message = (f"the HubSpot token endpoint failed ({response.status_code} "
                           f"{code}): {detail.message or 'no details'}")
            raise HttpFailure(resolution, message, status=response.status_code, detail=detail)
        try:
            answer = msgspec.json.decode(response.content, type=_TokenAnswer)
        except msgspec.DecodeError as exc:
            self._failures += 1
            raise HttpFailure(msgspec.structs.replace(classify(502), ambiguous=False),
                              f"unreadable HubSpot token answer: {exc}",
                              status=response.status_code) from None
        now = trio.current_time()
        lifetime = max(answer.expires_in, 0.0)
        self._access_token = answer.access_token
        self._expires_at = now + lifetime
        self._renew_at = now + lifetime - min(self.refresh_margin, lifetime / 2)
        self._grants += 1
        log.info("hubspot_client_credentials_granted", expires_in=lifetime)

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        if not self._fresh():
            # One grant for everybody: the lock holder asks, the others then find it fresh.
            await self._lock.acquire()
            try:
                if not self._fresh():
                    response = yield self._grant_request(request)
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
        # Expired earlier than its expires_in said: one new grant (unless somebody already
        # got one), then the request once more.
        await self._lock.acquire()
        try:
            if self._access_token == used:
                response = yield self._grant_request(request)
                await self._take(response)
        finally:
            self._lock.release()
        request.headers["Authorization"] = f"Bearer {self._access_token}"
        yield request
