"""`/personFields`, `/organizationFields`, `/dealFields` and their options [PD-spec-v2]."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from ..errors import bad_request
from ..fields import OPTIONAL_PARTS
from ..paging import offset_page
from .objects import Handler
from .wire import emulator, ok, read_json

ENTITY_OF = {
    "personFields": "persons",
    "organizationFields": "organizations",
    "dealFields": "deals",
}


def _include(request: Request) -> frozenset[str]:
    raw = request.query_params.get("include_fields")
    if raw is None:
        return frozenset()
    parts = frozenset(p.strip() for p in raw.split(",") if p.strip())
    if not parts or parts - set(OPTIONAL_PARTS):
        raise bad_request(f"include_fields must name some of {', '.join(OPTIONAL_PARTS)}")
    return parts


def list_fields(entity: str) -> Handler:
    async def handler(request: Request) -> Response:
        registry = emulator(request).state.registry(entity)
        include = _include(request)
        every = list(registry.fields.values())
        start, end, next_cursor = offset_page(len(every), request.query_params)
        return ok([f.to_json(include) for f in every[start:end]], next_cursor=next_cursor)

    return handler


def get_field(entity: str) -> Handler:
    async def handler(request: Request) -> Response:
        registry = emulator(request).state.registry(entity)
        fdef = registry.get(request.path_params["field_code"])
        return ok(fdef.to_json(_include(request)))

    return handler


def add_field(entity: str) -> Handler:
    async def handler(request: Request) -> Response:
        registry = emulator(request).state.registry(entity)
        fdef = registry.add(await read_json(request))
        return ok(fdef.to_json(frozenset(OPTIONAL_PARTS)))

    return handler


def update_field(entity: str) -> Handler:
    async def handler(request: Request) -> Response:
        registry = emulator(request).state.registry(entity)
        body = await read_json(request)
        fdef = registry.update(request.path_params["field_code"], body)
        return ok(fdef.to_json(frozenset(OPTIONAL_PARTS)))

    return handler


def delete_field(entity: str) -> Handler:
    async def handler(request: Request) -> Response:
        acct = emulator(request).state
        fdef = acct.registry(entity).get(request.path_params["field_code"])
        acct.delete_field(entity, fdef.code)
        return ok(fdef.to_json())

    return handler


def add_options(entity: str) -> Handler:
    async def handler(request: Request) -> Response:
        registry = emulator(request).state.registry(entity)
        body = await read_json(request)
        fdef = registry.add_options(request.path_params["field_code"], body)
        return ok([dict(o) for o in fdef.options or ()])

    return handler


def update_options(entity: str) -> Handler:
    async def handler(request: Request) -> Response:
        registry = emulator(request).state.registry(entity)
        body = await read_json(request)
        fdef = registry.update_options(request.path_params["field_code"], body)
        return ok([dict(o) for o in fdef.options or ()])

    return handler


def delete_options(entity: str) -> Handler:
    async def handler(request: Request) -> Response:
        acct = emulator(request).state
        code = request.path_params["field_code"]
        acct.delete_options(entity, code, await read_json(request))
        return ok([dict(o) for o in acct.registry(entity).get(code).options or ()])

    return handler
