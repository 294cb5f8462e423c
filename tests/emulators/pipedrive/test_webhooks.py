"""Webhooks v2: registration through the v1 API, the `{meta, data, previous}` payload, Basic
auth, the 10 s timeout, retries after 3, 30 and 150 s, the ban (fact sheet A.8; PD-wh2)."""

from __future__ import annotations

import base64
import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import trio
from trio.testing import MockClock

from crmsync.emulators.pipedrive import PipedriveEmulator

from .conftest import V2, client_for, make_emulator

URL = "https://receiver.test/webhooks/pipedrive"


@dataclass
class Receiver:
    """A webhook endpoint: records each request, answers `answer(n)` after `delay(n)` s."""

    answer: Callable[[int], int] = lambda _n: 200
    delay: Callable[[int], float] = lambda _n: 0.0
    requests: list[tuple[dict[str, str], dict[str, Any], float]] = field(default_factory=list)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        n = len(self.requests)
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        self.requests.append((headers, json.loads(body), trio.current_time()))
        await trio.sleep(self.delay(n))
        await send({"type": "http.response.start", "status": self.answer(n), "headers": []})
        await send({"type": "http.response.body", "body": b""})

    @property
    def payloads(self) -> list[dict[str, Any]]:
        return [p for _, p, _ in self.requests]


async def _settle(emu: PipedriveEmulator) -> None:
    await trio.sleep(1)
    while emu.webhooks.pending or emu.webhooks.in_flight:
        await trio.sleep(1)


async def test_register_and_receive_create_change_delete(autojump_clock: MockClock) -> None:
    emu = make_emulator(tokens={"test-token": 1, "sync-token": 7})
    receiver = Receiver()
    async with (
        httpx.AsyncClient(transport=httpx.ASGITransport(app=receiver)) as hooks,
        client_for(emu) as admin,
        client_for(emu, "sync-token") as sync,
    ):
        with trio.fail_after(600):
            async with trio.open_nursery() as nursery:
                await nursery.start(emu.run_webhooks, hooks)
                registered = await sync.post(
                    "/v1/webhooks",
                    json={
                        "subscription_url": URL,
                        "event_action": "*",
                        "event_object": "person",
                        "name": "crmsync",
                        "http_auth_user": "crm",
                        "http_auth_password": "s3cret",
                    },
                )
                created = await sync.post(
                    f"{V2}/persons", json={"name": "Ann", "emails": [{"value": "a@x.com"}]}
                )
                pid = created.json()["data"]["id"]
                await trio.sleep(1)
                emu.update_record("persons", pid, {"name": "Anna"})
                await admin.post(f"{V2}/organizations", json={"name": "not a person"})
                await sync.delete(f"{V2}/persons/{pid}")
                await _settle(emu)
                listed = (await admin.get("/v1/webhooks")).json()
                removed = await sync.delete(f"/v1/webhooks/{registered.json()['data']['id']}")
                nursery.cancel_scope.cancel()
    assert registered.status_code == 201
    hook = registered.json()["data"]
    assert (hook["version"], hook["event_object"], hook["owner_id"]) == ("2.0", "person", 7)
    assert listed["data"][0]["id"] == hook["id"] and removed.json()["success"] is True
    create, change, delete = receiver.payloads
    # Basic auth on every request, no signature (A.8).
    headers = receiver.requests[0][0]
    assert headers["authorization"] == "Basic " + base64.b64encode(b"crm:s3cret").decode()
    # meta as documented: ids as strings, attempt 1, change_source and the acting user (A.8).
    meta = create["meta"]
    assert meta["action"] == "create" and meta["entity"] == "person"
    assert meta["entity_id"] == str(pid) and meta["webhook_id"] == str(hook["id"])
    assert meta["user_id"] == "7" and meta["change_source"] == "api" and meta["attempt"] == 1
    assert meta["version"] == "2.0" and meta["host"] == "emulated.pipedrive.com"
    assert len({create["meta"]["id"], change["meta"]["id"], delete["meta"]["id"]}) == 3
    # create: data = object, previous = null; change: only the changed fields' old values;
    # delete: data = null, previous = the last state (A.8).
    assert create["data"]["name"] == "Ann" and create["previous"] is None
    assert change["meta"]["change_source"] == "app" and change["meta"]["user_id"] == "1"
    assert change["data"]["name"] == "Anna"
    assert change["previous"] == {"name": "Ann", "first_name": "Ann"}
    assert delete["data"] is None and delete["previous"]["name"] == "Anna"


async def test_retries_after_3_30_150_seconds(autojump_clock: MockClock) -> None:
    emu = make_emulator(webhook_url=URL)
    # 500, then slower than the 10 s timeout, then 503, then 200.
    receiver = Receiver(
        answer=lambda n: {0: 500, 2: 503}.get(n, 200), delay=lambda n: 30.0 if n == 1 else 0.0
    )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=receiver)) as hooks:
        with trio.fail_after(1000):
            async with trio.open_nursery() as nursery:
                await nursery.start(emu.run_webhooks, hooks)
                emu.add_records("persons", [{"name": "A"}])
                await _settle(emu)
                nursery.cancel_scope.cancel()
    attempts = [p["meta"]["attempt"] for p in receiver.payloads]
    assert attempts == [1, 2, 3, 4]
    assert len({p["meta"]["id"] for p in receiver.payloads}) == 1  # the same event
    t = [at for _, _, at in receiver.requests]
    gaps = [round(b - a, 3) for a, b in itertools.pairwise(t)]
    # 3 s after the 500; 10 s timeout then 30 s; 150 s after the 503 (A.8).
    assert gaps == [3.0, 40.0, 150.0]
    assert [d.status for d in emu.webhooks.log.deliveries] == [500, None, 503, 200]


async def test_ban_after_ten_failed_first_attempts_loses_events(autojump_clock: MockClock) -> None:
    emu = make_emulator(webhook_url=URL)
    receiver = Receiver(answer=lambda _n: 500)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=receiver)) as hooks:
        with trio.fail_after(10_000):
            async with trio.open_nursery() as nursery:
                await nursery.start(emu.run_webhooks, hooks)
                ids = emu.add_records("persons", ({"name": f"P{i}"} for i in range(10)))
                await trio.sleep(1)
                # Ten first attempts failed: banned for 30 minutes (A.8).
                assert emu.default_webhook is not None
                assert emu.default_webhook.banned_until is not None
                first_wave = len(receiver.requests)
                emu.update_record("persons", ids[0], {"name": "during ban"})
                await _settle(emu)
                during = len(receiver.requests)
                await trio.sleep(1800)
                receiver.answer = lambda _n: 200
                emu.update_record("persons", ids[1], {"name": "after ban"})
                await _settle(emu)
                nursery.cancel_scope.cancel()
    assert first_wave == 10
    # No retries after the ban, and the event made during it is lost (A.8).
    assert during == 10
    lost = [p["data"]["name"] for p in emu.webhooks.log.lost if p["data"]]
    assert "during ban" in lost
    assert receiver.payloads[-1]["data"]["name"] == "after ban"
    assert emu.default_webhook.ban_counter == 0  # reactivated with the counter at zero


async def test_webhook_deleted_after_three_days_without_success(autojump_clock: MockClock) -> None:
    emu = make_emulator(webhook_url=URL)
    receiver = Receiver(answer=lambda _n: 500)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=receiver)) as hooks:
        with trio.fail_after(5 * 86_400):
            async with trio.open_nursery() as nursery:
                await nursery.start(emu.run_webhooks, hooks)
                [pid] = emu.add_records("persons", [{"name": "A"}])
                await _settle(emu)
                await trio.sleep(3 * 86_400)
                emu.update_record("persons", pid, {"name": "B"})
                await _settle(emu)
                nursery.cancel_scope.cancel()
    assert emu.webhooks.hooks == {}
    assert emu.default_webhook is not None and emu.webhooks.log.removed == [emu.default_webhook.id]


async def test_duplicates_reuse_the_event_id(autojump_clock: MockClock) -> None:
    emu = make_emulator(webhook_url=URL, seed=3)
    emu.webhook_options(duplicate_rate=1.0)
    receiver = Receiver()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=receiver)) as hooks:
        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                await nursery.start(emu.run_webhooks, hooks)
                emu.add_records("persons", [{"name": "A"}])
                await _settle(emu)
                nursery.cancel_scope.cancel()
    ids = [p["meta"]["id"] for p in receiver.payloads]
    assert len(ids) == 2 and ids[0] == ids[1]


async def test_registration_is_validated(
    autojump_clock: MockClock, emu: PipedriveEmulator, client: httpx.AsyncClient
) -> None:
    with trio.fail_after(5):
        bad_action = await client.post(
            "/v1/webhooks",
            json={
                "subscription_url": URL,
                "event_action": "updated",
                "event_object": "person",
                "name": "x",
            },
        )
        no_url = await client.post(
            "/v1/webhooks", json={"event_action": "*", "event_object": "*", "name": "x"}
        )
        missing = await client.delete("/v1/webhooks/999")
    assert bad_action.status_code == 400
    # v1's error shape: {status, success, errors: {field: [message]}} (PD-spec-v1).
    assert bad_action.json()["errors"].keys() == {"event_action"}
    assert no_url.json()["errors"].keys() == {"subscription_url"}
    assert missing.status_code == 404 and missing.json()["errors"] == {"id": ["not found"]}


async def test_advancing_the_clock_wakes_a_waiting_retry(autojump_clock: MockClock) -> None:
    # The admin clock moves the retry schedule too: a standalone emulator can be pushed past
    # the 150 s wait instead of sleeping through it.
    emu = make_emulator(webhook_url=URL)
    receiver = Receiver(answer=lambda n: 500 if n == 0 else 200)
    async with (
        httpx.AsyncClient(transport=httpx.ASGITransport(app=receiver)) as hooks,
        client_for(emu) as admin,
    ):
        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                await nursery.start(emu.run_webhooks, hooks)
                emu.add_records("persons", [{"name": "A"}])
                while not receiver.requests:
                    await trio.sleep(0.01)
                failed_at = trio.current_time()
                await admin.post("/_emulator/clock", json={"advance_seconds": 5})
                await _settle(emu)
                nursery.cancel_scope.cancel()
    retried_at = receiver.requests[1][2]
    assert retried_at - failed_at < 1.5  # not the 3 s the retry waits on its own
    assert [p["meta"]["attempt"] for p in receiver.payloads] == [1, 2]


async def test_request_bodies_are_bounded(
    autojump_clock: MockClock, emu: PipedriveEmulator, client: httpx.AsyncClient
) -> None:
    with trio.fail_after(5):
        r = await client.post(f"{V2}/persons", content=b"x" * (2 << 20))
    assert r.status_code == 400 and r.json()["error"] == "the request body is too large"
