"""The webhooks journal (hubspot-onboarding.md §6, pull model): subscriptions choose which
changes are written; entries hold the events of those changes in order, are kept 3 days, and
are read by offset, each through a `url` its file is fetched from.

Shapes follow SPEC `Webhooks/Webhooks/Rollouts/147891/2026-03/webhooks.json`
(JournalFetchResponse `{currentOffset: uuid, expiresAt, url}`, the batch envelopes,
SubscriptionUpsertRequest / SubscriptionResponse). What neither the docs nor the spec say is
marked [INF]:
- an entry holds the events of the changes made since the previous entry was cut, up to 100;
  an entry is cut when a reader asks for entries or when it is full;
- the file behind `url` is `{"currentOffset", "events": [...]}`, each event shaped as a webhook
  event (fact sheet §8.2) with the journal subscription's id and the record's `objectTypeId`;
- `earliest` / `latest` / `next` answer 204 when there is no such entry yet; an offset that is
  unknown or has aged out answers 404 (as the 2027-03-beta docs say of `next`);
- the `url` expires after 15 minutes (403 after that), and the file is gone once its entry is.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .errors import ApiError, not_found, validation_error
from .objects import ObjectType, resolve
from .state import Change
from .values import iso_from_ms
from .webhooks import change_event

RETENTION_MS = 3 * 86_400_000  # "Data is kept for 3 days" (hubspot-onboarding.md §6)
URL_MS = 15 * 60_000  # [INF]
MAX_EVENTS_PER_ENTRY = 100  # [INF]
MAX_BATCH = 100  # entries per batch read [INF]; the spec sets only count ≥ 1

# SubscriptionUpsertRequest actions per subscription type (SPEC), and the change each means.
OBJECT_ACTIONS = frozenset({"CREATE", "UPDATE", "DELETE", "MERGE", "RESTORE"})
ASSOCIATION_ACTIONS = frozenset({"ASSOCIATION_ADDED", "ASSOCIATION_REMOVED"})
_ACTION_OF_KIND = {"creation": "CREATE", "propertyChange": "UPDATE", "deletion": "DELETE"}


@dataclass
class Subscription:
    id: int
    subscription_type: str  # OBJECT | ASSOCIATION (the types the emulator has changes for)
    portal_id: int
    object_type: ObjectType
    actions: frozenset[str]
    properties: frozenset[str]  # empty: every property
    object_ids: frozenset[int]  # empty: every record
    associated_types: frozenset[str]  # objectTypeIds on the TO side; empty: any
    app_id: int
    created_ms: int
    updated_ms: int

    def matches(self, change: Change) -> bool:
        if change.object_type is not self.object_type:
            return False
        if self.object_ids and change.object_id not in self.object_ids:
            return False
        if change.kind == "associationChange":
            assoc = change.association or {}
            action = "ASSOCIATION_REMOVED" if assoc.get("associationRemoved") else "ASSOCIATION_ADDED"
            if self.subscription_type != "ASSOCIATION" or action not in self.actions:
                return False
            to_type = resolve(str(assoc.get("associationType", "")).split("_TO_")[-1].lower())
            return not self.associated_types or (
                to_type is not None and to_type.type_id in self.associated_types
            )
        if self.subscription_type != "OBJECT" or _ACTION_OF_KIND.get(change.kind) not in self.actions:
            return False
        if change.kind == "propertyChange" and self.properties:
            return change.property_name in self.properties
        return True

    def to_json(self) -> dict[str, Any]:
        """SubscriptionResponse (SPEC): id, appId, subscriptionType, objectTypeId, actions,
        createdAt, updatedAt required."""
        out: dict[str, Any] = {
            "id": self.id,
            "appId": self.app_id,
            "subscriptionType": self.subscription_type,
            "objectTypeId": self.object_type.type_id,
            "portalId": self.portal_id,
            "actions": sorted(self.actions),
            "objectIds": sorted(self.object_ids),
            "createdAt": iso_from_ms(self.created_ms),
            "updatedAt": iso_from_ms(self.updated_ms),
        }
        if self.subscription_type == "OBJECT":
            out["properties"] = sorted(self.properties)
        else:
            out["associatedObjectTypeIds"] = sorted(self.associated_types)
        return out


@dataclass
class Entry:
    offset: str  # a UUID (JournalFetchResponse.currentOffset)
    created_ms: int  # when its first event happened
    events: list[dict[str, Any]]


@dataclass
class Journal:
    portal_id: int
    app_id: int
    now_ms: Callable[[], int]
    rng: random.Random
    subscriptions: dict[int, Subscription] = field(default_factory=dict)
    _entries: list[Entry] = field(default_factory=list)
    _by_offset: dict[str, int] = field(default_factory=dict)  # offset → sequence number
    _first_seq: int = 0  # sequence number of _entries[0]
    _open: list[dict[str, Any]] = field(default_factory=list)
    _next_event_id: int = 1
    _next_subscription_id: int = 5_000_001

    # --- writing ---

    def notify(self, change: Change) -> None:
        """Journals a change for the first subscription that wants it."""
        subscription = next((s for s in self.subscriptions.values() if s.matches(change)), None)
        if subscription is None:
            return
        event = change_event(
            change,
            event_id=self._next_event_id,
            subscription_id=subscription.id,
            portal_id=self.portal_id,
            app_id=self.app_id,
            occurred_at=self.now_ms(),
        )
        event["objectTypeId"] = change.object_type.type_id
        del event["attemptNumber"]  # nothing is delivered, so nothing is attempted
        self._next_event_id += 1
        self._open.append(event)
        if len(self._open) >= MAX_EVENTS_PER_ENTRY:
            self._cut()

    def _cut(self) -> None:
        if not self._open:
            return
        offset = str(uuid.UUID(int=self.rng.getrandbits(128), version=4))
        self._by_offset[offset] = self._first_seq + len(self._entries)
        self._entries.append(Entry(offset, int(self._open[0]["occurredAt"]), self._open))
        self._open = []

    def _settle(self) -> None:
        """Cuts what is waiting into an entry and forgets entries past the retention."""
        self._cut()
        horizon = self.now_ms() - RETENTION_MS
        gone = 0
        while gone < len(self._entries) and self._entries[gone].created_ms < horizon:
            del self._by_offset[self._entries[gone].offset]
            gone += 1
        if gone:
            del self._entries[:gone]
            self._first_seq += gone

    # --- reading ---

    def earliest(self, count: int = 1) -> list[Entry]:
        self._settle()
        return self._entries[:count]

    def latest(self, count: int = 1) -> list[Entry]:
        """The newest `count` entries, oldest first [INF]."""
        self._settle()
        return self._entries[-count:] if count else []

    def after(self, offset: str, count: int = 1) -> list[Entry]:
        """Entries after `offset`; 404 when the offset is unknown or has aged out."""
        self._settle()
        seq = self._by_offset.get(offset)
        if seq is None:
            raise not_found(f"Offset {offset} does not exist or has expired")
        start = seq - self._first_seq + 1
        return self._entries[start : start + count]

    def entry(self, offset: str) -> Entry | None:
        self._settle()
        seq = self._by_offset.get(offset)
        return None if seq is None else self._entries[seq - self._first_seq]

    # --- subscriptions ---

    def upsert(self, body: Any) -> Subscription:
        """`POST /webhooks-journal/subscriptions/2026-03`: an OBJECT or ASSOCIATION
        subscription; one with the same type, portal and object type is replaced [INF]."""
        if not isinstance(body, dict):
            raise validation_error("Invalid input JSON: expected an object")
        kind = str(body.get("subscriptionType", "OBJECT"))
        if kind not in ("OBJECT", "ASSOCIATION"):
            # APP_LIFECYCLE_EVENT, LIST_MEMBERSHIP, GDPR_PRIVACY_DELETION exist in the spec but
            # the emulator has no such events.
            raise validation_error(f"subscriptionType {kind} is not supported by the emulator")
        obj = resolve(str(body.get("objectTypeId", "")))
        if obj is None:
            raise validation_error(f"Unknown objectTypeId {body.get('objectTypeId')!r}")
        allowed = OBJECT_ACTIONS if kind == "OBJECT" else ASSOCIATION_ACTIONS
        actions = body.get("actions")
        if not isinstance(actions, list) or not actions or not set(actions) <= allowed:
            raise validation_error(f"actions must be a non-empty list of {', '.join(sorted(allowed))}")
        try:
            portal_id = int(body.get("portalId", self.portal_id))
            object_ids = frozenset(int(i) for i in body.get("objectIds") or [])
        except (TypeError, ValueError) as exc:
            raise validation_error("portalId and objectIds are integers") from exc
        now = self.now_ms()
        existing = next(
            (
                s
                for s in self.subscriptions.values()
                if (s.subscription_type, s.portal_id, s.object_type) == (kind, portal_id, obj)
            ),
            None,
        )
        subscription = Subscription(
            id=existing.id if existing else self._next_subscription_id,
            subscription_type=kind,
            portal_id=portal_id,
            object_type=obj,
            actions=frozenset(actions),
            properties=frozenset(str(p) for p in body.get("properties") or []),
            object_ids=object_ids,
            associated_types=frozenset(str(t) for t in body.get("associatedObjectTypeIds") or []),
            app_id=self.app_id,
            created_ms=existing.created_ms if existing else now,
            updated_ms=now,
        )
        if existing is None:
            self._next_subscription_id += 1
        self.subscriptions[subscription.id] = subscription
        return subscription

    def subscription(self, subscription_id: str) -> Subscription:
        try:
            found = self.subscriptions.get(int(subscription_id))
        except ValueError:
            found = None
        if found is None:
            raise not_found(f"No subscription {subscription_id}")
        return found

    def delete(self, subscription_id: str) -> None:
        del self.subscriptions[self.subscription(subscription_id).id]

    def delete_portal(self, portal_id: str) -> None:
        for s in [s for s in self.subscriptions.values() if str(s.portal_id) == portal_id]:
            del self.subscriptions[s.id]

    def clear(self) -> None:
        """Forgets entries (not subscriptions): the admin reset."""
        self._entries.clear()
        self._by_offset.clear()
        self._open.clear()


def url_expired(expires_ms: int, now_ms: int) -> ApiError | None:
    if now_ms >= expires_ms:
        # What S3 answers for an expired pre-signed URL, in HubSpot's error shape [INF].
        return ApiError(403, "FORBIDDEN", "Request has expired")
    return None
