"""`/crm/v3/objects/{type}`: list, get, create, update, archive, the batch endpoints and search
(fact sheet §1–§2)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from .. import search as search_engine
from ..associations import TYPES_BY_ID
from ..errors import ApiError, validation_error
from ..objects import ObjectType, resolve
from ..state import CrmState, PreparedCreate, StoredRecord
from .wire import (
    batch_response,
    emulator,
    inputs_of,
    json_response,
    no_content,
    query_bool,
    query_int,
    query_list,
    read_json,
)

MAX_LIST_LIMIT = 100


def read_names(obj: ObjectType, requested: list[str] | None, *, search: bool = False) -> list[str]:
    """The properties a read returns: the asked ones (unknown names are silently ignored by
    the caller's lookup) or the object's defaults, plus the system properties."""
    base = (
        list(requested) if requested else list(obj.search_defaults if search else obj.list_defaults)
    )
    return base + [p for p in obj.system_properties if p not in base]


# Associations of one type on a v3 object read, per record: HubSpot returns the first 100
# and `paging.next` for the rest (its October 2020 change "to how v3 CRM APIs return
# association data", quoted in HubSpot/hubspot-api-nodejs#29; a live answer with the cursor
# and a link per record in HubSpot/hubspot-api-python#135).
ASSOCIATIONS_PER_TYPE = 100


def with_associations(
    state: CrmState,
    obj: ObjectType,
    rec: StoredRecord,
    to_types: list[str] | None,
    body: dict[str, Any],
    base_url: str = "",
) -> dict[str, Any]:
    """Adds `associations: {companies: {results: [{id, type}], paging?}}` for
    `?associations=` (SimplePublicObjectWithAssociations); object types without any
    association are left out (DOC-OBJ). Past ASSOCIATIONS_PER_TYPE results, `paging.next`
    holds the cursor (the next partner's id) and a link to the record's association list
    from there (the emulator links its v4 list, which it serves)."""
    if not to_types:
        return body
    # HubSpot names line items "line items" (a space) among a record's associations, where
    # the object type is `line_items` everywhere else: public clients of the real API read
    # `associations["line items"]` from deals (e.g. GitHub code reading
    # existing_deal['associations']['line items']['results']).
    out: dict[str, Any] = {}
    for name in to_types:
        to_type = resolve(name)
        if to_type is None:
            continue
        targets = state.associations.targets(obj, rec.id, to_type)
        results = [
            {"id": str(to_id), "type": TYPES_BY_ID[t].v3_name}
            for to_id, types in targets.items()
            for t in sorted(types)
        ]
        if len(results) > ASSOCIATIONS_PER_TYPE:
            after = results[ASSOCIATIONS_PER_TYPE]["id"]
            link = (f"{base_url}/crm/v4/objects/{obj.name}/{rec.id}/associations/"
                    f"{to_type.name}?after={after}")
            out[_key(to_type.name)] = {"results": results[:ASSOCIATIONS_PER_TYPE],
                                       "paging": {"next": {"after": after, "link": link}}}
        elif results:
            out[_key(to_type.name)] = {"results": results}
    if out:
        body["associations"] = out
    return body


def _key(type_name: str) -> str:
    """An object type's key among a record's associations (see `with_associations`)."""
    return type_name.replace("_", " ") if type_name == "line_items" else type_name


def _base(request: Request) -> str:
    return f"{request.url.scheme}://{request.url.netloc}"


async def list_objects(request: Request) -> Response:
    emu = emulator(request)
    obj = emu.state.object_type(request.path_params["object_type"])
    limit = query_int(request, "limit", 10)
    if not 0 < limit <= MAX_LIST_LIMIT:
        raise validation_error(f"limit must be between 1 and {MAX_LIST_LIMIT}", limit=[str(limit)])
    after_raw = request.query_params.get("after")
    try:
        after = int(after_raw) if after_raw else 0
    except ValueError as exc:
        raise validation_error(f"Invalid after cursor: {after_raw}") from exc
    records, next_id = emu.state.page(obj, after, limit, archived=query_bool(request, "archived"))
    names = read_names(obj, query_list(request, "properties"))
    history = query_list(request, "propertiesWithHistory")
    to_types = query_list(request, "associations")
    body: dict[str, Any] = {
        "results": [
            with_associations(emu.state, obj, r, to_types, r.to_json(names, history),
                              _base(request))
            for r in records
        ]
    }
    if next_id is not None:
        link = request.url.include_query_params(after=str(next_id))
        body["paging"] = {"next": {"after": str(next_id), "link": str(link)}}
    return json_response(body)


def _find_or_404(
    state: CrmState, obj: ObjectType, key: str, id_property: str | None, *, archived: bool = False
) -> StoredRecord:
    rec = state.find(obj, key, id_property, archived=archived)
    if rec is None:
        raise ApiError(404, "OBJECT_NOT_FOUND", "resource not found")
    return rec


async def get_object(request: Request) -> Response:
    emu = emulator(request)
    obj = emu.state.object_type(request.path_params["object_type"])
    rec = _find_or_404(
        emu.state,
        obj,
        request.path_params["object_id"],
        request.query_params.get("idProperty"),
        archived=query_bool(request, "archived"),
    )
    names = read_names(obj, query_list(request, "properties"))
    history = query_list(request, "propertiesWithHistory")
    return json_response(
        with_associations(
            emu.state, obj, rec, query_list(request, "associations"),
            rec.to_json(names, history), _base(request)
        )
    )


async def create_object(request: Request) -> Response:
    emu = emulator(request)
    obj = emu.state.object_type(request.path_params["object_type"])
    body = await read_json(request)
    if not isinstance(body, dict):
        raise validation_error("Invalid input JSON: expected an object")
    rec = emu.state.create(obj, body.get("properties"), body.get("associations"))
    return json_response(rec.to_json(), 201)


async def update_object(request: Request) -> Response:
    emu = emulator(request)
    obj = emu.state.object_type(request.path_params["object_type"])
    body = await read_json(request)
    if not isinstance(body, dict):
        raise validation_error("Invalid input JSON: expected an object")
    rec = _find_or_404(
        emu.state, obj, request.path_params["object_id"], request.query_params.get("idProperty")
    )
    emu.state.update(obj, rec, body.get("properties"))
    return json_response(rec.to_json())


async def archive_object(request: Request) -> Response:
    emu = emulator(request)
    obj = emu.state.object_type(request.path_params["object_type"])
    rec = emu.state.by_id(obj, request.path_params["object_id"])
    # Archiving a record that does not exist is still a 204 (n8n-io/n8n#3219 observed it).
    if rec is not None:
        emu.state.archive(obj, rec)
    return no_content()


# --- batch ---


async def batch(request: Request) -> Response:
    emu = emulator(request)
    obj = emu.state.object_type(request.path_params["object_type"])
    op = request.path_params["operation"]
    handler = _BATCH.get(op)
    if handler is None:
        raise ApiError(404, "OBJECT_NOT_FOUND", f"Unknown batch operation {op}")
    body = await read_json(request)
    return handler(request, obj, body)


def _batch_read(request: Request, obj: ObjectType, body: Any) -> Response:
    emu = emulator(request)
    started = emu.state.now_ms()
    inputs = inputs_of(body)
    id_property = body.get("idProperty")
    archived = query_bool(request, "archived")
    names = read_names(obj, body.get("properties") or None)
    history = body.get("propertiesWithHistory") or None
    if history is not None and (not isinstance(history, list)
                                or not all(isinstance(h, str) for h in history)):
        raise validation_error("propertiesWithHistory must be a list of property names")
    results: list[dict[str, Any]] = []
    missing: list[str] = []
    seen: set[int] = set()
    for item in inputs:
        key = str(item.get("id", "")) if isinstance(item, dict) else ""
        rec = emu.state.find(obj, key, id_property, archived=archived)
        if rec is None:
            missing.append(key)
        elif rec.id not in seen:
            seen.add(rec.id)
            results.append(rec.to_json(names, history))
    errors = []
    if missing:
        errors.append(
            ApiError(
                404,
                "OBJECT_NOT_FOUND",
                f"Could not get some {obj.singular.upper()} objects, they may be deleted or not exist. "
                "Check that ids are valid.",
            ).standard_error({"ids": missing})
        )
    return batch_response(emu, started, results, errors)


def _batch_create(request: Request, obj: ObjectType, body: Any) -> Response:
    emu = emulator(request)
    state = emu.state
    started = state.now_ms()
    inputs = inputs_of(body)
    trace_ids = [i.get("objectWriteTraceId") if isinstance(i, dict) else None for i in inputs]
    # Multi-status (207) on batch create is turned on by giving every input a unique
    # objectWriteTraceId (DOC-OBJ "Multi-status errors for batch create requests"); without
    # it the first invalid input fails the whole request.
    multi_status = (
        bool(inputs) and all(trace_ids) and len(set(map(str, trace_ids))) == len(trace_ids)
    )
    prepared: list[tuple[int, PreparedCreate]] = []
    errors: list[dict[str, Any]] = []
    for index, item in enumerate(inputs):
        try:
            if not isinstance(item, dict):
                raise validation_error("Each input must be an object")
            if multi_status and emu.injector.fail_batch_item():
                raise _injected_failure()
            prepared.append(
                (index, state.prepare_create(obj, item.get("properties"), item.get("associations")))
            )
        except ApiError as err:
            if not multi_status:
                raise
            errors.append(err.standard_error({"objectWriteTraceId": [str(trace_ids[index])]}))
    _check_batch_unique(state, obj, [p for _, p in prepared])
    results = []
    for index, p in prepared:
        rec = state.commit_create(p, source="INTEGRATION")
        out = rec.to_json()
        if trace_ids[index]:
            out["objectWriteTraceId"] = str(trace_ids[index])
        results.append(out)
    return batch_response(emu, started, results, errors, ok_status=201)


def _check_batch_unique(state: CrmState, obj: ObjectType, prepared: list[PreparedCreate]) -> None:
    """A unique value already taken fails the whole batch with one 409 naming the first
    conflict (hubspot-api-python#51); the same value twice in one batch fails it too [INF]."""
    seen: dict[tuple[str, str], int] = {}
    for p in prepared:
        state.check_unique(obj, p.values, None)
        for name in state.unique_names(obj):
            value = p.values.get(name)
            if not value:
                continue
            key = (name, value.lower() if name == "email" else value)
            if key in seen:
                raise validation_error(
                    f"Duplicate values for unique property {name} in batch input: [{value}]",
                    propertyName=[name],
                )
            seen[key] = 1


def _injected_failure() -> ApiError:
    # A transient server-side failure of one input: the input was not applied, a retry may
    # succeed.
    return ApiError(500, "INTERNAL_ERROR", "An internal error occurred while processing this input")


def _duplicate_ids(inputs: list[Any]) -> None:
    keys = [str(i.get("id")) for i in inputs if isinstance(i, dict)]
    dupes = sorted({k for k in keys if keys.count(k) > 1})
    if dupes:
        raise validation_error(
            f"Duplicate IDs found in batch input: [{', '.join(dupes)}]", ids=dupes
        )


def _input_context(item: Any) -> dict[str, list[str]]:
    context = {"ids": [str(item.get("id"))]} if isinstance(item, dict) else {}
    if isinstance(item, dict) and item.get("objectWriteTraceId"):
        context["objectWriteTraceId"] = [str(item["objectWriteTraceId"])]
    return context


def _batch_update(request: Request, obj: ObjectType, body: Any) -> Response:
    emu = emulator(request)
    state = emu.state
    started = state.now_ms()
    inputs = inputs_of(body)
    _duplicate_ids(inputs)
    results: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    for item in inputs:
        try:
            if not isinstance(item, dict) or "id" not in item:
                raise validation_error("Each input needs an id")
            rec = state.find(obj, str(item["id"]), item.get("idProperty"))
            if rec is None:
                raise ApiError(
                    404, "OBJECT_NOT_FOUND", f"Could not find {obj.singular} {item['id']}"
                )
            if emu.injector.fail_batch_item():
                raise _injected_failure()
            state.update(obj, rec, item.get("properties"))
            out = rec.to_json()
            if item.get("objectWriteTraceId"):
                out["objectWriteTraceId"] = str(item["objectWriteTraceId"])
            results.append(out)
        except ApiError as err:
            errors.append(err.standard_error(_input_context(item)))
    return batch_response(emu, started, results, errors)


def _batch_upsert(request: Request, obj: ObjectType, body: Any) -> Response:
    emu = emulator(request)
    state = emu.state
    started = state.now_ms()
    inputs = inputs_of(body)
    _duplicate_ids(inputs)
    plans: list[tuple[Any, StoredRecord | None, str]] = []
    for item in inputs:
        if not isinstance(item, dict) or "id" not in item:
            raise validation_error("Each input needs an id")
        id_property = state.check_id_property(obj, item.get("idProperty"))
        if id_property is None:
            raise validation_error(
                "Upsert needs an idProperty naming a unique property", idProperty=["hs_object_id"]
            )
        plans.append((item, state.find(obj, str(item["id"]), id_property), id_property))

    if any(p[2] == "email" for p in plans):
        # Partial upserts are not supported with idProperty=email (fact sheet §1.3): check
        # everything first and fail the whole request.
        for item, rec, id_property in plans:
            props = {**(item.get("properties") or {}), id_property: str(item["id"])}
            if rec is None:
                state.prepare_create(obj, props)
            else:
                state.validate_values(obj, item.get("properties"), rec)

    results: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    for item, rec, id_property in plans:
        try:
            if emu.injector.fail_batch_item():
                raise _injected_failure()
            if rec is None:
                props = {**(item.get("properties") or {}), id_property: str(item["id"])}
                rec, created = state.create(obj, props), True
            else:
                state.update(obj, rec, item.get("properties"))
                created = False
            results.append({**rec.to_json(), "new": created})
        except ApiError as err:
            errors.append(err.standard_error(_input_context(item)))
    return batch_response(emu, started, results, errors)


def _batch_archive(request: Request, obj: ObjectType, body: Any) -> Response:
    emu = emulator(request)
    for item in inputs_of(body):
        rec = emu.state.by_id(obj, str(item.get("id", ""))) if isinstance(item, dict) else None
        if rec is not None:
            emu.state.archive(obj, rec)
    return no_content()


_BATCH = {
    "read": _batch_read,
    "create": _batch_create,
    "update": _batch_update,
    "upsert": _batch_upsert,
    "archive": _batch_archive,
}


# --- search ---


async def search(request: Request) -> Response:
    emu = emulator(request)
    obj = emu.state.object_type(request.path_params["object_type"])
    raw = await request.body()
    if len(raw.decode("utf-8", errors="replace")) > search_engine.MAX_BODY_CHARS:
        raise validation_error(
            f"The request body is longer than {search_engine.MAX_BODY_CHARS} characters"
        )
    req = search_engine.parse_request(await read_json(request))
    total, page = search_engine.run(emu.state, obj, req)
    names = read_names(obj, list(req.properties) if req.properties else None, search=True)
    body: dict[str, Any] = {"total": total, "results": [r.to_json(names) for r in page]}
    if req.after + req.limit < total:
        body["paging"] = {"next": {"after": str(req.after + req.limit)}}
    return json_response(body)
