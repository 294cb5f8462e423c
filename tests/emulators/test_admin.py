"""The emulator's own API under /_emulator/: seed, dump, reset."""

from __future__ import annotations

import httpx
import trio
from trio.testing import MockClock

from crmsync.emulators.hubspot import HubSpotEmulator

from .conftest import client_for, make_emulator


async def test_seed_records_and_dump(
    autojump_clock: MockClock, client: httpx.AsyncClient, emu: HubSpotEmulator
) -> None:
    with trio.fail_after(5):
        r = await client.post(
            "/_emulator/seed",
            json={
                "contacts": [{"email": "a@example.com"}],
                "companies": [{"name": "Acme", "domain": "acme.example"}],
            },
        )
        dump = (await client.get("/_emulator/dump")).json()
        bad = await client.post("/_emulator/seed", json={"contacts": [{"nosuch": "x"}]})
    assert r.status_code == 201
    assert set(r.json()) == {"contacts", "companies"}
    assert [c["properties"]["email"] for c in dump["objects"]["contacts"]] == ["a@example.com"]
    assert dump["pipelines"]["deals"][0]["id"] == "default"
    assert bad.status_code == 400  # seeded records are validated like API writes


async def test_generate_is_reproducible(autojump_clock: MockClock) -> None:
    dumps = []
    for _ in range(2):
        emu = make_emulator()
        async with client_for(emu) as client:
            with trio.fail_after(5):
                r = await client.post(
                    "/_emulator/seed",
                    json={"generate": {"contacts": 30, "companies": 5, "deals": 10}, "seed": 4},
                )
                assert r.status_code == 201
                dumps.append((await client.get("/_emulator/dump")).json()["objects"])
    assert dumps[0] == dumps[1]
    assert len(dumps[0]["contacts"]) == 30 and len(dumps[0]["deals"]) == 10
    emails = [c["properties"]["email"] for c in dumps[0]["contacts"]]
    assert len(set(emails)) == 30


async def test_reset(
    autojump_clock: MockClock, client: httpx.AsyncClient, emu: HubSpotEmulator
) -> None:
    emu.add_records("contacts", [{"email": "a@example.com"}])
    with trio.fail_after(5):
        await client.post(
            "/crm/v3/properties/contacts",
            json={
                "name": "x1",
                "label": "X",
                "type": "string",
                "fieldType": "text",
                "groupName": "g",
            },
        )
        r = await client.post("/_emulator/reset")
        listing = (await client.get("/crm/v3/objects/contacts")).json()
        prop = await client.get("/crm/v3/properties/contacts/x1")
    assert r.status_code == 200
    assert listing["results"] == []
    assert prop.status_code == 404
