"""`POST /events/v3/send`: custom behavioural event occurrences (204, no body)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from .wire import emulator, no_content, read_json


async def send_event(request: Request) -> Response:
    emulator(request).state.record_event(await read_json(request))
    return no_content()
