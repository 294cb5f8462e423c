"""Does an object sync's field mappings fit both sides? Checked before its initial sync.

A mapping fits when its fields exist on both sides, the side it writes to can be written
there, and its transform can carry the values across: it reads what each side holds, and what
it writes can be held where it writes it. A mapping that does not fit would otherwise fail
every record it touches, one by one, with whatever error the other side answers; an object
sync whose mappings do not fit is paused instead, with these problems as its reason.

What each side says of its fields (`describe()`) comes in as `FieldDescription`s. Field types
are those of the connectors: string | number | bool | date | datetime | enumeration (HubSpot's
option lists; an app's columns have the first five, from their declared types).

The rules, per transform (`READS`, `WRITES`):

- A text field holds any value, and a typed transform reads text value by value (an odd value
  fails its record as `invalid_value`, the mapping stays valid).
- `string` moves values as they are: what it writes must fit the target as the source holds it
  (a number into a number or a text, an enumeration option into an enumeration or a text, a
  date into a date, a datetime or a text; text into an enumeration, whose options HubSpot
  checks per value). Text into a number, bool or date field is refused: use the typed
  transform, which normalises the value and names a bad one.
- `date` writes a day: HubSpot's date and datetime properties take it (a datetime property as
  midnight UTC), so does a text; `datetime` writes an instant, which a date property refuses
  unless it is midnight, so only datetime and text fields take it.
- `enum` and `multiselect` write HubSpot options to an enumeration (or a text) and the option
  map's app values to the app; `stage` maps deal stages (enumerations) to app stage ids;
  `owner` writes HubSpot owner ids (an enumeration) and, to the app, an email or a user id.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from crmsync.config.model import FieldMapping, ObjectSync
from crmsync.engine.types import Side

FIELD_TYPES = ("string", "number", "bool", "date", "datetime", "enumeration")
_ALL = frozenset(FIELD_TYPES)

# Which field types a transform can read every value of (text: value by value).
READS: dict[str, frozenset[str]] = {
    "string": _ALL,
    "number": frozenset({"number", "string"}),
    "bool": frozenset({"bool", "number", "string"}),  # 0 / 1 in an integer column
    "date": frozenset({"date", "datetime", "number", "string"}),  # epoch numbers too
    "datetime": frozenset({"date", "datetime", "number", "string"}),
    "enum": frozenset({"enumeration", "number", "string"}),
    "multiselect": frozenset({"enumeration", "string"}),
    "stage": frozenset({"enumeration", "number", "string"}),
    # An owner id (HubSpot's owner-picker enumeration, an app user id) or an email.
    "owner": frozenset({"enumeration", "number", "string"}),
}

# Which field types can hold what a transform writes ("string": see `PASSES`).
WRITES: dict[str, frozenset[str]] = {
    "number": frozenset({"number", "string"}),
    "bool": frozenset({"bool", "number", "string"}),
    "date": frozenset({"date", "datetime", "string"}),
    "datetime": frozenset({"datetime", "string"}),
    "enum": frozenset({"enumeration", "number", "string"}),
    "multiselect": frozenset({"enumeration", "string"}),
    "stage": frozenset({"enumeration", "number", "string"}),
    "owner": frozenset({"enumeration", "number", "string"}),
}

# The `string` transform passes values as they are: target type -> source types it takes.
PASSES: dict[str, frozenset[str]] = {
    "string": _ALL,
    "number": frozenset({"number"}),
    "bool": frozenset({"bool"}),
    "date": frozenset({"date"}),
    "datetime": frozenset({"date", "datetime"}),
    "enumeration": frozenset({"enumeration", "string"}),
}

# The transform to suggest for a field of this type.
NATURAL: dict[str, str] = {"number": "number", "bool": "bool", "date": "date",
                           "datetime": "datetime", "enumeration": "enum", "string": "string"}

SIDE_NAMES = {"hub": "HubSpot property", "app": "app column"}


class FieldDescription(Protocol):
    """What a side's `describe()` says of one field (the connectors' FieldInfo)."""

    @property
    def name(self) -> str: ...

    @property
    def type(self) -> str: ...

    @property
    def read_only(self) -> bool: ...

    @property
    def options(self) -> tuple[str, ...]: ...


def reads(transform: str, field_type: str) -> bool:
    """Can `transform` read the values of a field of `field_type`?"""
    return field_type in READS.get(transform, _ALL)


def writes(transform: str, target_type: str, source_type: str) -> bool:
    """Can a field of `target_type` hold what `transform` writes there, the values coming
    from a field of `source_type`?"""
    if transform == "string":
        return source_type in PASSES.get(target_type, _ALL)
    return target_type in WRITES.get(transform, _ALL)


def type_problem(transform: str, side: Side, field: str, field_type: str, other_type: str,
                 written: bool) -> str | None:
    """Why `transform` does not fit `field` (of `side`, typed `field_type`) when the other
    side's field is `other_type` and values are `written` to this one; None if it fits."""
    what = f"{SIDE_NAMES[side]} {field!r} ({field_type})"
    hint = _suggest(field_type, other_type)
    if not reads(transform, field_type):
        return f"transform {transform!r} cannot read {what}{hint}"
    if written and not writes(transform, field_type, other_type):
        if transform == "string":
            return (f"{what} cannot hold the {other_type} values of the other side as they "
                    f"are{hint}")
        return f"{what} cannot hold what transform {transform!r} writes{hint}"
    return None


def _suggest(field_type: str, other_type: str) -> str:
    for t in (field_type, other_type):
        cand = NATURAL.get(t, "string")
        if cand != "string":
            return f": use transform = {cand!r}, or map a field of a fitting type"
    return ": map a field of a fitting type"


@dataclass(frozen=True, slots=True)
class MappingProblem:
    """One mapping that does not fit: where it is configured and what to do about it."""

    path: str  # "$.syncs[0].mappings[2].hub"; a default mapping: "$.syncs[0].mappings"
    mapping: str  # "favorite_color ⇄ color"
    message: str

    def __str__(self) -> str:
        return f"{self.path}: mapping {self.mapping}: {self.message}"


def field_directions(sync: ObjectSync, m: FieldMapping) -> tuple[bool, bool]:
    """(to_hub, to_app): whether values of mapping `m` may be written to each side."""
    to_hub = sync.direction in ("both", "to_hub") and m.direction in ("both", "to_hub")
    to_app = sync.direction in ("both", "to_app") and m.direction in ("both", "to_app")
    return to_hub, to_app


def check_mappings(sync: ObjectSync, mappings: Sequence[FieldMapping],
                   hub: Mapping[str, FieldDescription], app: Mapping[str, FieldDescription],
                   *, sync_path: str = "$.syncs[?]", app_pipeline_field: str = "pipeline",
                   app_stage_field: str = "") -> list[MappingProblem]:
    """Every way the enabled `mappings` (the effective ones: defaults overlaid by the
    configured ones) do not fit the sides' fields `hub` and `app` (by name)."""
    out: list[MappingProblem] = []
    for m in mappings:
        if not m.enabled:
            continue
        to_hub, to_app = field_directions(sync, m)
        if not (to_hub or to_app):
            continue
        index = next((j for j, c in enumerate(sync.mappings) if c is m or c == m), None)
        app_main = (app_stage_field or m.app) if m.transform == "stage" else m.app
        name = f"{m.hub} ⇄ {app_main}" + ("" if index is not None else " (a default)")
        default_fix = ("" if index is not None else
                       f"; or switch the default off: a mapping with hub = {m.hub!r} and "
                       "enabled = false")

        def problem(key: str, message: str, index: int | None = index,
                    name: str = name) -> None:
            path = (f"{sync_path}.mappings[{index}].{key}" if index is not None
                    else f"{sync_path}.mappings")
            out.append(MappingProblem(path, name, message))

        hub_fields = ("pipeline", m.hub) if m.transform == "stage" else (m.hub,)
        app_fields = ((app_pipeline_field, app_main) if m.transform == "stage" else (m.app,))
        missing = False
        for side, names, fields, written in (("hub", hub_fields, hub, to_hub),
                                             ("app", app_fields, app, to_app)):
            key = "hub" if side == "hub" else "app"
            for n in dict.fromkeys(names):
                f = fields.get(n)
                if f is None and n != m.hub and n != app_main and not written:
                    continue  # a stage's pipeline read from nowhere is "" (one pipeline)
                if f is None:
                    missing = True
                    where = (f"HubSpot has no {sync.hub_object} property {n!r}: create it in "
                             "HubSpot or correct `hub`" if side == "hub" else
                             f"app object {sync.app_object!r} has no column {n!r}: add it to "
                             "the table (and to the table's `columns`, if it lists them) or "
                             "correct `app`")
                    problem(key, where + default_fix)
                elif written and f.read_only:
                    towards = "to_app" if side == "hub" else "to_hub"
                    problem(key, f"{SIDE_NAMES[side]} {n!r} is read-only, and this mapping "
                                 f"writes to it: set direction = {towards!r} on the mapping "
                                 "or switch it off" + default_fix)
        if missing:
            continue
        hf, af = hub[m.hub], app[app_main]
        for why in (type_problem(m.transform, "hub", hf.name, hf.type, af.type, to_hub),
                    type_problem(m.transform, "app", af.name, af.type, hf.type, to_app)):
            if why is not None:
                problem("transform", why + default_fix)
        if m.transform == "enum" and hf.type == "enumeration" and hf.options:
            unknown = sorted(v for v in set(m.options.values()) if v not in hf.options)
            if unknown:
                problem("options", f"{unknown[0]!r} is not an option of HubSpot property "
                                   f"{m.hub!r} (its options: {', '.join(hf.options[:20])})")
    return out
