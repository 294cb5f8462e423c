"""The HubSpot scopes an account's object syncs need (hubspot-onboarding.md §3).

Scopes are granular: `crm.objects.<object>.read|write` for records, `crm.schemas.<object>.write`
for creating property definitions. Per the SPEC `security` blocks (any one listed scope
suffices): reading properties and pipelines needs any object or schema scope of the object, so
the object's read scope covers them; associations need any object scope of the types involved,
which the object syncs already hold; line items also accept `e-commerce`; owners
`crm.objects.owners.read` (or `automation`); custom behavioral events
`analytics.behavioral_events.send`. An OAuth app must always require `oauth` [S].
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from crmsync.config.model import ObjectSync

BASE_SCOPE = "oauth"
OWNER_PROPERTY = "hubspot_owner_id"

# Scopes that stand in for an object's own scopes (SPEC: line items and e-commerce).
_ALTERNATIVES: dict[str, tuple[str, ...]] = {"line_items": ("e-commerce",)}
# Writing property definitions: line items have no crm.schemas.line_items.write in the v3
# properties spec, e-commerce presumably (hubspot-onboarding.md §3).
_SCHEMA_WRITE: dict[str, tuple[str, ...]] = {"line_items": ("e-commerce",)}


@dataclass(frozen=True)
class ScopeNeed:
    """One scope an object sync needs: any of `any_of` (the first is HubSpot's own name for
    it), and why."""

    any_of: tuple[str, ...]
    why: str

    @property
    def scope(self) -> str:
        return self.any_of[0]

    def met_by(self, granted: Iterable[str]) -> bool:
        return not set(self.any_of).isdisjoint(granted)


def writes_hub(sync: ObjectSync) -> bool:
    return sync.direction in ("both", "to_hub")


def maps_owner(sync: ObjectSync) -> bool:
    """Does the object sync map the record owner (`hubspot_owner_id`)?"""
    return any(m.enabled and (m.transform == "owner" or m.hub == OWNER_PROPERTY)
               for m in sync.mappings)


def object_scope(obj: str, access: str) -> tuple[str, ...]:
    return (f"crm.objects.{obj}.{access}", *_ALTERNATIVES.get(obj, ()))


def schema_write_scope(obj: str) -> tuple[str, ...]:
    return _SCHEMA_WRITE.get(obj, (f"crm.schemas.{obj}.write",))


def sync_needs(syncs: Iterable[ObjectSync]) -> list[ScopeNeed]:
    """What the enabled object syncs need, one entry per scope, in a stable order."""
    needs: dict[tuple[str, ...], list[str]] = {}

    def need(any_of: tuple[str, ...], why: str) -> None:
        needs.setdefault(any_of, [])
        if why not in needs[any_of]:
            needs[any_of].append(why)

    for s in syncs:
        if not s.enabled:
            continue
        what = f"{s.hub_object} ⇄ {s.connection}.{s.app_object}"
        need(object_scope(s.hub_object, "read"), f"read {what}")
        if writes_hub(s):
            need(object_scope(s.hub_object, "write"), f"write {what}")
        if maps_owner(s):
            need(("crm.objects.owners.read", "automation"), f"record owners of {what}")
        if s.event_sync:
            need(("analytics.behavioral_events.send",), f"app events of {what}")
    return [ScopeNeed(k, "; ".join(v)) for k, v in needs.items()]


def property_write_needs(objects: Iterable[str]) -> list[ScopeNeed]:
    """The scopes `crmsync doctor --create-properties` needs to create properties of
    `objects`."""
    return [ScopeNeed(schema_write_scope(o), f"create {o} properties")
            for o in dict.fromkeys(objects)]


def authorize_scopes(syncs: Iterable[ObjectSync], *, create_properties: bool = False
                     ) -> list[str]:
    """The `scope` of the authorize URL: `oauth` and the first name of every need (plus the
    property-writing scopes with `create_properties`)."""
    syncs = list(syncs)
    needs = sync_needs(syncs)
    if create_properties:
        needs += property_write_needs(s.hub_object for s in syncs if s.enabled)
    return list(dict.fromkeys([BASE_SCOPE, *(n.scope for n in needs)]))


def missing(needs: Iterable[ScopeNeed], granted: Iterable[str]) -> list[ScopeNeed]:
    have = set(granted)
    return [n for n in needs if not n.met_by(have)]
