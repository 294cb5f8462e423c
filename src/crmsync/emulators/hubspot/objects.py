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



def _other(
    name: str,
    type_id: str,
    singular: str,
    list_defaults: tuple[str, ...] = (),
    query_fields: tuple[str, ...] = (),
    *,
    webhooks: bool = False,
) -> ObjectType:
    """An object type the emulator knows with HubSpot's standard shape and no behaviour of its
    own: records live, list, search and validate like any other, no property is required on
    create [INF] and its default reads are the system properties [INF] plus `list_defaults`."""
    system = ("createdate", "hs_lastmodifieddate", "hs_object_id")
    return ObjectType(
        name=name,
        type_id=type_id,
        singular=singular,
        last_modified="hs_lastmodifieddate",
        list_defaults=list_defaults,
        search_defaults=(*list_defaults, *(p for p in system if p not in list_defaults)),
        query_fields=query_fields,
        required=(),
        webhooks=webhooks,
    )


# The other object types HubSpot knows, with the type ids of hubspot-onboarding.md §8 (DOC-OBJ
# table). Tickets and products have webhook subscription types (fact sheet §8.2 eventType
# enum); the rest do not. Default list properties of tickets and products [INF]: the generic
# objects spec names default properties for them but the fact sheets do not list them.
TICKETS = _other(
    "tickets",
    "0-5",
    "ticket",
    ("subject", "content", "hs_pipeline", "hs_pipeline_stage"),
    ("subject", "content"),
    webhooks=True,
)
PRODUCTS = _other(
    "products", "0-7", "product", ("name", "description", "price"), ("name", "hs_sku"), webhooks=True
)
QUOTES = _other("quotes", "0-14", "quote", (), ("hs_title",))
COMMUNICATIONS = _other("communications", "0-18", "communication")
FEEDBACK_SUBMISSIONS = _other("feedback_submissions", "0-19", "feedback_submission")
TASKS = _other("tasks", "0-27", "task", (), ("hs_task_subject",))
NOTES = _other("notes", "0-46", "note", (), ("hs_note_body",))
MEETINGS = _other("meetings", "0-47", "meeting", (), ("hs_meeting_title",))
CALLS = _other("calls", "0-48", "call", (), ("hs_call_title",))
EMAILS = _other("emails", "0-49", "email", (), ("hs_email_subject",))
# Whether `goal_targets` is the Goals object 0-74 is unverified (hubspot-onboarding.md §8, open
# item 12): [INF] it is.
GOAL_TARGETS = _other("goal_targets", "0-74", "goal_target")
POSTAL_MAIL = _other("postal_mail", "0-116", "postal_mail")

# The engagement types (activities logged on records).
ENGAGEMENTS: tuple[ObjectType, ...] = (
    CALLS,
    COMMUNICATIONS,
    EMAILS,
    MEETINGS,
    NOTES,
    POSTAL_MAIL,
    TASKS,
)

OBJECT_TYPES: tuple[ObjectType, ...] = (
    CONTACTS,
    COMPANIES,
    DEALS,
    INVOICES,
    LINE_ITEMS,
    TICKETS,
    PRODUCTS,
    QUOTES,
    FEEDBACK_SUBMISSIONS,
    GOAL_TARGETS,
    *ENGAGEMENTS,
)

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
