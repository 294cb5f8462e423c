"""Custom behavioural events: `POST /events/v3/send` (HubSpot docs "Send an event occurrence":
204 without a body, eventName required, uuid deduplicates)."""

from __future__ import annotations

import httpx
import trio
from trio.testing import MockClock

from crmsync.emulators.hubspot import HubSpotEmulator

SEND = "/events/v3/send"


async def test_events_are_recorded_per_contact(
    autojump_clock: MockClock, client: httpx.AsyncClient, emu: HubSpotEmulator
) -> None:
    [cid] = emu.add_records("contacts", [{"email": "ada@example.com"}])
    with trio.fail_after(5):
        by_id = await client.post(
            SEND,
            json={
                "eventName": "pe62515_order_placed",
                "objectId": cid,
                "occurredAt": "2024-01-02T03:04:05Z",
                "properties": {"total": 12},
            },
        )
        by_email = await client.post(
            SEND, json={"eventName": "pe62515_visit", "email": "ADA@example.com", "properties": {}}
        )
        unknown_email = await client.post(
            SEND,
            json={"eventName": "pe62515_visit", "email": "ghost@example.com", "properties": {}},
        )
        admin = await client.get("/_emulator/events")
    assert by_id.status_code == 204 and by_id.content == b""
    assert by_email.status_code == 204 and unknown_email.status_code == 204
    first, second, third = emu.events
    assert first["objectId"] == cid and first["occurredAt"] == "2024-01-02T03:04:05.000Z"
    assert first["properties"] == {"total": "12"}
    assert second["objectId"] == cid
    assert third["objectId"] is None  # recorded, but with no contact
    assert admin.json()["results"] == emu.events


async def test_event_validation_and_uuid_dedupe(
    autojump_clock: MockClock, client: httpx.AsyncClient, emu: HubSpotEmulator
) -> None:
    [cid] = emu.add_records("contacts", [{"email": "ada@example.com"}])
    with trio.fail_after(5):
        no_name = await client.post(SEND, json={"objectId": cid, "properties": {}})
        no_contact = await client.post(
            SEND, json={"eventName": "pe1_x", "objectId": "999", "properties": {}}
        )
        once = await client.post(
            SEND, json={"eventName": "pe1_x", "objectId": cid, "uuid": "u-1", "properties": {}}
        )
        twice = await client.post(
            SEND, json={"eventName": "pe1_x", "objectId": cid, "uuid": "u-1", "properties": {}}
        )
    assert no_name.status_code == 400 and no_name.json()["context"] == {
        "eventName": ["This property is required"]
    }
    assert no_contact.status_code == 400
    assert once.status_code == twice.status_code == 204
    assert len(emu.events) == 1
