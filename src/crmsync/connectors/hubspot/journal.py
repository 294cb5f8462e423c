"""HubSpot's webhooks journal, the pull model of webhooks (hubspot-onboarding.md §6).

Written from the onboarding notes and the 2026-03 SPEC (`Webhooks/Webhooks/Rollouts/147891/
2026-03/webhooks.json`), sharing nothing with the emulator. What a daemon with no public URL
needs of it:

- **Subscriptions** (`/webhooks-journal/subscriptions/2026-03`) choose which changes are
  journaled. An OBJECT subscription names `objectTypeId`, `portalId`, `actions` (CREATE,
  UPDATE, DELETE, MERGE, RESTORE), `properties` and `objectIds` (all required by the SPEC's
  ObjectSubscriptionUpsertRequest; empty lists: every property, every record); an ASSOCIATION
  one `actions` ASSOCIATION_ADDED / ASSOCIATION_REMOVED. They are managed only through the API.
- **Entries** are read by offset from the local journal (`/webhooks-journal/journal-local/
  2026-03`, narrowed to one installing account by `installPortalId`): `batch/earliest/{count}`,
  `batch/{offset}/next/{count}`, `latest`. Each JournalFetchResponse is `{currentOffset,
  expiresAt, url}`; the entry's events are in a file fetched from `url`.
- Entries are kept **3 days**. An offset that is unknown or has aged out answers 404
  (`OffsetGone`): whatever came between is lost to the journal.

Not in the notes nor the SPEC, so taken from what the emulator documents (README) and kept
lenient: an empty read may answer 204 or an empty `results`; the file is
`{"currentOffset", "events": [...]}` (a bare array is accepted too) whose events have the shape
of webhook events (fact sheet §8.2) plus `objectTypeId`; a `url` past its `expiresAt` answers
403, a file gone with its entry 404. The file `url` is pre-signed: it is fetched WITHOUT the
bearer token, which must never travel to another host.

Reads are bounded: every call under `trio.fail_after(request_timeout)`, API answers to
`MAX_ANSWER_BYTES`, files to `max_file_bytes`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote

import httpx
import msgspec
import structlog
import trio

from crmsync.connectors.base import ConnectorError
from crmsync.connectors.hubspot.http import HubSpotHttp
from crmsync.connectors.hubspot.objects import OBJECT_BY_SINGULAR, OBJECT_TYPE_IDS, object_name
from crmsync.connectors.hubspot.webhooks import WebhookEvent, WebhookPayloadError, parse_event
from crmsync.connectors.retry import (
    Action,
    HttpFailure,
    RetryPolicy,
    call_with_retry,
    classify,
    failure_from_exception,
    failure_from_response,
)

log = structlog.get_logger("crmsync.connectors.hubspot")

JOURNAL_PATH = "/webhooks-journal/journal-local/2026-03"
SUBSCRIPTIONS_PATH = "/webhooks-journal/subscriptions/2026-03"
OBJECT_ACTIONS = ("CREATE", "UPDATE", "DELETE", "MERGE", "RESTORE")
ASSOCIATION_ACTIONS = ("ASSOCIATION_ADDED", "ASSOCIATION_REMOVED")
RETENTION_SECONDS = 3 * 86400  # "Data is kept for 3 days" (hubspot-onboarding.md §6)
MAX_ANSWER_BYTES = 4 * 1024 * 1024  # a JSON answer of the journal API (100 urls is ~50 KB)
MAX_EVENTS_PER_FILE = 10_000  # a file holds an entry's events (the emulator cuts at 100)

JOURNAL_RETRY_POLICY = RetryPolicy(service="the HubSpot webhooks journal",
                                   hint="check hub.journal")

__all__ = [
    "ASSOCIATION_ACTIONS",
    "JOURNAL_PATH",
    "OBJECT_ACTIONS",
    "RETENTION_SECONDS",
    "SUBSCRIPTIONS_PATH",
    "EntryGone",
    "EntryRef",
    "JournalClient",
    "JournalFile",
    "OffsetGone",
    "UnreadableEntry",
    "account_portal_id",
]


class OffsetGone(ConnectorError):
    """The journal does not know the offset any more (404): it is unknown or aged out."""

    def __init__(self, offset: str, message: str) -> None:
        super().__init__("record", "not_found", message, status=404)
        self.offset = offset


class EntryGone(ConnectorError):
    """An entry's file is gone (404), or its url expired (403): ask for the entry again."""

    def __init__(self, offset: str, message: str, *, expired: bool) -> None:
        super().__init__("transient" if expired else "record", "not_found", message)
        self.offset = offset
        self.expired = expired


class UnreadableEntry(ConnectorError):
    """An entry's file cannot be read as a journal file (too large, not JSON, wrong shape):
    its changes are lost to the journal."""

    def __init__(self, offset: str, message: str) -> None:
        super().__init__("record", "invalid_value", message)
        self.offset = offset


class EntryRef(msgspec.Struct, frozen=True):
    """JournalFetchResponse: where one entry's file is."""

    offset: str
    url: str
    expires_at: str = ""


class JournalFile(msgspec.Struct, frozen=True):
    """One entry's events; `skipped` says why each unreadable event was left out."""

    offset: str
    events: list[WebhookEvent]
    skipped: list[str] = []
    size: int = 0


class TooLarge(Exception):
    pass


async def _read_bounded(response: httpx.Response, limit: int) -> bytes:
    declared = response.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise TooLarge()
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > limit:
            raise TooLarge()
        chunks.append(chunk)
    return b"".join(chunks)


def _object_type_id(name: str) -> str:
    return OBJECT_TYPE_IDS.get(name, name)


def _object_of(type_id: str) -> str:
    """The object name of a subscription's `objectTypeId`: an id ("0-1") or, as the SPEC's
    description allows, a singular name ("contact")."""
    return OBJECT_BY_SINGULAR.get(type_id) or object_name(type_id)


class JournalClient:
    """The journal's calls. `client` carries the base URL and the client-credentials auth
    (`ClientCredentialsAuth`); `portal_id` is the account whose events are read. Every method
    may raise ConnectorError (`HttpFailure` classified by the retry table after its retries;
    the journal's own conditions as `OffsetGone`, `EntryGone`, `UnreadableEntry`)."""

    def __init__(self, client: httpx.AsyncClient, *, portal_id: int,
                 max_file_bytes: int = 32 * 1024 * 1024, request_timeout: float = 30.0,
                 policy: RetryPolicy = JOURNAL_RETRY_POLICY) -> None:
        self.client = client
        self.portal_id = portal_id
        self.max_file_bytes = max_file_bytes
        self.request_timeout = request_timeout
        self.policy = policy
        self.requests_sent = 0

    # --- one call ------------------------------------------------------------------------------

    async def _send(self, request: httpx.Request, limit: int, *,
                    auth: bool = True) -> httpx.Response:
        """One attempt: send, read at most `limit` bytes, all within the request timeout.
        Returns a response whose body is read (its status unchecked)."""
        self.requests_sent += 1
        try:
            with trio.fail_after(self.request_timeout):
                if auth:
                    response = await self.client.send(request, stream=True)
                else:
                    response = await self.client.send(request, stream=True, auth=None)
                try:
                    body = await _read_bounded(response, limit)
                finally:
                    await response.aclose()
        except (httpx.HTTPError, httpx.InvalidURL, trio.TooSlowError) as exc:
            raise failure_from_exception(exc, self.policy) from exc
        return httpx.Response(response.status_code, headers=response.headers, content=body,
                              request=request)

    async def _call(self, method: str, path: str, *, json: Any = None,
                    params: Mapping[str, str | int] | None = None) -> httpx.Response:
        """A journal API call with retries of what the table says to retry; a successful
        response (2xx, body read) or HttpFailure."""
        content = msgspec.json.encode(json) if json is not None else None
        headers = {"Accept": "application/json"}
        if content is not None:
            headers["Content-Type"] = "application/json"

        async def attempt() -> httpx.Response:
            request = self.client.build_request(method, path, content=content, params=params,
                                                headers=headers)
            try:
                response = await self._send(request, MAX_ANSWER_BYTES)
            except TooLarge:
                raise HttpFailure(classify(502), f"the answer to {method} {path} is larger "
                                  f"than {MAX_ANSWER_BYTES} bytes") from None
            failure = failure_from_response(response, self.policy)
            if failure is not None:
                raise failure
            return response

        return await call_with_retry(attempt, policy=self.policy)

    @staticmethod
    def _json(response: httpx.Response, what: str) -> Any:
        if response.status_code == 204 or not response.content:
            return None
        try:
            return msgspec.json.decode(response.content)
        except (msgspec.DecodeError, RecursionError) as exc:
            raise HttpFailure(classify(502), f"unreadable journal answer to {what}: {exc}",
                              status=response.status_code) from None

    def _params(self) -> dict[str, str | int]:
        return {"installPortalId": self.portal_id}

    # --- entries -------------------------------------------------------------------------------

    @staticmethod
    def _entry(raw: Any, what: str) -> EntryRef:
        if (not isinstance(raw, dict) or not isinstance(raw.get("currentOffset"), str)
                or not raw["currentOffset"] or not isinstance(raw.get("url"), str)):
            raise HttpFailure(classify(502), f"malformed journal answer to {what}: expected "
                              "{currentOffset, expiresAt, url}")
        expires = raw.get("expiresAt")
        return EntryRef(raw["currentOffset"], raw["url"], str(expires) if expires else "")

    async def entries_after(self, offset: str | None, count: int) -> list[EntryRef]:
        """Up to `count` entries after `offset` (from the earliest kept when None), oldest
        first; [] when there is nothing new. Raises OffsetGone when HubSpot no longer knows
        `offset`."""
        if offset is None:
            path = f"{JOURNAL_PATH}/batch/earliest/{count}"
        else:
            path = f"{JOURNAL_PATH}/batch/{quote(offset, safe='')}/next/{count}"
        try:
            response = await self._call("GET", path, params=self._params())
        except HttpFailure as exc:
            if offset is not None and exc.status == 404:
                raise OffsetGone(offset, f"the journal no longer has offset {offset} (aged "
                                 f"out or unknown): {exc.detail.message}") from None
            raise
        body = self._json(response, path)
        if body is None:
            return []
        results = body.get("results") if isinstance(body, dict) else None
        if not isinstance(results, list):
            raise HttpFailure(classify(502), f"malformed journal answer to {path}: no results")
        return [self._entry(r, path) for r in results]

    async def latest(self) -> EntryRef | None:
        """The newest entry (None when the journal is empty)."""
        path = f"{JOURNAL_PATH}/latest"
        body = self._json(await self._call("GET", path, params=self._params()), path)
        return None if body is None else self._entry(body, path)

    async def fetch(self, entry: EntryRef) -> JournalFile:
        """The events of `entry`, read from its `url` (without the bearer token) with its size
        bounded by `max_file_bytes`. Raises EntryGone (404; 403 once the url expired),
        UnreadableEntry (too large, not a journal file, any other answer that is not
        transient), HttpFailure (transient, after retries)."""
        url = httpx.URL(entry.url)
        if url.scheme not in ("https", "http"):
            raise UnreadableEntry(entry.offset, f"journal entry {entry.offset} has a url that "
                                  f"is not http(s): {url.scheme!r}")

        async def attempt() -> httpx.Response:
            request = self.client.build_request("GET", url, headers={"Accept": "application/json"})
            try:
                response = await self._send(request, self.max_file_bytes, auth=False)
            except TooLarge:
                raise UnreadableEntry(entry.offset, f"journal entry {entry.offset} is larger "
                                      f"than hub.journal.max_file_bytes "
                                      f"({self.max_file_bytes})") from None
            if response.status_code in (403, 404):
                return response
            failure = failure_from_response(response, self.policy)
            if failure is None:
                return response
            if failure.action in (Action.RETRY, Action.RATE_LIMITED):
                raise failure
            # Any other answer will not change by asking again: the entry is lost to us
            # (never a reason to stop reading the journal).
            raise UnreadableEntry(entry.offset, f"journal entry {entry.offset}: its file "
                                  f"answered {response.status_code}: {failure.message}")

        response = await call_with_retry(attempt, policy=self.policy)
        if response.status_code in (403, 404):
            expired = response.status_code == 403
            raise EntryGone(entry.offset, f"journal entry {entry.offset}: its file "
                            f"{'url expired' if expired else 'is gone'} "
                            f"({response.status_code})", expired=expired)
        return self._parse_file(entry.offset, response.content)

    @staticmethod
    def _parse_file(offset: str, content: bytes) -> JournalFile:
        try:
            data = msgspec.json.decode(content)
        except (msgspec.DecodeError, RecursionError) as exc:
            raise UnreadableEntry(offset, f"journal entry {offset} is not JSON: {exc}") from None
        if isinstance(data, dict):
            got = data.get("currentOffset")
            if got is not None and got != offset:
                raise UnreadableEntry(offset, f"journal entry {offset}: its file is entry "
                                      f"{str(got)[:64]!r}")
            raw_events = data.get("events")
        else:
            raw_events = data
        if not isinstance(raw_events, list):
            raise UnreadableEntry(offset, f"journal entry {offset}: no list of events")
        if len(raw_events) > MAX_EVENTS_PER_FILE:
            raise UnreadableEntry(offset, f"journal entry {offset} has {len(raw_events)} "
                                  f"events (at most {MAX_EVENTS_PER_FILE})")
        events: list[WebhookEvent] = []
        skipped: list[str] = []
        for i, raw in enumerate(raw_events):
            try:
                events.append(parse_event(raw, i))
            except WebhookPayloadError as exc:
                skipped.append(str(exc))
        return JournalFile(offset, events, skipped, len(content))

    # --- subscriptions -------------------------------------------------------------------------

    async def subscriptions(self) -> list[dict[str, Any]]:
        """The app's journal subscriptions (SubscriptionListResponse `results`)."""
        body = self._json(await self._call("GET", SUBSCRIPTIONS_PATH), SUBSCRIPTIONS_PATH)
        results = body.get("results") if isinstance(body, dict) else None
        if not isinstance(results, list):
            raise HttpFailure(classify(502), "malformed answer listing journal subscriptions")
        return [r for r in results if isinstance(r, dict)]

    def _covers(self, sub: Mapping[str, Any], kind: str, obj: str,
                actions: Iterable[str]) -> bool:
        """Does an existing subscription deliver every change we need of `obj`?"""
        type_id = str(sub.get("objectTypeId", ""))
        if sub.get("subscriptionType") != kind or _object_of(type_id) != obj:
            return False
        portal = sub.get("portalId")
        if portal is not None and str(portal) != str(self.portal_id):
            return False
        if sub.get("objectIds") or sub.get("properties") or sub.get("associatedObjectTypeIds"):
            return False  # narrowed to some records, properties or associated types
        have = sub.get("actions")
        return isinstance(have, list) and set(actions) <= {str(a) for a in have}

    async def missing_subscriptions(self, objects: Iterable[str],
                                    associations: Iterable[str] = ()
                                    ) -> list[tuple[str, str, tuple[str, ...]]]:
        """The (subscription type, hub object, actions) that no existing subscription covers:
        OBJECT ones for `objects`, ASSOCIATION ones for `associations`."""
        existing = await self.subscriptions()
        wanted: list[tuple[str, str, tuple[str, ...]]] = [
            ("OBJECT", o, OBJECT_ACTIONS) for o in sorted(set(objects))]
        wanted += [("ASSOCIATION", o, ASSOCIATION_ACTIONS) for o in sorted(set(associations))]
        return [(kind, obj, actions) for kind, obj, actions in wanted
                if not any(self._covers(s, kind, obj, actions) for s in existing)]

    async def ensure_subscriptions(self, objects: Iterable[str],
                                   associations: Iterable[str] = ()) -> list[str]:
        """Make sure OBJECT subscriptions exist for `objects` (hub object names) and
        ASSOCIATION ones for `associations`; returns what had to be created, as
        "object:<name>" / "association:<name>"."""
        created: list[str] = []
        for kind, obj, actions in await self.missing_subscriptions(objects, associations):
            body: dict[str, Any] = {
                "subscriptionType": kind,
                "objectTypeId": _object_type_id(obj),
                "portalId": self.portal_id,
                "actions": list(actions),
                "objectIds": [],
            }
            if kind == "OBJECT":
                body["properties"] = []
            else:
                body["associatedObjectTypeIds"] = []
            await self._call("POST", SUBSCRIPTIONS_PATH, json=body)
            created.append(f"{kind.lower()}:{obj}")
            log.info("hubspot_journal_subscribed", subscription_type=kind, object=obj,
                     portal_id=self.portal_id)
        return created


async def account_portal_id(http: HubSpotHttp) -> int:
    """The account's id: `portalId` of `GET /account-info/v3/details` (scope `oauth`,
    hubspot-onboarding.md §2), asked with the hub's own credentials and rate budget."""
    body = await http.json("GET", "/account-info/v3/details")
    portal = body.get("portalId") if isinstance(body, dict) else None
    if isinstance(portal, bool) or not isinstance(portal, int) or portal <= 0:
        raise ConnectorError("config", "internal", "HubSpot's account-info gave no portalId: "
                             "set hub.journal.portal_id")
    return portal
