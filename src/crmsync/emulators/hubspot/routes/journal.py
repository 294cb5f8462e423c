"""`/webhooks-journal/…/2026-03` (hubspot-onboarding.md §6): journal reads, global and local,
single and batch; subscription management; and the files the `url`s point at."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ..errors import validation_error
from ..journal import MAX_BATCH, URL_MS, Entry, Journal, url_expired
from ..values import iso_from_ms
from .wire import emulator, inputs_of, json_response, no_content, read_json


def _journal(request: Request) -> Journal:
    return emulator(request).journal


def _for_this_account(request: Request) -> bool:
    """`installPortalId` narrows a read to one installing account (the local journal); this
    emulator is one account, so another id reads nothing."""
    raw = request.query_params.get("installPortalId")
    return raw is None or raw == str(emulator(request).portal_id)


def _fetch(request: Request, entry: Entry) -> dict[str, Any]:
    """JournalFetchResponse: `currentOffset`, `expiresAt`, `url` (all required, SPEC)."""
    expires = emulator(request).now_ms() + URL_MS
    url = request.url_for("journal_file", offset=entry.offset).include_query_params(
        expires=str(expires)
    )
    return {"currentOffset": entry.offset, "expiresAt": iso_from_ms(expires), "url": str(url)}


def _one(request: Request, entries: list[Entry]) -> Response:
    if not entries or not _for_this_account(request):
        return no_content()  # [INF] nothing to read yet
    return json_response(_fetch(request, entries[0]))


def _count(request: Request) -> int:
    try:
        count = int(request.path_params["count"])
    except ValueError:
        raise validation_error("count must be an integer") from None
    if not 1 <= count <= MAX_BATCH:
        raise validation_error(f"count must be between 1 and {MAX_BATCH}", count=[str(count)])
    return count


def _batch(
    request: Request, entries: list[Entry], errors: list[dict[str, Any]] | None = None
) -> Response:
    """BatchResponseJournalFetchResponse (200), or …WithErrors (207) when some failed."""
    now = iso_from_ms(emulator(request).now_ms())
    results = [_fetch(request, e) for e in entries] if _for_this_account(request) else []
    body: dict[str, Any] = {"status": "COMPLETE", "results": results}
    if errors:
        body["numErrors"] = len(errors)
        body["errors"] = errors
    body.update({"startedAt": now, "completedAt": now})
    return json_response(body, 207 if errors else 200)


async def earliest(request: Request) -> Response:
    return _one(request, _journal(request).earliest())


async def latest(request: Request) -> Response:
    return _one(request, _journal(request).latest())


async def next_entry(request: Request) -> Response:
    return _one(request, _journal(request).after(request.path_params["offset"]))


async def batch_earliest(request: Request) -> Response:
    return _batch(request, _journal(request).earliest(_count(request)))


async def batch_latest(request: Request) -> Response:
    return _batch(request, _journal(request).latest(_count(request)))


async def batch_next(request: Request) -> Response:
    return _batch(request, _journal(request).after(request.path_params["offset"], _count(request)))


async def batch_read(request: Request) -> Response:
    """`POST …/batch/read` `{inputs: [offset, …]}`: the entries asked for; offsets unknown or
    aged out come back as errors of a 207."""
    journal = _journal(request)
    found: list[Entry] = []
    missing: list[str] = []
    for offset in inputs_of(await read_json(request), MAX_BATCH):
        entry = journal.entry(str(offset))
        if entry is None:
            missing.append(str(offset))
        else:
            found.append(entry)
    errors = []
    if missing:
        errors.append(
            {
                "status": "error",
                "category": "OBJECT_NOT_FOUND",
                "message": "Some offsets do not exist or have expired",
                "context": {"offsets": missing},
                "errors": [],
                "links": {},
            }
        )
    return _batch(request, found, errors)


async def journal_file(request: Request) -> Response:
    """The file behind a `url`: a pre-signed link (no token), valid until its `expires`."""
    emu = emulator(request)
    try:
        expires = int(request.query_params.get("expires", "0"))
    except ValueError:
        expires = 0
    refused = url_expired(expires, emu.now_ms())
    if refused is not None:
        return json_response(refused.body(emu.correlation_id()), 403)
    entry = emu.journal.entry(request.path_params["offset"])
    if entry is None:
        return json_response({"status": "error", "message": "NoSuchKey"}, 404)
    return json_response({"currentOffset": entry.offset, "events": entry.events})


# --- subscriptions ---


async def list_subscriptions(request: Request) -> Response:
    return json_response({"results": [s.to_json() for s in _journal(request).subscriptions.values()]})


async def upsert_subscription(request: Request) -> Response:
    return json_response(_journal(request).upsert(await read_json(request)).to_json())


async def get_subscription(request: Request) -> Response:
    return json_response(_journal(request).subscription(request.path_params["subscription_id"]).to_json())


async def delete_subscription(request: Request) -> Response:
    _journal(request).delete(request.path_params["subscription_id"])
    return no_content()


async def delete_portal_subscriptions(request: Request) -> Response:
    _journal(request).delete_portal(request.path_params["portal_id"])
    return no_content()
