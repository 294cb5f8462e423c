"""Webhook delivery and signatures (fact sheet §8.2–§8.3), delivered in process to a receiver
app through httpx's ASGI transport, on MockClock."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import trio
from trio.testing import MockClock

from crmsync.emulators.hubspot import HubSpotEmulator
from crmsync.emulators.hubspot.signatures import signature_v1, signature_v3

from .conftest import client_for, make_emulator

SECRET = "yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy"
URL = "https://receiver.test/hooks/hubspot?source=crm%3Amain"


def test_v1_signature_matches_the_official_test_vector() -> None:
    # fact sheet §8.3: HubSpot's documented v1 example.
    body = (
        b'[{"eventId":1,"subscriptionId":12345,"portalId":62515,"occurredAt":1564113600000,'
        b'"subscriptionType":"contact.creation","attemptNumber":0,"objectId":123,"changeSource":"CRM",'
        b'"changeFlag":"NEW","appId":54321}]'
    )
    assert (
        signature_v1(SECRET, body)
        == "232db2615f3d666fe21a8ec971ac7b5402d33b9a925784df3ca654d05f4817de"
    )


def test_v3_signature_signs_the_decoded_uri() -> None:
    # DOC-VALID: base64(HMAC-SHA256(secret, method + uri + body + timestamp)), with %3A etc.
    # decoded in the URI.
    body, ts = b'[{"eventId":1}]', 1_700_000_000_000
    expected = base64.b64encode(
        hmac.new(
            SECRET.encode(),
            b"POST"
            + b"https://receiver.test/hooks/hubspot?source=crm:main"
            + body
            + str(ts).encode(),
            hashlib.sha256,
        ).digest()
    ).decode()
    assert signature_v3(SECRET, "POST", URL, body, ts) == expected


@dataclass
class Receiver:
    """A webhook endpoint: records each request, answers with `answer(attempt_index)`."""

    answer: Callable[[int], int] = lambda _n: 200
    delay: Callable[[int], float] = lambda _n: 0.0
    requests: list[tuple[dict[str, str], bytes, float]] = field(default_factory=list)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        n = len(self.requests)
        self.requests.append(
            ({k.decode(): v.decode() for k, v in scope["headers"]}, body, trio.current_time())
        )
        await trio.sleep(self.delay(n))
        await send({"type": "http.response.start", "status": self.answer(n), "headers": []})
        await send({"type": "http.response.body", "body": b""})

    @property
    def events(self) -> list[dict[str, Any]]:
        return [e for _, body, _ in self.requests for e in json.loads(body)]


def _webhook_emulator(**kwargs: Any) -> HubSpotEmulator:
    return make_emulator(webhook_url=URL, webhook_secret=SECRET, **kwargs)


async def _settle(receiver: Receiver, count: int) -> None:
    while len(receiver.requests) < count:
        await trio.sleep(0.1)
    await trio.sleep(1)


async def test_creation_and_property_change_events_are_signed(autojump_clock: MockClock) -> None:
    emu = _webhook_emulator()
    receiver = Receiver()
    async with (
        httpx.AsyncClient(transport=httpx.ASGITransport(app=receiver)) as hooks,
        client_for(emu) as api,
    ):
        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                await nursery.start(emu.run_webhooks, hooks)
                r = await api.post(
                    "/crm/v3/objects/contacts",
                    json={"properties": {"email": "a@example.com", "firstname": "Ada"}},
                )
                await _settle(receiver, 1)
                nursery.cancel_scope.cancel()
    cid = int(r.json()["id"])
    [(headers, body, _)] = receiver.requests
    events = json.loads(body)
    assert [e["subscriptionType"] for e in events] == [
        "contact.creation",
        "contact.propertyChange",
        "contact.propertyChange",
    ]
    creation = events[0]
    assert (
        creation["objectId"] == cid
        and creation["portalId"] == 62515
        and creation["attemptNumber"] == 0
    )
    assert {"eventId", "subscriptionId", "appId", "occurredAt", "changeSource"} <= set(creation)
    assert {(e["propertyName"], e["propertyValue"]) for e in events[1:]} == {
        ("email", "a@example.com"),
        ("firstname", "Ada"),
    }
    # v1 and v3 signatures, verified here as a receiver would (DOC-VALID).
    assert headers["x-hubspot-signature-version"] == "v1"
    assert headers["x-hubspot-signature"] == hashlib.sha256(SECRET.encode() + body).hexdigest()
    ts = headers["x-hubspot-request-timestamp"]
    assert int(ts) == creation["occurredAt"]  # milliseconds
    signed = b"POST" + b"https://receiver.test/hooks/hubspot?source=crm:main" + body + ts.encode()
    expected = base64.b64encode(hmac.new(SECRET.encode(), signed, hashlib.sha256).digest()).decode()
    assert hmac.compare_digest(headers["x-hubspot-signature-v3"], expected)


async def test_batches_hold_at_most_100_events(autojump_clock: MockClock) -> None:
    emu = _webhook_emulator()
    receiver = Receiver()
    async with (
        httpx.AsyncClient(transport=httpx.ASGITransport(app=receiver)) as hooks,
        client_for(emu) as api,
    ):
        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                await nursery.start(emu.run_webhooks, hooks)
                inputs = [
                    {"properties": {"email": f"c{i}@example.com", "city": "Oslo"}}
                    for i in range(100)
                ]
                await api.post("/crm/v3/objects/contacts/batch/create", json={"inputs": inputs})
                await _settle(receiver, 3)
                nursery.cancel_scope.cancel()
    sizes = [len(json.loads(body)) for _, body, _ in receiver.requests]
    assert sum(sizes) == 300 and max(sizes) <= 100
    assert sorted(e["eventId"] for e in receiver.events) == list(range(1, 301))


async def test_update_archive_and_association_events(autojump_clock: MockClock) -> None:
    emu = _webhook_emulator()
    receiver = Receiver()
    [cid] = emu.add_records("contacts", [{"email": "a@example.com"}])
    [co] = emu.add_records("companies", [{"name": "Acme"}])
    emu.add_records("invoices", [{"hs_currency": "EUR"}])  # invoices have no subscriptions
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=receiver)) as hooks:
        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                await nursery.start(emu.run_webhooks, hooks)
                await _settle(receiver, 1)
                emu.update_record("contacts", cid, {"email": "b@example.com", "firstname": "Bo"})
                emu.associate("contacts", cid, "companies", co)
                emu.archive_record("contacts", cid)
                await _settle(receiver, 2)
                nursery.cancel_scope.cancel()
    events = receiver.events
    assert not any(e["subscriptionType"].startswith("invoice") for e in events)
    changes = [
        e
        for e in events
        if e["subscriptionType"] == "contact.propertyChange" and e["changeSource"] == "CRM_UI"
    ]
    assert {(e["propertyName"], e["propertyValue"]) for e in changes} == {
        ("email", "b@example.com"),
        ("firstname", "Bo"),
    }
    assoc = [e for e in events if e["subscriptionType"].endswith("associationChange")]
    assert {
        (e["subscriptionType"], e["associationType"], e["fromObjectId"], e["toObjectId"])
        for e in assoc
    } == {
        ("contact.associationChange", "CONTACT_TO_COMPANY", int(cid), int(co)),
        ("company.associationChange", "COMPANY_TO_CONTACT", int(co), int(cid)),
    }
    assert all(
        e["associationRemoved"] is False and e["isPrimaryAssociation"] is False for e in assoc
    )
    [deletion] = [e for e in events if e["subscriptionType"] == "contact.deletion"]
    assert deletion["objectId"] == int(cid)


async def test_retries_with_backoff_on_non_2xx_and_timeouts(autojump_clock: MockClock) -> None:
    emu = _webhook_emulator()
    # 500, then a receiver slower than 5 s, then 200.
    receiver = Receiver(
        answer=lambda n: 500 if n == 0 else 200, delay=lambda n: 30.0 if n == 1 else 0.0
    )
    emu.add_records("contacts", [{"email": "a@example.com"}])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=receiver)) as hooks:
        with trio.fail_after(600):
            async with trio.open_nursery() as nursery:
                await nursery.start(emu.run_webhooks, hooks)
                await _settle(receiver, 3)
                nursery.cancel_scope.cancel()
    attempts = [json.loads(body)[0]["attemptNumber"] for _, body, _ in receiver.requests]
    assert attempts == [0, 1, 2]
    times = [t for _, _, t in receiver.requests]
    assert times[1] - times[0] >= 0.5  # a backoff before each retry
    assert times[2] - times[1] >= 5.0  # the timed-out attempt took 5 s before the retry
    assert emu.dispatcher is not None
    assert [d.status for d in emu.dispatcher.deliveries] == [500, None, 200]


async def test_admin_view_counts_a_retrying_batch_as_in_flight(autojump_clock: MockClock) -> None:
    # A test waiting for "nothing more will arrive" needs to see a batch between retries,
    # which is no longer pending but not delivered either.
    emu = _webhook_emulator()
    receiver = Receiver(answer=lambda n: 500 if n == 0 else 200)
    emu.add_records("contacts", [{"email": "a@example.com"}])
    async with (
        httpx.AsyncClient(transport=httpx.ASGITransport(app=receiver)) as hooks,
        client_for(emu) as api,
    ):
        with trio.fail_after(600):
            async with trio.open_nursery() as nursery:
                await nursery.start(emu.run_webhooks, hooks)
                while not emu.dispatcher or not emu.dispatcher.deliveries:
                    await trio.sleep(0.01)
                assert len(receiver.requests) == 1  # answered 500, the retry is waiting
                waiting = (await api.get("/_emulator/webhooks")).json()
                assert (waiting["pending"], waiting["inFlight"]) == (0, 1)
                await _settle(receiver, 2)
                done = (await api.get("/_emulator/webhooks")).json()
                assert (done["pending"], done["inFlight"]) == (0, 0)
                assert [r["status"] for r in done["results"]] == [500, 200]
                nursery.cancel_scope.cancel()


async def test_gives_up_after_ten_retries(autojump_clock: MockClock) -> None:
    emu = _webhook_emulator()
    receiver = Receiver(answer=lambda _n: 503)
    emu.add_records("contacts", [{"firstname": "A"}])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=receiver)) as hooks:
        with trio.fail_after(100_000):
            async with trio.open_nursery() as nursery:
                await nursery.start(emu.run_webhooks, hooks)
                await _settle(receiver, 11)
                await trio.sleep(10_000)
                nursery.cancel_scope.cancel()
    assert len(receiver.requests) == 11  # the first attempt and 10 retries
    assert emu.dispatcher is not None and len(emu.dispatcher.given_up) == 1


async def test_duplicates_and_reordering(autojump_clock: MockClock) -> None:
    emu = _webhook_emulator(seed=3)
    emu.webhook_options(duplicate_rate=1.0, reorder=True)
    receiver = Receiver()
    emu.add_records("contacts", [{"firstname": f"n{i}"} for i in range(40)])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=receiver)) as hooks:
        with trio.fail_after(600):
            async with trio.open_nursery() as nursery:
                await nursery.start(emu.run_webhooks, hooks)
                await trio.sleep(30)
                nursery.cancel_scope.cancel()
    ids = [e["eventId"] for e in receiver.events]
    assert sorted(set(ids)) == list(range(1, 81))
    assert len(ids) == 160  # every delivery came twice
    assert ids != sorted(ids)  # and not in order
