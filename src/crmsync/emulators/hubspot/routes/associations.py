"""Associations v4: `/crm/v4/associations/{from}/{to}/batch/...` and
`/crm/v4/objects/{type}/{id}/associations/...` (fact sheet §5)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ..associations import TYPES_BY_ID, spec_json, unlabelled
from ..errors import ApiError, validation_error
from ..objects import ObjectType
from ..state import CrmState
from .wire import (
    batch_response,
    emulator,
    inputs_of,
    json_response,
    next_page,
    no_content,
    query_int,
    read_json,
)

MAX_READ_INPUTS = 1_000
MAX_CREATE_INPUTS = 2_000
MAX_LIST_LIMIT = 500


def _types(
    request: Request, from_key: str = "from_type", to_key: str = "to_type"
) -> tuple[ObjectType, ObjectType]:
    state = emulator(request).state
    return state.object_type(request.path_params[from_key]), state.object_type(
        request.path_params[to_key]
    )


def _record_id(state: CrmState, obj: ObjectType, raw: Any) -> int:
    rec = state.by_id(obj, str(raw)) if raw is not None else None
    if rec is None:
        raise ApiError(
            404,
            "OBJECT_NOT_FOUND",
            f"No {obj.singular} with id {raw} exists",
            context={"id": [str(raw)]},
        )
    return rec.id


def _default_type_id(from_type: ObjectType, to_type: ObjectType) -> int:
    default = unlabelled(from_type, to_type)
    if default is None:
        raise validation_error(
            f"{from_type.singular} records cannot be associated with {to_type.singular} records"
        )
    return default.type_id


def _labels_between(
    from_type: ObjectType, from_id: int, to_type: ObjectType, to_id: int, type_ids: set[int]
) -> dict[str, Any]:
    """LabelsBetweenObjectPair."""
    return {
        "fromObjectTypeId": from_type.type_id,
        "fromObjectId": from_id,
        "toObjectTypeId": to_type.type_id,
        "toObjectId": to_id,
        "labels": sorted({label for t in type_ids if (label := TYPES_BY_ID[t].label)}),
    }


def _specs(raw: Any) -> set[int]:
    if not isinstance(raw, list) or not raw:
        raise validation_error(
            "types must be a non-empty list of {associationCategory, associationTypeId}"
        )
    try:
        return {int(t["associationTypeId"]) for t in raw}
    except (KeyError, TypeError, ValueError) as exc:
        raise validation_error("Each type needs an associationTypeId") from exc


def _targets_json(
    state: CrmState, from_type: ObjectType, from_id: int, to_type: ObjectType
) -> list[dict[str, Any]]:
    return [
        {
            # A number in DOC-ASSOC's example, although the spec says string (fact sheet §5).
            "toObjectId": to_id,
            "associationTypes": [spec_json(TYPES_BY_ID[t]) for t in sorted(types)],
        }
        for to_id, types in state.associations.targets(from_type, from_id, to_type).items()
    ]


async def batch_create(request: Request) -> Response:
    emu = emulator(request)
    state = emu.state
    from_type, to_type = _types(request)
    started = state.now_ms()
    results: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    for item in inputs_of(await read_json(request), MAX_CREATE_INPUTS):
        try:
            from_id = _record_id(state, from_type, (item.get("from") or {}).get("id"))
            to_id = _record_id(state, to_type, (item.get("to") or {}).get("id"))
            type_ids = _specs(item.get("types"))
            state.associate(from_type, from_id, to_type, to_id, type_ids)
            results.append(_labels_between(from_type, from_id, to_type, to_id, type_ids))
        except ApiError as err:
            errors.append(err.standard_error())
    return batch_response(emu, started, results, errors, ok_status=201)


async def batch_associate_default(request: Request) -> Response:
    emu = emulator(request)
    state = emu.state
    from_type, to_type = _types(request)
    type_id = _default_type_id(from_type, to_type)
    started = state.now_ms()
    results: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    for item in inputs_of(await read_json(request), MAX_CREATE_INPUTS):
        try:
            from_id = _record_id(state, from_type, (item.get("from") or {}).get("id"))
            to_id = _record_id(state, to_type, (item.get("to") or {}).get("id"))
            state.associate(from_type, from_id, to_type, to_id, {type_id})
            results.extend(_default_results(from_type, from_id, to_type, to_id, type_id))
        except ApiError as err:
            errors.append(err.standard_error())
    return batch_response(emu, started, results, errors)


def _default_results(
    from_type: ObjectType, from_id: int, to_type: ObjectType, to_id: int, type_id: int
) -> list[dict[str, Any]]:
    """PublicDefaultAssociation for both directions of the new association."""
    return [
        {
            "from": {"id": str(a_id)},
            "to": {"id": str(b_id)},
            "associationSpec": {"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": t},
        }
        for a_id, b_id, t in (
            (from_id, to_id, type_id),
            (to_id, from_id, TYPES_BY_ID[type_id].reverse_id),
        )
    ]


async def batch_read(request: Request) -> Response:
    emu = emulator(request)
    state = emu.state
    from_type, to_type = _types(request)
    started = state.now_ms()
    results: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    for item in inputs_of(await read_json(request), MAX_READ_INPUTS):
        raw_id = str(item.get("id")) if isinstance(item, dict) else ""
        rec = state.by_id(from_type, raw_id)
        targets = _targets_json(state, from_type, rec.id, to_type) if rec else []
        if targets:
            results.append({"from": {"id": raw_id}, "to": targets})
            continue
        # A record without associations is a per-input error, so the answer is a 207 (seen
        # in public clients' notes: subCategory crm.associations.NO_ASSOCIATIONS_FOUND).
        err = ApiError(
            404,
            "OBJECT_NOT_FOUND",
            f"No {to_type.singular} is associated with {from_type.singular} {raw_id}.",
        )
        err.sub_category = "crm.associations.NO_ASSOCIATIONS_FOUND"
        errors.append(
            err.standard_error(
                {
                    "fromObjectId": [raw_id],
                    "fromObjectType": [from_type.singular],
                    "toObjectType": [to_type.singular],
                }
            )
        )
    return batch_response(emu, started, results, errors)


async def batch_archive(request: Request) -> Response:
    state = emulator(request).state
    from_type, to_type = _types(request)
    for item in inputs_of(await read_json(request), MAX_CREATE_INPUTS):
        from_rec = state.by_id(from_type, str((item.get("from") or {}).get("id")))
        if from_rec is None:
            continue
        for to in item.get("to") or []:
            to_rec = state.by_id(to_type, str(to.get("id")))
            if to_rec is not None:
                state.dissociate(from_type, from_rec.id, to_type, to_rec.id)
    return no_content()


async def batch_archive_labels(request: Request) -> Response:
    state = emulator(request).state
    from_type, to_type = _types(request)
    for item in inputs_of(await read_json(request), MAX_CREATE_INPUTS):
        from_rec = state.by_id(from_type, str((item.get("from") or {}).get("id")))
        to_rec = state.by_id(to_type, str((item.get("to") or {}).get("id")))
        if from_rec is not None and to_rec is not None:
            state.dissociate(from_type, from_rec.id, to_type, to_rec.id, _specs(item.get("types")))
    return no_content()


async def list_labels(request: Request) -> Response:
    from_type, to_type = _types(request)
    results = [
        {"category": "HUBSPOT_DEFINED", "typeId": t.type_id, "label": t.label}
        for t in TYPES_BY_ID.values()
        if t.from_type == from_type.singular and t.to_type == to_type.singular
    ]
    return json_response({"results": results})


# --- per record ---


async def put_default(request: Request) -> Response:
    emu = emulator(request)
    state = emu.state
    from_type, to_type = _types(request, "object_type", "to_type")
    started = state.now_ms()
    from_id = _record_id(state, from_type, request.path_params["object_id"])
    to_id = _record_id(state, to_type, request.path_params["to_id"])
    type_id = _default_type_id(from_type, to_type)
    state.associate(from_type, from_id, to_type, to_id, {type_id})
    return batch_response(
        emu, started, _default_results(from_type, from_id, to_type, to_id, type_id), []
    )


async def put_labelled(request: Request) -> Response:
    state = emulator(request).state
    from_type, to_type = _types(request, "object_type", "to_type")
    from_id = _record_id(state, from_type, request.path_params["object_id"])
    to_id = _record_id(state, to_type, request.path_params["to_id"])
    type_ids = _specs(await read_json(request))
    state.associate(from_type, from_id, to_type, to_id, type_ids)
    return json_response(_labels_between(from_type, from_id, to_type, to_id, type_ids), 201)


async def delete_between(request: Request) -> Response:
    state = emulator(request).state
    from_type, to_type = _types(request, "object_type", "to_type")
    from_rec = state.by_id(from_type, request.path_params["object_id"])
    to_rec = state.by_id(to_type, request.path_params["to_id"])
    if from_rec is not None and to_rec is not None:
        state.dissociate(from_type, from_rec.id, to_type, to_rec.id)
    return no_content()


async def list_for_record(request: Request) -> Response:
    state = emulator(request).state
    from_type, to_type = _types(request, "object_type", "to_type")
    from_id = _record_id(state, from_type, request.path_params["object_id"])
    limit = query_int(request, "limit", MAX_LIST_LIMIT)
    if not 0 < limit <= MAX_LIST_LIMIT:
        raise validation_error(f"limit must be between 1 and {MAX_LIST_LIMIT}")
    after = query_int(request, "after", 0)
    targets = [
        t for t in _targets_json(state, from_type, from_id, to_type) if t["toObjectId"] >= after
    ]
    body: dict[str, Any] = {"results": targets[:limit]}
    if len(targets) > limit:
        body["paging"] = next_page(request, str(targets[limit]["toObjectId"]))
    return json_response(body)
