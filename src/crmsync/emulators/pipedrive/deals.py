"""Deals (API v2): a stage implies its pipeline, status open/won/lost with its times, archived
deals listed apart and not editable [PD-spec-v2][PD-archived]."""

from __future__ import annotations

from typing import Any

from .errors import bad_request
from .records import DEFAULT_VISIBLE_TO, Account, Body, EntityType, Record, custom_json, timestamps
from .values import rfc3339

_WRITABLE = frozenset(
    {
        "title",
        "owner_id",
        "person_id",
        "org_id",
        "pipeline_id",
        "stage_id",
        "value",
        "currency",
        "is_deleted",
        "is_archived",
        "status",
        "probability",
        "lost_reason",
        "visible_to",
        "close_time",
        "won_time",
        "lost_time",
        "expected_close_date",
        "label_ids",
        "custom_fields",
    }
)
STATUSES = ("open", "won", "lost")
DEFAULT_CURRENCY = "USD"  # the company's default currency [INF]


class Deals(EntityType):
    name = "deals"
    singular = "deal"
    label = "Deal"
    has_custom_fields = True
    create_keys = _WRITABLE
    update_keys = _WRITABLE

    def _stage(self, body: Body, acct: Account, current: Record | None) -> dict[str, Any]:
        """`stage_id` implies its pipeline; `pipeline_id` alone moves to that pipeline's first
        stage (unless the deal's stage is already in it); neither puts a new deal in the first
        stage of the first pipeline [INF]."""
        stage_id = body.integer("stage_id") if "stage_id" in body else None
        pipeline_id = body.integer("pipeline_id") if "pipeline_id" in body else None
        if stage_id is not None:
            stage = acct.live("stages", stage_id)
            if stage is None:
                raise bad_request(f"stage_id {stage_id} does not name an existing stage")
            if pipeline_id is not None and pipeline_id != stage.attrs["pipeline_id"]:
                raise bad_request(f"stage {stage_id} is not in pipeline {pipeline_id}")
            return {"stage_id": stage_id, "pipeline_id": stage.attrs["pipeline_id"]}
        if pipeline_id is None:
            if current is not None:
                return {}
            pipelines = acct.all_live("pipelines")
            if not pipelines:
                raise bad_request("the company has no pipeline to put the deal in")
            pipeline_id = min(pipelines, key=lambda p: (p.attrs["order_nr"], p.id)).id
        if acct.live("pipelines", pipeline_id) is None:
            raise bad_request(f"pipeline_id {pipeline_id} does not name an existing pipeline")
        if current is not None and current.attrs["pipeline_id"] == pipeline_id:
            return {}
        stages = acct.stages_of(pipeline_id)
        if not stages:
            raise bad_request(f"pipeline {pipeline_id} has no stages")
        first = min(stages, key=lambda s: (s.attrs["order_nr"], s.id))
        return {"stage_id": first.id, "pipeline_id": pipeline_id}

    def _common(
        self, body: Body, acct: Account, out: dict[str, Any], current: Record | None
    ) -> None:
        if "title" in body:
            out["title"] = body.string("title", non_empty=True)
        if "owner_id" in body:
            out["owner_id"] = body.owner(acct)
        if "person_id" in body:
            out["person_id"] = body.reference("person_id", "persons", acct)
        if "org_id" in body:
            out["org_id"] = body.reference("org_id", "organizations", acct)
        if "value" in body:
            out["value"] = body.number("value")
        if "currency" in body:
            out["currency"] = body.string("currency", non_empty=True)
        if "probability" in body:
            p = body.number("probability", nullable=True)
            if p is not None and not 0 <= p <= 100:
                raise bad_request("probability must be between 0 and 100")
            out["probability"] = p
        if "lost_reason" in body:
            out["lost_reason"] = body.string("lost_reason", nullable=True)
        if "visible_to" in body:
            out["visible_to"] = body.visible_to()
        if "expected_close_date" in body:
            out["expected_close_date"] = body.date("expected_close_date", nullable=True)
        if "label_ids" in body:
            out["label_ids"] = body.int_list("label_ids")
        if "is_deleted" in body and body.boolean("is_deleted"):
            # POST cannot create a deleted record and PATCH cannot delete [PD-v2mig].
            raise bad_request("is_deleted cannot be set to true: use DELETE")
        if "is_archived" in body:
            archived = body.boolean("is_archived")
            was = current is not None and current.attrs["archive_ms"] is not None
            if archived != was:
                out["archive_ms"] = acct.now_ms() if archived else None
        out.update(self._stage(body, acct, current))
        self._status(body, acct, out, current)

    def _status(
        self, body: Body, acct: Account, out: dict[str, Any], current: Record | None
    ) -> None:
        """won/lost set their time and close_time, reopening clears them [INF]; explicit
        times in the body win."""
        now = acct.now_ms()
        if "status" in body:
            status = body.string("status")
            if status not in STATUSES:
                raise bad_request("status must be one of open, won, lost")
            previous = current.attrs["status"] if current is not None else "open"
            if status != previous or current is None:
                out["status"] = status
                out["won_ms"] = now if status == "won" else None
                out["lost_ms"] = now if status == "lost" else None
                out["close_ms"] = now if status != "open" else None
        for key in ("won_time", "lost_time", "close_time"):
            if key in body:
                out[key.replace("_time", "_ms")] = body.instant_ms(key, nullable=True)

    def check_create(self, body: Body, acct: Account, user_id: int) -> dict[str, Any]:
        if "title" not in body:
            raise bad_request("title is required")
        out: dict[str, Any] = {
            "owner_id": user_id,
            "person_id": None,
            "org_id": None,
            "value": 0,
            "currency": DEFAULT_CURRENCY,
            "status": "open",
            "probability": None,
            "lost_reason": None,
            "visible_to": DEFAULT_VISIBLE_TO,
            "expected_close_date": None,
            "label_ids": [],
            "archive_ms": None,
            "won_ms": None,
            "lost_ms": None,
            "close_ms": None,
            "stage_change_ms": None,
            "origin": "API",
        }
        self._common(body, acct, out, None)
        return out

    def check_update(self, rec: Record, body: Body, acct: Account) -> dict[str, Any]:
        if rec.attrs["archive_ms"] is not None and set(body.raw) - {"is_archived"}:
            # Archived deals are not editable [PD-archived]; un-archiving is the way back.
            raise bad_request("archived deals are not editable")
        out: dict[str, Any] = {}
        self._common(body, acct, out, rec)
        if out.get("stage_id", rec.attrs["stage_id"]) != rec.attrs["stage_id"]:
            out["stage_change_ms"] = acct.now_ms()
        return out

    def to_json(
        self,
        rec: Record,
        acct: Account,
        *,
        option_labels: bool = False,
        keys: frozenset[str] | None = None,
    ) -> dict[str, Any]:
        a = rec.attrs
        add_time, update_time = timestamps(rec)

        def t(key: str) -> str | None:
            return rfc3339(a[key]) if a[key] is not None else None

        return {
            "id": rec.id,
            "title": a["title"],
            "owner_id": a["owner_id"],
            "person_id": a["person_id"],
            "org_id": a["org_id"],
            "pipeline_id": a["pipeline_id"],
            "stage_id": a["stage_id"],
            "value": a["value"],
            "currency": a["currency"],
            "add_time": add_time,
            "update_time": update_time,
            "stage_change_time": t("stage_change_ms"),
            "is_deleted": rec.is_deleted,
            "is_archived": a["archive_ms"] is not None,
            "status": a["status"],
            "probability": a["probability"],
            "lost_reason": a["lost_reason"],
            "visible_to": a["visible_to"],
            "close_time": t("close_ms"),
            "won_time": t("won_ms"),
            "lost_time": t("lost_ms"),
            "expected_close_date": a["expected_close_date"],
            "label_ids": list(a["label_ids"]),
            "origin": a["origin"],
            "origin_id": None,
            "channel": None,
            "channel_id": None,
            "arr": None,
            "mrr": None,
            "acv": None,
            "custom_fields": custom_json(
                rec, acct.registry(self.name), option_labels=option_labels, keys=keys
            ),
        }
