"""Webhook delivery (fact sheet §8.2): JSON arrays of ≤ 100 events, signed, retried with backoff,
optionally duplicated and reordered."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import trio

from .signatures import signature_v1, signature_v3
from .state import Change

MAX_EVENTS_PER_REQUEST = 100
MAX_RETRIES = 10
ATTEMPT_TIMEOUT = 5.0  # a receiver slower than 5 s counts as a failure
MAX_CONCURRENT = 10  # in-flight requests per account
MAX_BACKOFF = 3600.0


@dataclass(frozen=True)
class Delivery:
    """One POST the emulator made: which events, which attempt, what came back (None: timeout
    or connection error)."""

    event_ids: tuple[int, ...]
    attempt: int
    status: int | None
    duplicate: bool = False


def change_event(
    change: Change,
    *,
    event_id: int,
    subscription_id: int,
    portal_id: int,
    app_id: int,
    occurred_at: int,
) -> dict[str, Any]:
    """The event a subscription sees for one change (fact sheet §8.2), shared by webhook
    deliveries and the webhooks journal."""
    event: dict[str, Any] = {
        "eventId": event_id,
        "subscriptionId": subscription_id,
        "portalId": portal_id,
        "appId": app_id,
        "occurredAt": occurred_at,
        "subscriptionType": f"{change.object_type.singular}.{change.kind}",
        "attemptNumber": 0,
        "objectId": change.object_id,
        "changeSource": change.source,
    }
    if change.kind == "creation":
        event["changeFlag"] = "CREATED"
    elif change.kind == "deletion":
        event["changeFlag"] = "DELETED"
    elif change.kind == "propertyChange":
        event["propertyName"] = change.property_name
        event["propertyValue"] = change.property_value
    elif change.association is not None:
        event.update(change.association)
    return event


class WebhookDispatcher:
    def __init__(
        self,
        url: str,
        secret: str,
        *,
        portal_id: int,
        app_id: int,
        now_ms: Callable[[], int],
        rng: random.Random,
    ) -> None:
        self.url = url
        self.secret = secret
        self.portal_id = portal_id
        self.app_id = app_id
        self.now_ms = now_ms
        self.rng = rng
        self.duplicate_rate = 0.0
        self.reorder = False
        self.retry_base = 1.0
        self.deliveries: list[Delivery] = []
        self.given_up: list[list[dict[str, Any]]] = []
        self._pending: list[dict[str, Any]] = []
        # Batches taken from `_pending` whose delivery (with its retries) has not ended: a test
        # that wants "nothing more will arrive" needs both counts at zero.
        self.in_flight = 0
        self._wakeup = trio.Event()
        self._next_event_id = 1
        self._subscriptions: dict[str, int] = {}

    # --- events ---

    def notify(self, change: Change) -> None:
        if not change.object_type.webhooks:
            return
        subscription_type = f"{change.object_type.singular}.{change.kind}"
        event = change_event(
            change,
            event_id=self._next_event_id,
            subscription_id=self._subscriptions.setdefault(
                subscription_type, 100_001 + len(self._subscriptions)
            ),
            portal_id=self.portal_id,
            app_id=self.app_id,
            occurred_at=change.at if change.at is not None else self.now_ms(),
        )
        self._next_event_id += 1
        self._pending.append(event)
        self._wakeup.set()

    @property
    def pending(self) -> list[dict[str, Any]]:
        return list(self._pending)

    def clear(self) -> None:
        self._pending.clear()

    def _take_batch(self) -> list[dict[str, Any]]:
        if self.reorder:
            # Shuffle what is waiting and cut a random-sized batch, so later events can be
            # delivered before earlier ones (order is not guaranteed by HubSpot).
            self.rng.shuffle(self._pending)
            size = self.rng.randint(1, min(MAX_EVENTS_PER_REQUEST, len(self._pending)))
        else:
            size = min(MAX_EVENTS_PER_REQUEST, len(self._pending))
        batch, self._pending = self._pending[:size], self._pending[size:]
        return batch

    # --- delivery ---

    async def run(
        self,
        client: httpx.AsyncClient,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        slots = trio.Semaphore(MAX_CONCURRENT)
        async with trio.open_nursery() as nursery:
            task_status.started()
            while True:
                if not self._pending:
                    self._wakeup = trio.Event()
                    await self._wakeup.wait()
                batch = self._take_batch()
                self.in_flight += 1
                await slots.acquire()
                nursery.start_soon(self._deliver, client, batch, slots)

    async def _deliver(
        self, client: httpx.AsyncClient, batch: list[dict[str, Any]], slots: trio.Semaphore
    ) -> None:
        try:
            for attempt in range(MAX_RETRIES + 1):
                if attempt:
                    delay = min(self.retry_base * 2 ** (attempt - 1), MAX_BACKOFF)
                    await trio.sleep(delay * (0.5 + self.rng.random()))
                events = [{**e, "attemptNumber": attempt} for e in batch]
                if await self._post(client, events, attempt):
                    if self.duplicate_rate > 0 and self.rng.random() < self.duplicate_rate:
                        await self._post(client, events, attempt, duplicate=True)
                    return
            self.given_up.append(batch)
        finally:
            self.in_flight -= 1
            slots.release()

    async def _post(
        self,
        client: httpx.AsyncClient,
        events: list[dict[str, Any]],
        attempt: int,
        *,
        duplicate: bool = False,
    ) -> bool:
        body = json.dumps(events, separators=(",", ":")).encode()
        timestamp = self.now_ms()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "HubSpot Connect 2.0 (http://dev.hubspot.com/) - WebhooksExecutorDaemon",
            "X-HubSpot-Signature": signature_v1(self.secret, body),
            "X-HubSpot-Signature-Version": "v1",
            "X-HubSpot-Signature-v3": signature_v3(self.secret, "POST", self.url, body, timestamp),
            "X-HubSpot-Request-Timestamp": str(timestamp),
            "X-HubSpot-Timeout-Millis": str(int(ATTEMPT_TIMEOUT * 1000)),
        }
        status: int | None = None
        with trio.move_on_after(ATTEMPT_TIMEOUT):
            try:
                response = await client.post(self.url, content=body, headers=headers)
                status = response.status_code
            except httpx.TransportError:
                status = None
        ids = tuple(int(e["eventId"]) for e in events)
        self.deliveries.append(Delivery(ids, attempt, status, duplicate))
        return status is not None and 200 <= status < 300
