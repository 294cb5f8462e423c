"""`/crm/v3/properties/{objectType}` (fact sheet §7)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from ..errors import ApiError
from .wire import emulator, json_response, no_content, query_list, read_json


async def list_properties(request: Request) -> Response:
    emu = emulator(request)
    obj = emu.state.object_type(request.path_params["object_type"])
    registry = emu.state.registry
    wanted = query_list(request, "properties")
    props = [p for p in registry.all(obj) if wanted is None or p.name in wanted]
    return json_response({"results": [registry.to_json(obj, p) for p in props]})


async def get_property(request: Request) -> Response:
    emu = emulator(request)
    obj = emu.state.object_type(request.path_params["object_type"])
    name = request.path_params["name"]
    prop = emu.state.registry.get(obj, name)
    if prop is None:
        raise ApiError(404, "OBJECT_NOT_FOUND", f"Unable to find property {name}")
    return json_response(emu.state.registry.to_json(obj, prop))


async def create_property(request: Request) -> Response:
    emu = emulator(request)
    obj = emu.state.object_type(request.path_params["object_type"])
    prop = emu.state.registry.create(obj, await read_json(request), emu.state.now_ms())
    return json_response(emu.state.registry.to_json(obj, prop), 201)


async def update_property(request: Request) -> Response:
    emu = emulator(request)
    obj = emu.state.object_type(request.path_params["object_type"])
    prop = emu.state.registry.update(obj, request.path_params["name"], await read_json(request))
    return json_response(emu.state.registry.to_json(obj, prop))


async def archive_property(request: Request) -> Response:
    emu = emulator(request)
    obj = emu.state.object_type(request.path_params["object_type"])
    emu.state.registry.archive(obj, request.path_params["name"])
    return no_content()
