"""HubSpot's OAuth authorization-code flow, the parts that talk to HubSpot
(hubspot-onboarding.md §1): the authorize URL, reading the redirect, exchanging the code.

- The authorize URL carries `client_id`, `redirect_uri`, `scope` (space-separated, sent as
  `%20`) and `state`; `redirect_uri` must match a URL registered in the app's settings.
- HubSpot redirects to `redirect_uri` with `code` and our `state`, or with `error` and
  `error_description`. The code is single-use and short-lived.
- The code is exchanged at `POST /oauth/v3/token` (form-encoded, credentials never in the URL)
  for `access_token`, `refresh_token`, `expires_in` and optionally `hub_id` and `scopes`.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from urllib.parse import parse_qs, quote, urlencode, urlsplit

import httpx
import msgspec

from crmsync.config.secrets import Secret

TOKEN_PATH = "/oauth/v3/token"
# A token answer is a few hundred bytes; anything past this is not one.
MAX_ANSWER_BYTES = 64 * 1024


class AuthorizationError(Exception):
    """The authorization did not give a usable code; the message says why and what to do.
    `final`: HubSpot refused (trying again needs a new attempt); else only this redirect is
    not usable (somebody else's, or cut short) and the right one may still come."""

    def __init__(self, message: str, *, final: bool = True) -> None:
        super().__init__(message)
        self.message = message
        self.final = final


def authorize_url(authorize_endpoint: str, client_id: str, redirect_uri: str,
                  scopes: list[str], state: str) -> str:
    """The URL a person opens to install the app (scopes joined by spaces, encoded as %20)."""
    query = urlencode({"client_id": client_id, "redirect_uri": redirect_uri,
                       "scope": " ".join(scopes), "state": state}, quote_via=quote)
    sep = "&" if urlsplit(authorize_endpoint).query else "?"
    return f"{authorize_endpoint}{sep}{query}"


def code_from_redirect(query: str, state: str) -> str:
    """The authorization code of a redirect's query string, once its `state` is ours.

    Raises AuthorizationError for an error redirect (HubSpot's `error_description`), a
    missing or different `state` (compared in constant time: it guards against a redirect
    forged by somebody else), or no code.
    """
    params = {k: v[-1] for k, v in parse_qs(query, keep_blank_values=True).items()}
    if "error" in params:
        described = params.get("error_description") or params["error"]
        raise AuthorizationError(f"HubSpot refused the authorization ({params['error']}): "
                                 f"{described}")
    got = params.get("state")
    if got is None or not hmac.compare_digest(got.encode(), state.encode()):
        raise AuthorizationError("the redirect's state does not match this attempt: open the "
                                 "URL printed by this run of `crmsync connect hubspot`",
                                 final=False)
    code = params.get("code")
    if not code:
        raise AuthorizationError("the redirect carries no authorization code", final=False)
    return code


def query_of(pasted: str) -> str:
    """The query string of what a person pasted: the whole address from the browser, or just
    its `?code=…&state=…` part."""
    text = pasted.strip()
    if "?" in text:
        return urlsplit(text).query
    return text


@dataclass(frozen=True)
class TokenGrant:
    refresh_token: str
    access_token: str
    expires_in: float
    hub_id: int | None
    scopes: list[str] | None


class _Answer(msgspec.Struct):
    access_token: str
    refresh_token: str
    expires_in: float = 1800.0
    hub_id: int | None = None
    scopes: list[str] | None = None


class _Error(msgspec.Struct):
    error: str | None = None
    error_description: str | None = None
    status: str | None = None
    message: str | None = None


async def exchange_code(client: httpx.AsyncClient, base_url: str, *, client_id: str,
                        client_secret: Secret, code: str, redirect_uri: str) -> TokenGrant:
    """Exchange an authorization code at `{base_url}/oauth/v3/token`.

    `client` carries the timeouts (the caller bounds the whole call too). Raises
    AuthorizationError with HubSpot's reason when it refuses, httpx errors when it cannot be
    reached.
    """
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri,
            "client_id": client_id, "client_secret": client_secret.reveal()}
    url = base_url.rstrip("/") + TOKEN_PATH
    async with client.stream("POST", url, data=form,
                             headers={"Accept": "application/json"}) as response:
        body = b""
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) > MAX_ANSWER_BYTES:
                raise AuthorizationError(f"HubSpot's token answer is larger than "
                                         f"{MAX_ANSWER_BYTES} bytes: is {base_url} HubSpot?")
    if response.status_code != 200:
        try:
            err = msgspec.json.decode(body, type=_Error)
            reason = " ".join(x for x in (err.error or err.status,
                                          err.error_description or err.message) if x)
        except msgspec.DecodeError:
            reason = body[:200].decode("utf-8", "replace")
        raise AuthorizationError(f"HubSpot refused the code ({response.status_code}): "
                                 f"{reason or 'no details'} — check client_id, the client "
                                 "secret and that redirect_uri is registered for the app, then "
                                 "connect again (a code works once, for a few minutes)")
    try:
        answer = msgspec.json.decode(body, type=_Answer)
    except msgspec.DecodeError as exc:
        raise AuthorizationError(f"HubSpot's token answer is not readable: {exc}") from None
    return TokenGrant(answer.refresh_token, answer.access_token, answer.expires_in,
                      answer.hub_id, answer.scopes)
