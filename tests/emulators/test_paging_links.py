"""Every paged list carries `paging.next.link`, the absolute URL of the next page, next to
`after` (fact sheet §1.1 list paging `{next: {after, link}}`; owners: hubspot-onboarding.md §4).
Search pages carry `after` only (fact sheet §2 response shape)."""

from __future__ import annotations

import httpx

from crmsync.emulators.hubspot import HubSpotEmulator

from .conftest import BASE_URL


async def _follow(client: httpx.AsyncClient, url: str, key: str) -> list[str]:
    seen: list[str] = []
    while url:
        page = (await client.get(url)).json()
        seen += [str(r[key]) for r in page["results"]]
        nxt = page.get("paging", {}).get("next")
        if nxt:
            assert nxt["link"].startswith(BASE_URL + "/") and f"after={nxt['after']}" in nxt["link"]
        url = nxt["link"] if nxt else ""
    return seen


async def test_object_and_association_lists_link_their_next_page(
    emu: HubSpotEmulator, client: httpx.AsyncClient
) -> None:
    contacts = emu.add_records("contacts", [{"email": f"l{i}@example.com"} for i in range(7)])
    [company] = emu.add_records("companies", [{"name": "Acme"}])
    for c in contacts:
        emu.associate("companies", company, "contacts", c)
    listed = await _follow(client, "/crm/v3/objects/contacts?limit=3&properties=email", "id")
    assert listed == contacts
    linked = await _follow(
        client, f"/crm/v4/objects/companies/{company}/associations/contacts?limit=2", "toObjectId"
    )
    assert linked == contacts
