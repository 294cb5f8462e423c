"""`GET /persons/search`, `/organizations/search`, `/deals/search` [PD-spec-v2]: a term of at
least 2 characters (1 with `exact_match`), case-insensitive; `exact_match` wants the whole
field value. Only the custom field types the spec names are searched. Scoring is not
documented: a whole-value match scores 1, a prefix 0.6, a substring 0.3; results sort by
score, then id, and page behind an opaque cursor [INF]."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from starlette.datastructures import QueryParams

from .errors import bad_request
from .fields import searchable_text
from .paging import offset_page, parse_bool, parse_int
from .records import Record
from .state import AccountState

SEARCH_FIELDS = {
    "persons": ("custom_fields", "email", "notes", "phone", "name"),
    "organizations": ("address", "custom_fields", "notes", "name"),
    "deals": ("custom_fields", "notes", "title"),
}


def _score(term: str, values: Iterable[str], exact: bool) -> float:
    best = 0.0
    for value in values:
        v = value.casefold()
        if v == term:
            return 1.0
        if exact:
            continue
        if v.startswith(term):
            best = max(best, 0.6)
        elif term in v:
            best = max(best, 0.3)
    return best


def _texts(acct: AccountState, entity: str, rec: Record, fields: set[str]) -> list[str]:
    a = rec.attrs
    out: list[str] = []
    if "name" in fields and entity != "deals":
        out.append(a["name"])
    if "title" in fields and entity == "deals":
        out.append(a["title"])
    if "email" in fields:
        out.extend(e["value"] for e in a["emails"])
    if "phone" in fields:
        out.extend(p["value"] for p in a["phones"])
    if "notes" in fields and a.get("notes"):
        out.append(a["notes"])
    if "address" in fields and a.get("address"):
        out.append(a["address"].get("value", ""))
    if "custom_fields" in fields:
        for key, fdef in acct.registry(entity).custom().items():
            text = searchable_text(fdef, rec.custom.get(key))
            if text is not None:
                out.append(text)
    return out


def _custom_hits(acct: AccountState, entity: str, rec: Record, term: str) -> list[str]:
    hits = []
    for key, fdef in acct.registry(entity).custom().items():
        text = searchable_text(fdef, rec.custom.get(key))
        if text is not None and term in text.casefold():
            hits.append(text)
    return hits


def _item(acct: AccountState, entity: str, rec: Record, term: str) -> dict[str, Any]:
    a = rec.attrs
    org = acct.live("organizations", a["org_id"]) if a.get("org_id") else None
    org_json = {"id": org.id, "name": org.attrs["name"]} if org is not None else None
    common = {"visible_to": a["visible_to"], "owner": {"id": a["owner_id"]}}
    custom = _custom_hits(acct, entity, rec, term)
    notes = [a["notes"]] if a.get("notes") and term in a["notes"].casefold() else []
    if entity == "persons":
        return {
            "id": rec.id,
            "type": "person",
            "name": a["name"],
            "phones": [p["value"] for p in a["phones"]],
            "emails": [e["value"] for e in a["emails"]],
            **common,
            "organization": org_json,
            "custom_fields": custom,
            "notes": notes,
        }
    if entity == "organizations":
        return {
            "id": rec.id,
            "type": "organization",
            "name": a["name"],
            "address": (a["address"] or {}).get("value"),
            **common,
            "custom_fields": custom,
            "notes": notes,
        }
    person = acct.live("persons", a["person_id"]) if a["person_id"] else None
    stage = acct.records["stages"].get(a["stage_id"])
    return {
        "id": rec.id,
        "type": "deal",
        "title": a["title"],
        "value": a["value"],
        "currency": a["currency"],
        "status": a["status"],
        **common,
        "stage": {"id": a["stage_id"], "name": stage.attrs["name"] if stage else None},
        "person": {"id": person.id, "name": person.attrs["name"]} if person else None,
        "organization": org_json,
        "custom_fields": custom,
        "notes": notes,
        "is_archived": a["archive_ms"] is not None,
    }


def search(acct: AccountState, entity: str, params: QueryParams) -> dict[str, Any]:
    """The whole v2 answer of one search request."""
    term = params.get("term")
    exact = parse_bool(params, "exact_match")
    if term is None:
        raise bad_request("term is required")
    term = term.strip().casefold()
    if len(term) < (1 if exact else 2):
        raise bad_request("term must be at least 2 characters (1 with exact_match)")
    allowed = SEARCH_FIELDS[entity]
    fields = set(allowed)
    if "fields" in params:
        fields = {f.strip() for f in params["fields"].split(",") if f.strip()}
        if not fields or fields - set(allowed):
            raise bad_request(f"fields must be a comma separated list of {', '.join(allowed)}")
    org_filter = parse_int(params, "organization_id")
    person_filter = parse_int(params, "person_id") if entity == "deals" else None
    status = params.get("status") if entity == "deals" else None
    if status is not None and status not in ("open", "won", "lost"):
        raise bad_request("status must be one of open, won, lost")
    if "include_fields" in params:
        raise bad_request("include_fields is not emulated")
    scored = []
    for rec in acct.all_live(entity):
        a = rec.attrs
        if org_filter is not None and a.get("org_id") != org_filter:
            continue
        if person_filter is not None and a.get("person_id") != person_filter:
            continue
        if status is not None and a["status"] != status:
            continue
        score = _score(term, _texts(acct, entity, rec, fields), exact)
        if score > 0:
            scored.append((score, rec))
    scored.sort(key=lambda sr: (-sr[0], sr[1].id))
    start, end, next_cursor = offset_page(len(scored), params)
    items = [
        {"result_score": score, "item": _item(acct, entity, rec, term)}
        for score, rec in scored[start:end]
    ]
    return {
        "success": True,
        "data": {"items": items},
        "additional_data": {"next_cursor": next_cursor},
    }
