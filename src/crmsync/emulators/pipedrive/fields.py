"""Field definitions (`/personFields`, `/organizationFields`, `/dealFields`) and custom field
values.

Custom fields are keyed by random 40-hex-character hashes that differ per account [PD-cf]; the
account's generator is seeded, so one seed gives one set of keys. v2 nests their values in
`custom_fields` — text as a plain string, monetary as `{value, currency}` [PD-v2mig] — and clears
one with `null`; an empty array for a `set` field is refused [PD-spec-v2]."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from .errors import bad_request, not_found
from .values import is_date, is_int, is_number, is_time

# Types `POST /personFields` accepts [PD-spec-v2].
CREATABLE_TYPES = frozenset(
    {
        "varchar",
        "text",
        "double",
        "phone",
        "date",
        "daterange",
        "time",
        "timerange",
        "set",
        "enum",
        "varchar_auto",
        "address",
        "monetary",
        "org",
        "people",
        "user",
    }
)
_TEXT_TYPES = frozenset({"varchar", "text", "varchar_auto", "phone"})
# Searchable custom field types [PD-spec-v2, `fields` of the search endpoints].
SEARCHABLE_TYPES = frozenset(
    {"address", "varchar", "text", "varchar_auto", "double", "monetary", "phone"}
)
ADDRESS_KEYS = frozenset(
    {
        "value",
        "country",
        "admin_area_level_1",
        "admin_area_level_2",
        "locality",
        "sublocality",
        "route",
        "street_number",
        "subpremise",
        "postal_code",
        "formatted_address",
    }
)
OPTIONAL_PARTS = ("ui_visibility", "important_fields", "required_fields")
DEFAULT_CURRENCY = "USD"  # the account's default currency [INF]


@dataclass
class FieldDef:
    code: str
    name: str
    field_type: str
    custom: bool
    options: list[dict[str, Any]] | None = None
    subfields: list[dict[str, str]] | None = None
    parts: dict[str, Any] = field(default_factory=dict)  # ui_visibility etc., as last written
    entity: str = "persons"

    def option_ids(self) -> set[int]:
        return {int(o["id"]) for o in self.options or ()}

    def option_label(self, option_id: int) -> str | None:
        for o in self.options or ():
            if o["id"] == option_id:
                return str(o["label"])
        return None

    def to_json(self, include: frozenset[str] = frozenset()) -> dict[str, Any]:
        out: dict[str, Any] = {
            "field_name": self.name,
            "field_code": self.code,
            "field_type": self.field_type,
            "options": [dict(o) for o in self.options] if self.options is not None else None,
            "subfields": [dict(s) for s in self.subfields] if self.subfields else None,
            "is_custom_field": self.custom,
            "is_optional_response_field": False,
        }
        # Returned only when `include_fields` names them [PD-spec-v2, include_fields] [INF].
        # Deal fields show in pipelines, the others in the add-deal dialog [PD-spec-v2].
        shown_in: dict[str, Any] = (
            {"show_in_pipelines": {"show_in_all": True, "pipeline_ids": []}}
            if self.entity == "deals"
            else {"show_in_add_deal_dialog": {"show": False, "order": None}}
        )
        defaults: dict[str, Any] = {
            "ui_visibility": {"add_visible_flag": True, "details_visible_flag": True, **shown_in},
            "important_fields": {"enabled": False, "stage_ids": []},
            "required_fields": {"enabled": False},
        }
        for part in OPTIONAL_PARTS:
            if part in include:
                out[part] = self.parts.get(part, defaults[part])
        return out


def _system(entity: str) -> list[FieldDef]:
    # The spec's own examples name the person fields `name` and `phone` [PD-spec-v2]; the rest
    # use the record's attribute names [INF].
    common = [
        FieldDef("id", "ID", "int", False),
        FieldDef("owner_id", "Owner", "user", False),
        FieldDef("add_time", "Created", "date", False),
        FieldDef("update_time", "Update time", "date", False),
        FieldDef("visible_to", "Visible to", "visible_to", False),
        FieldDef("label_ids", "Labels", "set", False, options=[]),
    ]
    specific = {
        "persons": [
            FieldDef("name", "Name", "varchar", False),
            FieldDef("first_name", "First name", "varchar", False),
            FieldDef("last_name", "Last name", "varchar", False),
            FieldDef("org_id", "Organization", "org", False),
            FieldDef("email", "Email", "varchar", False),
            FieldDef("phone", "Phone", "phone", False),
        ],
        "organizations": [
            FieldDef("name", "Name", "varchar", False),
            FieldDef("address", "Address", "address", False),
            FieldDef("website", "Website", "varchar", False),
            FieldDef("linkedin", "LinkedIn profile", "varchar", False),
            FieldDef("industry", "Industry", "enum", False, options=[]),
            FieldDef("annual_revenue", "Annual revenue", "monetary", False),
            FieldDef("employee_count", "Number of employees", "int", False),
        ],
        "deals": [
            FieldDef("title", "Title", "varchar", False),
            FieldDef("value", "Value", "monetary", False),
            FieldDef("person_id", "Contact person", "people", False),
            FieldDef("org_id", "Organization", "org", False),
            FieldDef("pipeline_id", "Pipeline", "int", False),
            FieldDef("stage_id", "Stage", "stage", False),
            FieldDef("status", "Status", "status", False),
            FieldDef("probability", "Probability", "double", False),
            FieldDef("expected_close_date", "Expected close date", "date", False),
            FieldDef("lost_reason", "Lost reason", "varchar_options", False),
        ],
    }[entity]
    return specific[:1] + common + specific[1:]


class FieldRegistry:
    """The field definitions of one entity type: system fields, then custom ones in the order
    they were added."""

    def __init__(self, entity: str, rng: random.Random, next_option_id: list[int]) -> None:
        self.entity = entity
        self._rng = rng
        self._next_option_id = next_option_id  # shared by the account's registries
        self.fields: dict[str, FieldDef] = {f.code: f for f in _system(entity)}
        for fdef in self.fields.values():
            fdef.entity = entity

    def get(self, code: str) -> FieldDef:
        fdef = self.fields.get(code)
        if fdef is None:
            raise not_found("Field")
        return fdef

    def custom(self) -> dict[str, FieldDef]:
        return {k: f for k, f in self.fields.items() if f.custom}

    def _options(self, raw: Any) -> list[dict[str, Any]]:
        if not isinstance(raw, list) or not raw:
            raise bad_request("options must be a non-empty array of {label}")
        out = []
        for item in raw:
            if not isinstance(item, dict) or not isinstance(item.get("label"), str):
                raise bad_request("each option needs a string label")
            out.append({"id": self._next_option_id[0], "label": item["label"]})
            self._next_option_id[0] += 1
        return out

    def add(self, body: Any) -> FieldDef:
        """`POST /…Fields`: `field_name`, `field_type`, options for enum/set [PD-spec-v2]."""
        if not isinstance(body, dict):
            raise bad_request("the body must be a JSON object")
        name, ftype = body.get("field_name"), body.get("field_type")
        if not isinstance(name, str) or not name.strip():
            raise bad_request("field_name is required")
        if ftype not in CREATABLE_TYPES:
            raise bad_request(f"field_type must be one of {', '.join(sorted(CREATABLE_TYPES))}")
        unknown = set(body) - {"field_name", "field_type", "options", *OPTIONAL_PARTS}
        if unknown:
            raise bad_request(f"unknown parameters: {', '.join(sorted(unknown))}")
        options: list[dict[str, Any]] | None = None
        if ftype in ("enum", "set"):
            options = self._options(body.get("options"))
        elif "options" in body:
            raise bad_request("options are only for enum and set fields")
        code = f"{self._rng.getrandbits(160):040x}"
        subfields = None
        if ftype == "monetary":
            subfields = [
                {
                    "field_code": f"{code}_currency",
                    "field_name": f"Currency of {name}",
                    "field_type": "varchar",
                }
            ]
        fdef = FieldDef(code, name, ftype, True, options, subfields, entity=self.entity)
        self._set_parts(fdef, body)
        self.fields[code] = fdef
        return fdef

    def update(self, code: str, body: Any) -> FieldDef:
        fdef = self.get(code)
        if not isinstance(body, dict):
            raise bad_request("the body must be a JSON object")
        unknown = set(body) - {"field_name", *OPTIONAL_PARTS}
        if unknown:
            raise bad_request(f"unknown parameters: {', '.join(sorted(unknown))}")
        if "field_name" in body:
            if not fdef.custom:
                raise bad_request("system fields cannot be renamed")
            if not isinstance(body["field_name"], str) or not body["field_name"].strip():
                raise bad_request("field_name must be a non-empty string")
            fdef.name = body["field_name"]
        self._set_parts(fdef, body)
        return fdef

    def _set_parts(self, fdef: FieldDef, body: dict[str, Any]) -> None:
        for part in OPTIONAL_PARTS:
            if part in body:
                if not isinstance(body[part], dict):
                    raise bad_request(f"{part} must be an object")
                fdef.parts[part] = body[part]

    def delete(self, code: str) -> FieldDef:
        fdef = self.get(code)
        if not fdef.custom:
            raise bad_request("system fields cannot be deleted")
        del self.fields[code]
        return fdef

    def add_options(self, code: str, body: Any) -> FieldDef:
        fdef = self._option_field(code)
        assert fdef.options is not None
        fdef.options.extend(self._options(body))
        return fdef

    def update_options(self, code: str, body: Any) -> FieldDef:
        fdef = self._option_field(code)
        if not isinstance(body, list) or not body:
            raise bad_request("the body must be a non-empty array of {id, label}")
        by_id = {o["id"]: o for o in fdef.options or ()}
        for item in body:
            if not isinstance(item, dict) or not is_int(item.get("id")):
                raise bad_request("each option needs an integer id")
            if item["id"] not in by_id:
                raise bad_request(f"option {item['id']} does not exist")
            if not isinstance(item.get("label"), str):
                raise bad_request("each option needs a string label")
        for item in body:
            by_id[item["id"]]["label"] = item["label"]
        return fdef

    def delete_options(self, code: str, body: Any) -> FieldDef:
        fdef = self._option_field(code)
        if not isinstance(body, list) or not body:
            raise bad_request("the body must be a non-empty array of {id}")
        ids = set()
        for item in body:
            if not isinstance(item, dict) or not is_int(item.get("id")):
                raise bad_request("each option needs an integer id")
            ids.add(item["id"])
        missing = ids - fdef.option_ids()
        if missing:
            raise bad_request(f"options {sorted(missing)} do not exist")
        fdef.options = [o for o in fdef.options or () if o["id"] not in ids]
        return fdef

    def _option_field(self, code: str) -> FieldDef:
        fdef = self.get(code)
        if not fdef.custom or fdef.field_type not in ("enum", "set"):
            raise bad_request("only custom enum and set fields have options")
        return fdef


def check_custom_value(fdef: FieldDef, value: Any, exists: Any) -> Any:
    """The stored form of one custom field value written through v2, or 400.

    `exists(kind, id)` says whether an org/person/user id names a live record. `None` clears the
    field [PD-spec-v2]. Shapes the fact sheet does not give (date/time ranges, address, links)
    are `[INF]`."""
    label = f"custom field {fdef.code} ({fdef.name})"
    if value is None:
        return None
    t = fdef.field_type
    if t in _TEXT_TYPES:
        if not isinstance(value, str):
            raise bad_request(f"{label} must be a string")
        return value
    if t == "double":
        if not is_number(value):
            raise bad_request(f"{label} must be a number")
        return value
    if t == "monetary":
        if not isinstance(value, dict) or not is_number(value.get("value")):
            raise bad_request(f"{label} must be an object {{value: number, currency: string}}")
        currency = value.get("currency", DEFAULT_CURRENCY)
        if set(value) - {"value", "currency"} or not isinstance(currency, str):
            raise bad_request(f"{label} must be an object {{value: number, currency: string}}")
        return {"value": value["value"], "currency": currency}
    if t == "date":
        if not is_date(value):
            raise bad_request(f"{label} must be a date YYYY-MM-DD")
        return value
    if t == "time":
        if not is_time(value):
            raise bad_request(f"{label} must be a time HH:MM:SS")
        return value
    if t in ("daterange", "timerange"):
        check = is_date if t == "daterange" else is_time
        if (
            not isinstance(value, dict)
            or set(value) != {"start", "end"}
            or not check(value["start"])
            or not check(value["end"])
        ):
            raise bad_request(f"{label} must be an object {{start, end}}")
        return dict(value)
    if t == "enum":
        if not is_int(value) or value not in fdef.option_ids():
            raise bad_request(f"{label} must be the id of one of its options")
        return value
    if t == "set":
        if (
            not isinstance(value, list)
            or not value
            or not all(is_int(v) and v in fdef.option_ids() for v in value)
        ):
            raise bad_request(f"{label} must be a non-empty array of option ids (null clears it)")
        return sorted(set(value))
    if t == "address":
        if isinstance(value, str):
            return {"value": value}
        if not isinstance(value, dict) or not isinstance(value.get("value"), str):
            raise bad_request(f"{label} must be an address object with a string value")
        if set(value) - ADDRESS_KEYS or not all(isinstance(v, str) for v in value.values()):
            raise bad_request(f"{label} has unknown or non-string address parts")
        return dict(value)
    if t in ("org", "people", "user"):
        if not is_int(value) or not exists(t, value):
            raise bad_request(f"{label} must be the id of an existing {t}")
        return value
    raise bad_request(f"{label} has type {t}, which the emulator does not store")


def show_custom_value(fdef: FieldDef, value: Any, option_labels: bool) -> Any:
    """A stored value as the API returns it; `include_option_labels=true` turns option ids into
    `{id, label}` [PD-spec-v2]."""
    if value is None or not option_labels:
        return value
    if fdef.field_type == "enum":
        return {"id": value, "label": fdef.option_label(value)}
    if fdef.field_type == "set":
        return [{"id": v, "label": fdef.option_label(v)} for v in value]
    return value


def searchable_text(fdef: FieldDef, value: Any) -> str | None:
    """The text a search matches a custom value against, for the searchable types only."""
    if value is None or fdef.field_type not in SEARCHABLE_TYPES:
        return None
    if isinstance(value, dict):
        return str(value.get("value", ""))
    return str(value)
