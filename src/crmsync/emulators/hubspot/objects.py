"""The CRM object types the emulator serves, with the per-object facts of the fact sheet §1–§2."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ObjectType:
    name: str  # the plural path name: "contacts"
    type_id: str  # "0-1"
    singular: str  # webhook subscription types and v4 association names: "contact"
    last_modified: str  # contacts: lastmodifieddate; every other object: hs_lastmodifieddate
    list_defaults: tuple[str, ...]  # list / get / batch read without `properties`
    search_defaults: tuple[str, ...]  # search without `properties`
    query_fields: tuple[str, ...]  # the text fields `query` searches
    # Each inner tuple: at least one of these must be set on create (DOC-OBJ "Required
    # properties to create records", 2026-03).
    required: tuple[tuple[str, ...], ...]
    webhooks: bool  # objects with *.creation / *.propertyChange / ... subscription types

    @property
    def system_properties(self) -> tuple[str, ...]:
        """Returned on every read whatever `properties` asks for (DOC-OBJ examples always carry
        the create date, the last-modified date and hs_object_id)."""
        return ("createdate", self.last_modified, "hs_object_id")


CONTACTS = ObjectType(
    name="contacts",
    type_id="0-1",
    singular="contact",
    last_modified="lastmodifieddate",
    list_defaults=("firstname", "lastname", "email"),
    search_defaults=(
        "firstname",
        "lastname",
        "email",
        "lastmodifieddate",
        "hs_object_id",
        "createdate",
    ),
    query_fields=(
        "firstname",
        "lastname",
        "email",
        "phone",
        "hs_additional_emails",
        "fax",
        "mobilephone",
        "company",
    ),
    required=(),
    webhooks=True,
)
COMPANIES = ObjectType(
    name="companies",
    type_id="0-2",
    singular="company",
    last_modified="hs_lastmodifieddate",
    list_defaults=("name", "domain"),
    search_defaults=("name", "domain", "createdate", "hs_lastmodifieddate", "hs_object_id"),
    query_fields=("name", "domain", "website", "phone"),
    required=(("domain", "name"),),
    webhooks=True,
)
DEALS = ObjectType(
    name="deals",
    type_id="0-3",
    singular="deal",
    last_modified="hs_lastmodifieddate",
    list_defaults=("dealname", "amount", "closedate", "pipeline", "dealstage"),
    search_defaults=(
        "dealname",
        "amount",
        "closedate",
        "pipeline",
        "dealstage",
        "createdate",
        "hs_lastmodifieddate",
        "hs_object_id",
    ),
    query_fields=("dealname",),
    required=(("dealname",), ("dealstage",), ("pipeline",)),
    webhooks=True,
)
INVOICES = ObjectType(
    name="invoices",
    type_id="0-52",
    singular="invoice",
    last_modified="hs_lastmodifieddate",
    list_defaults=("createdate", "hs_lastmodifieddate", "hs_object_id"),
    search_defaults=("createdate", "hs_lastmodifieddate", "hs_object_id"),
    query_fields=("hs_number", "hs_title"),
    required=(("hs_currency",),),
    # Invoices have no webhook subscription types (fact sheet §8.2 eventType enum).
    webhooks=False,
)
LINE_ITEMS = ObjectType(
    name="line_items",
    type_id="0-8",
    singular="line_item",
    last_modified="hs_lastmodifieddate",
    list_defaults=("quantity", "amount", "price"),
    search_defaults=(
        "quantity",
        "amount",
        "price",
        "createdate",
        "hs_lastmodifieddate",
        "hs_object_id",
    ),
    query_fields=("name", "hs_sku"),
    required=(),
    webhooks=True,
)

OBJECT_TYPES: tuple[ObjectType, ...] = (CONTACTS, COMPANIES, DEALS, INVOICES, LINE_ITEMS)

_ALIASES: dict[str, ObjectType] = {}
for _t in OBJECT_TYPES:
    for _alias in (_t.name, _t.singular, _t.type_id):
        _ALIASES[_alias] = _t
_ALIASES["line_item"] = LINE_ITEMS
# The fact sheet gives invoices 0-52 (as does HubSpot's older "understanding the CRM" page),
# while DOC-OBJ (2026-03, "Object type ID values") lists 0-53: accept both.
_ALIASES["0-53"] = INVOICES


def resolve(name: str) -> ObjectType | None:
    """The object type for a path segment: plural name, singular name or objectTypeId."""
    return _ALIASES.get(name.lower())
