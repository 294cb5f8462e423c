"""Fault injection: 5xx rate, latency, 429 storms, answers lost after the write, per-input 207
failures — all reproducible from a seed."""

from __future__ import annotations

import httpx
import trio
from trio.testing import MockClock

from crmsync.emulators.hubspot import Faults, HubSpotEmulator

from .conftest import client_for, make_emulator

CONTACTS = "/crm/v3/objects/contacts"


async def _statuses(emu: HubSpotEmulator, n: int) -> list[int]:
    async with client_for(emu) as client:
        return [(await client.get(CONTACTS)).status_code for _ in range(n)]


async def test_error_rate_is_seeded(autojump_clock: MockClock) -> None:
    with trio.fail_after(10):
        runs = []
        for _ in range(2):
            emu = make_emulator()
            emu.faults = Faults(error_rate=0.3, seed=7)
            runs.append(await _statuses(emu, 50))
    assert runs[0] == runs[1]
    errors = [s for s in runs[0] if s != 200]
    assert 5 <= len(errors) <= 25 and set(errors) <= {500, 502, 503, 504}


async def test_server_error_is_not_applied(autojump_clock: MockClock) -> None:
    emu = make_emulator()
    emu.faults = Faults(error_rate=1.0)
    async with client_for(emu) as client:
        with trio.fail_after(5):
            r = await client.post(CONTACTS, json={"properties": {"email": "a@example.com"}})
    assert r.status_code >= 500
    assert emu.records("contacts") == []


async def test_latency_is_added(autojump_clock: MockClock) -> None:
    emu = make_emulator()
    emu.faults = Faults(latency=1.5)
    async with client_for(emu) as client:
        with trio.fail_after(10):
            start = trio.current_time()
            await client.get(CONTACTS)
            elapsed = trio.current_time() - start
    assert elapsed >= 1.5


async def test_rate_limit_storm(autojump_clock: MockClock) -> None:
    emu = make_emulator(tier="professional")
    async with client_for(emu) as client:
        with trio.fail_after(60):
            emu.faults = Faults(rate_limit_storm_seconds=20)
            during = [await client.get(CONTACTS) for _ in range(3)]
            search = await client.post(f"{CONTACTS}/search", json={})
            await trio.sleep(19)
            still = await client.get(CONTACTS)
            await trio.sleep(1.5)
            after = await client.get(CONTACTS)
    assert {r.status_code for r in during} == {429}
    assert during[0].json()["policyName"] == "TEN_SECONDLY_ROLLING"
    assert during[0].headers["X-HubSpot-RateLimit-Remaining"] == "0"
    assert search.status_code == 429 and search.json()["policyName"] == "SECONDLY"
    assert still.status_code == 429
    assert after.status_code == 200


async def test_write_applied_but_answer_lost(autojump_clock: MockClock) -> None:
    emu = make_emulator()
    emu.faults = Faults(hang_after_apply_rate=1.0)
    async with client_for(emu) as client:
        with trio.fail_after(60):
            with trio.move_on_after(30) as cancel:
                await client.post(CONTACTS, json={"properties": {"email": "a@example.com"}})
            reads = await client.get(CONTACTS)  # reads are answered
    assert cancel.cancelled_caught  # the client gave up waiting
    assert [r["properties"]["email"] for r in emu.records("contacts")] == ["a@example.com"]
    assert reads.status_code == 200
    assert emu.request_log[0] == ("POST", CONTACTS, 201)


async def test_batch_item_failures_are_per_input(autojump_clock: MockClock) -> None:
    emu = make_emulator()
    emu.faults = Faults(batch_item_failure_rate=0.5, seed=1)
    inputs = [
        {"objectWriteTraceId": f"t{i}", "properties": {"email": f"c{i}@example.com"}}
        for i in range(20)
    ]
    async with client_for(emu) as client:
        with trio.fail_after(5):
            r = await client.post(f"{CONTACTS}/batch/create", json={"inputs": inputs})
    assert r.status_code == 207
    body = r.json()
    failed = {e["context"]["objectWriteTraceId"][0] for e in body["errors"]}
    created = {x["objectWriteTraceId"] for x in body["results"]}
    assert failed and created and failed | created == {f"t{i}" for i in range(20)}
    assert len(emu.records("contacts")) == len(created)  # failed inputs were not applied


async def test_faults_over_the_admin_api(
    autojump_clock: MockClock, client: httpx.AsyncClient, emu: HubSpotEmulator
) -> None:
    with trio.fail_after(5):
        r = await client.post(
            "/_emulator/faults", json={"error_rate": 0.5, "latency": 0.1, "seed": 9}
        )
        got = await client.get("/_emulator/faults")
        bad = await client.post("/_emulator/faults", json={"error_rate": 2})
        typo = await client.post("/_emulator/faults", json={"eror_rate": 0.1})
    assert r.status_code == 200
    assert got.json()["error_rate"] == 0.5 and got.json()["seed"] == 9
    assert emu.faults == Faults(error_rate=0.5, latency=0.1, seed=9)
    assert bad.status_code == 400 and typo.status_code == 400
