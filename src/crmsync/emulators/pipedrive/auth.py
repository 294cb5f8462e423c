"""Who may call [PD-auth][PD-spec-v2]: an API token in the `x-api-token` header (what the
current docs and the official client use) or the older `?api_token=` query parameter; or an
OAuth access token as `Authorization: Bearer`, issued by the refresh grant of `POST
/oauth/token` (client credentials as HTTP Basic, form body) whose answer carries `api_domain`,
the base the official client then calls [PD-node][PD-spec-v1]."""

from __future__ import annotations

import base64
import binascii
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .errors import UnauthorizedError

# `expires_in` of the token endpoint's example [PD-spec-v1].
ACCESS_TOKEN_SECONDS = 3599
OAUTH_SCOPE = "base deals:full contacts:full"


@dataclass(frozen=True)
class Caller:
    user_id: int
    oauth: bool
    rate_key: str  # whose burst window: the API token, or the OAuth client [INF]


@dataclass
class _AccessToken:
    client_id: str
    user_id: int
    expires_at: float


@dataclass
class _Client:
    secret: str
    refresh_token: str
    user_id: int


class OAuthError(Exception):
    """An error of the token endpoint in RFC 6749 §5.2's shape `{error, error_description}`:
    Pipedrive's own shape is not in the fact sheet [INF]."""

    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.error = error
        self.description = description

    def body(self) -> dict[str, str]:
        return {"error": self.error, "error_description": self.description}


class Authenticator:
    def __init__(
        self,
        tokens: dict[str, int],
        oauth_clients: dict[str, tuple[str, str]] | None,
        clock: Callable[[], float],
        rng: random.Random,
        *,
        oauth_user_id: int,
        rotate_refresh_tokens: bool = False,
    ) -> None:
        self.tokens = dict(tokens)
        self.clock = clock
        self.rng = rng
        self.rotate_refresh_tokens = rotate_refresh_tokens
        self._clients = {
            cid: _Client(secret, refresh, oauth_user_id)
            for cid, (secret, refresh) in (oauth_clients or {}).items()
        }
        self._access: dict[str, _AccessToken] = {}
        self.refresh_count = 0

    def authenticate(
        self, header_token: str | None, query_token: str | None, authorization: str | None
    ) -> Caller:
        """The caller of a request, or `UnauthorizedError` (401)."""
        api_token = header_token or query_token
        if api_token:
            user_id = self.tokens.get(api_token)
            if user_id is None:
                raise UnauthorizedError()
            return Caller(user_id, False, f"token:{api_token}")
        if authorization and authorization[:7].lower() == "bearer ":
            access = self._access.get(authorization[7:].strip())
            if access is None or self.clock() >= access.expires_at:
                raise UnauthorizedError()
            return Caller(access.user_id, True, f"oauth:{access.client_id}")
        raise UnauthorizedError()

    def refresh(
        self, authorization: str | None, form: dict[str, str], api_domain: str
    ) -> dict[str, Any]:
        """The refresh grant: Basic `client_id:client_secret`, form `grant_type=refresh_token`
        and `refresh_token` [PD-spec-v1][PD-node]."""
        client_id, secret = _basic_credentials(authorization)
        client = self._clients.get(client_id)
        if client is None or secret != client.secret:
            raise OAuthError(401, "invalid_client", "unknown client or wrong client secret")
        if form.get("grant_type") != "refresh_token":
            raise OAuthError(
                400, "unsupported_grant_type", "the emulator issues tokens by refresh_token only"
            )
        if form.get("refresh_token") != client.refresh_token:
            raise OAuthError(400, "invalid_grant", "invalid refresh token")
        access = f"v1u:emu-{self.rng.getrandbits(128):032x}"
        self._access[access] = _AccessToken(
            client_id, client.user_id, self.clock() + ACCESS_TOKEN_SECONDS
        )
        if self.rotate_refresh_tokens:
            client.refresh_token = f"1:1:{self.rng.getrandbits(160):040x}"
        self.refresh_count += 1
        return {
            "access_token": access,
            "token_type": "Bearer",
            "refresh_token": client.refresh_token,
            "scope": OAUTH_SCOPE,
            "expires_in": ACCESS_TOKEN_SECONDS,
            "api_domain": api_domain,
        }

    def expire_access_tokens(self) -> None:
        """Makes every issued access token expired now (tests of the refresh path)."""
        now = self.clock()
        for access in self._access.values():
            access.expires_at = min(access.expires_at, now)


def _basic_credentials(header: str | None) -> tuple[str, str]:
    if not header or header[:6].lower() != "basic ":
        raise OAuthError(401, "invalid_client", "client credentials go in HTTP Basic auth")
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise OAuthError(401, "invalid_client", "malformed Basic credentials") from None
    client_id, sep, secret = decoded.partition(":")
    if not sep:
        raise OAuthError(401, "invalid_client", "malformed Basic credentials")
    return client_id, secret
