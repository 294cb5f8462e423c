"""Who may call: private-app tokens, and OAuth access tokens issued by the refresh grant of
`POST /oauth/v1/token` (fact sheet §9)."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .errors import ApiError

ACCESS_TOKEN_SECONDS = 1800  # `expires_in` (fact sheet §9)


@dataclass(frozen=True)
class Caller:
    token: str
    oauth: bool
    rate_key: str  # whose ten-secondly window: the private app's token, or the OAuth client


@dataclass
class _AccessToken:
    client_id: str
    expires_at: float  # on the emulator's monotonic clock


@dataclass
class _Client:
    secret: str
    refresh_token: str


class OAuthError(Exception):
    """A 400 from the token endpoint: `{status: "BAD_REFRESH_TOKEN", message, correlationId}`
    (status seen in HGData/mk-node-hubspot#64; message in supaglue-labs/supaglue#1935)."""

    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Authenticator:
    def __init__(
        self,
        tokens: tuple[str, ...],
        oauth_clients: dict[str, tuple[str, str]] | None,
        clock: Callable[[], float],
        rng: random.Random,
        *,
        rotate_refresh_tokens: bool = False,
        portal_id: int,
    ) -> None:
        self.tokens = set(tokens)
        self.clock = clock
        self.rng = rng
        self.rotate_refresh_tokens = rotate_refresh_tokens
        self.portal_id = portal_id
        self._clients = {
            cid: _Client(secret, refresh)
            for cid, (secret, refresh) in (oauth_clients or {}).items()
        }
        self._access: dict[str, _AccessToken] = {}
        self.refresh_count = 0

    def authenticate(self, header: str | None) -> Caller:
        """The caller of an `Authorization: Bearer …` header, or 401."""
        if not header or not header.startswith("Bearer ") or not header[7:].strip():
            raise ApiError(
                401,
                "INVALID_AUTHENTICATION",
                "Authentication credentials not found. This API supports OAuth 2.0 authentication "
                "and you can find more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview",
            )
        token = header[7:].strip()
        if token in self.tokens:
            return Caller(token, False, f"app:{token}")
        access = self._access.get(token)
        if access is None:
            raise ApiError(
                401,
                "INVALID_AUTHENTICATION",
                "Authentication credentials not found. This API supports OAuth 2.0 authentication "
                "and you can find more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview",
            )
        if self.clock() >= access.expires_at:
            raise ApiError(
                401,
                "EXPIRED_AUTHENTICATION",
                "The OAuth token used to make this call expired 0 day(s) ago.",
            )
        return Caller(token, True, f"oauth:{access.client_id}")

    def refresh(self, form: dict[str, str]) -> dict[str, Any]:
        """The refresh grant: form fields grant_type, client_id, client_secret, refresh_token."""
        if form.get("grant_type") != "refresh_token":
            raise OAuthError("BAD_GRANT_TYPE", "grant_type must be refresh_token")
        client = self._clients.get(form.get("client_id", ""))
        if client is None:
            raise OAuthError("BAD_CLIENT_ID", "missing or unknown client id")
        if form.get("client_secret") != client.secret:
            raise OAuthError("BAD_CLIENT_SECRET", "missing or invalid client secret")
        if form.get("refresh_token") != client.refresh_token:
            raise OAuthError("BAD_REFRESH_TOKEN", "missing or invalid refresh token")
        access = f"emu-at-{self.rng.getrandbits(64):016x}"
        self._access[access] = _AccessToken(form["client_id"], self.clock() + ACCESS_TOKEN_SECONDS)
        if self.rotate_refresh_tokens:
            client.refresh_token = f"emu-rt-{self.rng.getrandbits(64):016x}"
        self.refresh_count += 1
        return {
            "token_type": "bearer",
            "refresh_token": client.refresh_token,
            "access_token": access,
            "expires_in": ACCESS_TOKEN_SECONDS,
        }

    def token_info(self, token: str) -> dict[str, Any] | None:
        """`GET /oauth/v1/access-tokens/{token}` metadata."""
        access = self._access.get(token)
        if access is None:
            return None
        return {
            "token": token,
            "hub_id": self.portal_id,
            "app_id": 0,
            "expires_in": max(0, int(access.expires_at - self.clock())),
            "user_id": 0,
            "token_type": "access",
            "scopes": ["crm.objects.contacts.read", "crm.objects.contacts.write"],
        }

    def expire_access_tokens(self) -> None:
        """Makes every issued access token expired now (tests of the refresh path)."""
        now = self.clock()
        for access in self._access.values():
            access.expires_at = min(access.expires_at, now)
