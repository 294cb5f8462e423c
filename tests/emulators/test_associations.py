"""Associations v4 (fact sheet §5)."""

from __future__ import annotations

import httpx
import trio
from trio.testing import MockClock

from crmsync.emulators.hubspot import HubSpotEmulator

V4 = "/crm/v4/associations"


def _seed(emu: HubSpotEmulator) -> tuple[str, str, str]:
    [contact] = emu.add_records("contacts", [{"email": "a@example.com"}])
    [company] = emu.add_records("companies", [{"name": "Acme"}])
    [deal] = emu.add_records(
        "deals", [{"dealname": "D", "pipeline": "default", "dealstage": "closedwon"}]
    )
    return contact, company, deal


async def test_batch_create_read_and_archive(
    autojump_clock: MockClock, client: httpx.AsyncClient, emu: HubSpotEmulator
) -> None:
    contact, company, _ = _seed(emu)
    spec = {
        "associationCategory": "HUBSPOT_DEFINED",
        "associationTypeId": 1,
    }  # contact→company Primary
    with trio.fail_after(5):
        created = await client.post(
            f"{V4}/contacts/companies/batch/create",
            json={"inputs": [{"from": {"id": contact}, "to": {"id": company}, "types": [spec]}]},
        )
        read = await client.post(
            f"{V4}/contacts/companies/batch/read", json={"inputs": [{"id": contact}]}
        )
        reverse = await client.post(
            f"{V4}/companies/contacts/batch/read", json={"inputs": [{"id": company}]}
        )
        archived = await client.post(
            f"{V4}/contacts/companies/batch/archive",
            json={"inputs": [{"from": {"id": contact}, "to": [{"id": company}]}]},
        )
        after = await client.post(
            f"{V4}/contacts/companies/batch/read", json={"inputs": [{"id": contact}]}
        )
    assert created.status_code == 201
    [pair] = created.json()["results"]
    assert pair["fromObjectTypeId"] == "0-1" and pair["toObjectTypeId"] == "0-2"
    assert pair["labels"] == ["Primary"]
    [result] = read.json()["results"]
    assert result["from"] == {"id": contact}
    [target] = result["to"]
    assert target["toObjectId"] == int(company)
    # The unlabelled type comes back alongside the primary one (fact sheet §5).
    assert {(t["typeId"], t["label"]) for t in target["associationTypes"]} == {
        (1, "Primary"),
        (279, None),
    }
    assert {t["typeId"] for t in reverse.json()["results"][0]["to"][0]["associationTypes"]} == {
        2,
        280,
    }
    assert archived.status_code == 204
    assert after.status_code == 207
    [err] = after.json()["errors"]
    assert err["subCategory"] == "crm.associations.NO_ASSOCIATIONS_FOUND"
    assert err["message"] == f"No company is associated with contact {contact}."


async def test_associate_default_and_single_put(
    autojump_clock: MockClock, client: httpx.AsyncClient, emu: HubSpotEmulator
) -> None:
    contact, company, deal = _seed(emu)
    with trio.fail_after(5):
        batch = await client.post(
            f"{V4}/deals/contacts/batch/associate/default",
            json={"inputs": [{"from": {"id": deal}, "to": {"id": contact}}]},
        )
        single = await client.put(
            f"/crm/v4/objects/deals/{deal}/associations/default/companies/{company}"
        )
        listed = await client.get(f"/crm/v4/objects/deal/{deal}/associations/company")
        labelled = await client.put(
            f"/crm/v4/objects/deals/{deal}/associations/companies/{company}",
            json=[{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 5}],
        )
        missing = await client.put(
            f"/crm/v4/objects/deals/{deal}/associations/default/companies/999"
        )
    assert batch.status_code == 200
    specs = {
        (r["from"]["id"], r["associationSpec"]["associationTypeId"])
        for r in batch.json()["results"]
    }
    assert specs == {(deal, 3), (contact, 4)}  # deal→contact 3, contact→deal 4
    assert single.status_code == 200
    assert {r["associationSpec"]["associationTypeId"] for r in single.json()["results"]} == {
        341,
        342,
    }
    assert listed.json()["results"][0]["toObjectId"] == int(company)
    assert labelled.status_code == 201 and labelled.json()["labels"] == ["Primary"]
    assert missing.status_code == 404
    assert emu.associations("deals", deal, "contacts") == [contact]


async def test_invalid_type_and_unknown_records_are_per_input_errors(
    autojump_clock: MockClock, client: httpx.AsyncClient, emu: HubSpotEmulator
) -> None:
    contact, company, _ = _seed(emu)
    bad_type = {
        "associationCategory": "HUBSPOT_DEFINED",
        "associationTypeId": 3,
    }  # deal→contact, wrong direction
    ok = {"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 279}
    with trio.fail_after(5):
        r = await client.post(
            f"{V4}/contacts/companies/batch/create",
            json={
                "inputs": [
                    {"from": {"id": contact}, "to": {"id": company}, "types": [ok]},
                    {"from": {"id": contact}, "to": {"id": company}, "types": [bad_type]},
                    {"from": {"id": "999"}, "to": {"id": company}, "types": [ok]},
                ]
            },
        )
    assert r.status_code == 207
    assert r.json()["numErrors"] == 2
    assert len(r.json()["results"]) == 1


async def test_create_time_associations_single_and_batch(
    autojump_clock: MockClock, client: httpx.AsyncClient, emu: HubSpotEmulator
) -> None:
    [company] = emu.add_records("companies", [{"name": "Acme"}])
    assoc = [
        {
            "to": {"id": company},
            "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 279}],
        }
    ]
    with trio.fail_after(5):
        single = await client.post(
            "/crm/v3/objects/contacts",
            json={"properties": {"email": "a@example.com"}, "associations": assoc},
        )
        batch = await client.post(
            "/crm/v3/objects/contacts/batch/create",
            json={"inputs": [{"properties": {"email": "b@example.com"}, "associations": assoc}]},
        )
        bad = await client.post(
            "/crm/v3/objects/contacts",
            json={
                "properties": {"email": "c@example.com"},
                "associations": [{"to": {"id": "999"}, "types": assoc[0]["types"]}],
            },
        )
        with_assoc = await client.get(
            f"/crm/v3/objects/contacts/{single.json()['id']}", params={"associations": "companies"}
        )
    assert single.status_code == 201 and batch.status_code == 201
    assert emu.associations("contacts", single.json()["id"], "companies") == [company]
    assert emu.associations("contacts", batch.json()["results"][0]["id"], "companies") == [company]
    assert bad.status_code == 400
    assert with_assoc.json()["associations"]["companies"]["results"] == [
        {"id": company, "type": "contact_to_company_unlabeled"}
    ]


async def test_archiving_a_record_drops_its_associations(
    autojump_clock: MockClock, client: httpx.AsyncClient, emu: HubSpotEmulator
) -> None:
    contact, company, _ = _seed(emu)
    emu.associate("contacts", contact, "companies", company)
    emu.archive_record("companies", company)
    assert emu.associations("contacts", contact, "companies") == []


async def test_associations_on_a_list_page_stop_at_100_per_type_with_paging(
    autojump_clock: MockClock, client: httpx.AsyncClient, emu: HubSpotEmulator
) -> None:
    """`associations=` on the v3 list (fact sheet §1.1; not on batch read): each record is a
    SimplePublicObjectWithAssociations (§1.2) whose `associations.{type}` holds the first 100
    and `paging.next` {after, link} for the rest (HubSpot's 2020 change to v3 association data,
    quoted in HubSpot/hubspot-api-nodejs#29; a live answer in hubspot-api-python#135). A type
    without association is left out."""
    [big, small, alone] = emu.add_records("companies", [{"name": n} for n in ("Big", "S", "A")])
    people = emu.add_records("contacts", [{"email": f"p{i}@example.com"} for i in range(130)])
    for p in people:
        emu.associate("companies", big, "contacts", p)
    emu.associate("companies", small, "contacts", people[0])
    with trio.fail_after(5):
        page = await client.get("/crm/v3/objects/companies",
                                params={"limit": 10, "associations": "contacts,deals"})
        rest = page.json()["results"][0]["associations"]["contacts"]["paging"]["next"]
        more = await client.get(rest["link"])
    by_id = {r["id"]: r for r in page.json()["results"]}
    first = by_id[big]["associations"]["contacts"]
    assert [a["id"] for a in first["results"]] == people[:100]
    assert {a["type"] for a in first["results"]} == {"company_to_contact_unlabeled"}
    assert rest["after"] == people[100]
    # The link reads the rest (the emulator links the record's v4 association list).
    assert [str(t["toObjectId"]) for t in more.json()["results"]] == people[100:]
    assert by_id[small]["associations"] == {
        "contacts": {"results": [{"id": people[0], "type": "company_to_contact_unlabeled"}]}}
    assert "associations" not in by_id[alone]
