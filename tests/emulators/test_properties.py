"""Properties API and the validation of written values (fact sheet §7, DOC-OBJ errors)."""

from __future__ import annotations

import json

import httpx
import pytest
import trio
from trio.testing import MockClock

from crmsync.emulators.hubspot import HubSpotEmulator

PROPS = "/crm/v3/properties"


async def test_default_contact_properties(
    autojump_clock: MockClock, client: httpx.AsyncClient
) -> None:
    with trio.fail_after(5):
        all_props = (await client.get(f"{PROPS}/contacts")).json()["results"]
        lifecycle = (await client.get(f"{PROPS}/contacts/lifecyclestage")).json()
        createdate = (await client.get(f"{PROPS}/0-1/createdate")).json()
        missing = await client.get(f"{PROPS}/contacts/nosuch")
    names = {p["name"] for p in all_props}
    assert {
        "email",
        "firstname",
        "lastname",
        "phone",
        "lifecyclestage",
        "createdate",
        "lastmodifieddate",
        "hs_object_id",
    } <= names
    for p in (
        all_props
    ):  # the SDK's required fields (name, label, type, fieldType, groupName, description, options)
        assert {"name", "label", "type", "fieldType", "groupName", "description", "options"} <= set(
            p
        )
    assert lifecycle["type"] == "enumeration"
    assert [o["value"] for o in lifecycle["options"]][:3] == [
        "subscriber",
        "lead",
        "marketingqualifiedlead",
    ]
    assert createdate["type"] == "datetime"
    assert createdate["modificationMetadata"]["readOnlyValue"] is True
    assert missing.status_code == 404


async def test_deal_pipeline_properties_list_pipeline_options(
    autojump_clock: MockClock, client: httpx.AsyncClient
) -> None:
    with trio.fail_after(5):
        stage = (await client.get(f"{PROPS}/deals/dealstage")).json()
        pipeline = (await client.get(f"{PROPS}/deals/pipeline")).json()
    assert "closedwon" in {o["value"] for o in stage["options"]}
    assert [o["value"] for o in pipeline["options"]] == ["default"]


async def test_create_custom_property(autojump_clock: MockClock, client: httpx.AsyncClient) -> None:
    body = {
        "name": "favorite_food",
        "label": "Favorite food",
        "type": "enumeration",
        "fieldType": "select",
        "groupName": "contactinformation",
        "options": [
            {"label": "Pizza", "value": "pizza"},
            {"label": "Ice cream", "value": "ice_cream"},
        ],
    }
    with trio.fail_after(5):
        r = await client.post(f"{PROPS}/contacts", json=body)
        again = await client.post(f"{PROPS}/contacts", json=body)
        bad_pair = await client.post(
            f"{PROPS}/contacts",
            json={**body, "name": "x_y", "type": "number", "fieldType": "select"},
        )
        listed = {p["name"] for p in (await client.get(f"{PROPS}/contacts")).json()["results"]}
    assert r.status_code == 201
    assert r.json()["name"] == "favorite_food" and r.json()["hasUniqueValue"] is False
    assert again.status_code == 409
    assert bad_pair.status_code == 400
    assert "favorite_food" in listed


def _errors(r: httpx.Response) -> list[tuple[str, str]]:
    return [(e["code"], e["context"]["propertyName"][0]) for e in r.json()["errors"]]


@pytest.mark.parametrize(
    ("props", "code"),
    [
        ({"nosuch": "x"}, "PROPERTY_DOESNT_EXIST"),
        ({"createdate": "2024-01-01T00:00:00Z"}, "READ_ONLY_VALUE"),
        ({"hs_object_id": "5"}, "READ_ONLY_VALUE"),
        ({"lastmodifieddate": "1700000000000"}, "READ_ONLY_VALUE"),
        ({"lifecyclestage": "Customer"}, "INVALID_OPTION"),  # enumeration values are case-sensitive
        ({"email": "not-an-email"}, "INVALID_EMAIL"),
        ({"date_of_birth": "yesterday"}, "INVALID_DATE"),
        ({"date_of_birth": "1700000000001"}, "INVALID_DATE"),  # dates must be midnight UTC
    ],
)
async def test_invalid_contact_values(
    autojump_clock: MockClock, client: httpx.AsyncClient, props: dict[str, str], code: str
) -> None:
    with trio.fail_after(5):
        r = await client.post("/crm/v3/objects/contacts", json={"properties": props})
    assert r.status_code == 400
    body = r.json()
    assert body["category"] == "VALIDATION_ERROR"
    [name] = props
    assert _errors(r) == [(code, name)]
    # DOC-OBJ: the message embeds the same problems as a JSON list.
    prefix = "Property values were not valid: "
    assert body["message"].startswith(prefix)
    [embedded] = json.loads(body["message"][len(prefix) :])
    assert embedded["error"] == code and embedded["name"] == name and embedded["isValid"] is False


async def test_number_and_all_problems_reported(
    autojump_clock: MockClock, client: httpx.AsyncClient
) -> None:
    props = {
        "dealname": "D",
        "pipeline": "default",
        "dealstage": "qualifiedtobuy",
        "amount": "ten",
        "nosuch": "1",
    }
    with trio.fail_after(5):
        r = await client.post("/crm/v3/objects/deals", json={"properties": props})
    assert r.status_code == 400
    assert sorted(_errors(r)) == [
        ("INVALID_INTEGER", "amount"),
        ("PROPERTY_DOESNT_EXIST", "nosuch"),
    ]


async def test_valid_typed_values_are_normalised(
    autojump_clock: MockClock, client: httpx.AsyncClient
) -> None:
    props = {
        "dealname": "D",
        "pipeline": "default",
        "dealstage": "qualifiedtobuy",
        "amount": "1500.50",
        "closedate": "1700000000000",
    }
    with trio.fail_after(5):
        r = await client.post("/crm/v3/objects/deals", json={"properties": props})
        c = await client.post(
            "/crm/v3/objects/contacts", json={"properties": {"date_of_birth": "1990-05-17"}}
        )
    assert r.status_code == 201
    assert r.json()["properties"]["closedate"] == "2023-11-14T22:13:20.000Z"
    assert r.json()["properties"]["amount"] == "1500.50"
    assert c.json()["properties"]["date_of_birth"] == "1990-05-17"


async def test_unique_custom_property_is_an_id_property(
    autojump_clock: MockClock, client: httpx.AsyncClient, emu: HubSpotEmulator
) -> None:
    with trio.fail_after(5):
        r = await client.post(
            f"{PROPS}/contacts",
            json={
                "name": "erp_id",
                "label": "ERP id",
                "type": "string",
                "fieldType": "text",
                "groupName": "contactinformation",
                "hasUniqueValue": True,
            },
        )
        assert r.status_code == 201 and r.json()["hasUniqueValue"] is True
        created = await client.post(
            "/crm/v3/objects/contacts", json={"properties": {"erp_id": "E-7"}}
        )
        dup = await client.post("/crm/v3/objects/contacts", json={"properties": {"erp_id": "E-7"}})
        got = await client.get("/crm/v3/objects/contacts/E-7", params={"idProperty": "erp_id"})
        patched = await client.patch(
            "/crm/v3/objects/contacts/E-7",
            params={"idProperty": "erp_id"},
            json={"properties": {"firstname": "Eve"}},
        )
    assert created.status_code == 201
    assert dup.status_code == 409 and dup.json()["category"] == "CONFLICT"
    assert got.status_code == 200 and got.json()["id"] == created.json()["id"]
    assert patched.status_code == 200 and patched.json()["properties"]["firstname"] == "Eve"
