"""Deal pipelines and their stages (fact sheet §6, DOC-PIPE)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .errors import ApiError, not_found, validation_error
from .properties import Option
from .values import iso_from_ms, parse_number

# Default deal pipeline [S, widely observed] (fact sheet §6).
_DEFAULT_STAGES = (
    ("appointmentscheduled", "Appointment Scheduled", "0.2"),
    ("qualifiedtobuy", "Qualified To Buy", "0.4"),
    ("presentationscheduled", "Presentation Scheduled", "0.6"),
    ("decisionmakerboughtin", "Decision Maker Bought-In", "0.8"),
    ("contractsent", "Contract Sent", "0.9"),
    ("closedwon", "Closed Won", "1.0"),
    ("closedlost", "Closed Lost", "0.0"),
)


@dataclass
class Stage:
    id: str
    label: str
    display_order: int
    metadata: dict[str, str]
    created_ms: int
    updated_ms: int

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "label": self.label,
            "displayOrder": self.display_order,
            "metadata": dict(self.metadata),
            "createdAt": iso_from_ms(self.created_ms),
            "updatedAt": iso_from_ms(self.updated_ms),
            "archived": False,
            "writePermissions": "CRM_PERMISSIONS_ENFORCEMENT",
        }


@dataclass
class Pipeline:
    id: str
    label: str
    display_order: int
    stages: list[Stage]
    created_ms: int
    updated_ms: int

    def sorted_stages(self) -> list[Stage]:
        # Equal displayOrder values sort by label (DOC-PIPE).
        return sorted(self.stages, key=lambda s: (s.display_order, s.label))

    def stage(self, stage_id: str) -> Stage | None:
        return next((s for s in self.stages if s.id == stage_id), None)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "label": self.label,
            "displayOrder": self.display_order,
            "stages": [s.to_json() for s in self.sorted_stages()],
            "createdAt": iso_from_ms(self.created_ms),
            "updatedAt": iso_from_ms(self.updated_ms),
            "archived": False,
        }


def _in_use_error(stage_ids: list[str], object_ids: list[int]) -> ApiError:
    # Shape of DOC-PIPE's "Delete a pipeline" example.
    stages = f"[{', '.join(stage_ids)}]"
    objects = f"[{', '.join(str(i) for i in object_ids)}]"
    return ApiError(
        400,
        "VALIDATION_ERROR",
        f"Stage IDs: {stages} are being referenced by object IDs: {objects}",
        context={"stageIds": [stages], "objectIds": [objects]},
        sub_category="PipelineError.STAGE_ID_IN_USE",
    )


@dataclass
class Pipelines:
    """The deal pipelines. `deals_in_stages(stage_ids)` answers which live deals use them."""

    now_ms: Callable[[], int]
    new_id: Callable[[], int]
    deals_in_stages: Callable[[set[str]], list[int]]
    _pipelines: dict[str, Pipeline] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        # Default pipelines have createdAt = epoch 0 (fact sheet §6).
        stages = [
            Stage(
                sid,
                label,
                i,
                {"probability": p, "isClosed": str(sid.startswith("closed")).lower()},
                0,
                0,
            )
            for i, (sid, label, p) in enumerate(_DEFAULT_STAGES)
        ]
        self._pipelines = {"default": Pipeline("default", "Sales Pipeline", 0, stages, 0, 0)}

    def all(self) -> list[Pipeline]:
        return sorted(self._pipelines.values(), key=lambda p: (p.display_order, p.label))

    def get(self, pipeline_id: str) -> Pipeline:
        pipeline = self._pipelines.get(pipeline_id)
        if pipeline is None:
            raise not_found(f"Unable to find pipeline {pipeline_id}")
        return pipeline

    def find(self, pipeline_id: str) -> Pipeline | None:
        return self._pipelines.get(pipeline_id)

    def pipeline_options(self) -> list[Option]:
        return [Option(p.label, p.id, i) for i, p in enumerate(self.all())]

    def stage_options(self) -> list[Option]:
        return [
            Option(f"{s.label} ({p.label})", s.id, i)
            for p in self.all()
            for i, s in enumerate(p.sorted_stages())
        ]

    # --- pipelines ---

    def create(self, body: Any) -> Pipeline:
        body = _object(body)
        label = _label(body)
        if any(p.label == label for p in self._pipelines.values()):
            raise ApiError(409, "CONFLICT", f"A pipeline with label {label} already exists")
        now = self.now_ms()
        raw_stages = body.get("stages")
        if not isinstance(raw_stages, list) or not raw_stages:
            raise validation_error("A pipeline needs at least one stage")
        pipeline = Pipeline(
            str(self.new_id()), label, int(body.get("displayOrder", 0)), [], now, now
        )
        for raw in raw_stages:
            pipeline.stages.append(self._new_stage(pipeline, raw, now))
        self._pipelines[pipeline.id] = pipeline
        return pipeline

    def update(self, pipeline_id: str, body: Any) -> Pipeline:
        pipeline = self.get(pipeline_id)
        body = _object(body)
        if "label" in body:
            pipeline.label = _label(body)
        if "displayOrder" in body:
            pipeline.display_order = int(body["displayOrder"])
        pipeline.updated_ms = self.now_ms()
        return pipeline

    def replace(self, pipeline_id: str, body: Any) -> Pipeline:
        pipeline = self.get(pipeline_id)
        body = _object(body)
        raw_stages = body.get("stages")
        if not isinstance(raw_stages, list) or not raw_stages:
            raise validation_error("A pipeline needs at least one stage")
        now = self.now_ms()
        replacement = Pipeline(
            pipeline.id,
            _label(body),
            int(body.get("displayOrder", 0)),
            [],
            pipeline.created_ms,
            now,
        )
        for raw in raw_stages:
            replacement.stages.append(self._new_stage(replacement, raw, now, keep_id=True))
        dropped = {s.id for s in pipeline.stages} - {s.id for s in replacement.stages}
        in_use = self.deals_in_stages(dropped) if dropped else []
        if in_use:
            raise _in_use_error(sorted(dropped), in_use)
        self._pipelines[pipeline.id] = replacement
        return replacement

    def delete(self, pipeline_id: str, *, validate_references: bool) -> None:
        pipeline = self.get(pipeline_id)
        if pipeline_id == "default":
            raise validation_error("The default pipeline cannot be deleted")
        # DOC-PIPE: records in the pipeline block the delete only when
        # validateReferencesBeforeDelete=true is given.
        if validate_references:
            stage_ids = {s.id for s in pipeline.stages}
            in_use = self.deals_in_stages(stage_ids)
            if in_use:
                raise _in_use_error(sorted(stage_ids), in_use)
        del self._pipelines[pipeline_id]

    # --- stages ---

    def get_stage(self, pipeline_id: str, stage_id: str) -> Stage:
        stage = self.get(pipeline_id).stage(stage_id)
        if stage is None:
            raise not_found(f"Unable to find stage {stage_id} in pipeline {pipeline_id}")
        return stage

    def create_stage(self, pipeline_id: str, body: Any) -> Stage:
        pipeline = self.get(pipeline_id)
        stage = self._new_stage(pipeline, body, self.now_ms())
        pipeline.stages.append(stage)
        pipeline.updated_ms = stage.created_ms
        return stage

    def update_stage(self, pipeline_id: str, stage_id: str, body: Any, *, replace: bool) -> Stage:
        pipeline = self.get(pipeline_id)
        stage = self.get_stage(pipeline_id, stage_id)
        body = _object(body)
        if replace or "label" in body:
            label = _label(body)
            if any(s.label == label and s is not stage for s in pipeline.stages):
                raise validation_error(f"Stage labels must be unique within a pipeline: {label}")
            stage.label = label
        if replace or "displayOrder" in body:
            stage.display_order = int(body.get("displayOrder", 0))
        if replace or "metadata" in body:
            stage.metadata = _stage_metadata(body)
        stage.updated_ms = pipeline.updated_ms = self.now_ms()
        return stage

    def delete_stage(self, pipeline_id: str, stage_id: str) -> None:
        pipeline = self.get(pipeline_id)
        stage = self.get_stage(pipeline_id, stage_id)
        in_use = self.deals_in_stages({stage_id})
        if in_use:
            raise _in_use_error([stage_id], in_use)
        pipeline.stages.remove(stage)
        pipeline.updated_ms = self.now_ms()

    def _new_stage(self, pipeline: Pipeline, raw: Any, now: int, *, keep_id: bool = False) -> Stage:
        raw = _object(raw)
        label = _label(raw)
        if any(s.label == label for s in pipeline.stages):
            raise validation_error(f"Stage labels must be unique within a pipeline: {label}")
        stage_id = str(raw["id"]) if keep_id and raw.get("id") else str(self.new_id())
        return Stage(
            stage_id, label, int(raw.get("displayOrder", 0)), _stage_metadata(raw), now, now
        )


def _object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise validation_error("Invalid input JSON: expected an object")
    return body


def _label(body: dict[str, Any]) -> str:
    label = body.get("label")
    if not isinstance(label, str) or not label.strip():
        raise validation_error("label is required")
    return label


def _stage_metadata(raw: dict[str, Any]) -> dict[str, str]:
    metadata = raw.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise validation_error("metadata must be an object")
    metadata = {str(k): str(v) for k, v in metadata.items()}
    probability = metadata.get("probability")
    # Deal stages require metadata.probability between 0.0 and 1.0 (DOC-PIPE).
    number = parse_number(probability) if probability is not None else None
    if number is None or not 0 <= number <= 1:
        raise validation_error("Deal stages require metadata.probability between 0.0 and 1.0")
    # DOC-PIPE: "0.0 being Closed Lost and 1.0 being Closed Won" — so a stage at either end is
    # closed unless told otherwise [INF].
    metadata.setdefault("isClosed", "true" if number in (0, 1) else "false")
    return metadata
