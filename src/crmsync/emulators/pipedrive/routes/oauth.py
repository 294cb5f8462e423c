"""`POST /oauth/token`: the refresh grant (Basic client credentials, form body) [PD-spec-v1]."""

from __future__ import annotations

from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import Response

from ..auth import OAuthError
from ..errors import ApiError
from .wire import emulator, json_response, read_body


async def token(request: Request) -> Response:
    emu = emulator(request)
    try:
        raw = await read_body(request)
    except ApiError:
        return json_response({"error": "invalid_request", "error_description": "too large"}, 400)
    form = {
        k: v[-1] for k, v in parse_qs(raw.decode(errors="replace"), keep_blank_values=True).items()
    }
    # `api_domain` is where this emulator answers, so a client that adopts it (the official
    # one does [PD-node]) keeps talking to the emulator.
    api_domain = f"{request.url.scheme}://{request.url.netloc}"
    try:
        return json_response(
            emu.auth.refresh(request.headers.get("authorization"), form, api_domain)
        )
    except OAuthError as err:
        return json_response(err.body(), err.status)
