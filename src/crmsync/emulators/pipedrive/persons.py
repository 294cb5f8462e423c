"""Persons (API v2): `emails` / `phones` arrays of `{value, primary, label}`, `name` or
`first_name` + `last_name`, custom fields nested in `custom_fields` [PD-spec-v2][PD-v2mig]."""

from __future__ import annotations

from typing import Any

from .errors import bad_request
from .records import DEFAULT_VISIBLE_TO, Account, Body, EntityType, Record, custom_json, timestamps

# Present only when contact sync is on for the company [PD-spec-v2]; the emulator returns each
# once it has been written [INF].
_CONTACT_SYNC = ("postal_address", "notes", "im", "birthday", "job_title")
_WRITABLE = frozenset(
    {
        "name",
        "first_name",
        "last_name",
        "owner_id",
        "org_id",
        "emails",
        "phones",
        "visible_to",
        "label_ids",
        "custom_fields",
        *_CONTACT_SYNC,
    }
)


def _split(name: str) -> tuple[str, str | None]:
    # How Pipedrive splits a full name is not documented: first word, then the rest [INF].
    first, _, rest = name.strip().partition(" ")
    return first, (rest.strip() or None)


class Persons(EntityType):
    name = "persons"
    singular = "person"
    label = "Person"
    has_custom_fields = True
    create_keys = _WRITABLE | {"add_time"}
    update_keys = _WRITABLE

    def _common(self, body: Body, acct: Account, out: dict[str, Any]) -> None:
        if "owner_id" in body:
            out["owner_id"] = body.owner(acct)
        if "org_id" in body:
            out["org_id"] = body.reference("org_id", "organizations", acct)
        for key in ("emails", "phones", "im"):
            if key in body:
                out[key] = body.contacts(key)
        if "visible_to" in body:
            out["visible_to"] = body.visible_to()
        if "label_ids" in body:
            out["label_ids"] = body.int_list("label_ids")
        if "postal_address" in body:
            out["postal_address"] = body.address("postal_address")
        for key in ("notes", "job_title"):
            if key in body:
                out[key] = body.string(key, nullable=True)
        if "birthday" in body:
            out["birthday"] = body.date("birthday", nullable=True)

    def check_create(self, body: Body, acct: Account, user_id: int) -> dict[str, Any]:
        out: dict[str, Any] = {
            "owner_id": user_id,
            "org_id": None,
            "emails": [],
            "phones": [],
            "visible_to": DEFAULT_VISIBLE_TO,
            "label_ids": [],
        }
        first = body.string("first_name", non_empty=True) if "first_name" in body else None
        last = body.string("last_name", non_empty=True) if "last_name" in body else None
        if "name" in body:
            name = body.string("name", non_empty=True)
            assert name is not None
            split_first, split_last = _split(name)
            out.update(name=name, first_name=first or split_first, last_name=last or split_last)
        elif first and last:
            out.update(name=f"{first} {last}", first_name=first, last_name=last)
        else:
            raise bad_request("name is required (or both first_name and last_name)")
        if "add_time" in body:
            out["add_time_ms"] = body.instant_ms("add_time")
        self._common(body, acct, out)
        return out

    def check_update(self, rec: Record, body: Body, acct: Account) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if "name" in body:
            name = body.string("name", non_empty=True)
            assert name is not None
            out["name"] = name
            out["first_name"], out["last_name"] = _split(name)
        if "first_name" in body or "last_name" in body:
            first = (
                body.string("first_name", non_empty=True)
                if "first_name" in body
                else out.get("first_name", rec.attrs["first_name"])
            )
            last = (
                body.string("last_name", nullable=True)
                if "last_name" in body
                else out.get("last_name", rec.attrs["last_name"])
            )
            out.update(first_name=first, last_name=last)
            if "name" not in body:
                out["name"] = f"{first} {last}" if last else str(first)
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
        out: dict[str, Any] = {
            "id": rec.id,
            "name": a["name"],
            "first_name": a["first_name"],
            "last_name": a["last_name"],
            "owner_id": a["owner_id"],
            "org_id": a["org_id"],
            "add_time": add_time,
            "update_time": update_time,
            "emails": [dict(e) for e in a["emails"]],
            "phones": [dict(p) for p in a["phones"]],
            "is_deleted": rec.is_deleted,
            "visible_to": a["visible_to"],
            "label_ids": list(a["label_ids"]),
            "picture_id": None,
        }
        for key in _CONTACT_SYNC:
            if key in a:
                value = a[key]
                out[key] = [dict(i) for i in value] if key == "im" else value
        out["custom_fields"] = custom_json(
            rec, acct.registry(self.name), option_labels=option_labels, keys=keys
        )
        return out
