"""Webhooks v2 [PD-wh2][PD-whmig]: registered through `POST /v1/webhooks`, one POST per event
with `{meta, data, previous}`, HTTP Basic credentials when the webhook has them (nothing is
signed), any 2xx a success.

Delivery as documented: a failure is a non-2xx answer or none within 10 s; it is retried 3
more times, after 3, 30 and 150 s (`meta.attempt` 1–4). Every failed *first* attempt raises the
webhook's ban counter; at 10 the webhook is banned for 30 minutes, its events meanwhile are
lost and so are retries still waiting; when the ban ends the counter starts again from zero. A
webhook without a successful delivery for 3 days is deleted [PD-wh2]. What the guide leaves
open is marked [INF]: the counter is not lowered by successes, at most 10 deliveries run at
once, `data` is the record as the v2 API shows it."""

from __future__ import annotations

import base64
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
import trio

from .clock import EmulatorClock
from .errors import ApiError, V1FieldError, not_found
from .state import Change
from .values import is_int, rfc3339_ms

EVENT_ACTIONS = ("create", "change", "delete", "*")
EVENT_OBJECTS = (
    "activity",
    "deal",
    "lead",
    "note",
    "organization",
    "person",
    "pipeline",
    "product",
    "stage",
    "user",
    "*",
)
MAX_PER_USER = 40
ATTEMPT_TIMEOUT = 10.0
RETRY_DELAYS = (3.0, 30.0, 150.0)
BAN_AFTER_FAILURES = 10
BAN_SECONDS = 30 * 60.0
DELETE_WITHOUT_SUCCESS_MS = 3 * 86_400_000
MAX_CONCURRENT = 10  # [INF]


@dataclass
class Webhook:
    id: int
    owner_id: int
    user_id: int
    event_action: str
    event_object: str
    subscription_url: str
    name: str
    http_auth_user: str | None
    http_auth_password: str | None
    add_ms: int
    version: str = "2.0"
    ban_counter: int = 0
    banned_until: float | None = None  # on the monotonic clock
    last_success_ms: int | None = None
    last_delivery_ms: int | None = None
    last_http_status: int | None = None
    removed: bool = False

    def matches(self, change: Change) -> bool:
        return self.event_action in ("*", change.action) and self.event_object in (
            "*",
            change.entity,
        )

    def to_json(self, company_id: int) -> dict[str, Any]:
        """The v1 webhooks API's shape [PD-spec-v1]."""
        return {
            "id": self.id,
            "company_id": company_id,
            "owner_id": self.owner_id,
            "user_id": self.user_id,
            "event_action": self.event_action,
            "event_object": self.event_object,
            "subscription_url": self.subscription_url,
            "version": self.version,
            "is_active": 0 if self.banned_until is not None else 1,
            "add_time": rfc3339_ms(self.add_ms),
            "remove_time": None,
            "type": "general",
            "http_auth_user": self.http_auth_user,
            "http_auth_password": self.http_auth_password,
            "remove_reason": None,
            "last_delivery_time": (
                rfc3339_ms(self.last_delivery_ms) if self.last_delivery_ms is not None else None
            ),
            "last_http_status": self.last_http_status,
            "admin_id": self.owner_id,
            "name": self.name,
        }


@dataclass(frozen=True)
class Delivery:
    """One POST the emulator made: which event, which attempt, what came back (None: timeout
    or connection error)."""

    event_id: str
    webhook_id: int
    action: str
    entity: str
    entity_id: int
    attempt: int
    status: int | None
    duplicate: bool = False


@dataclass
class _Job:
    webhook: Webhook
    payload: dict[str, Any]


@dataclass
class WebhookLog:
    deliveries: list[Delivery] = field(default_factory=list)
    lost: list[dict[str, Any]] = field(default_factory=list)  # events dropped by a ban
    given_up: list[dict[str, Any]] = field(default_factory=list)  # all 4 attempts failed
    removed: list[int] = field(default_factory=list)  # webhooks deleted for 3 days of failure


class Webhooks:
    def __init__(
        self,
        *,
        company_id: int,
        host: str,
        clock: EmulatorClock,
        rng: random.Random,
        user_ids: Callable[[], list[int]],
    ) -> None:
        self.company_id = company_id
        self.host = host
        self.clock = clock
        self.rng = rng
        self.user_ids = user_ids
        self.duplicate_rate = 0.0
        self.reorder = False
        self.hooks: dict[int, Webhook] = {}
        self._next_id = 1
        self.log = WebhookLog()
        self._pending: list[_Job] = []
        # Jobs taken from `_pending` whose delivery (retries included) has not ended: "nothing
        # more will arrive" needs both counts at zero.
        self.in_flight = 0
        self._wakeup = trio.Event()

    # --- the webhooks API ---

    def register(self, body: Any, owner_id: int, user_exists: Callable[[int], bool]) -> Webhook:
        """`POST /v1/webhooks` [PD-wh2][PD-spec-v1]; only version 2.0 payloads are emulated."""
        if not isinstance(body, dict):
            raise V1FieldError(400, "body", "the request body must be a JSON object")
        for key in ("subscription_url", "event_action", "event_object", "name"):
            if not isinstance(body.get(key), str) or not body[key]:
                raise V1FieldError(400, key, f"{key} is required")
        url = body["subscription_url"]
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise V1FieldError(400, "subscription_url", "invalid or non-reachable URL")
        if body["event_action"] not in EVENT_ACTIONS:
            raise V1FieldError(400, "event_action", "not a supported event action")
        if body["event_object"] not in EVENT_OBJECTS:
            raise V1FieldError(400, "event_object", "not a supported event object")
        version = body.get("version", "2.0")  # 2.0 is the default since 2025-03-17 [PD-wh2]
        if version != "2.0":
            raise V1FieldError(400, "version", "the emulator delivers version 2.0 only")
        user_id = body.get("user_id", owner_id)
        if not is_int(user_id) or not user_exists(user_id):
            raise V1FieldError(400, "user_id", "not a user of this company")
        auth: dict[str, str | None] = {}
        for key in ("http_auth_user", "http_auth_password"):
            value = body.get(key)
            if value is not None and not isinstance(value, str):
                raise V1FieldError(400, key, f"{key} must be a string")
            auth[key] = value
        unknown = set(body) - {
            "subscription_url",
            "event_action",
            "event_object",
            "name",
            "version",
            "user_id",
            "http_auth_user",
            "http_auth_password",
        }
        if unknown:
            raise V1FieldError(400, sorted(unknown)[0], "unknown parameter")
        if sum(1 for h in self.hooks.values() if h.owner_id == owner_id) >= MAX_PER_USER:
            raise ApiError(422, f"a user can have at most {MAX_PER_USER} webhooks")
        hook = Webhook(
            id=self._next_id,
            owner_id=owner_id,
            user_id=user_id,
            event_action=body["event_action"],
            event_object=body["event_object"],
            subscription_url=url,
            name=body["name"],
            http_auth_user=auth["http_auth_user"],
            http_auth_password=auth["http_auth_password"],
            add_ms=self.clock.now_ms(),
        )
        self._next_id += 1
        self.hooks[hook.id] = hook
        return hook

    def remove(self, hook_id: int) -> None:
        hook = self.hooks.pop(hook_id, None)
        if hook is None:
            raise not_found("Webhook")
        hook.removed = True

    # --- events ---

    def _banned(self, hook: Webhook) -> bool:
        if hook.banned_until is None:
            return False
        if self.clock.now() >= hook.banned_until:
            hook.banned_until, hook.ban_counter = None, 0  # reactivated, counter from zero
            return False
        return True

    def notify(self, change: Change) -> None:
        for hook in list(self.hooks.values()):
            if not hook.matches(change):
                continue
            payload = self._payload(hook, change)
            if self._banned(hook):
                self.log.lost.append(payload)
                continue
            self._pending.append(_Job(hook, payload))
            self._wakeup.set()

    def _payload(self, hook: Webhook, change: Change) -> dict[str, Any]:
        uid = lambda: str(uuid.UUID(int=self.rng.getrandbits(128), version=4))  # noqa: E731
        meta: dict[str, Any] = {
            "action": change.action,
            "entity": change.entity,
            "company_id": str(self.company_id),
            "correlation_id": uid(),
            "entity_id": str(change.entity_id),
            "id": uid(),
            "is_bulk_edit": False,
            "timestamp": rfc3339_ms(change.at_ms),
            "type": "general",
            "user_id": str(change.user_id),
            "version": "2.0",
            "webhook_id": str(hook.id),
            "webhook_owner_id": str(hook.owner_id),
            "change_source": change.source,
            "attempt": 1,
            "host": self.host,
        }
        if change.entity != "user":
            meta["permitted_user_ids"] = [str(u) for u in self.user_ids()]
        return {"meta": meta, "data": change.data, "previous": change.previous}

    @property
    def pending(self) -> int:
        return len(self._pending)

    def clear(self) -> None:
        self._pending.clear()
        self.hooks.clear()
        self.log = WebhookLog()

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
                if self.reorder:
                    self.rng.shuffle(self._pending)
                job = self._pending.pop(0)
                self.in_flight += 1
                await slots.acquire()
                nursery.start_soon(self._deliver, client, job, slots)

    async def _deliver(self, client: httpx.AsyncClient, job: _Job, slots: trio.Semaphore) -> None:
        hook, payload = job.webhook, job.payload
        try:
            for attempt in range(1, len(RETRY_DELAYS) + 2):
                if attempt > 1:
                    await self.clock.sleep(RETRY_DELAYS[attempt - 2])
                    if hook.removed or self._banned(hook):
                        self.log.lost.append(payload)  # no retries after a ban [PD-wh2]
                        return
                payload["meta"]["attempt"] = attempt
                if await self._post(client, hook, payload):
                    if self.duplicate_rate > 0 and self.rng.random() < self.duplicate_rate:
                        await self._post(client, hook, payload, duplicate=True)
                    return
                if attempt == 1:
                    hook.ban_counter += 1
                    if hook.ban_counter >= BAN_AFTER_FAILURES:
                        hook.banned_until = self.clock.now() + BAN_SECONDS
                if self._expired(hook):
                    return
            self.log.given_up.append(payload)
        finally:
            self.in_flight -= 1
            slots.release()

    def _expired(self, hook: Webhook) -> bool:
        """No success for 3 days: the webhook is deleted [PD-wh2]."""
        since = hook.last_success_ms if hook.last_success_ms is not None else hook.add_ms
        if hook.removed or self.clock.now_ms() - since < DELETE_WITHOUT_SUCCESS_MS:
            return hook.removed
        self.hooks.pop(hook.id, None)
        hook.removed = True
        self.log.removed.append(hook.id)
        return True

    async def _post(
        self,
        client: httpx.AsyncClient,
        hook: Webhook,
        payload: dict[str, Any],
        *,
        duplicate: bool = False,
    ) -> bool:
        headers = {"User-Agent": "Pipedrive Webhooks"}
        if hook.http_auth_user is not None or hook.http_auth_password is not None:
            pair = f"{hook.http_auth_user or ''}:{hook.http_auth_password or ''}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
        status: int | None = None
        with trio.move_on_after(ATTEMPT_TIMEOUT):
            try:
                response = await client.post(
                    hook.subscription_url,
                    json=payload,
                    headers=headers,
                )
                status = response.status_code
            except httpx.TransportError:
                status = None
        meta = payload["meta"]
        self.log.deliveries.append(
            Delivery(
                meta["id"],
                hook.id,
                meta["action"],
                meta["entity"],
                int(meta["entity_id"]),
                meta["attempt"],
                status,
                duplicate,
            )
        )
        hook.last_delivery_ms, hook.last_http_status = self.clock.now_ms(), status
        ok = status is not None and 200 <= status < 300
        if ok:
            hook.last_success_ms = self.clock.now_ms()
        return ok
