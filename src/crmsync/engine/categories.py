"""Error categories and exclusion reasons, each with the plain-language hint an operator sees
in `crmsync ctl records ... --state failed|excluded`."""

from __future__ import annotations

FAIL_HINTS: dict[str, str] = {
    "duplicate": "Another record already holds this record's match key (email, company "
    "name/domain or unique property; the detail names it), so this one is kept out of the "
    "sync rather than made a second time. Change or remove this record's key (it then syncs "
    "by itself) or merge it into that record. Once the other record's key has changed, "
    "`crmsync ctl resync --failed` brings this one in; before that a resync changes nothing.",
    "missing_required_field": "A field marked required is empty. Fill it in on the side that "
    "owns it, or make the mapping optional.",
    "invalid_value": "A value does not fit the target field (type, option or format). Correct "
    "it, or adjust the mapping's transform or option map.",
    "unmapped_stage": "The deal's pipeline stage has no counterpart in the stage map or no "
    "longer exists. Map the stage (stage_map or auto_map_stages) or move the deal.",
    "permission_denied": "The API refused access (missing scope or permission). Grant the "
    "scope named in the detail to the app's token and resync.",
    "not_found": "The record no longer exists on the other side. Restore it there or let "
    "crmsync recreate it with `crmsync ctl restore-deleted`.",
    "conflict": "The other side reports a conflict (for example a contact with this email "
    "already exists). crmsync will link it on the next pass; resync if it stays.",
    "conflict_after_restore": "crmsync's state was restored from a backup, and this field "
    "changed on both sides since the last sync it remembers (or the records were paired anew): "
    "it cannot tell which value is newer and changes neither. Correct the value on the wrong "
    "side; once both sides agree the record syncs again.",
    "association_failed": "An association could not be written (missing partner, limit or "
    "label). Check that both records sync, then resync.",
    "rate_limited": "The API's rate limit was exhausted for too long. It is retried "
    "automatically; lower the load or raise the account's limits if it persists.",
    "api_unavailable": "The API kept failing (5xx or timeouts). It is retried automatically; "
    "check the service's status page if it persists.",
    "internal": "An unexpected error in crmsync. See the logs for the traceback and report it.",
}

EXCLUDE_HINTS: dict[str, str] = {
    "no_email": "Contacts without an email are not synced. Add an email or set "
    "sync_contacts_without_email = true.",
    "invalid_email": "The email address is not valid. Correct it on the side that owns it.",
    "no_unique_id": "The record has no match key (company name/domain or the unique "
    "property). Fill it in to include the record.",
    "filter": "The record does not match the object sync's filters. Filters only decide the "
    "first inclusion; change the record or the filter.",
    "stage_not_mapped": "The deal is in a stage that is not mapped. Add the stage to "
    "stage_map (or enable auto_map_stages) to include such deals.",
    "one_way": "The object sync is one-way; records on the target side are not copied back.",
}

CATEGORIES = tuple(FAIL_HINTS)


def hint_for(state: str, category: str) -> str:
    if state == "failed":
        return FAIL_HINTS.get(category, FAIL_HINTS["internal"])
    if state == "excluded":
        return EXCLUDE_HINTS.get(category, "")
    return ""
