"""The webhook endpoint: HubSpot's deliveries and generic app pushes into the durable inbox.

Per request (reference/operations.md): size check -> read the body under a deadline ->
verify the signature on the raw bytes, before any parsing -> insert into the inbox,
deduplicated on the event key, committed -> answer 2xx. A bad signature or a stale timestamp
gets 401 with nothing stored; a store that cannot be written gets 503 (the sender retries).
Hypercorn bounds headers but not bodies, so the size limit and the body deadline live here.

Processing slots (`max_concurrent`) are taken only once a request's body is in hand: a client
that sends its headers and then dribbles its body holds a connection and a body deadline, never
a slot, so slow clients cannot make a real delivery wait past HubSpot's 5-second timeout.
Waiting for a slot has its own deadline; past it the answer is 503 and the sender retries.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec
import structlog
import trio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from crmsync.config.secrets import Secret
from crmsync.connectors import app_webhooks
from crmsync.connectors.hubspot import webhooks as hub_webhooks
from crmsync.runtime.overwritten import value_digest
from crmsync.store import Store, StoreError
from crmsync.store import inbox as store_inbox

log = structlog.get_logger("crmsync.webhooks")


class HubInboxEvent(msgspec.Struct, frozen=True):
    """What the inbox keeps of one HubSpot event: enough to know which records to re-read."""

    object: str
    change: str
    object_id: str
    occurred_at: int
    merged_ids: tuple[str, ...] = ()
    to_object_id: str | None = None
    association_type: str | None = None
    association_removed: bool | None = None
    property_name: str | None = None
    # A digest of the value a property change set (`overwritten.value_digest`): tells the
    # events of crmsync's own writes apart without keeping customer data in the inbox.
    value_digest: str | None = None


_hub_event_decoder = msgspec.json.Decoder(HubInboxEvent)


def decode_hub_event(payload: bytes) -> HubInboxEvent:
    return _hub_event_decoder.decode(payload)


def hub_event_key(e: hub_webhooks.WebhookEvent) -> str:
    """HubSpot's eventId is not guaranteed unique: the key adds what tells two events apart."""
    raw = "|".join(str(x) for x in (e.event_id, e.subscription_type, e.object_id,
                                    e.occurred_at, e.property_name or "",
                                    e.to_object_id or ""))
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


def hub_inbox_items(events: list[hub_webhooks.WebhookEvent], hub_routes: dict[str, list[str]]
                    ) -> dict[str, list[tuple[str, bytes]]]:
    """What to store of HubSpot events (a webhook delivery's or a journal entry's): per inbox
    source (`hub_routes`: hub object -> sources), the (event key, payload) pairs."""
    per_source: dict[str, list[tuple[str, bytes]]] = {}
    for e in events:
        payload = msgspec.json.encode(HubInboxEvent(
            e.object, e.change, e.object_id, e.occurred_at, e.merged_object_ids,
            e.to_object_id, e.association_type, e.association_removed, e.property_name,
            value_digest(e.property_value) if e.property_value is not None else None))
        key = hub_event_key(e)
        for src in hub_routes.get(e.object, []):
            per_source.setdefault(src, []).append((key, payload))
    return per_source


@dataclass
class WebhookRoutes:
    """Which inbox sources an event feeds: one per object sync that wants it.

    hub: hub object -> sources; apps: connection -> app object -> sources.
    """

    hub: dict[str, list[str]] = field(default_factory=dict)
    apps: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    app_secrets: dict[str, Secret] = field(default_factory=dict)
    hub_secret: Secret | None = None
    # connection -> its open connector's record-id check (absent while it is not open).
    app_ids: dict[str, app_webhooks.IdCheck] = field(default_factory=dict)
    # connection -> how its pushes are verified and read (its connector's receiver); a
    # connection only in app_secrets takes the generic signed push.
    app_receivers: dict[str, app_webhooks.AppReceiver] = field(default_factory=dict)

    def app_receiver(self, connection: str) -> app_webhooks.AppReceiver | None:
        receiver = self.app_receivers.get(connection)
        if receiver is None and connection in self.app_secrets:
            receiver = app_webhooks.HmacReceiver(self.app_secrets[connection])
        return receiver


class TooLarge(Exception):
    pass


async def _read_body(request: Request, limit: int, deadline: float) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > limit:
                raise TooLarge()
        except ValueError:
            pass
    chunks: list[bytes] = []
    size = 0
    with trio.fail_after(deadline):
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise TooLarge()
            chunks.append(chunk)
    return b"".join(chunks)


# How long a request whose body has arrived may wait for a processing slot: well inside
# HubSpot's 5-second delivery timeout, so that a busy server answers 503 (HubSpot retries)
# rather than being timed out.
SLOT_WAIT_SECONDS = 2.0


class WebhookServer:
    def __init__(self, store: Store, routes: WebhookRoutes, *, public_base_url: str = "",
                 max_body_bytes: int = 1024 * 1024, body_deadline: float = 10.0,
                 max_concurrent: int = 64, slot_wait: float = SLOT_WAIT_SECONDS,
                 on_stored: Callable[[list[str]], None] | None = None,
                 is_ready: Callable[[], bool] = lambda: True,
                 now: Callable[[], float] = time.time) -> None:
        self.store = store
        self.routes = routes
        self.public_base_url = public_base_url.rstrip("/")
        self.max_body_bytes = max_body_bytes
        self.body_deadline = body_deadline
        self.limiter = trio.CapacityLimiter(max_concurrent)
        self.slot_wait = slot_wait
        self.on_stored = on_stored
        self.is_ready = is_ready
        self.now = now
        self.accepted = 0
        self.rejected = 0
        self.last_delivery: float | None = None
        self.app = Starlette(routes=[
            Route("/webhooks/hubspot", self.hubspot, methods=["POST"]),
            Route("/webhooks/{connection}", self.app_push, methods=["POST"]),
            Route("/healthz", self.healthz, methods=["GET"]),
            Route("/readyz", self.readyz, methods=["GET"]),
        ])
        # Starlette answers `/webhooks/hubspot/` with a redirect to an absolute URL built from
        # the Host header: an open redirect. A path that is not a route is a 404.
        self.app.router.redirect_slashes = False

    def _uri(self, request: Request) -> str:
        # Signed over the URL HubSpot was told to call, never over Host / X-Forwarded-*.
        query = f"?{request.url.query}" if request.url.query else ""
        base = self.public_base_url or f"{request.url.scheme}://{request.url.netloc}"
        return f"{base}{request.url.path}{query}"

    def _error(self, status: int, message: str, headers: dict[str, str] | None = None,
               **extra: Any) -> Response:
        self.rejected += 1
        log.warning("webhook rejected", status=status, reason=message, **extra)
        return JSONResponse({"status": "error", "message": message}, status_code=status,
                            headers=headers)

    async def _body(self, request: Request) -> bytes | Response:
        try:
            return await _read_body(request, self.max_body_bytes, self.body_deadline)
        except TooLarge:
            return self._error(413, f"body larger than {self.max_body_bytes} bytes")
        except trio.TooSlowError:
            return self._error(408, f"body not received within {self.body_deadline:g} s")

    async def _store(self, per_source: dict[str, list[tuple[str, bytes]]]) -> int | Response:
        """Commit a verified delivery's events to the inbox, holding a processing slot."""
        def add(conn: Any) -> int:
            return sum(store_inbox.add_events(conn, src, evs) for src, evs in per_source.items())

        # Only the wait for a slot has this deadline: a store call under way is never cut
        # short (its commit may already have happened).
        with trio.move_on_after(self.slot_wait) as waiting:
            await self.limiter.acquire()
        if waiting.cancelled_caught:  # cancelled inside acquire(): no slot was taken
            return self._error(503, f"no processing slot free within {self.slot_wait:g} s; "
                                    "retry later", headers={"Retry-After": "1"})
        try:
            new = await self.store.call(add) if per_source else 0
        except StoreError as exc:
            log.error("inbox unavailable", error=str(exc))
            return self._error(503, "the inbox cannot be written; retry later")
        finally:
            self.limiter.release()
        return self._stored(per_source, new)

    def _stored(self, per_source: dict[str, list[tuple[str, bytes]]], new: int) -> int:
        self.accepted += 1
        self.last_delivery = self.now()
        if self.on_stored is not None and per_source:
            self.on_stored(list(per_source))
        return new

    async def hubspot(self, request: Request) -> Response:
        secret = self.routes.hub_secret
        if secret is None:
            return self._error(404, "HubSpot webhooks are not configured "
                                    "(hub.webhook_client_secret_*)")
        body = await self._body(request)
        if isinstance(body, Response):
            return body
        try:
            # v3 only: HubSpot signs every delivery with it, and v1/v2 carry no timestamp,
            # so a captured delivery stripped of its v3 headers could be replayed forever.
            version = hub_webhooks.verify_delivery(
                secret.reveal(), method=request.method, uri=self._uri(request), body=body,
                headers=request.headers, now=self.now(), allow_legacy=False)
        except hub_webhooks.WebhookSignatureError as exc:
            return self._error(401, str(exc), source="hubspot")
        try:
            events = hub_webhooks.parse_delivery(body)
        except hub_webhooks.WebhookPayloadError as exc:
            return self._error(400, str(exc), source="hubspot")
        stored = await self._store(hub_inbox_items(events, self.routes.hub))
        if isinstance(stored, Response):
            return stored
        log.info("webhook delivery", source="hubspot", signature_version=version,
                 events=len(events), new=stored)
        return Response(status_code=204)

    async def app_push(self, request: Request) -> Response:
        connection = request.path_params["connection"]
        objects = self.routes.apps.get(connection)
        receiver = self.routes.app_receiver(connection)
        if objects is None or receiver is None:
            return self._error(404, f"no webhooks for connection {connection!r}")
        body = await self._body(request)
        if isinstance(body, Response):
            return body
        try:
            receiver.verify(request.headers, body, now=self.now())
        except app_webhooks.SignatureError as exc:
            return self._error(401, str(exc), source=connection)
        try:
            events = receiver.parse(body, check_id=self.routes.app_ids.get(connection))
        except app_webhooks.PayloadError as exc:
            return self._error(400, str(exc), source=connection)
        per_source: dict[str, list[tuple[str, bytes]]] = {}
        for e in events:
            for src in objects.get(e.object, []):
                per_source.setdefault(src, []).extend(app_webhooks.inbox_items([e]))
        stored = await self._store(per_source)
        if isinstance(stored, Response):
            return stored
        log.info("webhook delivery", source=connection, events=len(events), new=stored)
        return Response(status_code=204)

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(self, request: Request) -> Response:
        if self.is_ready():
            return JSONResponse({"status": "ready"})
        return JSONResponse({"status": "starting"}, status_code=503)
