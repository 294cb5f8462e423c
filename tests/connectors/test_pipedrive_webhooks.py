"""Pipedrive's webhooks v2 at `POST /webhooks/<connection>`: HTTP Basic credentials checked
(Pipedrive signs nothing), events keyed by `meta.id`, echoes of crmsync's own API writes
dropped, stored in the inbox before the 2xx (A.8 of shared/reference/pipedrive-api.md).

The deliveries are the Pipedrive emulator's own payloads where the test can get them, and the
Basic header is built here by hand (RFC 7617), never with the code under test."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import trio

from crmsync.config.secrets import Secret
from crmsync.connectors.app_webhooks import PayloadError, SignatureError
from crmsync.connectors.pipedrive import PipedriveReceiver
from crmsync.daemon.webhook_server import WebhookRoutes, WebhookServer
from crmsync.emulators.pipedrive import PipedriveEmulator
from crmsync.store import Store
from crmsync.store import inbox as store_inbox
from crmsync.store.inbox import app_source

PASSWORD = "pd-hook-password-0123"
OWN_USER = 7


def basic(user: str = "crmsync", password: str = PASSWORD) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def delivery(action: str = "change", entity: str = "person", entity_id: int = 42,
             event_id: str = "5b0d0ea4-7a19-4a1e-9f4c-0f7a2a1c9e11", source: str = "app",
             user_id: int = 1) -> bytes:
    """A v2 payload as A.8 describes it (`meta` / `data` / `previous`)."""
    body = {"meta": {"action": action, "entity": entity, "entity_id": str(entity_id),
                     "id": event_id, "company_id": "1", "user_id": str(user_id),
                     "timestamp": "2026-01-02T03:04:05.678Z", "version": "2.0",
                     "change_source": source, "attempt": 1, "type": "general"},
            "data": None if action == "delete" else {"id": entity_id},
            "previous": None}
    return json.dumps(body).encode()


def receiver(**kw: Any) -> PipedriveReceiver:
    kw.setdefault("own_user_id", OWN_USER)
    return PipedriveReceiver("crmsync", Secret(PASSWORD, "test"), **kw)


def test_the_basic_credentials_are_checked():
    r = receiver()
    r.verify(basic(), b"{}")
    for headers, reason in (({}, "missing"), ({"Authorization": "Bearer x"}, "malformed"),
                            ({"Authorization": "Basic %%%"}, "malformed"),
                            (basic(password="wrong"), "mismatch"),
                            (basic(user="other"), "mismatch")):
        with pytest.raises(SignatureError) as info:
            r.verify(headers, b"{}")
        assert info.value.reason == reason
    assert PASSWORD not in repr(r.__dict__)


def test_an_event_names_the_record_and_its_key_is_the_event_id():
    (e,) = receiver().parse(delivery())
    assert (e.object, e.record_id, e.change, e.event_id) == (
        "persons", "42", "upsert", "pipedrive:5b0d0ea4-7a19-4a1e-9f4c-0f7a2a1c9e11")
    assert e.occurred_at == 1767323045678
    (d,) = receiver().parse(delivery("delete", "deal", 9))
    assert (d.object, d.record_id, d.change) == ("deals", "9", "delete")


def test_echoes_of_crmsyncs_own_api_writes_are_dropped():
    r = receiver()
    assert r.parse(delivery(source="api", user_id=OWN_USER)) == []
    assert r.echoes == 1
    # Another user's API change, and crmsync's user acting in the web app, are not echoes.
    assert len(r.parse(delivery(source="api", user_id=8))) == 1
    assert len(r.parse(delivery(source="app", user_id=OWN_USER))) == 1
    # Unknown user (not connected yet) or switched off: nothing is dropped.
    assert len(receiver(own_user_id=None).parse(delivery(source="api", user_id=OWN_USER))) == 1
    assert len(receiver(ignore_own_changes=False).parse(
        delivery(source="api", user_id=OWN_USER))) == 1


def test_other_objects_are_acknowledged_and_bad_bodies_refused():
    assert receiver().parse(delivery(entity="activity")) == []
    for body in (b"not json", b"[]", b'{"meta": {}}',
                 delivery(action="explode"), delivery(entity_id=0).replace(b'"0"', b'"x"')):
        with pytest.raises(PayloadError):
            receiver().parse(body)


@pytest.fixture
async def server(tmp_path) -> AsyncIterator[tuple[WebhookServer, Store]]:
    async with Store.open(tmp_path / "state.db") as store:
        routes = WebhookRoutes(apps={"pd": {"persons": [app_source("pd", "contacts")]}},
                               app_receivers={"pd": receiver()})
        yield WebhookServer(store, routes), store


async def test_the_emulators_deliveries_are_stored_once_before_the_answer(server):
    """Pipedrive's retries and duplicates carry the same meta.id: stored once."""
    srv, store = server
    emu = PipedriveEmulator(tokens={"t": OWN_USER}, clock=trio.current_time,
                            webhook_url="http://crmsync.test/webhooks/pd",
                            webhook_user="crmsync", webhook_password=PASSWORD)
    emu.webhook_options(duplicate_rate=1.0)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=srv.app),
                                 base_url="http://crmsync.test") as client, \
            trio.open_nursery() as nursery:
        await nursery.start(emu.run_webhooks, client)
        (pid,) = emu.add_records("persons", [{"name": "Ada"}])
        emu.update_record("persons", pid, {"name": "Ada L."})
        with trio.fail_after(10):
            while len(emu.webhooks.log.deliveries) < 4:
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    assert {d.status for d in emu.webhooks.log.deliveries} == {204}
    rows = await store.read(store_inbox.pending_events, app_source("pd", "contacts"), 0, 10)
    assert len(rows) == 2  # two events, each delivered twice


async def test_wrong_credentials_store_nothing(server):
    srv, store = server
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=srv.app),
                                 base_url="http://crmsync.test") as client:
        r = await client.post("/webhooks/pd", content=delivery(), headers=basic(password="x"))
        assert r.status_code == 401
        r = await client.post("/webhooks/pd", content=b"nope", headers=basic())
        assert r.status_code == 400
        r = await client.post("/webhooks/pd", content=delivery(source="api", user_id=OWN_USER),
                              headers=basic())
        assert r.status_code == 204  # an echo: acknowledged, not stored
    rows = await store.read(store_inbox.pending_events, app_source("pd", "contacts"), 0, 10)
    assert rows == []
