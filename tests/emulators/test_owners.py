"""Owners and users (hubspot-onboarding.md §4): `/crm/v3/owners` with its filters and paging,
single reads by id or userId, archived owners, `/settings/v3/users`, the admin API that manages
them, and `hubspot_owner_id` checked against them."""

from __future__ import annotations

import httpx

from crmsync.emulators.hubspot import HubSpotEmulator

from .conftest import BASE_URL


async def _add(client: httpx.AsyncClient, email: str, **extra: object) -> dict:
    r = await client.post("/_emulator/owners", json={"email": email, **extra})
    assert r.status_code == 201
    return r.json()


async def test_account_starts_with_one_owner(client: httpx.AsyncClient) -> None:
    r = await client.get("/crm/v3/owners")
    [owner] = r.json()["results"]
    # PublicOwner requires id (a string), type, archived, createdAt, updatedAt.
    assert isinstance(owner["id"], str) and owner["type"] == "PERSON"
    assert owner["archived"] is False and owner["createdAt"] and owner["updatedAt"]
    assert owner["userId"] == owner["userIdIncludingInactive"]


async def test_owner_list_filters_pages_and_links(client: httpx.AsyncClient) -> None:
    for i in range(4):
        await _add(client, f"rep{i}@example.com", firstName=f"Rep{i}")
    by_email = (await client.get("/crm/v3/owners", params={"email": "REP2@example.com"})).json()
    assert [o["firstName"] for o in by_email["results"]] == ["Rep2"]
    first = (await client.get("/crm/v3/owners", params={"limit": 2})).json()
    assert len(first["results"]) == 2
    link = first["paging"]["next"]["link"]
    # An absolute URL that reads the next page as it stands (fact sheet §1.1 paging shape).
    assert link.startswith(BASE_URL + "/crm/v3/owners?")
    second = (await client.get(link)).json()
    third = (await client.get(second["paging"]["next"]["link"])).json()
    assert "paging" not in third
    ids = [o["id"] for page in (first, second, third) for o in page["results"]]
    assert len(ids) == len(set(ids)) == 5
    # limit at most 500 (hubspot-onboarding.md §4).
    assert (await client.get("/crm/v3/owners", params={"limit": 501})).status_code == 400
    assert (await client.get("/crm/v3/owners", params={"limit": 500})).status_code == 200


async def test_single_owner_by_id_or_user_id_and_archived(client: httpx.AsyncClient) -> None:
    owner = await _add(client, "gone@example.com")
    by_user = await client.get(
        f"/crm/v3/owners/{owner['userId']}", params={"idProperty": "userId"}
    )
    assert by_user.json()["id"] == owner["id"]
    archived = (await client.delete(f"/_emulator/owners/{owner['id']}")).json()
    # Archived owners keep their id; userId becomes null, userIdIncludingInactive keeps it.
    assert archived["userId"] is None and archived["userIdIncludingInactive"] == owner["userId"]
    assert (await client.get(f"/crm/v3/owners/{owner['id']}")).status_code == 404
    got = await client.get(f"/crm/v3/owners/{owner['id']}", params={"archived": "true"})
    assert got.status_code == 200 and got.json()["archived"] is True
    only_archived = (await client.get("/crm/v3/owners", params={"archived": "true"})).json()
    assert [o["id"] for o in only_archived["results"]] == [owner["id"]]


async def test_users_mirror_live_person_owners(client: httpx.AsyncClient) -> None:
    owner = await _add(client, "user@example.com", firstName="Una", lastName="User")
    queue = await client.post("/_emulator/owners", json={"type": "QUEUE", "firstName": "Q"})
    assert queue.status_code == 201 and "userId" not in queue.json()
    users = (await client.get("/settings/v3/users/")).json()["results"]
    mine = next(u for u in users if u["email"] == "user@example.com")
    # PublicUser requires id, email, roleIds, superAdmin.
    assert mine == {"id": str(owner["userId"]), "email": "user@example.com", "roleIds": [],
                    "superAdmin": False, "firstName": "Una", "lastName": "User"}
    by_email = await client.get("/settings/v3/users/user@example.com",
                                params={"idProperty": "EMAIL"})
    assert by_email.json()["id"] == mine["id"]


async def test_owner_property_accepts_only_live_owners(
    emu: HubSpotEmulator, client: httpx.AsyncClient
) -> None:
    owner = await _add(client, "seller@example.com")
    ok = await client.post("/crm/v3/objects/contacts", json={
        "properties": {"email": "c@example.com", "hubspot_owner_id": owner["id"]}})
    bad = await client.post("/crm/v3/objects/contacts", json={
        "properties": {"email": "d@example.com", "hubspot_owner_id": "999"}})
    assert ok.status_code == 201
    assert bad.status_code == 400
    assert bad.json()["errors"][0]["code"] == "INVALID_OPTION"
    prop = (await client.get("/crm/v3/properties/contacts/hubspot_owner_id")).json()
    assert prop["referencedObjectType"] == "OWNER" and prop["externalOptions"] is True
    assert owner["id"] in {o["value"] for o in prop["options"]}


async def test_generated_account_has_owners_on_its_records(
    emu: HubSpotEmulator, client: httpx.AsyncClient
) -> None:
    made = (await client.post("/_emulator/seed", json={
        "generate": {"owners": 3, "companies": 2, "contacts": 10, "deals": 4}, "seed": 2})).json()
    assert len(made["owners"]) == 3
    listed = {o["id"] for o in (await client.get("/crm/v3/owners")).json()["results"]}
    assert set(made["owners"]) < listed  # and the account's first owner
    for name in ("contacts", "companies", "deals"):
        owners = {r["properties"]["hubspot_owner_id"] for r in emu.records(name)}
        assert owners <= set(made["owners"]), name
