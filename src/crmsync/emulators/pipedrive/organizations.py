"""Organizations (API v2). No domain field: `website` and custom fields are what a company
can be matched on [PD-spec-v2]."""

from __future__ import annotations

from typing import Any

from .errors import bad_request
from .records import DEFAULT_VISIBLE_TO, Account, Body, EntityType, Record, custom_json, timestamps

_WRITABLE = frozenset(
    {
        "name",
        "owner_id",
        "visible_to",
        "label_ids",
        "address",
        "website",
        "linkedin",
        "industry",
        "annual_revenue",
        "employee_count",
        "custom_fields",
    }
)
_NULLABLE_STRINGS = ("website", "linkedin")
_NULLABLE_INTS = ("industry", "annual_revenue", "employee_count")


class Organizations(EntityType):
    name = "organizations"
    singular = "organization"
    label = "Organization"
    has_custom_fields = True
    create_keys = _WRITABLE | {"add_time"}
    update_keys = _WRITABLE

    def _common(self, body: Body, acct: Account, out: dict[str, Any]) -> None:
        if "name" in body:
            out["name"] = body.string("name", non_empty=True)
        if "owner_id" in body:
            out["owner_id"] = body.owner(acct)
        if "visible_to" in body:
            out["visible_to"] = body.visible_to()
        if "label_ids" in body:
            out["label_ids"] = body.int_list("label_ids")
        if "address" in body:
            out["address"] = body.address("address")
        for key in _NULLABLE_STRINGS:
            if key in body:
                out[key] = body.string(key, nullable=True)
        for key in _NULLABLE_INTS:
            if key in body:
                out[key] = body.integer(key, nullable=True)

    def check_create(self, body: Body, acct: Account, user_id: int) -> dict[str, Any]:
        out: dict[str, Any] = {
            "owner_id": user_id,
            "visible_to": DEFAULT_VISIBLE_TO,
            "label_ids": [],
            "address": None,
            **dict.fromkeys(_NULLABLE_STRINGS + _NULLABLE_INTS),
        }
        if "name" not in body:
            raise bad_request("name is required")
        if "add_time" in body:
            out["add_time_ms"] = body.instant_ms("add_time")
        self._common(body, acct, out)
        return out

    def check_update(self, rec: Record, body: Body, acct: Account) -> dict[str, Any]:
        out: dict[str, Any] = {}
        self._common(body, acct, out)
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
            "name": a["name"],
            "owner_id": a["owner_id"],
            "add_time": add_time,
            "update_time": update_time,
            "is_deleted": rec.is_deleted,
            "visible_to": a["visible_to"],
            "address": dict(a["address"]) if a["address"] else None,
            "label_ids": list(a["label_ids"]),
            "website": a["website"],
            "linkedin": a["linkedin"],
            "industry": a["industry"],
            "annual_revenue": a["annual_revenue"],
            "employee_count": a["employee_count"],
            "custom_fields": custom_json(
                rec, acct.registry(self.name), option_labels=option_labels, keys=keys
            ),
        }
