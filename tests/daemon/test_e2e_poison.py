"""No single event, record or value stops a connection (DESIGN.md, "Failure isolation").

Poison arrives on every path a change can take — a HubSpot webhook, an app webhook, the app's
change log, a poll page — and in the inbox as an older version stored it; an unexpected error
inside the sync of one record stands for every defect not found yet. In every case the
connection keeps running (no restart), the poisoned record (if any) is `failed` with a
category and a hint in `ctl records`, and a normal edit on either side still syncs."""

from __future__ import annotations

import time

import httpx
import msgspec
import pytest

from crmsync.connectors.app_webhooks import AppWebhookEvent, sign
from crmsync.control.ops import records as record_ops
from crmsync.daemon.webhook_server import HubInboxEvent
from crmsync.emulators.hubspot.signatures import signature_v3
from crmsync.runtime import processor as processor_module
from crmsync.store import inbox as store_inbox
from crmsync.store.inbox import app_source, hub_source

from .harness import APP_SECRET, HUB_SECRET, PUBLIC, Env, running, wait_for

CUSTOMERS = [{"email": f"c{i}@example.com", "first_name": f"C{i}", "last_name": "App"}
             for i in range(4)]
HUB = [{"email": f"c{i}@example.com", "firstname": f"C{i}", "lastname": "App"}
       for i in range(4)]
# One past SQLite's (and HubSpot's) largest 64-bit id: the record id of the issue.
TOO_BIG = "9223372036854775808"


def hub_delivery(object_id: object) -> tuple[bytes, dict[str, str]]:
    body = msgspec.json.encode([{
        "eventId": 1, "subscriptionId": 1, "portalId": 1, "appId": 1,
        "occurredAt": int(time.time() * 1000), "subscriptionType": "contact.propertyChange",
        "attemptNumber": 0, "objectId": object_id, "propertyName": "firstname",
        "propertyValue": "X", "changeSource": "CRM_UI"}])
    ts = int(time.time() * 1000)
    sig = signature_v3(HUB_SECRET, "POST", PUBLIC + "/webhooks/hubspot", body, ts)
    return body, {"X-HubSpot-Signature-v3": sig, "X-HubSpot-Request-Timestamp": str(ts),
                  "Content-Type": "application/json"}


def app_push(record_id: object) -> tuple[bytes, dict[str, str]]:
    body = msgspec.json.encode([{"event_id": "poison-1", "object": "customers",
                                 "record_id": record_id, "change": "upsert",
                                 "occurred_at": int(time.time())}])
    return body, sign(APP_SECRET, body)


async def post(env: Env, path: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    assert env.daemon.webhooks is not None
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=env.daemon.webhooks.app),
                                 base_url=PUBLIC) as client:
        return await client.post(path, content=body, headers=headers)


async def store_raw(env: Env, source: str, key: str, payload: bytes) -> None:
    """An event as an older version stored it, before intake validated ids."""
    assert env.daemon.store is not None
    await env.daemon.store.call(store_inbox.add_events, source, [(key, payload)])
    env.daemon.intake_stored([source])


async def waiting_events(env: Env) -> int:
    assert env.daemon.store is not None
    return await env.daemon.store.read(store_inbox.count_waiting,
                                       [hub_source("shop", "contacts"),
                                        app_source("shop", "contacts")])


async def assert_edits_still_sync(env: Env, tag: str) -> None:
    """A normal edit on each side arrives on the other, and the connection never stopped."""
    env.app_exec("UPDATE customers SET first_name = ? WHERE email = 'c1@example.com'",
                 f"App-{tag}")
    hub_c2 = env.hub_by_email()["c2@example.com"]["id"]
    env.emu.update_record("contacts", hub_c2, {"firstname": f"Hub-{tag}"})
    await env.eventually(lambda: env.hub_by_email()["c1@example.com"]["properties"].get(
        "firstname") == f"App-{tag}", timeout=300)
    await env.eventually(lambda: env.app_by_email()["c2@example.com"]["first_name"]
                         == f"Hub-{tag}", timeout=300)
    status = env.daemon.connections["shop"].status
    assert (status.state, status.restarts) == ("running", 0), status.reason


@pytest.mark.parametrize("path", ["hub_webhook", "app_webhook", "change_log", "poll_page"])
async def test_poison_on_each_path_leaves_the_connection_syncing(tmp_path, slow_autojump, path):
    async with running(tmp_path, customers=CUSTOMERS, hub_contacts=HUB) as env:
        await env.wait_ready()
        if path == "hub_webhook":
            # Refused at intake: HubSpot record ids are positive 64-bit integers.
            for bad in (TOO_BIG, "abc", 0):
                r = await post(env, "/webhooks/hubspot", *hub_delivery(bad))
                assert r.status_code == 400, r.text
                assert "objectId" in r.json()["message"]
            # Stored by an older version: dropped when read, never retried.
            await store_raw(env, hub_source("shop", "contacts"), "old-1", msgspec.json.encode(
                HubInboxEvent("contacts", "propertyChange", TOO_BIG, 1)))
            await store_raw(env, hub_source("shop", "contacts"), "old-2", b"\xff not json")
        elif path == "app_webhook":
            # The event: refused at intake, the table's key being an integer.
            for bad in (TOO_BIG, 2**63, "05", "x" * 300, "a\nb"):
                r = await post(env, "/webhooks/shop", *app_push(bad))
                assert r.status_code == 400, (bad, r.text)
                assert "record_id" in r.json()["message"]
            await store_raw(env, app_source("shop", "contacts"), "old-1", msgspec.json.encode(
                AppWebhookEvent("old-1", "customers", TOO_BIG, "upsert", 1)))
            await store_raw(env, app_source("shop", "contacts"), "old-2", b"[]")
        elif path == "change_log":
            env.app_exec("INSERT INTO crmsync_changelog (object, record_id, op, at) "
                         "VALUES ('customers', ?, 'update', 0)", TOO_BIG)
        else:
            # A value in one row that is not UTF-8 text, on the app poller's next page.
            env.app_exec("UPDATE customers SET last_name = CAST(x'41ff' AS TEXT) "
                         "WHERE email = 'c3@example.com'")
            await env.eventually(lambda: env.hub_by_email()["c3@example.com"]["properties"]
                                 .get("lastname") == "A\ufffd", timeout=300)
        await assert_edits_still_sync(env, path)

        async def no_event_waits() -> bool:
            return await waiting_events(env) == 0

        await wait_for(no_event_waits)
        assert (await env.counts())["failed"] == 0
        assert len(env.hub()) == len(HUB)


async def test_a_record_whose_sync_raises_fails_alone(tmp_path, slow_autojump, monkeypatch):
    """An error nobody foresaw, while deciding one record, during the initial sync and then
    on every change of it: that record is failed (internal, with the error and a hint), the
    others sync, the connection never restarts; once the defect is gone, its next change
    syncs it."""
    real_decide = processor_module.decide
    poison = {"on": True}

    def decide(rules, hub, app, snapshot, duplicate_of=None):
        rec = app if app is not None else hub
        email = str((rec.properties.get("email") if rec is not None else "") or "")
        if poison["on"] and email == "c0@example.com":
            raise ZeroDivisionError("a defect that only this record meets")
        return real_decide(rules, hub, app, snapshot, duplicate_of)

    monkeypatch.setattr(processor_module, "decide", decide)
    async with running(tmp_path, customers=CUSTOMERS, hub_contacts=HUB) as env:
        await env.wait_ready()
        page = await record_ops.records(env.daemon, "shop", "contacts", "failed")
        assert [(r.app_id, r.category) for r in page.records] == [("1", "internal")]
        assert "ZeroDivisionError: a defect that only this record meets" in \
            page.records[0].detail
        assert "report it" in page.records[0].hint
        assert (await env.counts())["syncing"] == len(CUSTOMERS) - 1

        # Changes of the poisoned record keep failing it, and only it.
        env.app_exec("UPDATE customers SET first_name = 'Again' WHERE id = 1")
        await assert_edits_still_sync(env, "first")
        assert [it.app_id for it in await env.items(state="failed")] == ["1"]

        # The defect is gone: the next change links the pair (a first pairing: the values
        # that differ go the conflict winner's way, the hub's), nothing created twice.
        poison["on"] = False
        env.app_exec("UPDATE customers SET first_name = 'Fixed' WHERE id = 1")

        async def linked() -> bool:
            return [it.state for it in await env.items() if it.app_id == "1"] == ["syncing"]

        await wait_for(linked, timeout=300)
        assert (await env.counts())["failed"] == 0
        assert env.app_by_email()["c0@example.com"]["first_name"] == "C0"
        assert env.daemon.connections["shop"].status.restarts == 0
        assert len(env.hub()) == len(HUB) and len(env.app_rows()) == len(CUSTOMERS)
