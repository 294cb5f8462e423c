"""HubSpot object facts the connector needs (fact sheet §1, §2, §5, §8)."""

from __future__ import annotations

# Object type names (as in paths) and their objectTypeIds.
OBJECT_TYPE_IDS: dict[str, str] = {
    "contacts": "0-1",
    "companies": "0-2",
    "deals": "0-3",
    "tickets": "0-5",
    "products": "0-7",
    "line_items": "0-8",
    "invoices": "0-52",
}
OBJECT_NAMES_BY_TYPE_ID: dict[str, str] = {v: k for k, v in OBJECT_TYPE_IDS.items()}

# Webhook subscription types name objects in the singular ("contact.creation").
OBJECT_BY_SINGULAR: dict[str, str] = {
    "contact": "contacts",
    "company": "companies",
    "deal": "deals",
    "ticket": "tickets",
    "product": "products",
    "line_item": "line_items",
    "invoice": "invoices",
}

# HubSpot-defined (unlabelled) association type ids, by (from, to) (fact sheet §5).
ASSOCIATION_TYPE_IDS: dict[tuple[str, str], int] = {
    ("contacts", "companies"): 279,
    ("companies", "contacts"): 280,
    ("deals", "contacts"): 3,
    ("contacts", "deals"): 4,
    ("deals", "companies"): 341,
    ("companies", "deals"): 342,
    ("invoices", "contacts"): 177,
    ("contacts", "invoices"): 178,
    ("invoices", "companies"): 179,
    ("companies", "invoices"): 180,
    ("invoices", "deals"): 175,
    ("deals", "invoices"): 176,
    ("invoices", "line_items"): 409,
    ("line_items", "invoices"): 410,
    ("deals", "line_items"): 19,
    ("line_items", "deals"): 20,
}

# Batch sizes (fact sheet §1.3, §5).
OBJECT_BATCH_SIZE = 100
LIST_PAGE_SIZE = 100
SEARCH_PAGE_SIZE = 200
SEARCH_RESULT_CAP = 10_000
ASSOCIATION_READ_BATCH = 1000
ASSOCIATION_WRITE_BATCH = 1000  # create allows 2,000; stay well under it


def object_name(name: str) -> str:
    """Path name for an object given by name or objectTypeId ("0-1" → "contacts")."""
    return OBJECT_NAMES_BY_TYPE_ID.get(name, name)


def last_modified_property(obj: str) -> str:
    """Contacts expose `lastmodifieddate`; every other object `hs_lastmodifieddate`."""
    return "lastmodifieddate" if object_name(obj) == "contacts" else "hs_lastmodifieddate"
