"""Object types HubSpot knows beyond the five the emulator models in depth (issue 16 item 4):
an empty list, their standard properties, HubSpot's ids, and records that live like any other
(hubspot-onboarding.md §8 for the names and type ids)."""

from __future__ import annotations

import httpx
import pytest

from crmsync.emulators.hubspot.objects import resolve

OTHER_TYPES = {
    # name: objectTypeId (hubspot-onboarding.md §8, DOC-OBJ's table)
    "tickets": "0-5",
    "products": "0-7",
    "quotes": "0-14",
    "communications": "0-18",
    "feedback_submissions": "0-19",
    "tasks": "0-27",
    "notes": "0-46",
    "meetings": "0-47",
    "calls": "0-48",
    "emails": "0-49",
    "goal_targets": "0-74",
    "postal_mail": "0-116",
}


@pytest.mark.parametrize(("name", "type_id"), sorted(OTHER_TYPES.items()))
async def test_known_type_lists_empty_and_has_properties(
    client: httpx.AsyncClient, name: str, type_id: str
) -> None:
    assert resolve(type_id) is resolve(name) is not None
    listed = await client.get(f"/crm/v3/objects/{name}")
    by_id = await client.get(f"/crm/v3/objects/{type_id}")
    props = await client.get(f"/crm/v3/properties/{name}")
    found = await client.post(f"/crm/v3/objects/{name}/search", json={})
    assert listed.status_code == by_id.status_code == 200
    assert listed.json() == by_id.json() == {"results": []}
    assert found.json()["total"] == 0
    assert props.status_code == 200
    names = {p["name"] for p in props.json()["results"]}
    assert {"createdate", "hs_lastmodifieddate", "hs_object_id"} <= names


async def test_engagements_carry_their_timestamp_and_owner(client: httpx.AsyncClient) -> None:
    for name in ("calls", "emails", "meetings", "notes", "tasks", "communications", "postal_mail"):
        names = {p["name"] for p in (await client.get(f"/crm/v3/properties/{name}")).json()["results"]}
        assert {"hs_timestamp", "hubspot_owner_id"} <= names, name


async def test_a_note_is_created_read_and_searched(client: httpx.AsyncClient) -> None:
    created = await client.post(
        "/crm/v3/objects/notes",
        json={"properties": {"hs_note_body": "Called about renewal", "hs_timestamp": "1700000000000"}},
    )
    assert created.status_code == 201
    note_id = created.json()["id"]
    got = await client.get(f"/crm/v3/objects/notes/{note_id}", params={"properties": "hs_note_body"})
    assert got.json()["properties"]["hs_note_body"] == "Called about renewal"
    found = await client.post(
        "/crm/v3/objects/notes/search",
        json={"filterGroups": [{"filters": [{"propertyName": "hs_note_body",
                                               "operator": "CONTAINS_TOKEN", "value": "renewal"}]}]},
    )
    assert [r["id"] for r in found.json()["results"]] == [note_id]


async def test_unknown_type_still_400(client: httpx.AsyncClient) -> None:
    r = await client.get("/crm/v3/objects/spaceships")
    assert r.status_code == 400 and "Unable to infer object type" in r.json()["message"]
