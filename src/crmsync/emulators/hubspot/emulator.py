"""`HubSpotEmulator`: the in-memory HubSpot account, its ASGI app and its Python API."""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import httpx
import trio

from . import fake_data
from .app import build_app
from .errors import validation_error
from .faults import FaultInjector, Faults
from .journal import Journal
from .oauth import ACCESS_TOKEN_SECONDS, Authenticator, Credential, OAuthApp
from .objects import ObjectType
from .ratelimit import RateLimiter
from .state import Change, CrmState
from .webhooks import WebhookDispatcher


def _wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


class HubSpotEmulator:
    """A stateful fake of HubSpot's CRM API for one account (portal).

    `app` is the ASGI application (serve it with hypercorn, or hand it to
    `httpx.ASGITransport`). `clock` is the monotonic clock of rate windows, storms, token
    expiry and search indexing (tests on MockClock pass `trio.current_time`); `now_ms` the wall
    clock of createdAt / updatedAt and of the webhooks journal's 3-day retention. All randomness
    derives from `seed` and `Faults.seed`.

    `tokens`: static credentials — a string is a legacy private-app token with every scope, a
    `Credential` names its kind and scopes. `oauth_clients`: OAuth apps by client id
    (`OAuthApp`, or `(client secret, refresh token of an existing install)`).
    """

    def __init__(
        self,
        tokens: Iterable[str | Credential] = ("test-token",),
        tier: str = "unlimited",
        seed: int = 0,
        webhook_url: str | None = None,
        webhook_secret: str | None = None,
        clock: Callable[[], float] | None = None,
        now_ms: Callable[[], int] | None = None,
        oauth_clients: Mapping[str, tuple[str, str] | OAuthApp] | None = None,
        portal_id: int = 62515,
        *,
        app_id: int = 54321,
        rotate_refresh_tokens: bool = False,
        search_index_delay: float = 0.0,
        access_token_seconds: int = ACCESS_TOKEN_SECONDS,
    ) -> None:
        if (webhook_url is None) != (webhook_secret is None):
            raise ValueError("webhook_url and webhook_secret go together")
        self.portal_id = portal_id
        self.clock: Callable[[], float] = clock or time.monotonic
        self.now_ms: Callable[[], int] = now_ms or _wall_clock_ms
        self._rng = random.Random(seed)
        self.request_log: list[tuple[str, str, int]] = []
        self.dispatcher: WebhookDispatcher | None = None
        if webhook_url is not None and webhook_secret is not None:
            self.dispatcher = WebhookDispatcher(
                webhook_url,
                webhook_secret,
                portal_id=portal_id,
                app_id=app_id,
                now_ms=self.now_ms,
                rng=random.Random(seed + 1),
            )
        self.journal = Journal(portal_id, app_id, self.now_ms, random.Random(seed + 3))
        self._notify = True
        self.state = CrmState(
            portal_id=portal_id,
            now_ms=self.now_ms,
            clock=self.clock,
            on_change=self._on_change,
            search_index_delay=search_index_delay,
        )
        self.app_id = app_id
        self.auth = Authenticator(
            self.clock,
            random.Random(seed + 2),
            portal_id,
            rotate_refresh_tokens=rotate_refresh_tokens,
            access_token_seconds=access_token_seconds,
        )
        self.auth.configure(tokens, oauth_clients)
        self.rate_limiter = RateLimiter(tier)
        self.injector = FaultInjector(Faults(), 0.0)
        self.app = build_app(self)

    # --- identifiers for error bodies ---

    def correlation_id(self) -> str:
        return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))

    def request_id(self) -> str:
        return f"{self._rng.getrandbits(64):016x}"

    # --- faults ---

    @property
    def faults(self) -> Faults:
        return self.injector.faults

    @faults.setter
    def faults(self, faults: Faults) -> None:
        """New fault settings; a 429 storm starts now and its random choices restart from the
        settings' seed."""
        self.injector = FaultInjector(faults, self.clock())

    def webhook_options(
        self, duplicate_rate: float = 0.0, reorder: bool = False, *, retry_base: float = 1.0
    ) -> None:
        """Delivery quirks: redeliver a delivered batch with probability `duplicate_rate`;
        shuffle waiting events and cut random-sized batches with `reorder`. `retry_base` is the
        first retry's delay in seconds (doubling, jittered, capped at an hour)."""
        if self.dispatcher is None:
            raise RuntimeError(
                "webhooks are off: construct the emulator with webhook_url and webhook_secret"
            )
        self.dispatcher.duplicate_rate = duplicate_rate
        self.dispatcher.reorder = reorder
        self.dispatcher.retry_base = retry_base

    async def run_webhooks(
        self,
        client: httpx.AsyncClient,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Delivers webhook events to `webhook_url` through `client` until cancelled. Without
        webhooks configured it only waits, so callers can always start it."""
        if self.dispatcher is None:
            task_status.started()
            await trio.sleep_forever()
            return
        await self.dispatcher.run(client, task_status=task_status)

    def _on_change(self, change: Change) -> None:
        # The webhooks journal is written from the same change notifications as webhooks.
        if not self._notify:
            return
        if self.dispatcher is not None:
            self.dispatcher.notify(change)
        self.journal.notify(change)

    # --- Python API ---

    def _object(self, object_type: str) -> ObjectType:
        return self.state.object_type(object_type)

    def add_records(self, object_type: str, records: Iterable[dict[str, Any]]) -> list[str]:
        """Creates records as an API create would (validated, webhooks fired); returns ids."""
        obj = self._object(object_type)
        return [str(self.state.create(obj, props).id) for props in records]

    def update_record(self, object_type: str, record_id: str, properties: dict[str, Any]) -> None:
        """Changes a record as a user in HubSpot's UI would: last-modified bumps, webhooks fire."""
        obj = self._object(object_type)
        rec = self.state.by_id(obj, record_id)
        if rec is None:
            raise KeyError(f"no live {obj.singular} {record_id}")
        self.state.update(obj, rec, properties, source="CRM_UI")

    def archive_record(self, object_type: str, record_id: str) -> None:
        obj = self._object(object_type)
        rec = self.state.by_id(obj, record_id)
        if rec is None:
            raise KeyError(f"no live {obj.singular} {record_id}")
        self.state.archive(obj, rec, source="CRM_UI")

    def records(self, object_type: str, archived: bool = False) -> list[dict[str, Any]]:
        """`{id, properties, createdAt, updatedAt, archived}` of every live (or archived) record."""
        obj = self._object(object_type)
        return [
            {k: v for k, v in r.to_json().items() if k != "archivedAt"}
            for r in self.state.all_records(obj).values()
            if r.archived == archived
        ]

    def associations(self, from_type: str, from_id: str, to_type: str) -> list[str]:
        targets = self.state.associations.targets(
            self._object(from_type), int(from_id), self._object(to_type)
        )
        return [str(i) for i in targets]

    def associate(
        self,
        from_type: str,
        from_id: str,
        to_type: str,
        to_id: str,
        type_ids: Iterable[int] | None = None,
    ) -> None:
        """Associates two records (default: the pair's unlabelled type), firing webhooks."""
        a, b = self._object(from_type), self._object(to_type)
        self.state.associate(a, int(from_id), b, int(to_id), set(type_ids or ()), source="CRM_UI")

    @property
    def events(self) -> list[dict[str, Any]]:
        return self.state.events

    def expire_access_tokens(self) -> None:
        self.auth.expire_access_tokens()

    # --- admin ---

    def seed(self, payload: Any) -> dict[str, list[str]]:
        """`POST /_emulator/seed`: `{"contacts": [{props}, ...], ...}` and/or
        `{"generate": {"contacts": N, ...}, "seed": S}`. Seeding is set-up, not activity: it
        fires no webhooks."""
        if not isinstance(payload, dict):
            raise validation_error("seed body must be an object")
        made: dict[str, list[str]] = {}
        self._notify = False
        try:
            generate = payload.get("generate")
            if generate is not None:
                if not isinstance(generate, dict):
                    raise validation_error("generate must be an object of counts")
                counts = {
                    k if k == "owners" else self._object(k).name: int(v)
                    for k, v in generate.items()
                }
                made = fake_data.generate(
                    self.state, counts, int(payload.get("seed", 0)), source="IMPORT"
                )
            for key, items in payload.items():
                if key in ("generate", "seed"):
                    continue
                obj = self._object(key)
                if not isinstance(items, list):
                    raise validation_error(f"{key} must be a list of property objects")
                ids = [str(self.state.create(obj, props, source="IMPORT").id) for props in items]
                made.setdefault(obj.name, []).extend(ids)
        finally:
            self._notify = True
        return made

    def dump(self) -> dict[str, Any]:
        out = self.state.dump()
        out["faults"] = self.faults.to_json()
        out["requestCount"] = len(self.request_log)
        return out

    def reset(self) -> None:
        """Forgets all records, associations, custom properties, pipelines, owners added,
        events, webhook queue, journal entries and rate windows; keeps credentials, OAuth apps,
        journal subscriptions and fault settings."""
        self.state.reset()
        self.rate_limiter.reset()
        self.request_log.clear()
        self.journal.clear()
        if self.dispatcher is not None:
            self.dispatcher.clear()
