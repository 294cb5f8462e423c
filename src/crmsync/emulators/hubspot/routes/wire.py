"""What every handler needs of the wire: the emulator behind the request, JSON in and out,
HubSpot's list-valued query parameters and batch envelopes."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from ..errors import validation_error
from ..values import iso_from_ms

if TYPE_CHECKING:
    from ..emulator import HubSpotEmulator

MAX_BATCH_INPUTS = 100  # object batch endpoints (fact sheet §1.3)


def emulator(request: Request) -> HubSpotEmulator:
    emu: HubSpotEmulator = request.app.state.emulator
    return emu


def json_response(data: Any, status: int = 200) -> Response:
    return Response(
        msgspec.json.encode(data), status_code=status, media_type="application/json;charset=utf-8"
    )


def no_content() -> Response:
    return Response(status_code=204)


async def read_json(request: Request) -> Any:
    raw = await request.body()
    if not raw.strip():
        raise validation_error("Invalid input JSON: the request body is empty")
    try:
        return msgspec.json.decode(raw)
    except msgspec.DecodeError as exc:
        raise validation_error(f"Invalid input JSON: {exc}") from exc


def query_list(request: Request, name: str) -> list[str] | None:
    """A list parameter sent comma-separated, repeated (`style: form, explode: true`), or both."""
    raw = request.query_params.getlist(name)
    if not raw:
        return None
    return [part.strip() for item in raw for part in item.split(",") if part.strip()]


def query_bool(request: Request, name: str) -> bool:
    return request.query_params.get(name, "false").lower() == "true"


def query_int(request: Request, name: str, default: int) -> int:
    raw = request.query_params.get(name)
    if raw in (None, ""):
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise validation_error(f"{name} must be an integer, got {raw}") from exc


def inputs_of(body: Any, limit: int = MAX_BATCH_INPUTS) -> list[Any]:
    """A batch body's `inputs`, at most `limit` of them, else 400 VALIDATION_ERROR."""
    if not isinstance(body, dict) or not isinstance(body.get("inputs"), list):
        raise validation_error("Invalid input JSON: inputs must be a list")
    inputs: list[Any] = body["inputs"]
    if len(inputs) > limit:
        raise validation_error(
            f"Too many inputs: {len(inputs)} were given, the limit is {limit}",
            inputs=[str(len(inputs))],
        )
    return inputs


def batch_response(
    emu: HubSpotEmulator,
    started_ms: int,
    results: list[dict[str, Any]],
    errors: list[dict[str, Any]],
    ok_status: int = 200,
) -> Response:
    """BatchResponse (200/201) or, with errors, BatchResponse…WithErrors as 207 (fact sheet §1.2)."""
    body: dict[str, Any] = {"status": "COMPLETE", "results": results}
    if errors:
        body["numErrors"] = len(errors)
        body["errors"] = errors
    body["startedAt"] = iso_from_ms(started_ms)
    body["completedAt"] = iso_from_ms(emu.state.now_ms())
    return json_response(body, 207 if errors else ok_status)


def next_page(request: Request, after: str) -> dict[str, Any]:
    """`paging` of a list with more to read: the cursor and the absolute URL of the next page,
    as HubSpot returns them (`{next: {after, link}}`, fact sheet §1.1)."""
    link = request.url.include_query_params(after=after)
    return {"next": {"after": after, "link": str(link)}}
