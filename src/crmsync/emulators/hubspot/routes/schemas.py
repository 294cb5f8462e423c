"""Custom object schemas: `/crm/v3/schemas` and `/crm-object-schemas/v3/schemas` (the path the
official SDK calls). The emulator has no custom objects, so the honest answer is an empty list
and 404 for any one schema."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from ..errors import not_found
from .wire import json_response


async def list_schemas(request: Request) -> Response:
    return json_response({"results": []})


async def get_schema(request: Request) -> Response:
    raise not_found(f"Unable to find object type {request.path_params['object_type']}")
