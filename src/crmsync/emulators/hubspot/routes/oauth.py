"""`POST /oauth/v1/token` (refresh grant) and token metadata (fact sheet §9)."""

from __future__ import annotations

from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import Response

from ..oauth import OAuthError
from .wire import emulator, json_response


async def token(request: Request) -> Response:
    emu = emulator(request)
    # Form-encoded (fact sheet §9); parsed here so the emulator needs no multipart package.
    fields = {
        k: v[-1]
        for k, v in parse_qs((await request.body()).decode(), keep_blank_values=True).items()
    }
    try:
        return json_response(emu.auth.refresh(fields))
    except OAuthError as err:
        return json_response(
            {"status": err.status, "message": err.message, "correlationId": emu.correlation_id()},
            400,
        )


async def access_token_info(request: Request) -> Response:
    emu = emulator(request)
    info = emu.auth.token_info(request.path_params["token"])
    if info is None:
        return json_response(
            {
                "status": "error",
                "message": "Token not found",
                "correlationId": emu.correlation_id(),
            },
            404,
        )
    return json_response(info)


async def account_details(request: Request) -> Response:
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
