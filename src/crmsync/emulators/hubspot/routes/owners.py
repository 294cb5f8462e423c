"""`/crm/v3/owners` and `/settings/v3/users` (hubspot-onboarding.md §4): read-only; the admin
API under `/_emulator/owners` manages them."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ..errors import not_found, validation_error
from .wire import emulator, json_response, next_page, query_bool, query_int

# Owners: `limit` defaults to 100 (SPEC) and may be at most 500 (hubspot-onboarding.md §4 [S]).
OWNERS_DEFAULT_LIMIT = 100
OWNERS_MAX_LIMIT = 500
# Users: [INF] the same default and a maximum of 100.
USERS_DEFAULT_LIMIT = 100
USERS_MAX_LIMIT = 100


def _after(request: Request) -> int:
    raw = request.query_params.get("after")
    if not raw:
        return 0
    try:
        return int(raw)
    except ValueError:
        raise validation_error(f"Invalid after cursor: {raw}") from None


def _limit(request: Request, default: int, maximum: int) -> int:
    limit = query_int(request, "limit", default)
    if not 0 < limit <= maximum:
        raise validation_error(f"limit must be between 1 and {maximum}", limit=[str(limit)])
    return limit


async def list_owners(request: Request) -> Response:
    owners = emulator(request).state.owners
    page, next_id = owners.page(
        email=request.query_params.get("email"),
        after=_after(request),
        limit=_limit(request, OWNERS_DEFAULT_LIMIT, OWNERS_MAX_LIMIT),
        archived=query_bool(request, "archived"),
    )
    body: dict[str, Any] = {"results": [o.to_json() for o in page]}
    if next_id is not None:
        body["paging"] = next_page(request, str(next_id))
    return json_response(body)


async def get_owner(request: Request) -> Response:
    owner = emulator(request).state.owners.get(
        request.path_params["owner_id"],
        id_property=request.query_params.get("idProperty", "id"),
        archived=query_bool(request, "archived"),
    )
    return json_response(owner.to_json())


async def list_users(request: Request) -> Response:
    users = emulator(request).state.owners.users()
    after = _after(request)
    limit = _limit(request, USERS_DEFAULT_LIMIT, USERS_MAX_LIMIT)
    # The cursor is the next user's id [INF].
    rest = [u for u in users if u.user_id is not None and u.user_id >= after]
    body: dict[str, Any] = {"results": [u.user_json() for u in rest[:limit]]}
    if len(rest) > limit:
        body["paging"] = next_page(request, str(rest[limit].user_id))
    return json_response(body)


async def get_user(request: Request) -> Response:
    """`GET /settings/v3/users/{userId}?idProperty=USER_ID|EMAIL`."""
    key = request.path_params["user_id"]
    id_property = request.query_params.get("idProperty", "USER_ID")
    if id_property not in ("USER_ID", "EMAIL"):
        raise validation_error(f"idProperty must be USER_ID or EMAIL, not {id_property}")
    for user in emulator(request).state.owners.users():
        if (id_property == "USER_ID" and str(user.user_id) == key) or (
            id_property == "EMAIL" and (user.email or "").lower() == key.lower()
        ):
            return json_response(user.user_json())
    raise not_found(f"No user with {id_property} {key}")
