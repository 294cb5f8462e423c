"""Contact email uniqueness (fact sheet §4: 409 CONFLICT "Contact already exists. Existing ID: N")."""

from __future__ import annotations

import re

import httpx
import trio
from trio.testing import MockClock

from crmsync.emulators.hubspot import HubSpotEmulator


async def test_duplicate_email_is_409_naming_the_existing_id(
    autojump_clock: MockClock, client: httpx.AsyncClient, emu: HubSpotEmulator
) -> None:
    [existing] = emu.add_records("contacts", [{"email": "ada@example.com"}])
    with trio.fail_after(5):
        r = await client.post(
            "/crm/v3/objects/contacts", json={"properties": {"email": "ADA@Example.com"}}
        )
    assert r.status_code == 409
    body = r.json()
    assert body["category"] == "CONFLICT" and body["status"] == "error"
    assert body["message"] == f"Contact already exists. Existing ID: {existing}"
    # The id is only in the message text (fact sheet §4).
    assert re.search(r"Existing ID: (\d+)", body["message"]).group(1) == existing  # type: ignore[union-attr]
    assert set(body) == {"status", "message", "correlationId", "category"}


async def test_batch_create_fails_whole_naming_the_first_conflict(
    autojump_clock: MockClock, client: httpx.AsyncClient, emu: HubSpotEmulator
) -> None:
    # hubspot-api-python#51: the whole batch fails with one 409 naming the first conflict.
    first, _second = emu.add_records(
        "contacts", [{"email": "r1@example.com"}, {"email": "r2@example.com"}]
    )
    inputs = [
        {"properties": {"email": "fresh@example.com"}},
        {"properties": {"email": "r1@example.com"}},
        {"properties": {"email": "r2@example.com"}},
    ]
    with trio.fail_after(5):
        r = await client.post("/crm/v3/objects/contacts/batch/create", json={"inputs": inputs})
    assert r.status_code == 409
    assert r.json()["message"] == f"Contact already exists. Existing ID: {first}"
    assert len(emu.records("contacts")) == 2  # nothing created


async def test_update_to_a_taken_email_conflicts(
    autojump_clock: MockClock, client: httpx.AsyncClient, emu: HubSpotEmulator
) -> None:
    a, b = emu.add_records("contacts", [{"email": "a@example.com"}, {"email": "b@example.com"}])
    with trio.fail_after(5):
        r = await client.patch(
            f"/crm/v3/objects/contacts/{b}", json={"properties": {"email": "A@example.com"}}
        )
        own = await client.patch(
            f"/crm/v3/objects/contacts/{a}", json={"properties": {"email": "A@EXAMPLE.com"}}
        )
    assert r.status_code == 409
    assert own.status_code == 200


async def test_archived_contact_frees_its_email(
    autojump_clock: MockClock, client: httpx.AsyncClient, emu: HubSpotEmulator
) -> None:
    [a] = emu.add_records("contacts", [{"email": "a@example.com"}])
    emu.archive_record("contacts", a)
    with trio.fail_after(5):
        r = await client.post(
            "/crm/v3/objects/contacts", json={"properties": {"email": "a@example.com"}}
        )
    assert r.status_code == 201
