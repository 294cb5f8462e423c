"""Pipedrive authentication as `httpx.Auth` flows [PD-auth][PD-spec-v2][PD-node].

- `ApiToken`: the user's API token in the `x-api-token` header (what the current docs and the
  official client send; the older `?api_token=` query parameter would put it in URLs, which
  end up in logs).
- `PipedriveOAuth`: OAuth 2 with a refresh token. `POST <token_url>` with the client
  credentials as HTTP Basic and `grant_type=refresh_token` in a form body; the answer's
  `expires_in` schedules the next refresh (less a margin), a 401 triggers one refresh and a
  resend. Concurrent callers share one refresh (a `trio.Lock`). A rotated refresh token goes to
  `on_refresh_token` (the daemon keeps it in its state database) before it is used. The
  answer's `api_domain` becomes the base of API calls (as the official client does) when it
  is HTTPS or the configured host itself — an access token is never sent to a host the
  operator did not configure over plain HTTP.

The refresh request is yielded from the flow, so it goes through the same client and transport
as the API calls (the emulator's ASGI app in tests).
"""

from __future__ import annotations

import base64
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator
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

log = structlog.get_logger("crmsync.connectors.pipedrive")


def _reveal(value: Secret | str) -> str:
    return value.reveal() if isinstance(value, Secret) else value


class ApiToken(httpx.Auth):
    """`x-api-token: <token>` on every request."""

    def __init__(self, token: Secret | str) -> None:
        self._token = token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["x-api-token"] = _reveal(self._token)
        yield request


class _TokenAnswer(msgspec.Struct):
    access_token: str
    expires_in: float = 3599.0
    refresh_token: str | None = None
    api_domain: str | None = None


class PipedriveOAuth(httpx.Auth):
    """See the module docstring. Raises (from the request) `HttpFailure` with kind "config"
    when the token endpoint refuses the client or the refresh token, "transient" when it is
    down."""

    def __init__(self, *, client_id: str, client_secret: Secret | str,
                 refresh_token: Secret | str, token_url: str,
                 on_refresh_token: Callable[[str], Awaitable[None]] | None = None,
                 refresh_margin: float = 300.0) -> None:
        self.client_id = client_id
        self._client_secret = client_secret
        self._refresh_token = _reveal(refresh_token)
        self._token_url = httpx.URL(token_url)
        self._on_refresh_token = on_refresh_token
        self.refresh_margin = refresh_margin
        self._access_token: str | None = None
        self._refresh_at = 0.0
        self.api_domain: httpx.URL | None = None
        self._lock = trio.Lock()
        self.refreshes = 0

    def _fresh(self) -> bool:
        return self._access_token is not None and trio.current_time() < self._refresh_at

    def _refresh_request(self) -> httpx.Request:
        pair = f"{self.client_id}:{_reveal(self._client_secret)}".encode()
        form = urlencode({"grant_type": "refresh_token", "refresh_token": self._refresh_token})
        return httpx.Request("POST", self._token_url, content=form.encode(), headers={
            "Authorization": "Basic " + base64.b64encode(pair).decode(),
            "Content-Type": "application/x-www-form-urlencoded",
            "Accept": "application/json",
        })

    async def _take(self, response: httpx.Response, request: httpx.Request) -> None:
        await response.aread()
        if response.status_code != 200:
            detail = parse_error_body(response.content)
            if 400 <= response.status_code < 500 and response.status_code != 429:
                resolution = ErrorResolution(Action.CONFIG_ERROR, "config", "permission_denied")
                message = (f"Pipedrive refused the OAuth refresh ({response.status_code} "
                           f"{detail.code or ''}): {detail.message or 'no details'} — check "
                           "the connection's auth (client id, client secret, refresh token)")
            else:
                # The API call itself was not sent: never an ambiguous write.
                resolution = msgspec.structs.replace(classify(response.status_code),
                                                     ambiguous=False)
                message = (f"the Pipedrive OAuth token endpoint failed "
                           f"({response.status_code}): {detail.message or 'no details'}")
            raise HttpFailure(resolution, message, status=response.status_code, detail=detail)
        try:
            answer = msgspec.json.decode(response.content, type=_TokenAnswer)
        except msgspec.DecodeError as exc:
            raise HttpFailure(msgspec.structs.replace(classify(502), ambiguous=False),
                              f"unreadable Pipedrive OAuth token answer: {exc}",
                              status=response.status_code) from None
        now = trio.current_time()
        margin = min(self.refresh_margin, answer.expires_in / 2)
        self._access_token = answer.access_token
        self._refresh_at = now + answer.expires_in - margin
        self.refreshes += 1
        if answer.api_domain:
            domain = httpx.URL(answer.api_domain)
            if domain.scheme == "https" or domain.host == request.url.host:
                self.api_domain = domain
        rotated = bool(answer.refresh_token) and answer.refresh_token != self._refresh_token
        if answer.refresh_token:
            self._refresh_token = answer.refresh_token
        log.info("pipedrive_oauth_refreshed", expires_in=answer.expires_in,
                 refresh_token_rotated=rotated)
        if rotated and self._on_refresh_token is not None:
            await self._on_refresh_token(self._refresh_token)

    def _prepare(self, request: httpx.Request) -> None:
        if self.api_domain is not None:
            request.url = request.url.copy_with(scheme=self.api_domain.scheme,
                                                host=self.api_domain.host,
                                                port=self.api_domain.port)
            request.headers["Host"] = request.url.netloc.decode("ascii")
        request.headers["Authorization"] = f"Bearer {self._access_token}"

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        if not self._fresh():
            await self._lock.acquire()
            try:
                if not self._fresh():
                    response = yield self._refresh_request()
                    await self._take(response, request)
            finally:
                self._lock.release()
        used = self._access_token
        self._prepare(request)
        response = yield request
        if response.status_code != 401:
            return
        # The access token expired before we thought (or was revoked): refresh once, unless
        # somebody already did, and send again.
        await self._lock.acquire()
        try:
            if self._access_token == used:
                response = yield self._refresh_request()
                await self._take(response, request)
        finally:
            self._lock.release()
        self._prepare(request)
        yield request
