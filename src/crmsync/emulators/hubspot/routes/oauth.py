"""OAuth 2 (hubspot-onboarding.md §1–§2): the authorize page, the v1 / v3 token endpoints,
token metadata, introspection and revocation, the private-app token info call, and the account
details (`/account-info/v3/details`)."""

from __future__ import annotations

from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from ..errors import ApiError
from ..oauth import AuthorizeError, OAuthError
from .wire import emulator, json_response, no_content, read_json


async def _form(request: Request) -> dict[str, str]:
    # Form-encoded (hubspot-onboarding.md §1); parsed here so the emulator needs no multipart
    # package. The last value of a repeated field wins.
    return {
        k: v[-1]
        for k, v in parse_qs((await request.body()).decode(), keep_blank_values=True).items()
    }


async def authorize(request: Request) -> Response:
    """`GET /oauth/authorize` (or `/oauth/{accountId}/authorize`): the emulator's consent page
    consents at once and redirects to `redirect_uri` with `code` and `state`."""
    emu = emulator(request)
    account = request.path_params.get("account_id")
    if account is not None and account != str(emu.portal_id):
        return _error_page(f"account {account} is not this account ({emu.portal_id})")
    try:
        target = emu.auth.authorize(dict(request.query_params))
    except AuthorizeError as err:
        return _error_page(str(err))
    return RedirectResponse(target, status_code=302)


def _error_page(message: str) -> Response:
    # [INF] a request that cannot be sent back to the app gets an error page, not a redirect.
    return HTMLResponse(f"<h1>Authorization failed</h1><p>{message}</p>", status_code=400)


async def token(request: Request) -> Response:
    """`POST /oauth/v1/token`, `/oauth/v3/token`, `/oauth/2026-03/token`."""
    emu = emulator(request)
    form = await _form(request)
    if request.url.path.startswith("/oauth/v1/"):
        # The v1 spec also takes client_secret and refresh_token as query parameters; v3 takes
        # the form body only (hubspot-onboarding.md §1).
        for name in ("client_secret", "refresh_token"):
            if name not in form and name in request.query_params:
                form[name] = request.query_params[name]
    try:
        return json_response(emu.auth.token(form))
    except OAuthError as err:
        return json_response(err.body(emu.correlation_id()), 400)


def _token_not_found(request: Request) -> Response:
    emu = emulator(request)
    error = ApiError(404, "OBJECT_NOT_FOUND", "Token not found")
    return json_response(error.body(emu.correlation_id()), 404)


async def access_token_info(request: Request) -> Response:
    info = emulator(request).auth.access_token_info(request.path_params["token"])
    return json_response(info) if info is not None else _token_not_found(request)


async def refresh_token_info(request: Request) -> Response:
    info = emulator(request).auth.refresh_token_info(request.path_params["token"])
    return json_response(info) if info is not None else _token_not_found(request)


async def delete_refresh_token(request: Request) -> Response:
    if not emulator(request).auth.delete_refresh_token(request.path_params["token"]):
        return _token_not_found(request)
    return no_content()


async def introspect(request: Request) -> Response:
    emu = emulator(request)
    try:
        return json_response(emu.auth.introspect(await _form(request)))
    except OAuthError as err:
        return json_response(err.body(emu.correlation_id()), 400)


async def revoke(request: Request) -> Response:
    emu = emulator(request)
    try:
        emu.auth.revoke(await _form(request))
    except OAuthError as err:
        return json_response(err.body(emu.correlation_id()), 400)
    # The spec lists no success status: [INF] 204, as the v1 DELETE.
    return no_content()


async def private_app_token_info(request: Request) -> Response:
    """`POST /oauth/v2/private-apps/get/access-token-info` `{"tokenKey": …}`."""
    emu = emulator(request)
    body = await read_json(request)
    key = body.get("tokenKey") if isinstance(body, dict) else None
    info = emu.auth.static_token_info(key) if isinstance(key, str) else None
    return json_response(info) if info is not None else _token_not_found(request)


async def account_details(request: Request) -> Response:
    """PortalInformationResponse (hubspot-onboarding.md §2; SPEC accountInfo.json)."""
    emu = emulator(request)
    return json_response(
        {
            "portalId": emu.portal_id,
            "accountType": "STANDARD",
            "timeZone": "UTC",
            "companyCurrency": "USD",
            "additionalCurrencies": [],
            "utcOffset": "+00:00",
            "utcOffsetMilliseconds": 0,
            "uiDomain": "app.hubspot.com",
            "dataHostingLocation": "na1",
        }
    )
