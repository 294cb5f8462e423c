"""The emulator over real loopback HTTP (hypercorn, trio worker), real clock, bounded."""

from __future__ import annotations

import httpx
import pytest
import trio

from crmsync.emulators.hubspot import Faults, HubSpotEmulator

from .serving import serving

AUTH = {"Authorization": "Bearer test-token"}


async def test_crud_search_and_headers_over_loopback() -> None:
    emu = HubSpotEmulator(tier="professional")
    with trio.fail_after(10):
        async with (
            serving(emu) as base,
            httpx.AsyncClient(base_url=base, headers=AUTH, timeout=5) as client,
        ):
            created = await client.post(
                "/crm/v3/objects/contacts", json={"properties": {"email": "a@example.com"}}
            )
            listed = await client.get("/crm/v3/objects/contacts")
            found = await client.post(
                "/crm/v3/objects/contacts/search", json={"query": "a@example.com"}
            )
            conflict = await client.post(
                "/crm/v3/objects/contacts", json={"properties": {"email": "a@example.com"}}
            )
            anonymous = await client.get("/crm/v3/objects/contacts", headers={"Authorization": ""})
    assert created.status_code == 201
    assert listed.json()["results"][0]["id"] == created.json()["id"]
    assert listed.headers["X-HubSpot-RateLimit-Max"] == "190"
    assert found.json()["total"] == 1 and "X-HubSpot-RateLimit-Max" not in found.headers
    assert conflict.status_code == 409
    assert anonymous.status_code == 401


async def test_answer_lost_after_apply_over_loopback() -> None:
    emu = HubSpotEmulator()
    emu.faults = Faults(hang_after_apply_rate=1.0)
    with trio.fail_after(10):
        async with serving(emu) as base:
            async with httpx.AsyncClient(base_url=base, headers=AUTH, timeout=0.5) as client:
                with pytest.raises(httpx.ReadTimeout):
                    await client.post(
                        "/crm/v3/objects/contacts", json={"properties": {"email": "a@example.com"}}
                    )
            emu.faults = Faults()
            async with httpx.AsyncClient(base_url=base, headers=AUTH, timeout=5) as client:
                r = await client.get(
                    "/crm/v3/objects/contacts/a@example.com", params={"idProperty": "email"}
                )
    assert r.status_code == 200  # the write was applied although its answer never came
