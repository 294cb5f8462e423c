"""An object sync's settings compiled for fast decisions: `SyncRules`.

Compiling once per object sync moves every config lookup out of the per-record path: each
mapped field becomes a `FieldRule` holding its readers, writers and the directions it may move.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from crmsync.config.defaults import effective_mappings
from crmsync.config.model import FieldMapping, ObjectSync
from crmsync.engine.filters import CompiledFilter
from crmsync.engine.mapping_check import field_directions
from crmsync.engine.owners import OwnerDirectory, owner_transform
from crmsync.engine.stages import StageMap
from crmsync.engine.transforms import (
    EMAIL,
    SIMPLE,
    Transform,
    enum_transform,
    multiselect_transform,
)
from crmsync.engine.types import Canon, Side

MatchKind = Literal["email", "company", "unique", "none"]


@dataclass(slots=True)
class FieldRule:
    """One enabled mapping. Readers take a record's property dict and return the canonical
    value; writers take the canonical value and return the properties to write."""

    name: str  # the hub property; names the field in snapshots and history
    hub_props: tuple[str, ...]
    app_fields: tuple[str, ...]
    read_hub: Callable[[Mapping[str, Any]], Canon]
    read_app: Callable[[Mapping[str, Any]], Canon]
    write_hub: Callable[[Canon], dict[str, Any]]
    write_app: Callable[[Canon], dict[str, Any]]
    to_hub: bool  # may a value move app -> hub
    to_app: bool  # may a value move hub -> app
    winner: Side  # who wins a conflict on this field, given the directions
    required: bool
    kind: str
    # Simple one-property transforms are inlined by decide() for speed.
    hub_prop: str = ""
    app_field: str = ""
    transform: Transform | None = None


@dataclass(slots=True)
class SyncRules:
    hub_object: str
    app_object: str
    direction: str
    winner: Side
    fields: tuple[FieldRule, ...]
    filters: tuple[CompiledFilter, ...] = ()
    match: MatchKind = "none"
    # The property names the match key is read from, per side.
    hub_key_props: tuple[str, ...] = ()
    app_key_fields: tuple[str, ...] = ()
    sync_without_email: bool = False
    on_delete: str = "mark"
    stage_map: StageMap | None = None
    by_name: dict[str, FieldRule] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.by_name = {f.name: f for f in self.fields}

    @property
    def can_write_hub(self) -> bool:
        return self.direction in ("both", "to_hub")

    @property
    def can_write_app(self) -> bool:
        return self.direction in ("both", "to_app")


def _simple_rule(m: FieldMapping, transform: Transform, to_hub: bool, to_app: bool,
                 winner: Side) -> FieldRule:
    hp, af = m.hub, m.app
    hub_canon, app_canon = transform.hub_canon, transform.app_canon
    out_hub, out_app = transform.to_hub, transform.to_app
    return FieldRule(
        name=hp,
        hub_props=(hp,),
        app_fields=(af,),
        read_hub=lambda p: hub_canon(p.get(hp)),
        read_app=lambda p: app_canon(p.get(af)),
        write_hub=lambda c: {hp: out_hub(c)},
        write_app=lambda c: {af: out_app(c)},
        to_hub=to_hub,
        to_app=to_app,
        winner=winner,
        required=m.required,
        kind=transform.kind,
        hub_prop=hp,
        app_field=af,
        transform=transform,
    )


def _stage_rule(m: FieldMapping, stage_map: StageMap, app_pipeline_field: str,
                to_hub: bool, to_app: bool, winner: Side, app_stage_field: str = "") -> FieldRule:
    hub_stage, app_stage = m.hub, app_stage_field or m.app
    hub_pipe = "pipeline"

    def read_hub(p: Mapping[str, Any]) -> Canon:
        stage = p.get(hub_stage)
        if stage in (None, ""):
            return None
        pair = (str(p.get(hub_pipe) or "default"), str(stage))
        stage_map.check("hub", pair)
        return f"{pair[0]}/{pair[1]}"

    def read_app(p: Mapping[str, Any]) -> Canon:
        stage = p.get(app_stage)
        if stage in (None, ""):
            return None
        pair = (str(p.get(app_pipeline_field) or ""), str(stage))
        hp, hs = stage_map.to_hub(pair)
        return f"{hp}/{hs}"

    def write_hub(c: Canon) -> dict[str, Any]:
        if c is None:
            return {hub_stage: ""}
        hp, hs = c.split("/", 1)
        return {hub_pipe: hp, hub_stage: hs}

    def write_app(c: Canon) -> dict[str, Any]:
        if c is None:
            return {app_stage: None}
        hp, hs = c.split("/", 1)
        ap, as_ = stage_map.to_app((hp, hs))
        return {app_pipeline_field: ap, app_stage: as_}

    return FieldRule(
        name=hub_stage,
        hub_props=(hub_pipe, hub_stage),
        app_fields=(app_pipeline_field, app_stage),
        read_hub=read_hub,
        read_app=read_app,
        write_hub=write_hub,
        write_app=write_app,
        to_hub=to_hub,
        to_app=to_app,
        winner=winner,
        required=m.required,
        kind="stage",
    )


def compile_rules(
    sync: ObjectSync,
    connector_type: str = "sqlite",
    app_columns: list[str] | None = None,
    stage_map: StageMap | None = None,
    app_pipeline_field: str = "pipeline",
    app_stage_field: str = "",
    owners: OwnerDirectory | None = None,
) -> SyncRules:
    """Compile an object sync's config (defaults overlaid by its mappings) into SyncRules.
    `owners` is the directory owner mappings read (the runtime keeps it filled)."""
    rules: list[FieldRule] = []
    for m in effective_mappings(connector_type, sync.hub_object, sync.mappings,
                                sync.use_default_mappings, app_columns):
        if not m.enabled:
            continue
        to_hub, to_app = field_directions(sync, m)
        if not (to_hub or to_app):
            continue
        # The conflict setting never overrides a direction: a one-way field's source wins.
        winner: Side = sync.conflict_winner if (to_hub and to_app) else ("hub" if to_app else "app")
        if m.transform == "stage":
            rules.append(_stage_rule(m, stage_map or StageMap(), app_pipeline_field, to_hub,
                                     to_app, winner, app_stage_field))
            continue
        if m.transform == "enum":
            t = enum_transform(m.options)
        elif m.transform == "string" and sync.hub_object == "contacts" and m.hub == "email":
            t = EMAIL  # the match key: compared the way it matches, case-insensitively
        elif m.transform == "multiselect":
            t = multiselect_transform(m.separator)
        elif m.transform == "owner":
            t = owner_transform(owners if owners is not None else OwnerDirectory(),
                                through_table=bool(m.owner_object))
        else:
            t = SIMPLE[m.transform]
        rules.append(_simple_rule(m, t, to_hub, to_app, winner))

    by_hub = {r.name: r for r in rules}
    match: MatchKind
    hub_keys: tuple[str, ...]
    app_keys: tuple[str, ...]
    if sync.hub_object == "contacts":
        match = "email"
        r = by_hub.get("email")
        hub_keys, app_keys = ("email",), ((r.app_field,) if r else ("email",))
    elif sync.hub_object == "companies":
        match = "company"
        rn, rd = by_hub.get("name"), by_hub.get("domain")
        hub_keys = ("name", "domain")
        app_keys = (rn.app_field if rn else "name", rd.app_field if rd else "domain")
    elif sync.unique_property:
        match = "unique"
        r = by_hub.get(sync.unique_property)
        hub_keys = (sync.unique_property,)
        app_keys = (r.app_field,) if r else (sync.unique_property,)
    else:
        match, hub_keys, app_keys = "none", (), ()

    filters = tuple(
        CompiledFilter(f.side, f.property, f.operator, f.value, tuple(f.values))
        for f in sync.filters
    )
    return SyncRules(
        hub_object=sync.hub_object,
        app_object=sync.app_object,
        direction=sync.direction,
        winner=sync.conflict_winner,
        fields=tuple(rules),
        filters=filters,
        match=match,
        hub_key_props=hub_keys,
        app_key_fields=app_keys,
        sync_without_email=sync.sync_contacts_without_email,
        on_delete=sync.on_delete,
        stage_map=stage_map,
    )
