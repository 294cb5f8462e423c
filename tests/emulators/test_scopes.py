"""Credentials carry scopes; a call whose scope none of them grants answers HubSpot's 403
MISSING_SCOPES (fact sheet §4; per-endpoint scopes from hubspot-onboarding.md §3 and the SPEC
security blocks)."""

from __future__ import annotations

import httpx

from crmsync.emulators.hubspot.oauth import Credential

from .conftest import client_for, make_emulator


def _key(*scopes: str) -> Credential:
    return Credential("key", kind="service_key", scopes=frozenset(scopes))


async def test_missing_scope_is_403_with_the_required_scopes() -> None:
    emu = make_emulator(tokens=(_key("crm.objects.contacts.read"),))
    async with client_for(emu, token="key") as client:
        read = await client.get("/crm/v3/objects/contacts")
        search = await client.post("/crm/v3/objects/contacts/search", json={})
        write = await client.post("/crm/v3/objects/contacts", json={"properties": {"email": "a@b.co"}})
        deals = await client.get("/crm/v3/objects/0-3")
    assert read.status_code == search.status_code == 200
    for r, scope in ((write, "crm.objects.contacts.write"), (deals, "crm.objects.deals.read")):
        body = r.json()
        assert r.status_code == 403 and body["category"] == "MISSING_SCOPES"
        assert body["errors"][0]["context"]["requiredGranularScopes"] == [scope]
        assert "scopes" in body["links"]
    assert emu.records("contacts") == []


async def test_scopes_of_the_other_object_types_and_apis() -> None:
    emu = make_emulator(tokens=(_key("crm.objects.contacts.read", "tickets",
                                     "crm.objects.owners.read"),))
    async with client_for(emu, token="key") as client:
        # Engagements use the contacts scopes; tickets `tickets` (SPEC v3 object files).
        assert (await client.get("/crm/v3/objects/notes")).status_code == 200
        assert (await client.post("/crm/v3/objects/notes", json={"properties": {}})).status_code == 403
        assert (await client.get("/crm/v3/objects/tickets")).status_code == 200
        assert (await client.get("/crm/v3/objects/products")).status_code == 403
        assert (await client.get("/crm/v3/owners")).status_code == 200
        assert (await client.get("/settings/v3/users")).status_code == 403
        # Property definitions: any object scope reads them; `tickets` is one of the 26 scopes
        # SPEC lists for writing them.
        assert (await client.get("/crm/v3/properties/deals")).status_code == 200
        prop = {"name": "x", "label": "X", "type": "string", "fieldType": "text",
                "groupName": "contactinformation"}
        assert (await client.post("/crm/v3/properties/contacts", json=prop)).status_code == 201
        assert (await client.get("/crm/v3/pipelines/deals")).status_code == 200
        # Associations: any scope of the involved object types.
        assert (await client.get("/crm/v4/objects/contacts/1/associations/companies")).status_code != 403
        assert (await client.post("/crm/v4/associations/deals/companies/batch/read",
                                  json={"inputs": []})).status_code == 403


async def test_a_legacy_token_without_scopes_configured_has_every_scope(
    client: httpx.AsyncClient,
) -> None:
    for path in ("/crm/v3/objects/products", "/crm/v3/owners", "/settings/v3/users",
                 "/crm/v3/schemas", "/account-info/v3/details"):
        assert (await client.get(path)).status_code == 200, path


async def test_credentials_added_through_the_admin_api() -> None:
    emu = make_emulator()
    async with client_for(emu, token=None) as admin, client_for(emu, token="st-1") as app:
        added = await admin.post("/_emulator/credentials", json={
            "token": "st-1", "kind": "static_token", "scopes": ["crm.objects.deals.read"]})
        bad_kind = await admin.post("/_emulator/credentials", json={"token": "x", "kind": "magic"})
        deals = await app.get("/crm/v3/objects/deals")
        contacts = await app.get("/crm/v3/objects/contacts")
        listed = (await admin.get("/_emulator/credentials")).json()["results"]
    assert added.status_code == 201 and bad_kind.status_code == 400
    assert deals.status_code == 200 and contacts.status_code == 403
    assert {c["kind"] for c in listed} == {"private_app", "static_token"}


async def test_property_definitions_need_a_schema_write_scope() -> None:
    emu = make_emulator(tokens=(_key("crm.objects.contacts.write"),))
    async with client_for(emu, token="key") as client:
        create = await client.post("/crm/v3/properties/contacts", json={
            "name": "x", "label": "X", "type": "string", "fieldType": "text",
            "groupName": "contactinformation"})
        stage = await client.post("/crm/v3/pipelines/deals", json={"label": "P", "stages": []})
    assert create.status_code == stage.status_code == 403
    assert "crm.schemas.contacts.write" in create.json()["errors"][0]["context"][
        "requiredGranularScopes"]
