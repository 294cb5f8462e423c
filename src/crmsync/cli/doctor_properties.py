"""`crmsync doctor --create-properties`: which missing HubSpot properties can be created, and
as what (hubspot-onboarding.md §5).

A mapped hub property that does not exist is created when its app field exists: its HubSpot
type follows the mapping's transform, and for `string` the app column's type:

| transform / app column   | type / fieldType                                        |
|--------------------------|---------------------------------------------------------|
| string: text             | string / text                                           |
| number, or a number col  | number / number                                         |
| bool, or a bool column   | bool / booleancheckbox, options true / false            |
| date, or a date column   | date / date                                             |
| datetime, or such column | datetime / date                                         |
| enum                     | enumeration / select, the option map's HubSpot values   |

A multi-select needs its options, which the configuration does not hold; an owner or a stage
is a HubSpot property every account has. Those are left to the person, with the reason. The
property goes in the group of the object's own properties (HubSpot requires an existing group).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from crmsync.config.model import FieldMapping
from crmsync.connectors.base import FieldInfo

# HubSpot's default property group per object (the emulator and real accounts), used when the
# object's properties do not show one.
_DEFAULT_GROUPS = {"contacts": "contactinformation", "companies": "companyinformation",
                   "deals": "dealinformation"}

_BY_TYPE = {"number": ("number", "number"), "bool": ("bool", "booleancheckbox"),
            "date": ("date", "date"), "datetime": ("datetime", "date"),
            "string": ("string", "text")}


@dataclass(frozen=True)
class PropertyPlan:
    """One property to create: on `object_name`, the POST body `definition`."""

    object_name: str
    definition: dict[str, Any] = field(hash=False)
    source: str  # "customers.tier (string column)"

    @property
    def name(self) -> str:
        return str(self.definition["name"])

    def describe(self) -> str:
        d = self.definition
        kind = f"{d['type']}/{d['fieldType']}"
        opts = d.get("options") or []
        if opts and d["type"] == "enumeration":
            kind += ", options " + ", ".join(str(o["value"]) for o in opts)
        return (f"{self.object_name}.{self.name} ({kind}, label {d['label']!r}, group "
                f"{d['groupName']!r}) from app field {self.source}")


def label_of(name: str) -> str:
    words = name.replace("_", " ").strip()
    return words[:1].upper() + words[1:]


def property_group(object_name: str, properties: Sequence[Mapping[str, Any]]) -> str:
    """The group of most of the object's HubSpot-defined properties (else HubSpot's default
    group of the object)."""
    groups = Counter(str(p.get("groupName")) for p in properties
                     if p.get("hubspotDefined") and p.get("groupName"))
    default = _DEFAULT_GROUPS.get(object_name)
    if default is not None and default in groups:
        return default
    if groups:
        return groups.most_common(1)[0][0]
    return default or f"{object_name.rstrip('s')}information"


def plan_property(object_name: str, m: FieldMapping, app_field: FieldInfo, app_object: str,
                  group: str) -> PropertyPlan | str:
    """How to create hub property `m.hub` from `app_field`, or why it cannot be."""
    source = f"{app_object}.{app_field.name} ({app_field.type} column)"
    base: dict[str, Any] = {"name": m.hub, "label": label_of(m.hub), "groupName": group,
                            "description": f"Synced by crmsync from {app_object}."
                                           f"{app_field.name}"}
    if m.transform in ("owner", "stage"):
        return f"{m.hub} is a property HubSpot defines itself: correct the mapping's `hub`"
    if m.transform == "multiselect":
        return ("a multi-select needs its options: create it in HubSpot as a multiple "
                "checkboxes property")
    if m.transform == "enum":
        values = list(dict.fromkeys(m.options.values()))
        options = [{"label": v, "value": v, "displayOrder": i} for i, v in enumerate(values)]
        return PropertyPlan(object_name, {**base, "type": "enumeration", "fieldType": "select",
                                          "options": options}, source)
    kind = m.transform if m.transform != "string" else app_field.type
    type_, field_type = _BY_TYPE.get(kind, ("string", "text"))
    definition = {**base, "type": type_, "fieldType": field_type}
    if type_ == "bool":
        definition["options"] = [{"label": "Yes", "value": "true", "displayOrder": 0},
                                 {"label": "No", "value": "false", "displayOrder": 1}]
    return PropertyPlan(object_name, definition, source)
