"""The fields of persons, organizations and deals as crmsync names them, and the account's
custom fields resolved from their labels.

A record is shown to the rest of crmsync as flat properties (records.py): Pipedrive's own
attributes under their API names, a few derived ones (`email` / `phone`: the primary value of
the `emails` / `phones` arrays; `domain`: an organization's website host or a configured
custom field; `address` / `city` / `country` from the address object; a deal's `stage`: its
stage id while open, `won` / `lost` once closed — Pipedrive keeps the outcome in `status`
beside the stage, HubSpot in the stage, so each pipeline gets two more stages, Won and Lost),
and every custom field under its label. Custom field keys are random 40-hex hashes that differ per account [PD-cf];
the config names them by label and the catalog resolves the label through the `*Fields`
endpoints [PD-spec-v2]. A label two custom fields share, or that a built-in field already
uses, is reachable only by its key.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

# What a value is, for reading and writing it (v2 validates strictly: numbers are never read
# from strings, booleans are true/false [PD-v2mig]).
Kind = Literal["string", "int", "number", "date", "datetime", "bool", "enum", "set", "address",
               "monetary", "emails", "phones", "domain", "stage", "range", "other"]

ENTITIES = ("persons", "organizations", "deals")
FIELDS_PATH = {"persons": "personFields", "organizations": "organizationFields",
               "deals": "dealFields"}
# The v2 endpoint of each object, and the webhook `meta.entity` naming it [PD-wh2].
WEBHOOK_ENTITY = {"persons": "person", "organizations": "organization", "deals": "deal"}


@dataclass(frozen=True)
class FieldDef:
    """One field as crmsync names it. `key` is the record attribute (built-in) or the custom
    field's hash; `options` maps an enum/set option id to its label."""

    name: str
    key: str
    kind: Kind
    custom: bool = False
    read_only: bool = False
    options: Mapping[int, str] = field(default_factory=dict)
    field_type: str = ""

    def option_id(self, label: str) -> int | None:
        wanted = label.strip().casefold()
        for oid, text in self.options.items():
            if text.strip().casefold() == wanted:
                return oid
        return None


def _b(name: str, kind: Kind, *, read_only: bool = False, key: str = "") -> FieldDef:
    return FieldDef(name, key or name, kind, read_only=read_only)


_COMMON = (
    _b("owner_id", "int"), _b("visible_to", "int"),
    _b("add_time", "datetime", read_only=True), _b("update_time", "datetime", read_only=True),
)

# Built-in fields per object [PD-spec-v2] (A.3 of the fact sheet).
BUILT_IN: dict[str, tuple[FieldDef, ...]] = {
    "persons": (
        _b("name", "string"), _b("first_name", "string"), _b("last_name", "string"),
        _b("email", "emails", key="emails"), _b("phone", "phones", key="phones"),
        _b("emails", "string", read_only=True), _b("phones", "string", read_only=True),
        _b("org_id", "int"), _b("job_title", "string"), _b("notes", "string"),
        _b("birthday", "date"), _b("postal_address", "address"), *_COMMON,
    ),
    "organizations": (
        _b("name", "string"), _b("website", "string"), _b("linkedin", "string"),
        # `domain` is written where organization_domain_field says (records.py).
        _b("domain", "domain"), _b("address", "address"),
        _b("city", "string", read_only=True), _b("country", "string", read_only=True),
        _b("industry", "int"), _b("annual_revenue", "number"), _b("employee_count", "int"),
        *_COMMON,
    ),
    "deals": (
        _b("title", "string"), _b("value", "number"), _b("currency", "string"),
        _b("pipeline_id", "int"), _b("stage_id", "int"), _b("status", "string"),
        # The stage with the outcome: `won` / `lost` for a closed deal, else its stage id.
        _b("stage", "stage"),
        _b("probability", "number"), _b("lost_reason", "string"),
        _b("expected_close_date", "date"), _b("close_time", "datetime", read_only=True),
        _b("won_time", "datetime", read_only=True), _b("lost_time", "datetime", read_only=True),
        _b("person_id", "int"), _b("org_id", "int"), _b("is_archived", "bool", read_only=True),
        *_COMMON,
    ),
}

# Pipedrive field_type of a custom field → how crmsync reads and writes it [PD-cf].
_CUSTOM_KINDS: dict[str, Kind] = {
    "varchar": "string", "text": "string", "varchar_auto": "string", "phone": "string",
    "varchar_options": "string", "double": "number", "monetary": "monetary", "date": "date",
    "time": "string", "enum": "enum", "set": "set", "address": "address", "org": "int",
    "people": "int", "user": "int", "int": "int", "daterange": "range", "timerange": "range",
}


class CatalogError(Exception):
    """A configured field name that does not resolve; the message says why."""


class Catalog:
    """The fields of one object of one account: built-in ones, then custom ones by label
    (and by key)."""

    def __init__(self, entity: str, definitions: Iterable[Mapping[str, Any]] = ()) -> None:
        self.entity = entity
        self.by_name: dict[str, FieldDef] = {f.name: f for f in BUILT_IN[entity]}
        self.custom: dict[str, FieldDef] = {}  # by key
        self.ambiguous: dict[str, list[str]] = {}  # label -> keys (several fields share it)
        labels: dict[str, list[FieldDef]] = {}
        for d in definitions:
            if not d.get("is_custom_field"):
                continue
            key = str(d.get("field_code") or "")
            label = str(d.get("field_name") or "").strip()
            if not key:
                continue
            ftype = str(d.get("field_type") or "")
            kind = _CUSTOM_KINDS.get(ftype, "other")
            options = {int(o["id"]): str(o.get("label") or "")
                       for o in d.get("options") or [] if isinstance(o, dict)
                       and isinstance(o.get("id"), int)}
            fdef = FieldDef(label or key, key, kind, custom=True,
                            read_only=kind in ("range", "other"), options=options,
                            field_type=ftype)
            self.custom[key] = fdef
            labels.setdefault(label.casefold(), []).append(fdef)
        self._labels: dict[str, FieldDef] = {}
        for folded, defs in labels.items():
            if not folded:
                continue
            taken = any(n.casefold() == folded for n in self.by_name)
            if len(defs) > 1 or taken:
                self.ambiguous[defs[0].name] = [d.key for d in defs]
                continue
            self._labels[folded] = defs[0]

    def resolve(self, name: str) -> FieldDef:
        """The field `name` names: a built-in field, a custom field's label (any case) or its
        key. Raises CatalogError naming the candidates otherwise."""
        if name in self.by_name:
            return self.by_name[name]
        if name in self.custom:
            return self.custom[name]
        found = self._labels.get(name.strip().casefold())
        if found is not None:
            return found
        for label, keys in self.ambiguous.items():
            if label.casefold() == name.strip().casefold():
                raise CatalogError(
                    f"{self.entity} field {name!r} is ambiguous: the label is used by "
                    f"{'a built-in field and ' if name in self.by_name else ''}custom fields "
                    f"{', '.join(keys)}; name the field by its key")
        known = sorted([*self.by_name, *(f.name for f in self._labels.values())])
        raise CatalogError(f"Pipedrive {self.entity} have no field {name!r} (known: "
                           f"{', '.join(known)})")

    def custom_by_label(self) -> dict[str, FieldDef]:
        """Custom fields reachable by their label."""
        return {f.name: f for f in self._labels.values()}
