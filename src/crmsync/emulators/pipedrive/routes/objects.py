"""Persons, organizations, deals, pipelines and stages: list, get, create, update, delete,
search, archived deals [PD-spec-v2]."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ..errors import bad_request
from ..paging import page, parse_bool, parse_int
from ..records import MAX_CUSTOM_FIELDS_PARAM, Record
from ..search import search
from ..state import AccountState, require_int_id
from .wire import caller, emulator, json_response, ok, read_json

Handler = Callable[[Request], Awaitable[Response]]
# Query parameters the API has but the emulator does not model: refused, never ignored.
_NOT_EMULATED = ("filter_id", "include_fields", "include_labels")


def _custom_keys(request: Request) -> frozenset[str] | None:
    raw = request.query_params.get("custom_fields")
    if raw is None:
        return None
    keys = frozenset(k.strip() for k in raw.split(",") if k.strip())
    if len(keys) > MAX_CUSTOM_FIELDS_PARAM:
        raise bad_request(f"custom_fields can name at most {MAX_CUSTOM_FIELDS_PARAM} keys")
    return keys


def _show_options(request: Request) -> dict[str, Any]:
    return {
        "option_labels": parse_bool(request.query_params, "include_option_labels"),
        "keys": _custom_keys(request),
    }


def _filtered(acct: AccountState, entity: str, request: Request, archived: bool) -> list[Record]:
    params = request.query_params
    for name in _NOT_EMULATED:
        if name in params:
            raise bad_request(f"{name} is not emulated")
    deleted_too = False
    statuses: set[str] | None = None
    if entity == "deals" and "status" in params:
        statuses = {s.strip() for s in params["status"].split(",") if s.strip()}
        if not statuses or statuses - {"open", "won", "lost", "deleted"}:
            raise bad_request("status must be a comma separated list of open, won, lost, deleted")
        # `deleted` adds deals deleted in the last 30 days [PD-spec-v2].
        deleted_too = "deleted" in statuses
    filters = {
        name: parse_int(params, name)
        for name in ("owner_id", "org_id", "person_id", "pipeline_id", "stage_id", "deal_id")
        if name in params
    }
    allowed = {
        "persons": {"owner_id", "org_id", "deal_id"},
        "organizations": {"owner_id"},
        "deals": {"owner_id", "org_id", "person_id", "pipeline_id", "stage_id"},
        "pipelines": set(),
        "stages": {"pipeline_id"},
    }[entity]
    if set(filters) - allowed:
        raise bad_request(f"unknown filters: {', '.join(sorted(set(filters) - allowed))}")
    deal_person = None
    if "deal_id" in filters:
        deal = acct.live("deals", filters.pop("deal_id") or 0)
        deal_person = deal.attrs["person_id"] if deal is not None else -1
    acct.purge(entity)
    out = []
    for rec in acct.records[entity].values():
        if rec.is_deleted and not deleted_too:
            continue
        if entity == "deals":
            if (rec.attrs["archive_ms"] is not None) != archived:
                continue  # lists leave archived deals out since 2025-07-15 [PD-archived]
            if statuses is not None:
                state = "deleted" if rec.is_deleted else rec.attrs["status"]
                if state not in statuses:
                    continue
        if any(rec.attrs.get(k) != v for k, v in filters.items()):
            continue
        if deal_person is not None and rec.id != deal_person:
            continue
        out.append(rec)
    return out


def list_handler(entity: str, *, archived: bool = False) -> Handler:
    async def handler(request: Request) -> Response:
        acct = emulator(request).state
        records = _filtered(acct, entity, request, archived)
        extra = {}
        fields: tuple[str, ...] = ("id", "update_time", "add_time")
        if entity == "stages":
            fields += ("order_nr",)
            extra = {"order_nr": lambda r: (r.attrs["order_nr"], r.id)}
        result = page(records, request.query_params, sort_fields=fields, extra_sort=extra)
        shown = _show_options(request) if acct.types[entity].has_custom_fields else {}
        return ok(
            [acct.to_json(entity, r, **shown) for r in result.items],
            next_cursor=result.next_cursor,
        )

    return handler


def get_handler(entity: str) -> Handler:
    async def handler(request: Request) -> Response:
        acct = emulator(request).state
        rec = acct.get(entity, require_int_id(request.path_params["id"]))
        shown = _show_options(request) if acct.types[entity].has_custom_fields else {}
        return ok(acct.to_json(entity, rec, **shown))

    return handler


def create_handler(entity: str) -> Handler:
    async def handler(request: Request) -> Response:
        acct = emulator(request).state
        body = await read_json(request)
        rec = acct.create(entity, body, user_id=caller(request).user_id)
        return ok(acct.to_json(entity, rec))

    return handler


def update_handler(entity: str) -> Handler:
    async def handler(request: Request) -> Response:
        acct = emulator(request).state
        record_id = require_int_id(request.path_params["id"])
        body = await read_json(request)
        rec = acct.update(entity, record_id, body, user_id=caller(request).user_id)
        return ok(acct.to_json(entity, rec))

    return handler


def delete_handler(entity: str) -> Handler:
    async def handler(request: Request) -> Response:
        acct = emulator(request).state
        record_id = require_int_id(request.path_params["id"])
        acct.delete(entity, record_id, user_id=caller(request).user_id)
        return ok({"id": record_id})

    return handler


def search_handler(entity: str) -> Handler:
    async def handler(request: Request) -> Response:
        return json_response(search(emulator(request).state, entity, request.query_params))

    return handler
