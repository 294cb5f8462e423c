"""`PipedriveEmulator`: the in-memory Pipedrive company, its ASGI app and its Python API."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import httpx
import trio

from . import fake_data
from .app import build_app
from .auth import Authenticator
from .clock import EmulatorClock
from .errors import bad_request
from .faults import FaultInjector, Faults
from .ratelimit import RateLimiter
from .state import WITH_FIELDS, AccountState, Change, User
from .webhooks import Webhook, Webhooks

ADMIN = User(1, "Ada Admin", "admin@emulated.example", is_admin=True)


class PipedriveEmulator:
    """A stateful fake of Pipedrive's API (v2 objects, v1 webhooks) for one company.

    `app` is the ASGI application (serve it with hypercorn, or hand it to
    `httpx.ASGITransport`). `clock` is the monotonic clock of burst windows, bans, token
    expiry and webhook retries (tests on MockClock pass `trio.current_time`); `now_ms` the wall
    clock of record timestamps and of the daily budget's day. `tokens` are API tokens, each
    acting as user 1 (the admin) or, given as a mapping, as the user id it names (users are
    created for them). All randomness — custom field keys included — derives from `seed`.

    `webhook_url` (with optional Basic credentials) pre-registers one webhook for every event,
    as `crmsync emulator pipedrive --webhook-url` does; clients can register their own through
    `POST /v1/webhooks`."""

    def __init__(
        self,
        tokens: Iterable[str] | Mapping[str, int] = ("test-token",),
        plan: str = "unlimited",
        seed: int = 0,
        *,
        seats: int = 1,
        top_up_tokens: int = 0,
        webhook_url: str | None = None,
        webhook_user: str | None = None,
        webhook_password: str | None = None,
        clock: Callable[[], float] | None = None,
        now_ms: Callable[[], int] | None = None,
        oauth_clients: dict[str, tuple[str, str]] | None = None,
        rotate_refresh_tokens: bool = False,
        company_id: int = 7_654_321,
        company_domain: str = "emulated",
        hammer_limit: int = 50,
        hammer_window: float = 10.0,
        block_seconds: float = 60.0,
    ) -> None:
        self.company_id = company_id
        self.company_domain = company_domain
        self.company_name = "Emulated Company"
        self.clock = EmulatorClock(clock, now_ms)
        token_users = dict(tokens) if isinstance(tokens, Mapping) else dict.fromkeys(tokens, 1)
        users = {ADMIN.id: ADMIN}
        for user_id in sorted(set(token_users.values()) - {ADMIN.id}):
            users[user_id] = User(
                user_id, f"User {user_id}", f"user{user_id}@emulated.example", False
            )
        self.request_log: list[tuple[str, str, int, int]] = []  # method, path, status, tokens
        self._notify = True
        self.webhooks = Webhooks(
            company_id=company_id,
            host=f"{company_domain}.pipedrive.com",
            clock=self.clock,
            rng=random.Random(seed + 1),
            user_ids=lambda: sorted(self.state.users),
        )
        self.state = AccountState(
            company_id=company_id,
            clock=self.clock,
            rng=random.Random(seed),
            on_change=self._on_change,
            users=users,
        )
        self.auth = Authenticator(
            token_users,
            oauth_clients,
            self.clock.now,
            random.Random(seed + 2),
            oauth_user_id=ADMIN.id,
            rotate_refresh_tokens=rotate_refresh_tokens,
        )
        self.rate_limiter = RateLimiter(
            plan,
            seats=seats,
            top_up_tokens=top_up_tokens,
            hammer_limit=hammer_limit,
            hammer_window=hammer_window,
            block_seconds=block_seconds,
        )
        self.injector = FaultInjector(Faults(), 0.0)
        self._webhook_settings = (webhook_url, webhook_user, webhook_password)
        self.default_webhook: Webhook | None = None
        self._register_default_webhook()
        self.app = build_app(self)

    def _register_default_webhook(self) -> None:
        url, user, password = self._webhook_settings
        if url is None:
            return
        body: dict[str, Any] = {
            "subscription_url": url,
            "event_action": "*",
            "event_object": "*",
            "name": "crmsync emulator",
        }
        if user is not None:
            body["http_auth_user"] = user
        if password is not None:
            body["http_auth_password"] = password
        self.default_webhook = self.webhooks.register(body, ADMIN.id, self.state.user_exists)

    # --- faults and webhooks ---

    @property
    def faults(self) -> Faults:
        return self.injector.faults

    @faults.setter
    def faults(self, faults: Faults) -> None:
        """New fault settings; a 429 storm starts now and its random choices restart from the
        settings' seed."""
        self.injector = FaultInjector(faults, self.clock.now())

    def webhook_options(self, duplicate_rate: float = 0.0, reorder: bool = False) -> None:
        """Delivery quirks beyond the documented ones: deliver a delivered event again (same
        `meta.id`) with probability `duplicate_rate`; take waiting events in random order."""
        self.webhooks.duplicate_rate = duplicate_rate
        self.webhooks.reorder = reorder

    async def run_webhooks(
        self,
        client: httpx.AsyncClient,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Delivers webhook events through `client` until cancelled; with no webhook
        registered it only waits for one, so callers can always start it."""
        await self.webhooks.run(client, task_status=task_status)

    def _on_change(self, change: Change) -> None:
        if self._notify:
            self.webhooks.notify(change)

    # --- Python API (what a user does in Pipedrive's web app: change_source "app") ---

    def add_records(
        self, entity: str, bodies: Iterable[dict[str, Any]], *, user_id: int = ADMIN.id
    ) -> list[int]:
        """Creates records as the web app would (validated like API writes, webhooks fired
        with `change_source: app`); returns their ids."""
        return [
            self.state.create(entity, body, user_id=user_id, source="app").id for body in bodies
        ]

    def update_record(
        self, entity: str, record_id: int, changes: dict[str, Any], *, user_id: int = ADMIN.id
    ) -> None:
        self.state.update(entity, record_id, changes, user_id=user_id, source="app")

    def delete_record(self, entity: str, record_id: int, *, user_id: int = ADMIN.id) -> None:
        self.state.delete(entity, record_id, user_id=user_id, source="app")

    def records(self, entity: str, *, deleted: bool = False) -> list[dict[str, Any]]:
        """Every live (or deleted) record as the v2 API shows it."""
        self.state.purge(entity)
        return [
            self.state.to_json(entity, r)
            for r in self.state.records[entity].values()
            if r.is_deleted == deleted
        ]

    def add_custom_field(
        self, entity: str, name: str, field_type: str, options: Iterable[str] = ()
    ) -> str:
        """Adds a custom field definition; returns its 40-hex key."""
        body: dict[str, Any] = {"field_name": name, "field_type": field_type}
        if options:
            body["options"] = [{"label": label} for label in options]
        return self.state.registry(entity).add(body).code

    def custom_field_key(self, entity: str, name: str) -> str:
        for fdef in self.state.registry(entity).custom().values():
            if fdef.name == name:
                return fdef.code
        raise KeyError(f"no custom {entity} field named {name!r}")

    def expire_access_tokens(self) -> None:
        self.auth.expire_access_tokens()

    def tokens_used_today(self) -> int:
        return int(self.rate_limiter.statistics(self.clock.now_ms())["tokens_used_today"] or 0)

    # --- admin ---

    def seed(self, payload: Any) -> dict[str, list[int]]:
        """`POST /_emulator/seed`: `{"persons": [{body}, ...], ...}` (API v2 bodies) and/or
        `{"generate": {"persons": N, "organizations": N, "deals": N}, "seed": S}`. Seeding is
        set-up, not activity: it fires no webhooks."""
        if not isinstance(payload, dict):
            raise bad_request("the seed body must be an object")
        made: dict[str, list[int]] = {}
        self._notify = False
        try:
            generate = payload.get("generate")
            if generate is not None:
                if not isinstance(generate, dict) or set(generate) - set(WITH_FIELDS):
                    raise bad_request("generate counts persons, organizations and deals")
                counts = {k: int(v) for k, v in generate.items()}
                made = fake_data.generate(self.state, counts, int(payload.get("seed", 0)))
            for key, items in payload.items():
                if key in ("generate", "seed"):
                    continue
                self.state.entity(key)
                if not isinstance(items, list):
                    raise bad_request(f"{key} must be a list of request bodies")
                ids = [
                    self.state.create(key, body, user_id=ADMIN.id, source="app").id
                    for body in items
                ]
                made.setdefault(key, []).extend(ids)
        finally:
            self._notify = True
        return made

    def dump(self) -> dict[str, Any]:
        out: dict[str, Any] = {"records": self.state.dump()}
        out["fields"] = {
            name: [f.to_json() for f in reg.custom().values()]
            for name, reg in self.state.registries.items()
        }
        out["webhooks"] = [h.to_json(self.company_id) for h in self.webhooks.hooks.values()]
        out["faults"] = self.faults.to_json()
        out["budget"] = self.rate_limiter.statistics(self.clock.now_ms())
        out["requestCount"] = len(self.request_log)
        return out

    def reset(self) -> None:
        """Forgets records, custom fields, webhooks (the pre-registered one comes back),
        delivery logs and rate windows; keeps tokens, OAuth clients, the clock and faults."""
        self._notify = False
        try:
            self.state.reset()
        finally:
            self._notify = True
        self.rate_limiter.reset()
        self.request_log.clear()
        self.webhooks.clear()
        self._register_default_webhook()
