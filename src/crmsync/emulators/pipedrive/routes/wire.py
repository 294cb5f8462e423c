"""What every handler needs of the wire: the emulator and caller behind a request, JSON in,
and the `{success, data, additional_data}` envelope out [PD-resp]."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from ..auth import Caller
from ..errors import bad_request

if TYPE_CHECKING:
    from ..emulator import PipedriveEmulator

MAX_BODY_BYTES = 1 << 20  # a bounded read of every request body [INF]


def emulator(request: Request) -> PipedriveEmulator:
    emu: PipedriveEmulator = request.app.state.emulator
    return emu


def caller(request: Request) -> Caller:
    """Set by the gate once the request is authenticated."""
    who: Caller = request.scope["pipedrive.caller"]
    return who


def json_response(data: Any, status: int = 200) -> Response:
    return Response(msgspec.json.encode(data), status_code=status, media_type="application/json")


def ok(data: Any, status: int = 200, **additional: Any) -> Response:
    """The success envelope; lists carry `additional_data`, single objects do not [PD-spec-v2]."""
    body: dict[str, Any] = {"success": True, "data": data}
    if additional:
        body["additional_data"] = additional
    return json_response(body, status)


async def read_body(request: Request) -> bytes:
    """The request body, refused with 400 once it passes `MAX_BODY_BYTES` (read no further)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise bad_request("the request body is too large")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json(request: Request) -> Any:
    raw = await read_body(request)
    if not raw.strip():
        raise bad_request("the request body is empty")
    try:
        return msgspec.json.decode(raw)
    except msgspec.DecodeError as exc:
        raise bad_request(f"the request body is not valid JSON: {exc}") from exc
