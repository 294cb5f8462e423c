"""The webhooks journal (hubspot-onboarding.md §6): a client-credentials token with the journal
scopes of the spec, subscriptions, entries read by offset and fetched from their `url`, 3-day
retention on the emulator's clock, entries made from the changes that feed webhooks."""

from __future__ import annotations

import httpx
import trio
from trio.testing import MockClock

from crmsync.emulators.hubspot.oauth import OAuthApp

from .conftest import client_for, make_emulator

J = "/webhooks-journal/journal/2026-03"
SUBS = "/webhooks-journal/subscriptions/2026-03"
# The spec's scope names (the docs name others; the emulator follows the spec).
SCOPES = ("webhooks-journal-data-access webhooks-journal-subscription-read "
          "webhooks-journal-subscription-management")
DAY = 86_400


def _emulator():  # type: ignore[no-untyped-def]
    # Tokens that outlive the days these tests age the journal by (one token per test).
    return make_emulator(oauth_clients={"app": OAuthApp("app", "s3cret")},
                         access_token_seconds=30 * DAY)


async def _journal_client(emu) -> httpx.AsyncClient:  # type: ignore[no-untyped-def]
    async with client_for(emu, token=None) as anonymous:
        r = await anonymous.post("/oauth/v3/token", data={
            "grant_type": "client_credentials", "client_id": "app", "client_secret": "s3cret",
            "scope": SCOPES})
    token = r.json()
    # ClientCredentialsTokenResponse: no refresh token, token_use client_credentials (§1).
    assert r.status_code == 200 and "refresh_token" not in token
    assert token["token_use"] == "client_credentials"
    return client_for(emu, token=token["access_token"])


async def _entry(client: httpx.AsyncClient, path: str) -> tuple[str, list[dict]]:
    r = await client.get(path)
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"currentOffset", "expiresAt", "url"}
    file = await client.get(body["url"], headers={"Authorization": ""})
    assert file.status_code == 200
    return body["currentOffset"], file.json()["events"]


async def test_subscribe_read_follow_and_age_out(autojump_clock: MockClock) -> None:
    emu = _emulator()
    async with await _journal_client(emu) as journal, client_for(emu) as crm:
        with trio.fail_after(10 * DAY):
            assert (await journal.get(J + "/earliest")).status_code == 204
            sub = await journal.post(SUBS, json={
                "subscriptionType": "OBJECT", "portalId": emu.portal_id, "objectTypeId": "0-1",
                "actions": ["CREATE", "UPDATE"], "objectIds": [], "properties": ["firstname"]})
            assert sub.status_code == 200 and sub.json()["objectTypeId"] == "0-1"
            created = await crm.post("/crm/v3/objects/contacts", json={
                "properties": {"email": "j@example.com", "firstname": "Jo"}})
            await crm.post("/crm/v3/objects/companies", json={"properties": {"name": "No sub"}})
            offset, events = await _entry(journal, J + "/earliest")
            contact_id = int(created.json()["id"])
            # The creation and the subscribed property; `email` is filtered out.
            assert [(e["subscriptionType"], e.get("propertyName")) for e in events] == [
                ("contact.creation", None), ("contact.propertyChange", "firstname")]
            assert all(e["objectId"] == contact_id and e["objectTypeId"] == "0-1"
                       and e["subscriptionId"] == sub.json()["id"] for e in events)
            assert (await journal.get(f"{J}/offset/{offset}/next")).status_code == 204
            await trio.sleep(DAY)
            await crm.patch(f"/crm/v3/objects/contacts/{contact_id}",
                            json={"properties": {"firstname": "Joanna"}})
            second, events = await _entry(journal, f"{J}/offset/{offset}/next")
            assert [e["propertyValue"] for e in events] == ["Joanna"]
            latest, _ = await _entry(journal, J + "/latest")
            assert latest == second
            # 3-day retention: the first entry ages out on the emulator's clock.
            await trio.sleep(2 * DAY + 1)
            assert (await journal.get(f"{J}/offset/{offset}/next")).status_code == 404
            earliest, _ = await _entry(journal, J + "/earliest")
            assert earliest == second
            await trio.sleep(DAY)
            assert (await journal.get(J + "/earliest")).status_code == 204


async def test_batches_local_journal_and_url_expiry(autojump_clock: MockClock) -> None:
    emu = _emulator()
    async with await _journal_client(emu) as journal, client_for(emu) as crm:
        with trio.fail_after(3600):
            await journal.post(SUBS, json={
                "subscriptionType": "OBJECT", "portalId": emu.portal_id, "objectTypeId": "0-1",
                "actions": ["CREATE"], "objectIds": [], "properties": []})
            offsets = []
            for i in range(3):
                await crm.post("/crm/v3/objects/contacts",
                               json={"properties": {"email": f"b{i}@example.com"}})
                offsets.append((await journal.get(J + "/latest")).json()["currentOffset"])
            batch = (await journal.get(J + "/batch/earliest/2")).json()
            assert batch["status"] == "COMPLETE"
            assert [r["currentOffset"] for r in batch["results"]] == offsets[:2]
            follow = (await journal.get(f"{J}/batch/{offsets[0]}/next/10")).json()
            assert [r["currentOffset"] for r in follow["results"]] == offsets[1:]
            read = await journal.post(J + "/batch/read", json={"inputs": [offsets[2], "nope"]})
            assert read.status_code == 207 and read.json()["numErrors"] == 1
            local = "/webhooks-journal/journal-local/2026-03"
            mine = await journal.get(local + "/latest", params={"installPortalId": emu.portal_id})
            other = await journal.get(local + "/latest", params={"installPortalId": 1})
            assert mine.json()["currentOffset"] == offsets[2] and other.status_code == 204
            url = mine.json()["url"]
            await trio.sleep(15 * 60)
            assert (await journal.get(url)).status_code == 403


async def test_journal_scopes_and_subscription_management(autojump_clock: MockClock) -> None:
    emu = _emulator()
    async with client_for(emu, token=None) as anonymous:
        docs_names = await anonymous.post("/oauth/v1/token", data={
            "grant_type": "client_credentials", "client_id": "app", "client_secret": "s3cret",
            "scope": "developer.webhooks_journal.read"})
    assert docs_names.status_code == 400 and docs_names.json()["error"] == "invalid_scope"
    async with await _journal_client(emu) as journal, client_for(emu) as crm:
        # A client-credentials token carries no CRM scope; a CRM token no journal scope.
        assert (await journal.get("/crm/v3/objects/contacts")).status_code == 403
        assert (await crm.get(J + "/earliest")).status_code == 403
        body = {"subscriptionType": "OBJECT", "portalId": emu.portal_id, "objectTypeId": "0-3",
                "actions": ["DELETE"], "objectIds": [], "properties": []}
        first = (await journal.post(SUBS, json=body)).json()
        again = (await journal.post(SUBS, json={**body, "actions": ["CREATE"]})).json()
        assert again["id"] == first["id"] and again["actions"] == ["CREATE"]
        bad = await journal.post(SUBS, json={**body, "actions": ["ASSOCIATION_ADDED"]})
        assert bad.status_code == 400
        assert [s["id"] for s in (await journal.get(SUBS)).json()["results"]] == [first["id"]]
        assert (await journal.delete(f"{SUBS}/{first['id']}")).status_code == 204
        assert (await journal.get(f"{SUBS}/{first['id']}")).status_code == 404
        await journal.post(SUBS, json=body)
        assert (await journal.delete(f"{SUBS}/portals/{emu.portal_id}")).status_code == 204
        assert (await journal.get(SUBS)).json() == {"results": []}


async def test_association_changes_are_journaled(autojump_clock: MockClock) -> None:
    emu = _emulator()
    [contact] = emu.add_records("contacts", [{"email": "a@example.com"}])
    [company] = emu.add_records("companies", [{"name": "Acme"}])
    async with await _journal_client(emu) as journal:
        await journal.post(SUBS, json={
            "subscriptionType": "ASSOCIATION", "portalId": emu.portal_id, "objectTypeId": "0-1",
            "actions": ["ASSOCIATION_ADDED"], "objectIds": [], "associatedObjectTypeIds": ["0-2"]})
        emu.associate("contacts", contact, "companies", company)
        _, events = await _entry(journal, J + "/earliest")
    assert [(e["subscriptionType"], e["fromObjectId"], e["toObjectId"]) for e in events] == [
        ("contact.associationChange", int(contact), int(company))]
