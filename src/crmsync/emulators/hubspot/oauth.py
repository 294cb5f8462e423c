"""Who may call, with which scopes: the credential kinds of hubspot-onboarding.md §0 and the
OAuth 2 flows of §1–§2 (authorization code, refresh, client credentials, introspection,
revocation)."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

from .errors import ApiError
from .scopes import ALL_SCOPES, BASE_SCOPE, JOURNAL_SCOPES

ACCESS_TOKEN_SECONDS = 1800  # `expires_in` (fact sheet §9; hubspot-onboarding.md §1)
# The authorization code is single-use and short-lived (hubspot-onboarding.md §1); how short is
# not documented: [INF] ten minutes, RFC 6749 §4.1.2's recommended maximum.
CODE_SECONDS = 600

# Credential kinds (hubspot-onboarding.md §0).
SERVICE_KEY = "service_key"  # REST only; no webhooks
STATIC_TOKEN = "static_token"  # a project-based app with `auth.type: static`
PRIVATE_APP = "private_app"  # a legacy private app's `pat-…` token
OAUTH = "oauth"  # an access token of the authorization-code / refresh flow
CLIENT_CREDENTIALS = "client_credentials"  # an app token for the webhooks journal
STATIC_KINDS = (SERVICE_KEY, STATIC_TOKEN, PRIVATE_APP)

_NOT_FOUND_MESSAGE = (
    "Authentication credentials not found. This API supports OAuth 2.0 authentication "
    "and you can find more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview"
)


@dataclass(frozen=True)
class Credential:
    """A static credential the account accepts: `scopes` None grants every scope."""

    token: str
    kind: str = PRIVATE_APP
    scopes: frozenset[str] | None = None
    app_id: int = 0
    user_id: int = 0

    def __post_init__(self) -> None:
        if self.kind not in STATIC_KINDS:
            raise ValueError(f"credential kind {self.kind!r}: one of {', '.join(STATIC_KINDS)}")

    @classmethod
    def from_json(cls, body: Any) -> Credential:
        if not isinstance(body, dict) or not isinstance(body.get("token"), str):
            raise ApiError(400, "VALIDATION_ERROR", "A credential is {token, kind?, scopes?}")
        scopes = body.get("scopes")
        try:
            return cls(
                token=body["token"],
                kind=str(body.get("kind", PRIVATE_APP)),
                scopes=None if scopes is None else frozenset(str(s) for s in scopes),
                app_id=int(body.get("appId", 0)),
                user_id=int(body.get("userId", 0)),
            )
        except (TypeError, ValueError) as exc:
            raise ApiError(400, "VALIDATION_ERROR", str(exc)) from exc

    def to_json(self) -> dict[str, Any]:
        return {
            "token": self.token,
            "kind": self.kind,
            "scopes": None if self.scopes is None else sorted(self.scopes),
            "appId": self.app_id,
            "userId": self.user_id,
        }


@dataclass(frozen=True)
class OAuthApp:
    """An OAuth app that may be installed in the account.

    `redirect_uris`: the registered redirect URLs; `redirect_uri` must match one exactly
    (hubspot-onboarding.md §1). `scopes`: the scopes the app may ask for (None: any).
    `refresh_token`: an install made before the emulator started (tests of the refresh grant).
    """

    client_id: str
    client_secret: str
    redirect_uris: tuple[str, ...] = ()
    scopes: frozenset[str] | None = None
    refresh_token: str | None = None
    app_id: int = 0
    private_distribution: bool = False


@dataclass(frozen=True)
class Caller:
    token: str
    oauth: bool  # rate limits of public OAuth apps, no daily headers (fact sheet §3)
    rate_key: str  # whose ten-secondly window: the static credential, or the OAuth client
    kind: str = PRIVATE_APP
    scopes: frozenset[str] | None = None  # None: every scope


@dataclass
class _Grant:
    """What an install granted: the app, the installing user and the scopes."""

    client_id: str
    scopes: frozenset[str] | None
    user_id: int


@dataclass
class _AccessToken:
    grant: _Grant
    expires_at: float  # on the emulator's monotonic clock
    kind: str = OAUTH


@dataclass
class _Code:
    grant: _Grant
    redirect_uri: str
    expires_at: float


class OAuthError(Exception):
    """A 400 from the token endpoints. Both v1 and v3 answer RFC 6749 `error` and
    `error_description` next to the legacy `status` and `message` (hubspot-onboarding.md §1);
    `status: BAD_REFRESH_TOKEN` for a bad refresh token is seen in the wild [S]."""

    def __init__(self, status: str, message: str, error: str = "invalid_grant") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error = error

    def body(self, correlation_id: str) -> dict[str, str]:
        return {
            "status": self.status,
            "message": self.message,
            "correlationId": correlation_id,
            "error": self.error,
            "error_description": self.message,
        }


class AuthorizeError(Exception):
    """An authorize request that cannot go back to the app: no known client or no registered
    redirect URL, so HubSpot shows an error page instead of redirecting."""


@dataclass
class Authenticator:
    """Credentials, installs and tokens of one account."""

    clock: Callable[[], float]
    rng: random.Random
    portal_id: int
    rotate_refresh_tokens: bool = False
    access_token_seconds: int = ACCESS_TOKEN_SECONDS
    hub_domain: str = "emulator.hubspot.test"
    credentials: dict[str, Credential] = field(default_factory=dict)
    apps: dict[str, OAuthApp] = field(default_factory=dict)
    refresh_count: int = 0
    _refresh: dict[str, _Grant] = field(default_factory=dict)
    _access: dict[str, _AccessToken] = field(default_factory=dict)
    _codes: dict[str, _Code] = field(default_factory=dict)

    def configure(
        self,
        tokens: Iterable[str | Credential],
        oauth_apps: Mapping[str, tuple[str, str] | OAuthApp] | None,
    ) -> None:
        for item in tokens:
            self.add_credential(item if isinstance(item, Credential) else Credential(item))
        for client_id, spec in (oauth_apps or {}).items():
            if isinstance(spec, OAuthApp):
                app = spec
            else:  # (client secret, refresh token of an existing install)
                app = OAuthApp(client_id, spec[0], refresh_token=spec[1])
            self.apps[client_id] = app
            if app.refresh_token is not None:
                self._refresh[app.refresh_token] = _Grant(client_id, app.scopes, 0)

    def add_credential(self, credential: Credential) -> None:
        self.credentials[credential.token] = credential

    # --- the gate ---

    def authenticate(self, header: str | None) -> Caller:
        """The caller of an `Authorization: Bearer …` header, or 401."""
        if not header or not header.startswith("Bearer ") or not header[7:].strip():
            raise ApiError(401, "INVALID_AUTHENTICATION", _NOT_FOUND_MESSAGE)
        token = header[7:].strip()
        static = self.credentials.get(token)
        if static is not None:
            return Caller(token, False, f"app:{token}", static.kind, _with_base(static.scopes))
        access = self._access.get(token)
        if access is None:
            raise ApiError(401, "INVALID_AUTHENTICATION", _NOT_FOUND_MESSAGE)
        if self.clock() >= access.expires_at:
            raise ApiError(
                401,
                "EXPIRED_AUTHENTICATION",
                "The OAuth token used to make this call expired 0 day(s) ago.",
            )
        return Caller(
            token,
            access.kind == OAUTH,
            f"oauth:{access.grant.client_id}",
            access.kind,
            _with_base(access.grant.scopes),
        )

    # --- authorize (the consent page) ---

    def authorize(self, params: Mapping[str, str]) -> str:
        """Consents at once to an authorize request; returns the URL HubSpot redirects the
        browser to: `redirect_uri` with `code` (and `state` echoed), or with `error` and
        `error_description` when the request asks for what the app may not have
        (hubspot-onboarding.md §1)."""
        app = self.apps.get(params.get("client_id", ""))
        if app is None:
            raise AuthorizeError("unknown client_id")
        redirect_uri = params.get("redirect_uri", "")
        if not _redirect_allowed(app, redirect_uri):
            raise AuthorizeError(f"redirect_uri {redirect_uri!r} is not registered for this app")
        state = params.get("state")
        required = set(params.get("scope", "").split())
        optional = set(params.get("optional_scope", "").split())
        if not required:
            return _with_query(redirect_uri, error="invalid_scope",
                               error_description="scope is required", state=state)
        allowed = app.scopes
        if allowed is not None and not required <= allowed | {BASE_SCOPE}:
            # A scope in the URL that the app settings lack blocks the install (§1).
            extra = " ".join(sorted(required - allowed - {BASE_SCOPE}))
            return _with_query(redirect_uri, error="invalid_scope",
                               error_description=f"scopes not allowed for this app: {extra}",
                               state=state)
        granted = frozenset(required | (optional if allowed is None else optional & allowed))
        code = f"emu-code-{self.rng.getrandbits(64):016x}"
        self._codes[code] = _Code(
            _Grant(app.client_id, granted, 0), redirect_uri, self.clock() + CODE_SECONDS
        )
        return _with_query(redirect_uri, code=code, state=state)

    # --- the token endpoint ---

    def token(self, form: Mapping[str, str]) -> dict[str, Any]:
        """`POST /oauth/v1/token` and `/oauth/v3/token`: the authorization_code, refresh_token
        and client_credentials grants."""
        grant_type = form.get("grant_type", "")
        if grant_type not in ("authorization_code", "refresh_token", "client_credentials"):
            raise OAuthError("BAD_GRANT_TYPE", f"unsupported grant_type {grant_type!r}",
                             "unsupported_grant_type")
        app = self.apps.get(form.get("client_id", ""))
        if app is None:
            raise OAuthError("BAD_CLIENT_ID", "missing or unknown client id", "invalid_client")
        if form.get("client_secret") != app.client_secret:
            raise OAuthError("BAD_CLIENT_SECRET", "missing or invalid client secret",
                             "invalid_client")
        if grant_type == "authorization_code":
            return self._exchange_code(app, form)
        if grant_type == "refresh_token":
            return self._refresh_grant(app, form)
        return self._client_credentials(app, form)

    def _exchange_code(self, app: OAuthApp, form: Mapping[str, str]) -> dict[str, Any]:
        code = self._codes.pop(form.get("code", ""), None)  # single use either way
        if code is None or code.grant.client_id != app.client_id:
            raise OAuthError("BAD_AUTH_CODE", "missing or unknown auth code")
        if self.clock() >= code.expires_at:
            raise OAuthError("BAD_AUTH_CODE", "auth code has expired")
        if form.get("redirect_uri") != code.redirect_uri:
            raise OAuthError("BAD_REDIRECT_URI", "redirect_uri does not match the authorize request")
        refresh = self._new_token("emu-rt")
        self._refresh[refresh] = code.grant
        return self._access_response(code.grant, refresh)

    def _refresh_grant(self, app: OAuthApp, form: Mapping[str, str]) -> dict[str, Any]:
        refresh = form.get("refresh_token", "")
        grant = self._refresh.get(refresh)
        if grant is None or grant.client_id != app.client_id:
            raise OAuthError("BAD_REFRESH_TOKEN", "missing or invalid refresh token")
        if self.rotate_refresh_tokens:
            # Rotation is undocumented (hubspot-onboarding.md §1, open item 1): an emulator
            # option. Rotated, the old token stops working.
            del self._refresh[refresh]
            refresh = self._new_token("emu-rt")
            self._refresh[refresh] = grant
        self.refresh_count += 1
        return self._access_response(grant, refresh)

    def _client_credentials(self, app: OAuthApp, form: Mapping[str, str]) -> dict[str, Any]:
        asked = frozenset(form.get("scope", "").split())
        if not asked:
            raise OAuthError("BAD_SCOPE", "scope is required", "invalid_scope")
        # [INF] a client-credentials token carries only app-level (journal) scopes.
        if not asked <= JOURNAL_SCOPES or (app.scopes is not None and not asked <= app.scopes):
            raise OAuthError(
                "BAD_SCOPE", f"scopes not allowed: {' '.join(sorted(asked))}", "invalid_scope"
            )
        access = self._new_token("emu-cc")
        grant = _Grant(app.client_id, asked, 0)
        self._access[access] = _AccessToken(
            grant, self.clock() + self.access_token_seconds, CLIENT_CREDENTIALS
        )
        # ClientCredentialsTokenResponse: no refresh_token, token_use client_credentials
        # (hubspot-onboarding.md §1).
        return {
            "access_token": access,
            "expires_in": self.access_token_seconds,
            "token_type": "bearer",
            "token_use": "client_credentials",
            "scopes": sorted(asked),
        }

    def _access_response(self, grant: _Grant, refresh: str) -> dict[str, Any]:
        access = self._new_token("emu-at")
        self._access[access] = _AccessToken(grant, self.clock() + self.access_token_seconds)
        out: dict[str, Any] = {
            "token_type": "bearer",
            "refresh_token": refresh,
            "access_token": access,
            "expires_in": self.access_token_seconds,
            "token_use": "access_token",
            "hub_id": self.portal_id,
            "user_id": grant.user_id,
        }
        if grant.scopes is not None:
            out["scopes"] = sorted(grant.scopes)
        return out

    def _new_token(self, prefix: str) -> str:
        return f"{prefix}-{self.rng.getrandbits(64):016x}"

    # --- introspection and revocation ---

    def access_token_info(self, token: str) -> dict[str, Any] | None:
        """`GET /oauth/v1/access-tokens/{token}` (AccessTokenInfoResponse)."""
        access = self._access.get(token)
        if access is None:
            return None
        app = self.apps[access.grant.client_id]
        return {
            "token": token,
            "token_type": "access",
            "hub_id": self.portal_id,
            "app_id": app.app_id,
            "user_id": access.grant.user_id,
            "scopes": self._scope_list(access.grant),
            "expires_in": max(0, int(access.expires_at - self.clock())),
            "hub_domain": self.hub_domain,
            "is_private_distribution": app.private_distribution,
        }

    def refresh_token_info(self, token: str) -> dict[str, Any] | None:
        """`GET /oauth/v1/refresh-tokens/{token}` (RefreshTokenInfoResponse)."""
        grant = self._refresh.get(token)
        if grant is None:
            return None
        return {
            "token": token,
            "token_type": "refresh",
            "client_id": grant.client_id,
            "hub_id": self.portal_id,
            "user_id": grant.user_id,
            "scopes": self._scope_list(grant),
            "hub_domain": self.hub_domain,
        }

    def delete_refresh_token(self, token: str) -> bool:
        """`DELETE /oauth/v1/refresh-tokens/{token}`: only the refresh token goes; access tokens
        already issued stay valid until they expire (hubspot-onboarding.md §1)."""
        return self._refresh.pop(token, None) is not None

    def introspect(self, form: Mapping[str, str]) -> dict[str, Any]:
        """`POST /oauth/v3/token/introspect`: PublicAccessTokenInfoResponse,
        PublicRefreshTokenInfoResponse, or `{"active": false}` for a token the calling app does
        not hold (hubspot-onboarding.md §2)."""
        app = self._client(form)
        token = form.get("token", "")
        hint = form.get("token_type_hint", "")
        access = self._access.get(token) if hint != "refresh_token" else None
        if access is not None and access.grant.client_id == app.client_id:
            expires_in = max(0, int(access.expires_at - self.clock()))
            return {
                "active": expires_in > 0,
                "token": token,
                "token_type": "bearer",
                "token_use": "access_token",
                "client_id": app.client_id,
                "app_id": app.app_id,
                "hub_id": self.portal_id,
                "user_id": access.grant.user_id,
                "scopes": self._scope_list(access.grant),
                "expires_in": expires_in,
                "is_private_distribution": app.private_distribution,
                "hub_domain": self.hub_domain,
                "signed_access_token": self._signed(app, access, expires_in),
            }
        grant = self._refresh.get(token) if hint != "access_token" else None
        if grant is not None and grant.client_id == app.client_id:
            return {
                "active": True,
                "token": token,
                "token_type": "refresh",
                "token_use": "refresh_token",
                "client_id": app.client_id,
                "app_id": app.app_id,
                "hub_id": self.portal_id,
                "user_id": grant.user_id,
                "scopes": self._scope_list(grant),
                "hub_domain": self.hub_domain,
            }
        return {"active": False}

    def revoke(self, form: Mapping[str, str]) -> None:
        """`POST /oauth/v3/token/revoke`: deletes the given refresh token (SPEC v3); an
        unknown token is not an error [INF]."""
        app = self._client(form)
        grant = self._refresh.get(form.get("token", ""))
        if grant is not None and grant.client_id == app.client_id:
            del self._refresh[form["token"]]

    def static_token_info(self, token_key: str) -> dict[str, Any] | None:
        """`POST /oauth/v2/private-apps/get/access-token-info` `{tokenKey}` → `{hubId, appId,
        userId, scopes}` (hubspot-onboarding.md §2 [S]). It answers for every static kind
        [INF]: whether it works for service keys and static tokens is unverified (open item 5).
        """
        credential = self.credentials.get(token_key)
        if credential is None:
            return None
        return {
            "hubId": self.portal_id,
            "appId": credential.app_id,
            "userId": credential.user_id,
            "scopes": sorted(_with_base(credential.scopes) or ALL_SCOPES),
        }

    def _client(self, form: Mapping[str, str]) -> OAuthApp:
        app = self.apps.get(form.get("client_id", ""))
        if app is None or form.get("client_secret") != app.client_secret:
            raise OAuthError("BAD_CLIENT_ID", "missing or invalid client credentials",
                             "invalid_client")
        return app

    def _scope_list(self, grant: _Grant) -> list[str]:
        return sorted(_with_base(grant.scopes) or ALL_SCOPES)

    def _signed(self, app: OAuthApp, access: _AccessToken, expires_in: int) -> dict[str, Any]:
        # SignedAccessToken (SPEC v3): every field is required; the emulator's values are
        # placeholders [INF] except ids, scopes and expiry.
        return {
            "appId": app.app_id,
            "appInstallId": 0,
            "audience": "",
            "expiresAt": int((self.clock() + expires_in) * 1000),
            "hubId": self.portal_id,
            "hublet": "na1",
            "installingUserId": access.grant.user_id,
            "isPrivateDistribution": app.private_distribution,
            "isServiceAccount": False,
            "isUserLevel": False,
            "newSignature": "",
            "scopeToScopeGroupPks": "",
            "scopes": "",
            "signature": "",
            "trialScopeToScopeGroupPks": "",
            "trialScopes": "",
            "userId": access.grant.user_id,
        }

    def expire_access_tokens(self) -> None:
        """Makes every issued access token expired now (tests of the refresh path)."""
        now = self.clock()
        for access in self._access.values():
            access.expires_at = min(access.expires_at, now)


def _with_base(scopes: frozenset[str] | None) -> frozenset[str] | None:
    return None if scopes is None else scopes | {BASE_SCOPE}


def _redirect_allowed(app: OAuthApp, redirect_uri: str) -> bool:
    if app.redirect_uris:
        return redirect_uri in app.redirect_uris
    # [INF] an app without registered URLs accepts http://localhost redirects (the
    # documented local-development form; IP addresses are not supported, §1).
    parts = urlsplit(redirect_uri)
    return parts.scheme == "http" and parts.hostname == "localhost"


def _with_query(url: str, **params: str | None) -> str:
    query = urlencode({k: v for k, v in params.items() if v is not None})
    return f"{url}{'&' if urlsplit(url).query else '?'}{query}"
