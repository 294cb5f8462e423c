"""`/crm/v3/pipelines/deals[...]` (fact sheet §6, DOC-PIPE)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from ..errors import validation_error
from ..objects import DEALS, resolve
from ..pipelines import Pipelines
from .wire import emulator, json_response, no_content, query_bool, read_json


def _pipelines(request: Request) -> Pipelines:
    name = request.path_params["object_type"]
    if resolve(name) is not DEALS:
        # Only deal pipelines are emulated (tickets and other pipelined objects are not).
        raise validation_error(f"Pipelines are not supported for object type {name}")
    return emulator(request).state.pipelines


async def list_pipelines(request: Request) -> Response:
    return json_response({"results": [p.to_json() for p in _pipelines(request).all()]})


async def create_pipeline(request: Request) -> Response:
    pipelines = _pipelines(request)
    return json_response(pipelines.create(await read_json(request)).to_json(), 201)


async def get_pipeline(request: Request) -> Response:
    return json_response(_pipelines(request).get(request.path_params["pipeline_id"]).to_json())


async def update_pipeline(request: Request) -> Response:
    pipelines = _pipelines(request)
    pipeline_id = request.path_params["pipeline_id"]
    body = await read_json(request)
    if request.method == "PUT":
        return json_response(pipelines.replace(pipeline_id, body).to_json())
    return json_response(pipelines.update(pipeline_id, body).to_json())


async def delete_pipeline(request: Request) -> Response:
    _pipelines(request).delete(
        request.path_params["pipeline_id"],
        validate_references=query_bool(request, "validateReferencesBeforeDelete"),
    )
    return no_content()


async def list_stages(request: Request) -> Response:
    pipeline = _pipelines(request).get(request.path_params["pipeline_id"])
    return json_response({"results": [s.to_json() for s in pipeline.sorted_stages()]})


async def create_stage(request: Request) -> Response:
    pipelines = _pipelines(request)
    stage = pipelines.create_stage(request.path_params["pipeline_id"], await read_json(request))
    return json_response(stage.to_json(), 201)


async def get_stage(request: Request) -> Response:
    stage = _pipelines(request).get_stage(
        request.path_params["pipeline_id"], request.path_params["stage_id"]
    )
    return json_response(stage.to_json())


async def update_stage(request: Request) -> Response:
    pipelines = _pipelines(request)
    stage = pipelines.update_stage(
        request.path_params["pipeline_id"],
        request.path_params["stage_id"],
        await read_json(request),
        replace=request.method == "PUT",
    )
    return json_response(stage.to_json())


async def delete_stage(request: Request) -> Response:
    _pipelines(request).delete_stage(
        request.path_params["pipeline_id"], request.path_params["stage_id"]
    )
    return no_content()


async def list_pipelines_v1(request: Request) -> Response:
    """The legacy `GET /crm-pipelines/v1/pipelines/{objectType}`. Its shape is not in the fact
    sheets [INF]: HubSpot's v1 names (`pipelineId`, `stageId`, `objectType`, `active`, epoch-ms
    dates) over the same pipelines as v3."""
    pipelines = _pipelines(request)
    return json_response(
        {
            "results": [
                {
                    "pipelineId": p.id,
                    "objectType": "DEAL",
                    "objectTypeId": "0-3",
                    "label": p.label,
                    "displayOrder": p.display_order,
                    "active": True,
                    "default": p.id == "default",
                    "createdAt": p.created_ms,
                    "updatedAt": p.updated_ms,
                    "stages": [
                        {
                            "stageId": s.id,
                            "label": s.label,
                            "displayOrder": s.display_order,
                            "metadata": dict(s.metadata),
                            "active": True,
                            "createdAt": s.created_ms,
                            "updatedAt": s.updated_ms,
                        }
                        for s in p.sorted_stages()
                    ],
                }
                for p in pipelines.all()
            ]
        }
    )
