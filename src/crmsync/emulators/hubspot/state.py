"""The account's records and everything that changes them.

Every write — over HTTP, from the Python API or the admin seed — goes through `CrmState`, so
validation, uniqueness, last-modified bumps and webhook notifications behave the same way
whichever door a change came in by.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from .associations import TYPES_BY_ID, Associations, AssociationType
from .errors import ApiError, PropertyProblem, property_values_error, validation_error
from .objects import CONTACTS, DEALS, INVOICES, LINE_ITEMS, OBJECT_TYPES, ObjectType, resolve
from .owners import Owners
from .pipelines import Pipelines
from .properties import OWNER_PROPERTY, Option, PropertyRegistry, check_value
from .search_index import SearchIndex
from .values import format_number, iso_from_ms, parse_instant_ms, parse_number

# Values kept per property in its history [INF: HubSpot's own limit is not documented here].
MAX_HISTORY = 50


@dataclass(frozen=True)
class Change:
    """One change a webhook subscription would see (fact sheet §8.2)."""

    kind: str  # creation | propertyChange | deletion | associationChange
    object_type: ObjectType
    object_id: int
    source: str  # changeSource: INTEGRATION (API), CRM_UI, IMPORT
    property_name: str | None = None
    property_value: str | None = None
    association: dict[str, Any] | None = None
    # When the change happened (epoch ms): a property change at its write's time, the time
    # its history entry and the record's last-modified date carry [INF]. None: when notified.
    at: int | None = None


@dataclass
class StoredRecord:
    id: int
    properties: dict[str, str]  # only properties that hold a value
    created_ms: int
    updated_ms: int
    archived_ms: int | None = None
    # changeSource of the create: the source of every value the record was created with.
    source: str = "INTEGRATION"
    # Property history (fact sheet §1.2 ValueWithTimestamp), newest first: (value, epoch ms,
    # sourceType). Kept only for properties changed after the create; a property never
    # changed has one value, set by the create (`history_of`).
    history: dict[str, list[tuple[str, int, str]]] = field(default_factory=dict)

    @property
    def archived(self) -> bool:
        return self.archived_ms is not None

    def history_of(self, name: str) -> list[tuple[str, int, str]]:
        if name in self.history:
            return self.history[name]
        if name in self.properties:
            return [(self.properties[name], self.created_ms, self.source)]
        return []

    def remember(self, name: str, old: str | None, value: str, at_ms: int, source: str) -> None:
        """A change of property `name` from `old` to `value` ("" clears it)."""
        if name not in self.history:
            self.history[name] = (
                [(old, self.created_ms, self.source)] if old is not None else [])
        entries = self.history[name]
        entries.insert(0, (value, at_ms, source))
        del entries[MAX_HISTORY:]

    def to_json(self, names: Iterable[str] | None = None,
                history: Iterable[str] | None = None) -> dict[str, Any]:
        """SimplePublicObject. `names`: the properties to include (None: all that hold a value).
        A property without a value does not appear (DOC-OBJ, query parameter `properties`).
        `history`: the properties to give `propertiesWithHistory` for (query parameter or
        batch-read field `propertiesWithHistory`); one without any value is left out [INF]."""
        if names is None:
            props = dict(self.properties)
        else:
            props = {n: self.properties[n] for n in names if n in self.properties}
        out: dict[str, Any] = {
            "id": str(self.id),
            "properties": props,
            "createdAt": iso_from_ms(self.created_ms),
            "updatedAt": iso_from_ms(self.updated_ms),
            "archived": self.archived,
        }
        if history:
            out["propertiesWithHistory"] = {
                n: [{"value": v, "timestamp": iso_from_ms(ms), "sourceType": src}
                    for v, ms, src in entries]
                for n in dict.fromkeys(history) if (entries := self.history_of(n))}
        if self.archived_ms is not None:
            out["archivedAt"] = iso_from_ms(self.archived_ms)
        return out


@dataclass
class PreparedCreate:
    obj: ObjectType
    values: dict[str, str]
    associations: list[tuple[ObjectType, int, set[int]]]


class CrmState:
    def __init__(
        self,
        *,
        portal_id: int,
        now_ms: Callable[[], int],
        clock: Callable[[], float],
        on_change: Callable[[Change], None],
        search_index_delay: float = 0.0,
    ) -> None:
        self.portal_id = portal_id
        self.now_ms = now_ms
        self.clock = clock
        self.on_change = on_change
        self.search_index_delay = search_index_delay
        self.registry = PropertyRegistry(self._dynamic_options)
        self.pipelines = Pipelines(now_ms, self._new_pipeline_id, self._deals_in_stages)
        self.associations = Associations()
        self.owners = Owners(now_ms)
        self.events: list[dict[str, Any]] = []
        self._event_uuids: set[str] = set()
        self._records: dict[str, dict[int, StoredRecord]] = {o.name: {} for o in OBJECT_TYPES}
        # Ids are handed out in increasing order, so appending keeps each list sorted: list
        # paging bisects it for the `after` cursor.
        self._order: dict[str, list[int]] = {o.name: [] for o in OBJECT_TYPES}
        # object → unique property → normalised value → live record id
        self._unique: dict[str, dict[str, dict[str, int]]] = {o.name: {} for o in OBJECT_TYPES}
        self._next_id = 1001
        self._next_pipeline_id = 100_000_001
        # What search sees, indexed by property (fact sheet §2's indexing delay included).
        self.search_index = SearchIndex(clock, search_index_delay, self.registry.get, self._live_properties)

    def reset(self) -> None:
        self.registry.reset()
        self.pipelines.reset()
        self.associations.clear()
        self.owners.reset()
        self.events.clear()
        self._event_uuids.clear()
        self._records = {o.name: {} for o in OBJECT_TYPES}
        self._order = {o.name: [] for o in OBJECT_TYPES}
        self._unique = {o.name: {} for o in OBJECT_TYPES}
        self.search_index.reset()

    # --- lookups ---

    @staticmethod
    def object_type(name: str) -> ObjectType:
        obj = resolve(name)
        if obj is None:
            # HubSpot's answer to an unknown object type in the path.
            raise validation_error(f"Unable to infer object type from: {name}")
        return obj

    def all_records(self, obj: ObjectType) -> dict[int, StoredRecord]:
        """Every record of the type, live and archived, in id (= creation) order."""
        return self._records[obj.name]

    def page(
        self, obj: ObjectType, after: int, limit: int, *, archived: bool
    ) -> tuple[list[StoredRecord], int | None]:
        """Up to `limit` records with id ≥ `after`, and the id of the next one (None: last page)."""
        order, records = self._order[obj.name], self._records[obj.name]
        out: list[StoredRecord] = []
        # Index, not slice: a slice would copy the rest of the list for every page.
        for i in range(bisect.bisect_left(order, after), len(order)):
            rec = records[order[i]]
            if rec.archived != archived:
                continue
            if len(out) == limit:
                return out, rec.id
            out.append(rec)
        return out, None

    def live(self, obj: ObjectType) -> Iterator[StoredRecord]:
        return (r for r in self._records[obj.name].values() if not r.archived)

    def by_id(
        self, obj: ObjectType, record_id: int | str, *, archived: bool = False
    ) -> StoredRecord | None:
        try:
            rec = self._records[obj.name].get(int(record_id))
        except (TypeError, ValueError):
            return None
        if rec is None or rec.archived != archived:
            return None
        return rec

    def id_properties(self, obj: ObjectType) -> list[str]:
        """Properties usable as `idProperty` (fact sheet §1.1, §7)."""
        names = ["hs_object_id", *self.registry.unique_names(obj)]
        if obj is CONTACTS:
            names.append("email")
        elif obj.name == "companies":
            names.append("domain")
        return names

    def check_id_property(self, obj: ObjectType, id_property: str | None) -> str | None:
        if id_property in (None, "", "hs_object_id"):
            return None
        if id_property not in self.id_properties(obj):
            raise validation_error(
                f"{id_property} is not a unique identifier property of {obj.name}",
                idProperty=[str(id_property)],
            )
        return id_property

    def find(
        self, obj: ObjectType, value: str, id_property: str | None = None, *, archived: bool = False
    ) -> StoredRecord | None:
        """A record by id or by the value of a unique property."""
        id_property = self.check_id_property(obj, id_property)
        if id_property is None:
            return self.by_id(obj, value, archived=archived)
        index = self._unique[obj.name].get(id_property)
        if index is not None and not archived:
            found = index.get(_unique_key(id_property, value))
            return self.by_id(obj, found) if found is not None else None
        wanted = _unique_key(id_property, value)
        records = self.all_records(obj).values()
        return next(
            (
                r
                for r in records
                if r.archived == archived
                and _unique_key(id_property, r.properties.get(id_property, "")) == wanted
            ),
            None,
        )

    def _deals_in_stages(self, stage_ids: set[str]) -> list[int]:
        return [r.id for r in self.live(DEALS) if r.properties.get("dealstage") in stage_ids]

    def _dynamic_options(self, obj_name: str, prop: str) -> list[Option] | None:
        if prop == OWNER_PROPERTY:
            return self.owners.options()
        if obj_name == "deals" and prop == "pipeline":
            return self.pipelines.pipeline_options()
        if obj_name == "deals" and prop == "dealstage":
            return self.pipelines.stage_options()
        return None

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id - 1

    def _new_pipeline_id(self) -> int:
        self._next_pipeline_id += 1
        return self._next_pipeline_id - 1

    # --- validation ---

    def validate_values(
        self, obj: ObjectType, raw: Any, existing: StoredRecord | None
    ) -> dict[str, str]:
        """The stored form of a `properties` object, or 400 VALIDATION_ERROR listing every bad
        value (unknown, read-only, malformed, bad option, unknown deal stage)."""
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise validation_error("properties must be an object")
        values: dict[str, str] = {}
        problems: list[PropertyProblem] = []
        for name, value in raw.items():
            checked = check_value(obj, self.registry.get(obj, name), name, value)
            if isinstance(checked, PropertyProblem):
                problems.append(checked)
            else:
                values[name] = checked
        if obj is DEALS:
            problems.extend(self._check_pipeline(values, existing))
        owner = values.get(OWNER_PROPERTY)
        if owner and self.registry.get(obj, OWNER_PROPERTY) and not self.owners.is_live(owner):
            # [INF] an owner id the account does not have is refused like any other option.
            problems.append(
                PropertyProblem(
                    OWNER_PROPERTY,
                    "INVALID_OPTION",
                    f"{owner} was not one of the allowed options: "
                    f"[{', '.join(o.value for o in self.owners.options())}]",
                )
            )
        if problems:
            raise property_values_error(problems, self.portal_id)
        return values

    def _check_pipeline(
        self, values: dict[str, str], existing: StoredRecord | None
    ) -> list[PropertyProblem]:
        if "pipeline" not in values and "dealstage" not in values:
            return []
        current = existing.properties if existing else {}
        pipeline_id = values.get("pipeline", current.get("pipeline", ""))
        pipeline = self.pipelines.find(pipeline_id) if pipeline_id else None
        if pipeline_id and pipeline is None:
            allowed = ", ".join(p.id for p in self.pipelines.all())
            return [
                PropertyProblem(
                    "pipeline",
                    "INVALID_OPTION",
                    f"{pipeline_id} was not one of the allowed options: [{allowed}]",
                )
            ]
        stage = values.get("dealstage", current.get("dealstage", ""))
        if stage and pipeline is not None and pipeline.stage(stage) is None:
            allowed = ", ".join(s.id for s in pipeline.sorted_stages())
            return [
                PropertyProblem(
                    "dealstage",
                    "INVALID_OPTION",
                    f"{stage} was not one of the allowed options: [{allowed}]",
                )
            ]
        return []

    def _check_required(self, obj: ObjectType, values: dict[str, str]) -> None:
        for group in obj.required:
            if not any(values.get(name) for name in group):
                names = " or ".join(group)
                raise validation_error(
                    f"Missing required property: {names}", propertyName=list(group)
                )

    def check_unique(self, obj: ObjectType, values: dict[str, str], own_id: int | None) -> None:
        """409 CONFLICT for a value a live record of the type already holds."""
        for name in self.unique_names(obj):
            value = values.get(name)
            if not value:
                continue
            holder = self._unique[obj.name].get(name, {}).get(_unique_key(name, value))
            if holder is not None and holder != own_id:
                if obj is CONTACTS and name == "email":
                    # fact sheet §4: the existing id appears only in the message text.
                    raise ApiError(
                        409, "CONFLICT", f"Contact already exists. Existing ID: {holder}"
                    )
                raise ApiError(
                    409,
                    "CONFLICT",
                    f"{value} already has that value on {obj.singular} {holder}; "
                    f"{name} requires unique values. Existing ID: {holder}",
                    context={"propertyName": [name]},
                )

    def unique_names(self, obj: ObjectType) -> list[str]:
        names = self.registry.unique_names(obj)
        return ["email", *names] if obj is CONTACTS else names

    def _index(self, obj: ObjectType, rec: StoredRecord, old: dict[str, str] | None) -> None:
        for name in self.unique_names(obj):
            index = self._unique[obj.name].setdefault(name, {})
            if old and old.get(name):
                key = _unique_key(name, old[name])
                if index.get(key) == rec.id:
                    del index[key]
            value = rec.properties.get(name)
            if value and not rec.archived:
                index[_unique_key(name, value)] = rec.id

    def prepare_associations(
        self, obj: ObjectType, raw: Any
    ) -> list[tuple[ObjectType, int, set[int]]]:
        """Create-time `associations: [{to:{id}, types:[{associationCategory, associationTypeId}]}]`."""
        if raw is None:
            return []
        if not isinstance(raw, list):
            raise validation_error("associations must be a list")
        out: list[tuple[ObjectType, int, set[int]]] = []
        for item in raw:
            try:
                to_id = str(item["to"]["id"])
                type_ids = {int(t["associationTypeId"]) for t in item["types"]}
            except (KeyError, TypeError, ValueError) as exc:
                raise validation_error(
                    "Each association needs to.id and types[].associationTypeId"
                ) from exc
            types = [self.association_type(obj, t) for t in type_ids]
            to_type = self.object_type(types[0].to_type) if types else None
            if to_type is None or any(t.to_type != types[0].to_type for t in types):
                raise validation_error("Association types of one input must target one object type")
            target = self.by_id(to_type, to_id)
            if target is None:
                raise validation_error(
                    f"No {to_type.singular} with id {to_id} exists to associate with",
                    toObjectId=[to_id],
                )
            out.append((to_type, target.id, type_ids))
        return out

    @staticmethod
    def association_type(
        from_type: ObjectType, type_id: int, to_type: ObjectType | None = None
    ) -> AssociationType:
        t = TYPES_BY_ID.get(type_id)
        if (
            t is None
            or t.from_type != from_type.singular
            or (to_type is not None and t.to_type != to_type.singular)
        ):
            target = to_type.singular if to_type else "?"
            raise validation_error(
                f"{type_id} is not a valid association type id from {from_type.singular} to {target}",
                associationTypeId=[str(type_id)],
            )
        return t

    # --- writes ---

    def prepare_create(
        self, obj: ObjectType, raw_props: Any, raw_assoc: Any = None
    ) -> PreparedCreate:
        """Validates a create without applying it (batch create checks every input first)."""
        values = {k: v for k, v in self.validate_values(obj, raw_props, None).items() if v != ""}
        self._check_required(obj, values)
        assoc = self.prepare_associations(obj, raw_assoc)
        if obj is INVOICES and values.get("hs_invoice_status") == "open":
            _check_invoice_can_open({t.name for t, _, _ in assoc})
        return PreparedCreate(obj, values, assoc)

    def create(
        self, obj: ObjectType, raw_props: Any, raw_assoc: Any = None, *, source: str = "INTEGRATION"
    ) -> StoredRecord:
        prepared = self.prepare_create(obj, raw_props, raw_assoc)
        self.check_unique(obj, prepared.values, None)
        return self.commit_create(prepared, source=source)

    def commit_create(self, prepared: PreparedCreate, *, source: str) -> StoredRecord:
        obj, now = prepared.obj, self.now_ms()
        rec = StoredRecord(self._new_id(), dict(prepared.values), now, now, source=source)
        stamp = iso_from_ms(now)
        rec.properties.update(
            {"hs_object_id": str(rec.id), "createdate": stamp, obj.last_modified: stamp}
        )
        _compute(obj, rec.properties)
        self.search_index.changed(obj, rec.id, rec.properties, None)
        self._records[obj.name][rec.id] = rec
        self._order[obj.name].append(rec.id)
        self._index(obj, rec, None)
        self.on_change(Change("creation", obj, rec.id, source))
        # [INF] Creating a record also reports each property it was created with.
        for name, value in prepared.values.items():
            self.on_change(Change("propertyChange", obj, rec.id, source, name, value))
        for to_type, to_id, type_ids in prepared.associations:
            self.associate(obj, rec.id, to_type, to_id, type_ids, source=source)
        return rec

    def update(
        self, obj: ObjectType, rec: StoredRecord, raw_props: Any, *, source: str = "INTEGRATION"
    ) -> StoredRecord:
        values = self.validate_values(obj, raw_props, rec)
        self.check_unique(obj, values, rec.id)
        if obj is INVOICES and values.get("hs_invoice_status") == "open":
            _check_invoice_can_open(
                {t.name for t in OBJECT_TYPES if self.associations.targets(obj, rec.id, t)}
            )
        changed = {k: v for k, v in values.items() if rec.properties.get(k, "") != v}
        if not changed:
            # [INF] A write that changes nothing leaves the record (and its last-modified
            # date) alone and notifies no one.
            return rec
        old = dict(rec.properties)
        now = self.now_ms()
        for name, value in changed.items():
            rec.remember(name, old.get(name), value, now, source)
            if value == "":
                rec.properties.pop(name, None)
            else:
                rec.properties[name] = value
        _compute(obj, rec.properties)
        rec.updated_ms = now
        rec.properties[obj.last_modified] = iso_from_ms(rec.updated_ms)
        self.search_index.changed(obj, rec.id, rec.properties, old)
        self._index(obj, rec, old)
        for name, value in changed.items():
            self.on_change(Change("propertyChange", obj, rec.id, source, name, value, at=now))
        return rec

    def archive(self, obj: ObjectType, rec: StoredRecord, *, source: str = "INTEGRATION") -> None:
        if rec.archived:
            return
        rec.archived_ms = self.now_ms()
        self._index(obj, rec, dict(rec.properties))
        self.search_index.removed(obj, rec.id)
        # An archived record's associations are not readable any more [INF].
        self.associations.drop_record(obj, rec.id)
        self.on_change(Change("deletion", obj, rec.id, source))

    def _live_properties(self, obj: ObjectType, record_id: int) -> dict[str, str] | None:
        rec = self._records[obj.name].get(record_id)
        return None if rec is None or rec.archived else rec.properties

    # --- associations ---

    def associate(
        self,
        from_type: ObjectType,
        from_id: int,
        to_type: ObjectType,
        to_id: int,
        type_ids: set[int],
        *,
        source: str = "INTEGRATION",
    ) -> None:
        for t in type_ids:
            self.association_type(from_type, t, to_type)
        before = self.associations.types_between(from_type, from_id, to_type, to_id)
        if self.associations.add(from_type, from_id, to_type, to_id, type_ids):
            after = self.associations.types_between(from_type, from_id, to_type, to_id)
            self._association_changed(from_type, from_id, to_type, to_id, before, after, source)

    def dissociate(
        self,
        from_type: ObjectType,
        from_id: int,
        to_type: ObjectType,
        to_id: int,
        type_ids: set[int] | None = None,
        *,
        source: str = "INTEGRATION",
    ) -> None:
        before = self.associations.types_between(from_type, from_id, to_type, to_id)
        if self.associations.remove(from_type, from_id, to_type, to_id, type_ids):
            after = self.associations.types_between(from_type, from_id, to_type, to_id)
            self._association_changed(from_type, from_id, to_type, to_id, before, after, source)

    def _association_changed(
        self,
        from_type: ObjectType,
        from_id: int,
        to_type: ObjectType,
        to_id: int,
        before: set[int],
        after: set[int],
        source: str,
    ) -> None:
        # One associationChange per direction, for objects that have webhook subscriptions.
        for a, a_id, b, b_id, types_before, types_after in (
            (from_type, from_id, to_type, to_id, before, after),
            (to_type, to_id, from_type, from_id, _reverse(before), _reverse(after)),
        ):
            if not a.webhooks:
                continue
            removed = not types_after
            types = types_before if removed else types_after
            primary = any(TYPES_BY_ID[t].label == "Primary" for t in types)
            self.on_change(
                Change(
                    "associationChange",
                    a,
                    a_id,
                    source,
                    association={
                        "associationType": f"{a.singular}_TO_{b.singular}".upper(),
                        "fromObjectId": a_id,
                        "toObjectId": b_id,
                        "associationRemoved": removed,
                        "isPrimaryAssociation": primary,
                    },
                )
            )

    # --- behavioural events ---

    def record_event(self, body: Any) -> None:
        """`POST /events/v3/send`: records the occurrence against its contact."""
        if not isinstance(body, dict):
            raise validation_error("Invalid input JSON: expected an object")
        name = body.get("eventName")
        if not isinstance(name, str) or not name:
            raise ApiError(
                400,
                "VALIDATION_ERROR",
                "Invalid input: eventName is required",
                context={"eventName": ["This property is required"]},
            )
        properties = body.get("properties") or {}
        if not isinstance(properties, dict):
            raise validation_error("properties must be an object")
        contact: StoredRecord | None = None
        if body.get("objectId") not in (None, ""):
            contact = self.by_id(CONTACTS, str(body["objectId"]))
            if contact is None:
                raise validation_error(
                    f"No contact with id {body['objectId']}", objectId=[str(body["objectId"])]
                )
        elif isinstance(body.get("email"), str) and body["email"]:
            # An unknown email records the event without a contact (it does not create one).
            contact = self.find(CONTACTS, body["email"], "email")
        elif not body.get("utk"):
            raise validation_error("One of objectId, email or utk is required")
        occurred = body.get("occurredAt")
        if occurred is None:
            occurred_ms = self.now_ms()
        else:
            parsed = parse_instant_ms(str(occurred))
            if parsed is None:
                raise validation_error(f"occurredAt {occurred} is not a valid date-time")
            occurred_ms = parsed
        uuid = body.get("uuid")
        if isinstance(uuid, str) and uuid:
            # "When multiple events have the same ID within a year, the first will be accepted
            # and all others will be rejected" (HubSpot docs, send an event occurrence).
            if uuid in self._event_uuids:
                return
            self._event_uuids.add(uuid)
        self.events.append(
            {
                "eventName": name,
                "objectId": str(contact.id) if contact else None,
                "email": body.get("email"),
                "utk": body.get("utk"),
                "uuid": uuid,
                "occurredAt": iso_from_ms(occurred_ms),
                "properties": {str(k): str(v) for k, v in properties.items()},
            }
        )

    # --- whole state ---

    def dump(self) -> dict[str, Any]:
        return {
            "portalId": self.portal_id,
            "objects": {
                obj.name: [r.to_json() for r in self.all_records(obj).values()]
                for obj in OBJECT_TYPES
            },
            "associations": self.associations.dump(),
            "owners": [o.to_json() for o in self.owners.all()],
            "pipelines": {"deals": [p.to_json() for p in self.pipelines.all()]},
            "customProperties": {
                name: [p.to_json() for p in props]
                for name, props in self.registry.custom().items()
                if props
            },
            "events": list(self.events),
        }


def _unique_key(name: str, value: str) -> str:
    # Emails compare case-insensitively.
    return value.strip().lower() if name == "email" else value


def _reverse(type_ids: set[int]) -> set[int]:
    return {TYPES_BY_ID[t].reverse_id for t in type_ids}


def _compute(obj: ObjectType, props: dict[str, str]) -> None:
    """HubSpot-calculated properties: a line item's amount = quantity × (price − discount)."""
    if obj is not LINE_ITEMS:
        return
    price, quantity = parse_number(props.get("price", "")), parse_number(props.get("quantity", ""))
    if price is None or quantity is None:
        props.pop("amount", None)
        return
    discount = parse_number(props.get("discount", "")) or Decimal(0)
    props["amount"] = format_number(quantity * (price - discount))


def _check_invoice_can_open(associated_types: set[str]) -> None:
    # fact sheet §1.1: to move an invoice to `open` it needs a contact and a line item.
    if "contacts" not in associated_types or "line_items" not in associated_types:
        raise validation_error(
            "An invoice needs an associated contact and at least one line item to be open",
            propertyName=["hs_invoice_status"],
        )
