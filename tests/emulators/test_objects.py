"""Single-record object endpoints: list, get, create, update, archive (fact sheet §1)."""

from __future__ import annotations

import httpx
import pytest
import trio
from trio.testing import MockClock

from crmsync.emulators.hubspot import HubSpotEmulator

from .conftest import EPOCH_MS

OBJECTS = "/crm/v3/objects"


async def create(
    client: httpx.AsyncClient, obj: str, props: dict[str, str], **extra: object
) -> dict[str, object]:
    r = await client.post(f"{OBJECTS}/{obj}", json={"properties": props, **extra})
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


async def test_create_returns_201_with_record_shape(
    autojump_clock: MockClock, client: httpx.AsyncClient
) -> None:
    with trio.fail_after(5):
        body = await create(client, "contacts", {"email": "ada@example.com", "firstname": "Ada"})
    assert set(body) == {"id", "properties", "createdAt", "updatedAt", "archived"}
    assert body["archived"] is False
    assert body["createdAt"] == body["updatedAt"] == "2023-11-14T22:13:20.000Z"
    props = body["properties"]
    assert props["email"] == "ada@example.com"
    assert props["hs_object_id"] == body["id"]
    assert props["createdate"] == props["lastmodifieddate"] == body["createdAt"]
    assert "hs_lastmodifieddate" not in props  # contacts use lastmodifieddate (fact sheet §2)


async def test_other_objects_use_hs_lastmodifieddate(
    autojump_clock: MockClock, client: httpx.AsyncClient
) -> None:
    with trio.fail_after(5):
        body = await create(client, "companies", {"name": "Acme", "domain": "acme.example"})
    assert "hs_lastmodifieddate" in body["properties"]  # type: ignore[operator]
    assert "lastmodifieddate" not in body["properties"]  # type: ignore[operator]


@pytest.mark.parametrize(
    ("type_id", "name", "props"),
    [
        ("0-1", "contacts", {"email": "x@example.com"}),
        ("0-2", "companies", {"name": "X"}),
        ("0-3", "deals", {"dealname": "X", "pipeline": "default", "dealstage": "qualifiedtobuy"}),
        ("0-52", "invoices", {"hs_currency": "EUR"}),
        ("0-8", "line_items", {"name": "X", "quantity": "2", "price": "10"}),
    ],
)
async def test_object_type_ids_address_the_same_records(
    autojump_clock: MockClock,
    client: httpx.AsyncClient,
    type_id: str,
    name: str,
    props: dict[str, str],
) -> None:
    with trio.fail_after(5):
        body = await create(client, type_id, props)
        by_name = await client.get(f"{OBJECTS}/{name}/{body['id']}")
    assert by_name.status_code == 200
    assert by_name.json()["id"] == body["id"]


async def test_list_defaults_limit_10_and_pages_with_next_record_id(
    autojump_clock: MockClock, client: httpx.AsyncClient, emu: HubSpotEmulator
) -> None:
    ids = emu.add_records("contacts", [{"email": f"c{i}@example.com"} for i in range(25)])
    with trio.fail_after(5):
        first = (await client.get(f"{OBJECTS}/contacts")).json()
        assert [r["id"] for r in first["results"]] == ids[:10]
        # The after cursor is the next record's id (DOC-OBJ).
        assert first["paging"]["next"]["after"] == ids[10]
        assert "after=" + ids[10] in first["paging"]["next"]["link"]
        seen = [r["id"] for r in first["results"]]
        after = first["paging"]["next"]["after"]
        while True:
            page = (
                await client.get(f"{OBJECTS}/contacts", params={"limit": 7, "after": after})
            ).json()
            seen += [r["id"] for r in page["results"]]
            if "paging" not in page:  # absent on the last page
                break
            after = page["paging"]["next"]["after"]
    assert seen == ids


async def test_list_limit_over_100_is_rejected(
    autojump_clock: MockClock, client: httpx.AsyncClient
) -> None:
    with trio.fail_after(5):
        r = await client.get(f"{OBJECTS}/contacts", params={"limit": 101})
        ok = await client.get(f"{OBJECTS}/contacts", params={"limit": 100})
    assert r.status_code == 400 and r.json()["category"] == "VALIDATION_ERROR"
    assert ok.status_code == 200


async def test_default_properties_and_properties_param(
    autojump_clock: MockClock, client: httpx.AsyncClient, emu: HubSpotEmulator
) -> None:
    emu.add_records(
        "contacts",
        [
            {
                "email": "a@example.com",
                "firstname": "A",
                "lastname": "B",
                "city": "Oslo",
                "jobtitle": "CTO",
            }
        ],
    )
    with trio.fail_after(5):
        default = (await client.get(f"{OBJECTS}/contacts")).json()["results"][0]["properties"]
        comma = (await client.get(f"{OBJECTS}/contacts?properties=city,jobtitle,nosuch")).json()[
            "results"
        ][0]["properties"]
        repeated = (
            await client.get(f"{OBJECTS}/contacts?properties=city&properties=jobtitle")
        ).json()["results"][0]["properties"]
    system = {"createdate", "lastmodifieddate", "hs_object_id"}
    assert set(default) == {"firstname", "lastname", "email"} | system
    # Unknown names are silently ignored (fact sheet §1.1); both list forms work.
    assert set(comma) == set(repeated) == {"city", "jobtitle"} | system


async def test_deal_defaults(
    autojump_clock: MockClock, client: httpx.AsyncClient, emu: HubSpotEmulator
) -> None:
    emu.add_records(
        "deals",
        [
            {
                "dealname": "D",
                "amount": "10",
                "pipeline": "default",
                "dealstage": "closedwon",
                "dealtype": "newbusiness",
            }
        ],
    )
    with trio.fail_after(5):
        props = (await client.get(f"{OBJECTS}/deals")).json()["results"][0]["properties"]
    assert set(props) == {
        "dealname",
        "amount",
        "pipeline",
        "dealstage",
        "createdate",
        "hs_lastmodifieddate",
        "hs_object_id",
    }


async def test_get_by_id_email_and_404(
    autojump_clock: MockClock, client: httpx.AsyncClient, emu: HubSpotEmulator
) -> None:
    [cid] = emu.add_records("contacts", [{"email": "Grace@Example.com"}])
    with trio.fail_after(5):
        by_id = await client.get(f"{OBJECTS}/contacts/{cid}")
        by_email = await client.get(
            f"{OBJECTS}/contacts/grace@example.COM", params={"idProperty": "email"}
        )
        missing = await client.get(f"{OBJECTS}/contacts/999999")
        bad_prop = await client.get(f"{OBJECTS}/contacts/x", params={"idProperty": "firstname"})
    assert by_id.json()["id"] == cid
    assert by_email.status_code == 200 and by_email.json()["id"] == cid
    assert missing.status_code == 404 and missing.json()["category"] == "OBJECT_NOT_FOUND"
    assert bad_prop.status_code == 400


async def test_update_patch_bumps_last_modified_and_empty_string_clears(
    autojump_clock: MockClock, client: httpx.AsyncClient, emu: HubSpotEmulator
) -> None:
    [cid] = emu.add_records("contacts", [{"email": "a@example.com", "city": "Oslo"}])
    with trio.fail_after(5):
        await trio.sleep(2)
        r = await client.patch(
            f"{OBJECTS}/contacts/{cid}", json={"properties": {"city": "", "jobtitle": "CTO"}}
        )
        again = await client.get(f"{OBJECTS}/contacts/{cid}?properties=city,jobtitle")
    assert r.status_code == 200
    body = r.json()
    assert "city" not in body["properties"]
    assert body["properties"]["jobtitle"] == "CTO"
    assert body["updatedAt"] == "2023-11-14T22:13:22.000Z" != body["createdAt"]
    assert body["properties"]["lastmodifieddate"] == body["updatedAt"]
    assert "city" not in again.json()["properties"]


async def test_update_by_id_property(
    autojump_clock: MockClock, client: httpx.AsyncClient, emu: HubSpotEmulator
) -> None:
    [cid] = emu.add_records("contacts", [{"email": "a@example.com"}])
    with trio.fail_after(5):
        r = await client.patch(
            f"{OBJECTS}/contacts/A@example.com",
            params={"idProperty": "email"},
            json={"properties": {"firstname": "Al"}},
        )
        missing = await client.patch(
            f"{OBJECTS}/contacts/12345", json={"properties": {"firstname": "x"}}
        )
    assert r.status_code == 200 and r.json()["id"] == cid
    assert missing.status_code == 404


async def test_archive_204_and_archived_listing(
    autojump_clock: MockClock, client: httpx.AsyncClient, emu: HubSpotEmulator
) -> None:
    a, b = emu.add_records("contacts", [{"email": "a@example.com"}, {"email": "b@example.com"}])
    with trio.fail_after(5):
        r = await client.delete(f"{OBJECTS}/contacts/{a}")
        # Deleting what does not exist is still 204 (n8n-io/n8n#3219).
        again = await client.delete(f"{OBJECTS}/contacts/424242")
        live = (await client.get(f"{OBJECTS}/contacts")).json()["results"]
        archived = (await client.get(f"{OBJECTS}/contacts", params={"archived": "true"})).json()[
            "results"
        ]
        gone = await client.get(f"{OBJECTS}/contacts/{a}")
        get_archived = await client.get(f"{OBJECTS}/contacts/{a}", params={"archived": "true"})
    assert r.status_code == 204 and r.content == b""
    assert again.status_code == 204
    assert [x["id"] for x in live] == [b]
    # archived=true returns only archived records (fact sheet §1.1).
    assert [x["id"] for x in archived] == [a]
    assert archived[0]["archived"] is True and "archivedAt" in archived[0]
    assert gone.status_code == 404
    assert get_archived.status_code == 200


async def test_required_properties_on_create(
    autojump_clock: MockClock, client: httpx.AsyncClient
) -> None:
    # DOC-OBJ "Required properties to create records": deals need dealname, dealstage and
    # pipeline; companies domain or name; invoices hs_currency.
    with trio.fail_after(5):
        deal = await client.post(f"{OBJECTS}/deals", json={"properties": {"dealname": "x"}})
        company = await client.post(f"{OBJECTS}/companies", json={"properties": {"city": "Oslo"}})
        invoice = await client.post(f"{OBJECTS}/invoices", json={"properties": {}})
        contact = await client.post(f"{OBJECTS}/contacts", json={"properties": {"city": "Oslo"}})
    assert deal.status_code == company.status_code == invoice.status_code == 400
    assert contact.status_code == 201


async def test_values_are_strings_and_numbers_are_accepted(
    autojump_clock: MockClock, client: httpx.AsyncClient
) -> None:
    with trio.fail_after(5):
        body = await create(client, "line_items", {"name": "Widget", "quantity": 3, "price": "2.5"})  # type: ignore[dict-item]
    props = body["properties"]
    assert props["quantity"] == "3"  # type: ignore[index]
    assert props["amount"] == "7.5"  # type: ignore[index]  # computed price × quantity


async def test_unknown_object_type(autojump_clock: MockClock, client: httpx.AsyncClient) -> None:
    with trio.fail_after(5):
        r = await client.get(f"{OBJECTS}/widgets")
    assert r.status_code == 400
    assert r.json()["message"] == "Unable to infer object type from: widgets"


async def test_records_python_api_and_update_record(
    autojump_clock: MockClock, emu: HubSpotEmulator
) -> None:
    [cid] = emu.add_records("contacts", [{"email": "a@example.com"}])
    await trio.sleep(1)
    emu.update_record("contacts", cid, {"firstname": "Ann"})
    [rec] = emu.records("contacts")
    assert rec["properties"]["firstname"] == "Ann"
    assert rec["updatedAt"] == "2023-11-14T22:13:21.000Z"
    emu.archive_record("contacts", cid)
    assert emu.records("contacts") == []
    assert [r["id"] for r in emu.records("contacts", archived=True)] == [cid]
    assert EPOCH_MS  # the wall clock the fixtures pin


async def test_properties_with_history_newest_first(
    autojump_clock: MockClock, emu: HubSpotEmulator, client: httpx.AsyncClient
) -> None:
    # Fact sheet §1.1 (`propertiesWithHistory` on list, get and batch read) and §1.2
    # (ValueWithTimestamp: value, timestamp, sourceType).
    with trio.fail_after(5):
        body = await create(client, "contacts", {"email": "h@example.com", "firstname": "A"})
        cid = str(body["id"])
        await trio.sleep(1)
        emu.update_record("contacts", cid, {"firstname": "B"})  # a user in HubSpot's UI
        await trio.sleep(1)
        r = await client.patch(f"{OBJECTS}/contacts/{cid}", json={"properties": {"firstname": ""}})
        assert r.status_code == 200
        got = (await client.get(f"{OBJECTS}/contacts/{cid}",
                                params={"propertiesWithHistory": "firstname,email,lastname"})).json()
        batch = (await client.post(f"{OBJECTS}/contacts/batch/read", json={
            "properties": ["email"], "propertiesWithHistory": ["firstname"],
            "inputs": [{"id": cid}]})).json()
        listed = (await client.get(f"{OBJECTS}/contacts",
                                   params={"propertiesWithHistory": "firstname"})).json()
        plain = (await client.get(f"{OBJECTS}/contacts/{cid}")).json()
    history = got["propertiesWithHistory"]
    assert history["firstname"] == [
        {"value": "", "timestamp": "2023-11-14T22:13:22.000Z", "sourceType": "INTEGRATION"},
        {"value": "B", "timestamp": "2023-11-14T22:13:21.000Z", "sourceType": "CRM_UI"},
        {"value": "A", "timestamp": "2023-11-14T22:13:20.000Z", "sourceType": "INTEGRATION"},
    ]
    assert history["email"] == [{"value": "h@example.com",
                                 "timestamp": "2023-11-14T22:13:20.000Z",
                                 "sourceType": "INTEGRATION"}]
    assert "lastname" not in history  # never held a value
    assert batch["results"][0]["propertiesWithHistory"] == {"firstname": history["firstname"]}
    assert listed["results"][0]["propertiesWithHistory"] == {"firstname": history["firstname"]}
    assert "propertiesWithHistory" not in plain
