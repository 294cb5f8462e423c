"""Cursor paging of v2 lists [PD-pag][PD-spec-v2]: `limit` (default 100, at most 500), an
opaque `cursor`, `additional_data.next_cursor` null on the last page; `ids=` (up to 100),
`updated_since` (≥) / `updated_until` (<), `sort_by` id / update_time / add_time and
`sort_direction`.

The cursor is keyset, not offset: it holds the sort field, the last value and id (the shape of
the spec's example cursor, base64url JSON). A record updated during a scan sorted by
update_time therefore moves behind the cursor and is met again later, as on a real keyset."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from starlette.datastructures import QueryParams

from .errors import bad_request
from .records import Record
from .values import is_int, parse_rfc3339_ms

DEFAULT_LIMIT = 100
MAX_LIMIT = 500
MAX_IDS = 100

SORT_KEYS: dict[str, Callable[[Record], tuple[int, int]]] = {
    "id": lambda r: (r.id, r.id),
    "update_time": lambda r: (r.update_ms, r.id),
    "add_time": lambda r: (r.add_ms, r.id),
}


def encode_cursor(data: dict[str, Any]) -> str:
    raw = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(text: str) -> dict[str, Any]:
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        data = json.loads(raw)
    except (binascii.Error, ValueError) as exc:
        raise bad_request("cursor is not valid") from exc
    if not isinstance(data, dict):
        raise bad_request("cursor is not valid")
    return data


def parse_limit(params: QueryParams) -> int:
    raw = params.get("limit")
    if raw is None:
        return DEFAULT_LIMIT
    try:
        limit = int(raw)
    except ValueError as exc:
        raise bad_request("limit must be an integer") from exc
    if not 1 <= limit <= MAX_LIMIT:
        raise bad_request(f"limit must be between 1 and {MAX_LIMIT}")
    return limit


def parse_int(params: QueryParams, name: str) -> int | None:
    raw = params.get(name)
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError as exc:
        raise bad_request(f"{name} must be an integer") from exc


def parse_bool(params: QueryParams, name: str) -> bool:
    raw = params.get(name)
    if raw is None:
        return False
    if raw not in ("true", "false"):
        raise bad_request(f"{name} must be true or false")  # no 1/0 in v2 [PD-v2mig]
    return raw == "true"


def parse_ids(params: QueryParams) -> set[int] | None:
    raw = params.get("ids")
    if raw is None:
        return None
    parts = [p.strip() for p in raw.split(",") if p.strip()]
    try:
        ids = {int(p) for p in parts}
    except ValueError as exc:
        raise bad_request("ids must be a comma separated list of integers") from exc
    if len(ids) > MAX_IDS:
        raise bad_request(f"ids can name at most {MAX_IDS} entities")
    return ids


def parse_instant(params: QueryParams, name: str) -> int | None:
    raw = params.get(name)
    if raw is None:
        return None
    ms = parse_rfc3339_ms(raw)
    if ms is None:
        raise bad_request(f"{name} must be an RFC 3339 date-time, e.g. 2025-01-01T10:20:00Z")
    return ms


@dataclass(frozen=True)
class Page:
    items: list[Record]
    next_cursor: str | None


def page(
    records: Iterable[Record],
    params: QueryParams,
    *,
    sort_fields: tuple[str, ...] = ("id", "update_time", "add_time"),
    extra_sort: dict[str, Callable[[Record], tuple[int, int]]] | None = None,
) -> Page:
    """One page of `records` (already filtered by entity-specific parameters) after the
    common ones: ids, updated_since / updated_until, sort and cursor."""
    limit = parse_limit(params)
    sort_by = params.get("sort_by", "id")
    if sort_by not in sort_fields:
        raise bad_request(f"sort_by must be one of {', '.join(sort_fields)}")
    direction = params.get("sort_direction", "asc")
    if direction not in ("asc", "desc"):
        raise bad_request("sort_direction must be asc or desc")
    keys = {**SORT_KEYS, **(extra_sort or {})}
    key = keys[sort_by]
    ids = parse_ids(params)
    since = parse_instant(params, "updated_since")
    until = parse_instant(params, "updated_until")
    # The API compares to the second it shows (RFC 3339 without fractions) [INF].
    chosen = [
        r
        for r in records
        if (ids is None or r.id in ids)
        and (since is None or r.update_ms // 1000 * 1000 >= since)
        and (until is None or r.update_ms // 1000 * 1000 < until)
    ]
    after: tuple[int, int] | None = None
    if "cursor" in params:
        c = decode_cursor(params["cursor"])
        if c.get("field") != sort_by or c.get("sortDirection") != direction:
            raise bad_request("cursor does not belong to this sort order")
        value: Any = c.get("fieldValue")
        last_id: Any = c.get("id")
        if not is_int(value) or not is_int(last_id):
            raise bad_request("cursor is not valid")
        after = (int(value), int(last_id))
    desc = direction == "desc"
    if after is not None:
        chosen = [r for r in chosen if (key(r) < after if desc else key(r) > after)]
    chosen.sort(key=key, reverse=desc)
    items = chosen[:limit]
    next_cursor = None
    if len(chosen) > limit:
        last = key(items[-1])
        next_cursor = encode_cursor(
            {"field": sort_by, "fieldValue": last[0], "sortDirection": direction, "id": last[1]}
        )
    return Page(items, next_cursor)


def offset_page(total: int, params: QueryParams) -> tuple[int, int, str | None]:
    """Offset paging behind an opaque cursor, for lists without a stable sort key (search
    results, field definitions) [INF]: (start, end, next_cursor)."""
    limit = parse_limit(params)
    start = 0
    if "cursor" in params:
        offset: Any = decode_cursor(params["cursor"]).get("offset")
        if not is_int(offset) or int(offset) < 0:
            raise bad_request("cursor is not valid")
        start = int(offset)
    end = min(total, start + limit)
    return start, end, (encode_cursor({"offset": end}) if end < total else None)
