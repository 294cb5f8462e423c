"""The company account: records per entity type, users, field definitions; every write
validated, stamped and announced as a `Change` (what webhooks v2 deliver).

Deletes are soft: `is_deleted` becomes true, `update_time` becomes the delete time, and the
record is purged 30 days later [PD-spec-v2][PD-v2mig]. Lists leave deleted records out (deals
show them with `status=deleted` [PD-spec-v2]); a get by id still returns one, with
`is_deleted: true`, until it is purged [INF: the spec does not say]."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .clock import EmulatorClock
from .deals import Deals
from .errors import bad_request, not_found
from .fields import FieldRegistry
from .organizations import Organizations
from .persons import Persons
from .pipelines import Pipelines, Stages
from .records import Body, EntityType, Record

PURGE_AFTER_MS = 30 * 86_400_000
WITH_FIELDS = ("persons", "organizations", "deals")
# A new company's default pipeline [INF: Pipedrive's sign-up default].
DEFAULT_STAGES = (
    ("Qualified", 10),
    ("Contact Made", 20),
    ("Demo Scheduled", 40),
    ("Proposal Made", 60),
    ("Negotiations Started", 80),
)


@dataclass(frozen=True)
class Change:
    """One applied write: webhooks v2's `meta.action`, `data` (null on delete) and `previous`
    (only the changed fields' old values on change, the last state on delete, null on create)
    [PD-wh2]."""

    action: str  # create | change | delete
    entity: str  # person, organization, deal, pipeline, stage
    entity_id: int
    data: dict[str, Any] | None
    previous: dict[str, Any] | None
    user_id: int
    source: str  # api | app
    at_ms: int


@dataclass(frozen=True)
class User:
    id: int
    name: str
    email: str
    is_admin: bool


class AccountState:
    def __init__(
        self,
        *,
        company_id: int,
        clock: EmulatorClock,
        rng: random.Random,
        on_change: Callable[[Change], None],
        users: dict[int, User],
    ) -> None:
        self.company_id = company_id
        self.clock = clock
        self.on_change = on_change
        self.users = users
        self._rng = rng
        self.types: dict[str, EntityType] = {
            t.name: t for t in (Persons(), Organizations(), Deals(), Pipelines(), Stages())
        }
        self.reset()

    def reset(self) -> None:
        """An empty company: no records, no custom fields, the default pipeline."""
        self.records: dict[str, dict[int, Record]] = {name: {} for name in self.types}
        self._next_id = dict.fromkeys(self.types, 1)
        next_option_id = [1]
        self.registries = {
            name: FieldRegistry(name, self._rng, next_option_id) for name in WITH_FIELDS
        }
        pipeline = self.create(
            "pipelines", {"name": "Pipeline"}, user_id=self.admin_id, notify=False
        )
        for name, probability in DEFAULT_STAGES:
            self.create(
                "stages",
                {"name": name, "pipeline_id": pipeline.id, "deal_probability": probability},
                user_id=self.admin_id,
                notify=False,
            )

    # --- the Account protocol of records.py ---

    @property
    def admin_id(self) -> int:
        return min(u.id for u in self.users.values() if u.is_admin)

    def user_exists(self, user_id: int) -> bool:
        return user_id in self.users

    def now_ms(self) -> int:
        return self.clock.now_ms()

    def registry(self, entity: str) -> FieldRegistry:
        try:
            return self.registries[entity]
        except KeyError:
            raise not_found("Fields") from None

    def live(self, entity: str, record_id: int) -> Record | None:
        rec = self.records[entity].get(record_id)
        return rec if rec is not None and not rec.is_deleted else None

    def all_live(self, entity: str) -> list[Record]:
        return [r for r in self.records[entity].values() if not r.is_deleted]

    def stages_of(self, pipeline_id: int) -> list[Record]:
        return [s for s in self.all_live("stages") if s.attrs["pipeline_id"] == pipeline_id]

    # --- reads ---

    def entity(self, name: str) -> EntityType:
        try:
            return self.types[name]
        except KeyError:
            raise not_found("Entity type") from None

    def purge(self, entity: str) -> None:
        """Forgets records deleted more than 30 days ago [PD-spec-v2]."""
        horizon = self.now_ms() - PURGE_AFTER_MS
        table = self.records[entity]
        for rid in [
            r.id for r in table.values() if r.deleted_ms is not None and r.deleted_ms <= horizon
        ]:
            del table[rid]

    def get(self, entity: str, record_id: int) -> Record:
        """A record by id, deleted ones included until purged; 404 otherwise."""
        self.purge(entity)
        rec = self.records[entity].get(record_id)
        if rec is None:
            raise not_found(self.types[entity].label)
        return rec

    def to_json(self, entity: str, rec: Record, **kwargs: Any) -> dict[str, Any]:
        return self.types[entity].to_json(rec, self, **kwargs)

    # --- writes ---

    def create(
        self,
        entity: str,
        raw: Any,
        *,
        user_id: int,
        source: str = "api",
        notify: bool = True,
    ) -> Record:
        etype = self.entity(entity)
        body = Body(raw, etype.create_keys)
        attrs = etype.check_create(body, self, user_id)
        custom = {}
        if etype.has_custom_fields and "custom_fields" in body:
            custom = {
                k: v
                for k, v in body.custom_fields(self.registry(entity), self).items()
                if v is not None
            }
        if "origin" in attrs:
            # A deal's origin: API-made or made in the web app (seen in webhook payloads).
            attrs["origin"] = "API" if source == "api" else "ManuallyCreated"
        now = self.now_ms()
        add_ms = attrs.pop("add_time_ms", now)
        rec = Record(self._next_id[entity], attrs, custom, add_ms, now)
        self._next_id[entity] += 1
        self.records[entity][rec.id] = rec
        if notify:
            self._announce("create", etype, rec, self.to_json(entity, rec), None, user_id, source)
        return rec

    def update(
        self,
        entity: str,
        record_id: int,
        raw: Any,
        *,
        user_id: int,
        source: str = "api",
    ) -> Record:
        """Applies a PATCH; a write that changes nothing neither bumps `update_time` nor fires
        a webhook [INF]."""
        etype = self.entity(entity)
        rec = self._live_or_404(entity, record_id)
        body = Body(raw, etype.update_keys)
        changes = etype.check_update(rec, body, self)
        custom_changes = {}
        if etype.has_custom_fields and "custom_fields" in body:
            custom_changes = body.custom_fields(self.registry(entity), self)
        before = self.to_json(entity, rec)
        old_attrs, old_custom, old_update = dict(rec.attrs), dict(rec.custom), rec.update_ms
        rec.attrs.update(changes)
        for key, value in custom_changes.items():
            if value is None:
                rec.custom.pop(key, None)
            else:
                rec.custom[key] = value
        rec.update_ms = self.now_ms()
        after = self.to_json(entity, rec)
        previous = _changed(before, after)
        if not previous:
            rec.attrs, rec.custom, rec.update_ms = old_attrs, old_custom, old_update
            return rec
        self._announce("change", etype, rec, after, previous, user_id, source)
        return rec

    def delete(self, entity: str, record_id: int, *, user_id: int, source: str = "api") -> Record:
        etype = self.entity(entity)
        rec = self._live_or_404(entity, record_id)
        last = self.to_json(entity, rec)
        rec.deleted_ms = rec.update_ms = self.now_ms()
        self._announce("delete", etype, rec, None, last, user_id, source)
        if entity == "pipelines":
            # Its stages go with it [INF].
            for stage in self.stages_of(rec.id):
                self.delete("stages", stage.id, user_id=user_id, source=source)
        return rec

    def _live_or_404(self, entity: str, record_id: int) -> Record:
        self.purge(entity)
        rec = self.live(entity, record_id)
        if rec is None:
            raise not_found(self.types[entity].label)
        return rec

    def _announce(
        self,
        action: str,
        etype: EntityType,
        rec: Record,
        data: dict[str, Any] | None,
        previous: dict[str, Any] | None,
        user_id: int,
        source: str,
    ) -> None:
        self.on_change(
            Change(action, etype.singular, rec.id, data, previous, user_id, source, self.now_ms())
        )

    # --- custom fields (values follow their definitions) ---

    def delete_field(self, entity: str, code: str) -> None:
        self.registry(entity).delete(code)
        for rec in self.records[entity].values():
            rec.custom.pop(code, None)

    def delete_options(self, entity: str, code: str, raw: Any) -> None:
        fdef = self.registry(entity).delete_options(code, raw)
        kept = fdef.option_ids()
        for rec in self.records[entity].values():
            value = rec.custom.get(code)
            if isinstance(value, int) and value not in kept:
                del rec.custom[code]
            elif isinstance(value, list):
                remaining = [v for v in value if v in kept]
                if remaining:
                    rec.custom[code] = remaining
                else:
                    del rec.custom[code]

    def dump(self) -> dict[str, Any]:
        return {
            name: [self.to_json(name, r) for r in table.values()]
            for name, table in self.records.items()
        }


def _changed(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """`previous` of a change event: the old values of the fields that changed (within
    `custom_fields`, only the changed keys); the update time is not a change of its own
    [PD-wh2][INF]."""
    out: dict[str, Any] = {}
    for key, old in before.items():
        if key in ("update_time", "stage_change_time"):
            continue
        new = after.get(key)
        if key == "custom_fields" and isinstance(old, dict) and isinstance(new, dict):
            diff = {k: v for k, v in old.items() if new.get(k) != v}
            if diff:
                out[key] = diff
        elif new != old:
            out[key] = old
    return out


def require_int_id(text: str, what: str = "id") -> int:
    try:
        value = int(text)
    except ValueError:
        raise bad_request(f"{what} must be an integer") from None
    if value < 1:
        raise bad_request(f"{what} must be a positive integer")
    return value
