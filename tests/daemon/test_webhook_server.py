"""The webhook endpoint in process: `WebhookServer.app` behind `httpx.ASGITransport` (or called
as a bare ASGI app where the test must control how the body arrives), over a real `Store` in
tmp_path.

What must hold (reference/operations.md, "Webhook endpoint"): the size check, then the body
under a deadline, then the signature on the raw bytes, then the inbox insert (deduplicated,
committed), then 2xx. Anything refused stores nothing. The signatures are computed here by
hand from HubSpot's and the app push's documented schemes, never with the code under test.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from crmsync.config.secrets import Secret
from crmsync.daemon.webhook_server import WebhookRoutes, WebhookServer, decode_hub_event
from crmsync.store import Store, StoreError
from crmsync.store import inbox as store_inbox
from crmsync.store.inbox import app_source, hub_source

HUB_SECRET = "hub-client-secret-for-tests-0123"
APP_SECRET = "shop-push-secret-for-tests-4567"
PUBLIC = "https://crmsync.example.com"
NOW = 1_700_000_000.0  # the server's clock (epoch seconds) in every test but the fuzz one
HUB_PATH = "/webhooks/hubspot"

CONTACTS_SOURCES = [hub_source("shop", "contacts"), hub_source("eu", "contacts")]
COMPANIES_SOURCES = [hub_source("shop", "companies")]
CUSTOMERS_SOURCES = [app_source("shop", "contacts")]
ALL_SOURCES = CONTACTS_SOURCES + COMPANIES_SOURCES + CUSTOMERS_SOURCES


def routes() -> WebhookRoutes:
    # Two connections sync hub contacts, one syncs companies; only `shop` takes app pushes,
    # for its `customers` object.
    return WebhookRoutes(
        hub={"contacts": list(CONTACTS_SOURCES), "companies": list(COMPANIES_SOURCES)},
        apps={"shop": {"customers": list(CUSTOMERS_SOURCES)}, "eu": {"people": ["app:eu:x"]}},
        app_secrets={"shop": Secret(APP_SECRET, "test")},
        hub_secret=Secret(HUB_SECRET, "test"))


# --- signing, by hand ------------------------------------------------------------------------


def v3_headers(body: bytes, *, uri: str = PUBLIC + HUB_PATH, method: str = "POST",
               ts_ms: int | None = None, secret: str = HUB_SECRET) -> dict[str, str]:
    """HubSpot's v3: base64(HMAC-SHA256(secret, method + uri + body + timestamp))."""
    ts = str(int(NOW * 1000) if ts_ms is None else ts_ms)
    message = method.encode() + uri.encode() + body + ts.encode()
    sig = base64.b64encode(hmac.new(secret.encode(), message, hashlib.sha256).digest())
    return {"X-HubSpot-Signature-v3": sig.decode(), "X-HubSpot-Request-Timestamp": ts,
            "Content-Type": "application/json"}


def app_headers(body: bytes, *, ts: int | None = None,
                secret: str = APP_SECRET) -> dict[str, str]:
    """The app push: v1=hex(HMAC-SHA256(secret, f"{timestamp}.{body}"))."""
    stamp = str(int(NOW) if ts is None else ts)
    sig = hmac.new(secret.encode(), stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return {"X-Crmsync-Timestamp": stamp, "X-Crmsync-Signature": f"v1={sig}",
            "Content-Type": "application/json"}


def hub_event(event_id: int, object_id: int, *, kind: str = "contact.propertyChange",
              attempt: int = 0, **extra: Any) -> dict[str, Any]:
    e = {"eventId": event_id, "subscriptionId": 100_001, "portalId": 62515, "appId": 54321,
         "occurredAt": int(NOW * 1000) - 5_000, "subscriptionType": kind,
         "attemptNumber": attempt, "objectId": object_id, "changeSource": "CRM_UI"}
    if kind.endswith("propertyChange"):
        e.update(propertyName="lastname", propertyValue="Lee")
    e.update(extra)
    return e


def body_of(events: Any) -> bytes:
    return json.dumps(events).encode()


# --- fixtures --------------------------------------------------------------------------------


class Box:
    """The server under test, its store, a client, and the readiness flag it reports."""

    def __init__(self, server: WebhookServer, store: Store, client: httpx.AsyncClient) -> None:
        self.server = server
        self.store = store
        self.client = client
        self.ready = False
        self.stored: list[list[str]] = []

    async def pending(self, source: str) -> list[tuple[int, bytes]]:
        return await self.store.read(store_inbox.pending_events, source)

    async def rows(self) -> int:
        return await self.store.read(
            lambda conn: conn.execute("SELECT count(*) FROM inbox").fetchone()[0])

    async def hub_post(self, body: bytes, headers: dict[str, str] | None = None,
                       url: str = HUB_PATH) -> httpx.Response:
        return await self.client.post(url, content=body,
                                      headers=v3_headers(body) if headers is None else headers)

    async def app_post(self, body: bytes, headers: dict[str, str] | None = None,
                       connection: str = "shop") -> httpx.Response:
        return await self.client.post(f"/webhooks/{connection}", content=body,
                                      headers=app_headers(body) if headers is None else headers)


def make_server(store: Store, box_ready: Callable[[], bool], on_stored: Callable[[list[str]], None],
                **kwargs: Any) -> WebhookServer:
    kwargs.setdefault("public_base_url", PUBLIC)
    kwargs.setdefault("now", lambda: NOW)
    return WebhookServer(store, routes(), on_stored=on_stored, is_ready=box_ready, **kwargs)


@pytest.fixture
async def box(tmp_path) -> AsyncIterator[Box]:
    async with Store.open(tmp_path / "state.db") as store:
        holder: list[Box] = []
        server = make_server(store, lambda: holder[0].ready,
                             lambda sources: holder[0].stored.append(sources),
                             max_body_bytes=4096, body_deadline=10.0)
        # The daemon is reached through a reverse proxy: the Host it sees is internal.
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=server.app),
                                     base_url="http://10.0.0.7:8080") as client:
            b = Box(server, store, client)
            holder.append(b)
            with trio.fail_after(30):
                yield b


# --- HubSpot deliveries ---------------------------------------------------------------------


async def test_valid_delivery_is_committed_to_every_source_that_wants_it(box):
    events = [hub_event(1, 101), hub_event(2, 102, kind="contact.creation"),
              hub_event(3, 501, kind="company.propertyChange"),
              hub_event(4, 901, kind="deal.propertyChange")]  # no object sync wants deals
    r = await box.hub_post(body_of(events))
    assert r.status_code == 204, r.text
    for src in CONTACTS_SOURCES:
        got = [decode_hub_event(p) for _, p in await box.pending(src)]
        assert [(e.object, e.change, e.object_id) for e in got] == [
            ("contacts", "propertyChange", "101"), ("contacts", "creation", "102")]
    (company,) = [decode_hub_event(p) for _, p in await box.pending(COMPANIES_SOURCES[0])]
    assert (company.object, company.object_id) == ("companies", "501")
    assert await box.pending(CUSTOMERS_SOURCES[0]) == []
    assert await box.rows() == 5  # 2 contacts x 2 sources + 1 company; the deal is dropped
    assert sorted(box.stored[0]) == sorted(CONTACTS_SOURCES + COMPANIES_SOURCES)
    assert box.server.accepted == 1


async def test_merge_event_keeps_the_merged_ids(box):
    merge = hub_event(7, 300, kind="contact.merge", mergedObjectIds=[300, 301],
                      primaryObjectId=300, newObjectId=300)
    assert (await box.hub_post(body_of([merge]))).status_code == 204
    ((_, payload),) = await box.pending(CONTACTS_SOURCES[0])
    e = decode_hub_event(payload)
    assert e.change == "merge" and set(e.merged_ids) == {"300", "301"}


async def test_duplicate_and_retried_deliveries_are_stored_once(box):
    events = [hub_event(1, 101), hub_event(2, 102)]
    for attempt in range(3):
        # HubSpot's retries carry the same events with a higher attemptNumber.
        retry = [{**e, "attemptNumber": attempt} for e in events]
        r = await box.hub_post(body_of(retry))
        assert r.status_code == 204
    # The very same bytes once more.
    assert (await box.hub_post(body_of(events))).status_code == 204
    assert await box.rows() == 4  # 2 events x 2 contact sources
    for src in CONTACTS_SOURCES:
        assert len(await box.pending(src)) == 2


async def test_a_legacy_v1_signature_alone_is_refused(box):
    # A v1 signature has no timestamp: a captured delivery stripped of its v3 headers could
    # be replayed forever. HubSpot sends v3 with every delivery (fact sheet §8.3).
    body = body_of([hub_event(1, 101)])
    v1 = hashlib.sha256(HUB_SECRET.encode() + body).hexdigest()
    r = await box.hub_post(body, {"X-HubSpot-Signature": v1,
                                  "X-HubSpot-Signature-Version": "v1"})
    assert r.status_code == 401
    assert await box.rows() == 0


async def test_same_event_id_for_another_record_is_not_a_duplicate(box):
    # HubSpot's eventId is not unique on its own: the key must tell these apart.
    events = [hub_event(1, 101), hub_event(1, 102)]
    assert (await box.hub_post(body_of(events))).status_code == 204
    assert len(await box.pending(CONTACTS_SOURCES[0])) == 2


@pytest.mark.parametrize("case", [
    "wrong_secret", "tampered_body", "stale", "future", "no_signature", "no_timestamp",
    "no_headers", "bad_timestamp", "wrong_method", "signed_path_differs"])
async def test_unauthentic_delivery_gets_401_and_stores_nothing(box, case):
    body = body_of([hub_event(1, 101)])
    now_ms = int(NOW * 1000)
    headers = {
        "wrong_secret": lambda: v3_headers(body, secret="not-the-secret"),
        "tampered_body": lambda: v3_headers(body.replace(b"101", b"102")),
        "stale": lambda: v3_headers(body, ts_ms=now_ms - 301_000),
        "future": lambda: v3_headers(body, ts_ms=now_ms + 61_000),
        "no_signature": lambda: {k: v for k, v in v3_headers(body).items()
                                 if k != "X-HubSpot-Signature-v3"},
        "no_timestamp": lambda: {k: v for k, v in v3_headers(body).items()
                                 if k != "X-HubSpot-Request-Timestamp"},
        "no_headers": lambda: {},
        "bad_timestamp": lambda: {**v3_headers(body), "X-HubSpot-Request-Timestamp": "soon"},
        "wrong_method": lambda: v3_headers(body, method="PUT"),
        "signed_path_differs": lambda: v3_headers(body, uri=PUBLIC + "/webhooks/other"),
    }[case]()
    r = await box.hub_post(body, headers)
    assert r.status_code == 401, (case, r.status_code, r.text)
    assert await box.rows() == 0
    assert box.stored == []
    assert box.server.rejected == 1


async def test_timestamps_just_inside_the_window_are_accepted(box):
    now_ms = int(NOW * 1000)
    for i, ts in enumerate((now_ms - 299_000, now_ms + 59_000)):
        body = body_of([hub_event(10 + i, 101)])
        r = await box.hub_post(body, v3_headers(body, ts_ms=ts))
        assert r.status_code == 204, r.text


async def test_signed_uri_comes_from_public_base_url_not_host(box):
    body = body_of([hub_event(1, 101)])
    # Signed for the public URL, delivered to an internal Host, with forwarded headers that
    # claim yet another origin: it verifies, because only public_base_url counts.
    r = await box.client.post(HUB_PATH, content=body, headers={
        **v3_headers(body), "Host": "internal.lan:9000",
        "X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "http"})
    assert r.status_code == 204, r.text
    # Signed for the URL the request actually reached: refused.
    body2 = body_of([hub_event(2, 102)])
    r = await box.client.post(HUB_PATH, content=body2, headers={
        **v3_headers(body2, uri="http://10.0.0.7:8080" + HUB_PATH)})
    assert r.status_code == 401
    # Signed for the forwarded host: refused too.
    body3 = body_of([hub_event(3, 103)])
    r = await box.client.post(HUB_PATH, content=body3, headers={
        **v3_headers(body3, uri="https://evil.example" + HUB_PATH),
        "X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "https"})
    assert r.status_code == 401
    assert await box.rows() == 2  # event 1 for both contact sources


async def test_query_string_is_part_of_the_signed_uri(box):
    body = body_of([hub_event(1, 101)])
    url = HUB_PATH + "?portal=62515"
    r = await box.hub_post(body, v3_headers(body, uri=PUBLIC + url), url=url)
    assert r.status_code == 204, r.text
    r = await box.hub_post(body, v3_headers(body), url=url)  # signed without the query
    assert r.status_code == 401


async def test_body_over_the_limit_with_content_length_gets_413_unread(box):
    events = [hub_event(i, 100 + i) for i in range(60)]
    body = body_of(events)
    assert len(body) > 4096
    r = await box.hub_post(body)
    assert r.status_code == 413
    assert await box.rows() == 0
    # Answered from the declared length, before reading a byte of the body.
    received = 0

    async def receive() -> dict[str, Any]:
        nonlocal received
        received += 1
        await trio.sleep_forever()
        raise AssertionError

    status, _ = await call_asgi(box.server, receive, headers=[
        (b"content-length", str(10**9).encode())])
    assert status == 413 and received == 0


async def test_chunked_body_that_grows_past_the_limit_gets_413(box):
    sent = 0

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal sent
        yield b"["
        for i in range(1000):  # ~100 KiB if it were all read
            sent += 1
            yield json.dumps(hub_event(i, 100 + i)).encode() + b","
        yield b"{}]"

    r = await box.client.post(HUB_PATH, content=chunks(), headers=v3_headers(b"x"))
    assert "content-length" not in r.request.headers
    assert r.request.headers.get("transfer-encoding") == "chunked"
    assert r.status_code == 413
    assert await box.rows() == 0


async def test_app_push_body_over_the_limit_gets_413(box):
    body = b" " * 5000 + b"[]"
    r = await box.app_post(body)
    assert r.status_code == 413
    assert await box.rows() == 0


async def call_asgi(server: WebhookServer, receive: Callable[[], Any], *,
                    path: str = HUB_PATH, headers: list[tuple[bytes, bytes]] | None = None
                    ) -> tuple[int, bytes]:
    """Call the ASGI app directly with the test's own `receive`."""
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "POST", "scheme": "http", "path": path, "raw_path": path.encode(),
             "query_string": b"", "root_path": "",
             "headers": [(b"host", b"10.0.0.7:8080"), *(headers or [])],
             "client": ("127.0.0.1", 40000), "server": ("10.0.0.7", 8080)}
    messages: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)

    await server.app(scope, receive, send)
    start = next(m for m in messages if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
    return start["status"], body


@pytest.fixture
def mock_clock():
    return trio.testing.MockClock(autojump_threshold=0)


@pytest.mark.parametrize("path", [HUB_PATH, "/webhooks/shop"])
async def test_body_dribbled_slower_than_the_deadline_gets_408(tmp_path, mock_clock, path):
    body = body_of([hub_event(1, 101)])
    async with Store.open(tmp_path / "state.db") as store:
        server = make_server(store, lambda: True, lambda s: None, body_deadline=10.0)
        sent = 0

        async def receive() -> dict[str, Any]:
            # One byte a second, forever: a slowloris sender.
            nonlocal sent
            await trio.sleep(1)
            sent += 1
            return {"type": "http.request", "body": body[sent % len(body):][:1],
                    "more_body": True}

        start = trio.current_time()
        with trio.fail_after(60):
            status, answer = await call_asgi(server, receive, path=path, headers=[
                (k.lower().encode(), v.encode()) for k, v in {
                    **v3_headers(body), **app_headers(body)}.items()])
        assert status == 408, answer
        assert 9 <= trio.current_time() - start <= 11
        assert 8 <= sent <= 11
        assert await store.read(
            lambda conn: conn.execute("SELECT count(*) FROM inbox").fetchone()[0]) == 0


async def test_a_body_that_arrives_slowly_but_in_time_is_accepted(tmp_path, mock_clock):
    body = body_of([hub_event(1, 101)])
    async with Store.open(tmp_path / "state.db") as store:
        server = make_server(store, lambda: True, lambda s: None, body_deadline=10.0)
        parts = [body[i:i + 10] for i in range(0, len(body), 10)]
        step = 9.0 / len(parts)

        async def receive() -> dict[str, Any]:
            await trio.sleep(step)
            part = parts.pop(0)
            return {"type": "http.request", "body": part, "more_body": bool(parts)}

        with trio.fail_after(60):
            status, answer = await call_asgi(server, receive, headers=[
                (k.lower().encode(), v.encode()) for k, v in v3_headers(body).items()])
        assert status == 204, answer


@pytest.mark.parametrize("body", [
    b"{not json", b"", b"[" * 4000, b"[" * 2000 + b"]" * 2000, b'{"eventId": 1}',
    b'"just a string"', b"[1, 2, 3]", b"[{}]",
    b'[{"eventId": 1, "subscriptionType": "contact.creation", "occurredAt": 1}]',
    b'[{"eventId": 1, "subscriptionType": "contact.creation", "occurredAt": "x", '
    b'"objectId": 5}]',
    b"\xff\xfe\x00garbage",
], ids=["broken", "empty", "open-brackets", "deep", "object", "string", "numbers",
        "empty-event", "no-objectId", "bad-occurredAt", "binary"])
async def test_malformed_delivery_gets_400_and_stores_nothing(box, body):
    r = await box.hub_post(body)
    assert r.status_code == 400, (r.status_code, r.text)
    assert await box.rows() == 0


async def test_one_bad_event_refuses_the_whole_delivery(box):
    events = [hub_event(1, 101), {"eventId": 2, "subscriptionType": "contact.creation"}]
    r = await box.hub_post(body_of(events))
    assert r.status_code == 400
    assert await box.rows() == 0


async def test_store_closed_gives_503(box):
    await box.store.aclose()
    r = await box.hub_post(body_of([hub_event(1, 101)]))
    assert r.status_code == 503, r.text
    body = body_of([{"event_id": "e1", "object": "customers", "record_id": "1",
                     "change": "upsert", "occurred_at": int(NOW)}])
    r = await box.app_post(body)
    assert r.status_code == 503, r.text


async def test_store_error_gives_503_and_the_retry_is_stored(box, monkeypatch):
    real_call = box.store.call

    async def failing(*args: Any, **kwargs: Any) -> Any:
        raise StoreError("state database error: disk I/O error")

    monkeypatch.setattr(box.store, "call", failing)
    body = body_of([hub_event(1, 101)])
    r = await box.hub_post(body)
    assert r.status_code == 503
    assert box.stored == []
    monkeypatch.setattr(box.store, "call", real_call)
    r = await box.hub_post(body)  # HubSpot retries the same delivery
    assert r.status_code == 204
    assert await box.rows() == 2


# --- slow clients and processing slots (issue 10, item 7) ----------------------------------


class CountingApp:
    """The server's ASGI app, counting the requests that reached it and noting the status of
    each answer sent."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.started = 0
        self.answered: list[int] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        self.started += 1

        async def noting(message: Any) -> None:
            if message["type"] == "http.response.start":
                self.answered.append(message["status"])
            await send(message)

        await self.app(scope, receive, noting)


@pytest.mark.slow
async def test_slow_clients_do_not_hold_the_slots_a_real_delivery_needs(tmp_path):
    """200 clients send their headers, then one body byte a second (a slowloris). Their bodies
    are read without a processing slot, so a valid delivery is answered while all 200 are
    still dribbling; before, they held the 64 slots and the delivery waited for their body
    deadline. The figure (how fast) is measured by bench/webhook_slow_clients.py."""
    from hypercorn.config import Config as HyperConfig
    from hypercorn.trio import serve

    slow_clients, declared = 200, 1000
    async with Store.open(tmp_path / "state.db") as store:
        # A body deadline far beyond the test's bound: the slow clients never finish here.
        server = make_server(store, lambda: True, lambda s: None, body_deadline=600.0,
                             max_concurrent=64)
        app = CountingApp(server.app)
        hc = HyperConfig()
        hc.bind = ["127.0.0.1:0"]
        hc.accesslog = None
        hc.errorlog = None
        hc.keep_alive_timeout = 600
        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                binds = await nursery.start(serve, app, hc)
                port = int(binds[0].rsplit(":", 1)[1])

                async def slowloris() -> None:
                    stream = await trio.open_tcp_stream("127.0.0.1", port)
                    async with stream:
                        await stream.send_all(
                            f"POST {HUB_PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                            f"Content-Type: application/json\r\n"
                            f"Content-Length: {declared}\r\n\r\n".encode())
                        for _ in range(declared):
                            await trio.sleep(1)
                            await stream.send_all(b" ")

                for _ in range(slow_clients):
                    nursery.start_soon(slowloris)
                while app.started < slow_clients:  # every slow request reached the server
                    await trio.sleep(0.05)

                body = body_of([hub_event(1, 101)])
                async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
                    r = await client.post(HUB_PATH, content=body, headers=v3_headers(body))
                assert r.status_code == 204, r.text
                # Answered while every slow client is still sending its body.
                assert app.answered == [204]
                assert len(await store.read(store_inbox.pending_events,
                                            CONTACTS_SOURCES[0])) == 1
                nursery.cancel_scope.cancel()


class GatedStore:
    """A store whose calls wait for `release` (a store busy with a long transaction)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.release = trio.Event()
        self.waiting = 0

    async def call(self, fn: Any) -> Any:
        self.waiting += 1
        await self.release.wait()
        return await self.store.call(fn)


async def test_waiting_for_a_slot_past_its_deadline_gets_503(tmp_path, mock_clock):
    """Every slot busy: a delivery waits `slot_wait` for one, then gets 503 with Retry-After
    (the sender retries) instead of waiting past HubSpot's 5-second timeout."""
    async with Store.open(tmp_path / "state.db") as real:
        gated = GatedStore(real)
        server = make_server(gated, lambda: True, lambda s: None,  # type: ignore[arg-type]
                             max_concurrent=1)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=server.app),
                                     base_url="http://10.0.0.7:8080") as client:
            first, second = body_of([hub_event(1, 101)]), body_of([hub_event(2, 102)])
            answers: dict[str, httpx.Response] = {}

            async def post(name: str, body: bytes) -> None:
                answers[name] = await client.post(HUB_PATH, content=body,
                                                  headers=v3_headers(body))

            with trio.fail_after(60):
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(post, "first", first)
                    await trio.testing.wait_all_tasks_blocked()
                    assert gated.waiting == 1  # the first holds the only slot
                    start = trio.current_time()
                    await post("second", second)
                    assert answers["second"].status_code == 503, answers["second"].text
                    assert answers["second"].headers["retry-after"] == "1"
                    assert trio.current_time() - start == pytest.approx(server.slot_wait)
                    assert server.slot_wait < 5  # HubSpot gives up on a delivery after 5 s
                    assert gated.waiting == 1  # the second never reached the store
                    gated.release.set()
            assert answers["first"].status_code == 204
        assert len(await real.read(store_inbox.pending_events, CONTACTS_SOURCES[0])) == 1


# --- no redirect built from the Host header (issue 10, item 8) ------------------------------


@pytest.mark.parametrize("path", [HUB_PATH + "/", "/webhooks/shop/", "/healthz/"])
async def test_a_trailing_slash_is_not_found_never_redirected_to_the_host(box, path):
    """Starlette redirects `/webhooks/hubspot/` to an absolute URL made of the Host header
    (`http://evil.example/webhooks/hubspot`): an open redirect. No route, no redirect."""
    body = body_of([hub_event(1, 101)])
    r = await box.client.request("GET" if "healthz" in path else "POST", path, content=body,
                                 headers={**v3_headers(body), "Host": "evil.example"})
    assert r.status_code == 404, (r.status_code, r.headers)
    assert "location" not in r.headers
    assert await box.rows() == 0


@pytest.mark.slow
async def test_state_db_locked_by_another_process_gives_503(box):
    import sqlite3

    other = sqlite3.connect(box.store.path, isolation_level=None, timeout=0)
    try:
        other.execute("BEGIN EXCLUSIVE")
        with trio.fail_after(20):
            r = await box.hub_post(body_of([hub_event(1, 101)]))
        assert r.status_code == 503, r.text
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert await box.rows() == 0


# --- app pushes ------------------------------------------------------------------------------


def app_events(*ids: str, obj: str = "customers") -> list[dict[str, Any]]:
    return [{"event_id": f"e-{i}", "object": obj, "record_id": i, "change": "upsert",
             "occurred_at": "2023-11-14T22:13:00Z"} for i in ids]


async def test_app_push_valid_is_stored_once_per_event_id(box):
    body = body_of([*app_events("1", "2"), {"event_id": "e-3", "object": "customers",
                                            "record_id": 3, "change": "delete",
                                            "occurred_at": int(NOW) - 10}])
    assert (await box.app_post(body)).status_code == 204
    assert (await box.app_post(body)).status_code == 204  # redelivered: dropped
    # A different request repeating event e-1 (a retry by the app with a new timestamp).
    again = body_of(app_events("1"))
    assert (await box.app_post(again, app_headers(again, ts=int(NOW) - 1))).status_code == 204
    pending = await box.pending(CUSTOMERS_SOURCES[0])
    assert len(pending) == 3
    assert await box.rows() == 3


async def test_app_push_for_an_object_no_sync_wants_stores_nothing(box):
    r = await box.app_post(body_of(app_events("9", obj="organisations")))
    assert r.status_code == 204
    assert await box.rows() == 0


@pytest.mark.parametrize("case", ["wrong_secret", "stale", "future", "missing", "tampered",
                                  "hub_secret"])
async def test_app_push_unauthentic_gets_401(box, case):
    body = body_of(app_events("1"))
    headers = {
        "wrong_secret": lambda: app_headers(body, secret="nope-nope-nope"),
        "stale": lambda: app_headers(body, ts=int(NOW) - 301),
        "future": lambda: app_headers(body, ts=int(NOW) + 61),
        "missing": lambda: {"Content-Type": "application/json"},
        "tampered": lambda: app_headers(body.replace(b'"1"', b'"2"')),
        "hub_secret": lambda: app_headers(body, secret=HUB_SECRET),
    }[case]()
    r = await box.app_post(body, headers)
    assert r.status_code == 401, (case, r.text)
    assert await box.rows() == 0


async def test_app_push_unknown_connection_gets_404(box):
    body = body_of(app_events("1"))
    r = await box.app_post(body, connection="nobody")
    assert r.status_code == 404
    # A connection that is configured but has no shared secret takes no pushes either.
    r = await box.app_post(body, connection="eu")
    assert r.status_code == 404
    assert await box.rows() == 0


@pytest.mark.parametrize("body", [b"nope", b"{}", b"[" * 4000, b'[{"event_id": "x"}]',
                                  b'[{"event_id": "", "object": "customers", "record_id": "1",'
                                  b' "change": "upsert", "occurred_at": 1}]'])
async def test_app_push_malformed_gets_400(box, body):
    r = await box.app_post(body)
    assert r.status_code == 400, r.text
    assert await box.rows() == 0


async def test_hubspot_signature_is_not_accepted_on_the_app_route(box):
    body = body_of(app_events("1"))
    r = await box.app_post(body, v3_headers(body, uri=PUBLIC + "/webhooks/shop"))
    assert r.status_code == 401


# --- health -----------------------------------------------------------------------------------


async def test_healthz_and_readyz(box):
    assert (await box.client.get("/healthz")).status_code == 200
    r = await box.client.get("/readyz")
    assert r.status_code == 503
    box.ready = True
    assert (await box.client.get("/readyz")).status_code == 200
    # Only what the server serves: no other methods or paths.
    assert (await box.client.get(HUB_PATH)).status_code == 405
    assert (await box.client.get("/admin")).status_code == 404


# --- fuzz --------------------------------------------------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=12)
ID = (st.integers(min_value=-(2**70), max_value=2**70) | st.text(max_size=12) | st.booleans()
      | st.none() | st.floats())
HUB_EVENT = st.fixed_dictionaries({
    "eventId": ID, "subscriptionType": st.sampled_from([
        "contact.creation", "contact.propertyChange", "company.deletion", "contact.merge",
        "contact.associationChange", "object.creation", "deal.restore", "x", ".", "contact."])
    | st.text(max_size=10),
    "occurredAt": ID | st.text(alphabet="0123456789", min_size=1, max_size=30),
    "objectId": ID,
}, optional={
    "mergedObjectIds": st.lists(ID, max_size=3) | JSON,
    "fromObjectId": ID, "toObjectId": ID, "associationRemoved": JSON, "objectTypeId": JSON,
    "propertyName": JSON, "propertyValue": JSON, "attemptNumber": ID, "portalId": ID,
    "associationType": JSON, "primaryObjectId": ID, "newObjectId": ID,
})
APP_EVENT = st.fixed_dictionaries({
    "event_id": st.text(max_size=8) | JSON, "object": st.sampled_from(["customers", "x"]) | JSON,
    "record_id": ID, "change": st.sampled_from(["upsert", "delete", "other"]),
    "occurred_at": ID | st.text(max_size=30),
})
# Well-typed events with extreme values: these must be accepted (204), whatever they hold.
# HubSpot record ids: positive 64-bit integers (the text of one too).
GOOD_ID = st.integers(min_value=1, max_value=2**63 - 1) | st.integers(
    min_value=1, max_value=2**63 - 1).map(str)
GOOD_HUB_EVENT = st.fixed_dictionaries({
    "eventId": GOOD_ID,
    "subscriptionType": st.sampled_from(["contact.creation", "contact.propertyChange",
                                         "company.deletion", "contact.privacyDeletion"]),
    "occurredAt": st.integers(min_value=0, max_value=2**62), "objectId": GOOD_ID,
}, optional={"propertyName": st.text(max_size=30), "propertyValue": st.text(max_size=30),
             "changeSource": st.text(max_size=30), "attemptNumber": st.integers(0, 10),
             "mergedObjectIds": st.lists(GOOD_ID, max_size=3)})
GOOD_APP_EVENT = st.fixed_dictionaries({
    "event_id": st.text(min_size=1, max_size=20).filter(str.strip),
    "object": st.sampled_from(["customers", "organisations"]),
    "record_id": st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.text(min_size=1, max_size=12).filter(lambda t: t.strip() and t.isprintable()),
    "change": st.sampled_from(["upsert", "delete"]),
    "occurred_at": st.integers(min_value=0, max_value=253_402_300_799)
    | st.datetimes().map(lambda d: d.isoformat()),
})
BODIES = (st.binary(max_size=300)
          | st.lists(GOOD_APP_EVENT, min_size=1, max_size=4).map(
              lambda v: json.dumps(v).encode())
          | st.lists(GOOD_HUB_EVENT, min_size=1, max_size=4).map(
              lambda v: json.dumps(v).encode())
          | JSON.map(lambda v: json.dumps(v).encode())
          | st.lists(HUB_EVENT, max_size=4).map(lambda v: json.dumps(v).encode())
          | st.lists(APP_EVENT, max_size=4).map(lambda v: json.dumps(v).encode()))


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
          deadline=None)
@given(body=BODIES)
async def test_fuzz_validly_signed_bodies_never_get_a_5xx(tmp_path, body):
    async with Store.open(tmp_path / "fuzz.db") as store:
        server = WebhookServer(store, routes(), public_base_url=PUBLIC)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=server.app),
                                     base_url="http://internal") as client:
            now = time.time()
            with trio.fail_after(10):
                r = await client.post(HUB_PATH, content=body, headers=v3_headers(
                    body, ts_ms=int(now * 1000)))
                assert r.status_code < 500, (r.status_code, r.text)
                assert r.status_code in (204, 400), (r.status_code, r.text)
                event(f"hub {r.status_code}")
                r = await client.post("/webhooks/shop", content=body,
                                      headers=app_headers(body, ts=int(now)))
                assert r.status_code in (204, 400), (r.status_code, r.text)
                event(f"app {r.status_code}")
