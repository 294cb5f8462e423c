"""What a credential may do and which account it belongs to, the account's owners, and
creating properties (hubspot-onboarding.md §2, §4, §5). Every call goes through `HubSpotHttp`
(the account's rate budget, deadlines, retries).

- A static credential (service key, project app static token, legacy private-app token):
  `POST /oauth/v2/private-apps/get/access-token-info` `{"tokenKey": …}` answers `hubId` and
  `scopes` [S: not in the public spec; whether it answers for service keys and static tokens
  is unverified, open item 5]. When it does not, `GET /account-info/v3/details` still names
  the account and the scopes stay unknown.
- An OAuth access token: the token answer's optional `hub_id` and `scopes`, else
  `POST /oauth/v3/token/introspect` (form: client_id, client_secret, token).
- Owners: `GET /crm/v3/owners` pages (`limit` at most 500 [S], `after`), live owners only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from crmsync.config.secrets import Secret
from crmsync.connectors.hubspot.http import HubSpotHttp
from crmsync.connectors.retry import HttpFailure

OWNERS_PAGE = 500
# A bound on the pages read: 100 pages of 500 owners is more users than any account has.
MAX_OWNER_PAGES = 100


@dataclass(frozen=True)
class TokenInfo:
    hub_id: int | None
    scopes: tuple[str, ...] | None  # None: HubSpot did not say
    app_id: int | None = None


@dataclass(frozen=True)
class AccountDetails:
    portal_id: int | None
    account_type: str
    time_zone: str
    data_hosting: str


@dataclass(frozen=True)
class Owner:
    id: str
    email: str  # lowercased; "" when the owner has none (a queue)


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _scopes(value: Any) -> tuple[str, ...] | None:
    if isinstance(value, list):
        return tuple(str(s) for s in value)
    return None


async def static_token_info(http: HubSpotHttp, token: Secret) -> TokenInfo | None:
    """The account and scopes of a static credential; None when HubSpot does not say (404:
    the call does not know this kind of credential)."""
    try:
        body = await http.json("POST", "/oauth/v2/private-apps/get/access-token-info",
                               json={"tokenKey": token.reveal()})
    except HttpFailure as exc:
        if exc.status in (400, 404):
            return None
        raise
    if not isinstance(body, dict):
        return None
    return TokenInfo(_int(body.get("hubId")), _scopes(body.get("scopes")),
                     _int(body.get("appId")))


async def introspect(http: HubSpotHttp, *, client_id: str, client_secret: Secret,
                     token: str) -> TokenInfo | None:
    """An OAuth access token's account and scopes (None: HubSpot says it is not active)."""
    body = await http.json("POST", "/oauth/v3/token/introspect", form={
        "client_id": client_id, "client_secret": client_secret.reveal(), "token": token,
        "token_type_hint": "access_token"})
    if not isinstance(body, dict) or not body.get("active"):
        return None
    return TokenInfo(_int(body.get("hub_id")), _scopes(body.get("scopes")),
                     _int(body.get("app_id")))


async def account_details(http: HubSpotHttp) -> AccountDetails:
    """`GET /account-info/v3/details` (scope `oauth`)."""
    body = await http.json("GET", "/account-info/v3/details")
    body = body if isinstance(body, dict) else {}
    return AccountDetails(_int(body.get("portalId")), str(body.get("accountType") or ""),
                          str(body.get("timeZone") or ""),
                          str(body.get("dataHostingLocation") or ""))


def _owner(raw: Mapping[str, Any]) -> Owner:
    return Owner(str(raw.get("id")), str(raw.get("email") or "").strip().lower())


async def owners_page(http: HubSpotHttp, after: str | None = None,
                      limit: int = OWNERS_PAGE) -> tuple[list[Owner], str | None]:
    """One page of live owners and the cursor of the next (None: the last page)."""
    params: dict[str, str | int] = {"limit": limit}
    if after:
        params["after"] = after
    body = await http.json("GET", "/crm/v3/owners", params=params)
    results = body.get("results") if isinstance(body, dict) else None
    owners = [_owner(o) for o in results or [] if isinstance(o, dict) and o.get("id")]
    nxt = ((body.get("paging") or {}).get("next") or {}).get("after")
    return owners, (str(nxt) if nxt else None)


async def list_owners(http: HubSpotHttp) -> list[Owner]:
    """Every live owner of the account."""
    out: list[Owner] = []
    after: str | None = None
    for _ in range(MAX_OWNER_PAGES):
        page, after = await owners_page(http, after)
        out.extend(page)
        if after is None:
            break
    return out


async def create_property(http: HubSpotHttp, object_name: str,
                          definition: Mapping[str, Any]) -> None:
    """`POST /crm/v3/properties/{object}` (201). A property that exists already is no error:
    HubSpot answers 409 (documented for the legacy API; the v3 status is unverified, open item
    9, so a 400 saying it exists counts too)."""
    try:
        await http.request("POST", f"/crm/v3/properties/{object_name}", json=dict(definition),
                           idempotent=False)
    except HttpFailure as exc:
        if exc.status == 409 or (exc.status == 400 and "already exists" in exc.message):
            return
        raise
