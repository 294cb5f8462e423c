"""The emulator's own API under /_emulator/ (seed, state, reset, clock, budget, webhook
status) and seeded fault injection."""

from __future__ import annotations

import httpx
import trio
from trio.testing import MockClock

from crmsync.emulators.pipedrive import Faults, PipedriveEmulator

from .conftest import V2, client_for, make_emulator


async def test_seed_state_reset(
    autojump_clock: MockClock, emu: PipedriveEmulator, client: httpx.AsyncClient
) -> None:
    with trio.fail_after(5):
        r = await client.post(
            "/_emulator/seed",
            json={"persons": [{"name": "Ann"}], "generate": {"organizations": 3}, "seed": 2},
        )
        state = (await client.get("/_emulator/state")).json()
        bad = await client.post("/_emulator/seed", json={"persons": [{"name": 5}]})
        await client.post("/_emulator/reset")
        after = (await client.get(f"{V2}/persons")).json()["data"]
        pipelines = (await client.get(f"{V2}/pipelines")).json()["data"]
    assert r.status_code == 201 and r.json() == {
        "organizations": [1, 2, 3],
        "persons": [1],
        "deals": [],
    }
    assert [p["name"] for p in state["records"]["persons"]] == ["Ann"]
    assert len(state["records"]["organizations"]) == 3
    assert bad.status_code == 400  # seeded records are validated like API writes
    assert after == [] and [p["name"] for p in pipelines] == ["Pipeline"]


async def test_generate_is_reproducible(autojump_clock: MockClock) -> None:
    dumps = []
    for _ in range(2):
        emu = make_emulator()
        emu.seed({"generate": {"organizations": 5, "persons": 30, "deals": 10}, "seed": 4})
        dumps.append(emu.dump()["records"])
    assert dumps[0] == dumps[1]
    emails = [p["emails"][0]["value"] for p in dumps[0]["persons"]]
    assert len(set(emails)) == 30 and len(dumps[0]["deals"]) == 10


async def test_clock_advance_reaches_the_budget_reset(autojump_clock: MockClock) -> None:
    emu = make_emulator(plan="essential")
    emu.rate_limiter.set_tokens_used(30_000, emu.clock.now_ms())
    async with client_for(emu) as client:
        with trio.fail_after(5):
            refused = await client.get(f"{V2}/persons")
            budget = (await client.get("/_emulator/budget")).json()
            moved = await client.post("/_emulator/clock", json={"advance_seconds": 86_400})
            allowed = await client.get(f"{V2}/persons")
            bad = await client.post("/_emulator/clock", json={"advance_seconds": -1})
    assert refused.status_code == 429
    assert budget["tokens_left_today"] == 0 and budget["daily_budget"] == 30_000
    assert moved.json()["offset_seconds"] == 86_400
    assert allowed.status_code == 200 and bad.status_code == 400


async def test_error_rate_is_seeded_and_not_applied(autojump_clock: MockClock) -> None:
    runs = []
    for _ in range(2):
        emu = make_emulator()
        emu.faults = Faults(error_rate=0.3, seed=7)
        async with client_for(emu) as client:
            with trio.fail_after(10):
                runs.append(
                    [
                        (await client.post(f"{V2}/persons", json={"name": f"P{i}"})).status_code
                        for i in range(40)
                    ]
                )
        failed = sum(1 for s in runs[-1] if s != 200)
        assert len(emu.records("persons")) == 40 - failed  # a 5xx applied nothing
    assert runs[0] == runs[1]
    assert set(runs[0]) - {200} <= {500, 502, 503, 504} and 4 <= runs[0].count(200) < 40


async def test_storm_latency_and_lost_answers(autojump_clock: MockClock) -> None:
    emu = make_emulator(plan="professional")
    async with client_for(emu) as client:
        with trio.fail_after(120):
            emu.faults = Faults(rate_limit_storm_seconds=10)
            storm = await client.get(f"{V2}/persons")
            await trio.sleep(10)
            emu.faults = Faults(latency=1.5)
            start = trio.current_time()
            await client.get(f"{V2}/persons")
            elapsed = trio.current_time() - start
            emu.faults = Faults(hang_after_apply_rate=1.0)
            with trio.move_on_after(30) as cancel:
                await client.post(f"{V2}/persons", json={"name": "Lost answer"})
    assert storm.status_code == 429 and storm.headers["x-ratelimit-remaining"] == "0"
    assert elapsed >= 1.5
    assert cancel.cancelled_caught
    assert [p["name"] for p in emu.records("persons")] == ["Lost answer"]  # applied


async def test_missing_daily_headers_fault(autojump_clock: MockClock) -> None:
    emu = make_emulator(plan="essential")
    emu.faults = Faults(daily_headers_missing_rate=1.0)
    async with client_for(emu) as client:
        with trio.fail_after(5):
            r = await client.get(f"{V2}/persons")
    assert "x-daily-ratelimit-token-remaining" not in r.headers
    assert r.headers["x-ratelimit-limit"] == "20"


async def test_faults_over_the_admin_api(
    autojump_clock: MockClock, emu: PipedriveEmulator, client: httpx.AsyncClient
) -> None:
    with trio.fail_after(5):
        r = await client.post("/_emulator/faults", json={"error_rate": 0.5, "seed": 9})
        typo = await client.post("/_emulator/faults", json={"eror_rate": 0.1})
        out_of_range = await client.post("/_emulator/faults", json={"error_rate": 2})
    assert r.status_code == 200 and emu.faults == Faults(error_rate=0.5, seed=9)
    assert typo.status_code == 400 and out_of_range.status_code == 400
