"""Pipelines and stages (API v2): `order_nr` is read-only, assigned in creation order;
deleting marks `is_deleted` [PD-spec-v2]."""

from __future__ import annotations

from typing import Any

from .errors import bad_request
from .records import Account, Body, EntityType, Record, timestamps


class Pipelines(EntityType):
    name = "pipelines"
    singular = "pipeline"
    label = "Pipeline"
    create_keys = frozenset({"name", "is_deal_probability_enabled"})
    update_keys = create_keys

    def _common(self, body: Body, out: dict[str, Any]) -> None:
        if "name" in body:
            out["name"] = body.string("name", non_empty=True)
        if "is_deal_probability_enabled" in body:
            out["is_deal_probability_enabled"] = body.boolean("is_deal_probability_enabled")

    def check_create(self, body: Body, acct: Account, user_id: int) -> dict[str, Any]:
        if "name" not in body:
            raise bad_request("name is required")
        existing = acct.all_live("pipelines")
        out: dict[str, Any] = {
            "order_nr": max((p.attrs["order_nr"] for p in existing), default=0) + 1,
            "is_deal_probability_enabled": False,
        }
        self._common(body, out)
        return out

    def check_update(self, rec: Record, body: Body, acct: Account) -> dict[str, Any]:
        out: dict[str, Any] = {}
        self._common(body, out)
        return out

    def to_json(
        self,
        rec: Record,
        acct: Account,
        *,
        option_labels: bool = False,
        keys: frozenset[str] | None = None,
    ) -> dict[str, Any]:
        add_time, update_time = timestamps(rec)
        return {
            "id": rec.id,
            "name": rec.attrs["name"],
            "order_nr": rec.attrs["order_nr"],
            "is_deleted": rec.is_deleted,
            "is_deal_probability_enabled": rec.attrs["is_deal_probability_enabled"],
            "add_time": add_time,
            "update_time": update_time,
        }


class Stages(EntityType):
    name = "stages"
    singular = "stage"
    label = "Stage"
    create_keys = frozenset(
        {"name", "pipeline_id", "deal_probability", "is_deal_rot_enabled", "days_to_rotten"}
    )
    update_keys = create_keys

    def _common(self, body: Body, acct: Account, out: dict[str, Any]) -> None:
        if "name" in body:
            out["name"] = body.string("name", non_empty=True)
        if "pipeline_id" in body:
            pipeline_id = body.integer("pipeline_id")
            assert pipeline_id is not None
            if acct.live("pipelines", pipeline_id) is None:
                raise bad_request(f"pipeline_id {pipeline_id} does not name an existing pipeline")
            out["pipeline_id"] = pipeline_id
            stages = acct.stages_of(pipeline_id)
            out["order_nr"] = max((s.attrs["order_nr"] for s in stages), default=0) + 1
        if "deal_probability" in body:
            p = body.integer("deal_probability")
            assert p is not None
            if not 0 <= p <= 100:
                raise bad_request("deal_probability must be between 0 and 100")
            out["deal_probability"] = p
        if "is_deal_rot_enabled" in body:
            out["is_deal_rot_enabled"] = body.boolean("is_deal_rot_enabled")
        if "days_to_rotten" in body:
            out["days_to_rotten"] = body.integer("days_to_rotten", nullable=True)

    def check_create(self, body: Body, acct: Account, user_id: int) -> dict[str, Any]:
        for key in ("name", "pipeline_id"):
            if key not in body:
                raise bad_request(f"{key} is required")
        out: dict[str, Any] = {
            "deal_probability": 100,
            "is_deal_rot_enabled": False,
            "days_to_rotten": None,
        }
        self._common(body, acct, out)
        return out

    def check_update(self, rec: Record, body: Body, acct: Account) -> dict[str, Any]:
        out: dict[str, Any] = {}
        self._common(body, acct, out)
        if out.get("pipeline_id") == rec.attrs["pipeline_id"]:
            del out["order_nr"]  # staying in its pipeline keeps its place
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
        return {
            "id": rec.id,
            "order_nr": a["order_nr"],
            "name": a["name"],
            "is_deleted": rec.is_deleted,
            "deal_probability": a["deal_probability"],
            "pipeline_id": a["pipeline_id"],
            "is_deal_rot_enabled": a["is_deal_rot_enabled"],
            "days_to_rotten": a["days_to_rotten"],
            "add_time": add_time,
            "update_time": update_time,
        }
