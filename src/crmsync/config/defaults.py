"""Default field mappings per connector type and hub object, as HubSpot's data sync offers them.

An object sync with `use_default_mappings = true` starts from these; a mapping in the config with
the same hub property replaces the default (that is how a default is switched off or made
required). For the SQLite and PostgreSQL apps the defaults assume conventional snake_case column names; a default
whose column the table does not have is dropped when the table's columns are known.
"""

from __future__ import annotations

from crmsync.config.model import FieldMapping

_SQLITE_DEFAULTS: dict[str, tuple[FieldMapping, ...]] = {
    "contacts": (
        FieldMapping(hub="email", app="email"),
        FieldMapping(hub="firstname", app="first_name"),
        FieldMapping(hub="lastname", app="last_name"),
        FieldMapping(hub="phone", app="phone"),
        FieldMapping(hub="jobtitle", app="job_title"),
        FieldMapping(hub="company", app="company_name"),
    ),
    "companies": (
        FieldMapping(hub="name", app="name"),
        FieldMapping(hub="domain", app="domain"),
        FieldMapping(hub="phone", app="phone"),
        FieldMapping(hub="city", app="city"),
        FieldMapping(hub="industry", app="industry"),
    ),
    "deals": (
        FieldMapping(hub="dealname", app="name", required=True),
        FieldMapping(hub="amount", app="amount", transform="number"),
        FieldMapping(hub="closedate", app="close_date", transform="date"),
        FieldMapping(hub="dealstage", app="stage", transform="stage", required=True),
    ),
    # HubSpot requires hs_currency on an invoice; hs_number is HubSpot's own (read-only), so
    # the app's invoice number goes to the purchase order number.
    "invoices": (
        FieldMapping(hub="hs_currency", app="currency", required=True),
        FieldMapping(hub="hs_invoice_date", app="invoice_date", transform="date"),
        FieldMapping(hub="hs_due_date", app="due_date", transform="date"),
        FieldMapping(hub="hs_purchase_order_number", app="number"),
    ),
    "line_items": (
        FieldMapping(hub="name", app="name"),
        FieldMapping(hub="quantity", app="quantity", transform="number"),
        FieldMapping(hub="price", app="price", transform="number"),
        FieldMapping(hub="hs_sku", app="sku"),
    ),
}

# Pipedrive's field names as its connector shows a record (connectors/pipedrive/records.py):
# `email` and `phone` are the primary values of the `emails` / `phones` arrays, `domain` is
# the organization's website host (or the configured custom field), a deal's `stage` is its
# stage id, or `won` / `lost` once closed (its pipeline in `pipeline_id`).
_PIPEDRIVE_DEFAULTS: dict[str, tuple[FieldMapping, ...]] = {
    "contacts": (
        FieldMapping(hub="email", app="email"),
        FieldMapping(hub="firstname", app="first_name"),
        FieldMapping(hub="lastname", app="last_name"),
        FieldMapping(hub="phone", app="phone"),
    ),
    "companies": (
        FieldMapping(hub="name", app="name"),
        FieldMapping(hub="domain", app="domain"),
    ),
    "deals": (
        FieldMapping(hub="dealname", app="title", required=True),
        FieldMapping(hub="amount", app="value", transform="number"),
        FieldMapping(hub="closedate", app="expected_close_date", transform="date"),
        FieldMapping(hub="dealstage", app="stage", transform="stage", required=True),
    ),
}

# A PostgreSQL app's tables follow the same snake_case conventions as SQLite's.
DEFAULT_MAPPINGS: dict[str, dict[str, tuple[FieldMapping, ...]]] = {
    "sqlite": _SQLITE_DEFAULTS,
    "postgres": _SQLITE_DEFAULTS,
    "pipedrive": _PIPEDRIVE_DEFAULTS,
}


def default_mappings(connector_type: str, hub_object: str) -> tuple[FieldMapping, ...]:
    return DEFAULT_MAPPINGS.get(connector_type, {}).get(hub_object, ())


def effective_mappings(
    connector_type: str,
    hub_object: str,
    configured: list[FieldMapping],
    use_defaults: bool,
    app_columns: list[str] | None = None,
) -> list[FieldMapping]:
    """The mappings an object sync runs with: defaults overlaid by the configured ones.

    `app_columns`, when known, drops defaults whose app field does not exist. Disabled
    mappings are kept (callers skip them) so that validation can see them.
    """
    result: dict[str, FieldMapping] = {}
    if use_defaults:
        for m in default_mappings(connector_type, hub_object):
            if app_columns is not None and app_columns and m.app not in app_columns:
                continue
            result[m.hub] = m
    for m in configured:
        result[m.hub] = m
    return list(result.values())


# Associations an object sync keeps, as in HubSpot's data sync: invoices only with their
# contacts and line items (an invoice's company association is HubSpot's own), line items
# with their invoice or deal; every other pair of objects freely.
ASSOCIABLE: dict[str, frozenset[str]] = {
    "invoices": frozenset({"contacts", "line_items"}),
    "line_items": frozenset({"invoices", "deals"}),
}


def associable(a: str, b: str) -> bool:
    """May object syncs of hub objects `a` and `b` keep the associations between them?"""
    return a != b and b in ASSOCIABLE.get(a, {b}) and a in ASSOCIABLE.get(b, {a})
