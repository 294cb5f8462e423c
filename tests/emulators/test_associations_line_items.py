"""Line items among a record's associations (emulators/hubspot/routes/objects.py): HubSpot
names them "line items", with a space, where the object type is `line_items` everywhere else.
Public clients of the real API read `deal["associations"]["line items"]["results"]` from a
deal read with `associations=line_items` (e.g. GitHub code: `existing_deal['associations']
['line items']['results']`, `$body['associations']['line items']['results']`)."""

from __future__ import annotations

import httpx
import hubspot
import trio
from trio.testing import MockClock

from crmsync.emulators.hubspot import HubSpotEmulator

from .serving import serving


def _deal_with_items(emu: HubSpotEmulator, n: int) -> tuple[str, list[str], str]:
    [deal] = emu.add_records(
        "deals", [{"dealname": "D", "pipeline": "default", "dealstage": "closedwon"}])
    items = emu.add_records("line_items", [{"name": f"Item {i}", "quantity": "1", "price": "5"}
                                           for i in range(n)])
    for item in items:
        emu.associate("deals", deal, "line_items", item)
    [contact] = emu.add_records("contacts", [{"email": "a@example.com"}])
    emu.associate("deals", deal, "contacts", contact)
    return deal, items, contact


async def test_a_deal_lists_its_line_items_under_line_items_with_a_space(
    autojump_clock: MockClock, client: httpx.AsyncClient, emu: HubSpotEmulator
) -> None:
    deal, items, contact = _deal_with_items(emu, 2)
    with trio.fail_after(5):
        one = await client.get(f"/crm/v3/objects/deals/{deal}",
                               params={"associations": "line_items,contacts"})
        page = await client.get("/crm/v3/objects/deals",
                                params={"associations": "line_items,contacts"})
    assert one.status_code == 200 and page.status_code == 200
    for body in (one.json(), page.json()["results"][0]):
        got = body["associations"]
        assert set(got) == {"line items", "contacts"}  # other types keep their names
        assert sorted(a["id"] for a in got["line items"]["results"]) == sorted(items)
        assert [a["id"] for a in got["contacts"]["results"]] == [contact]


async def test_a_cut_list_of_line_items_has_the_same_key_and_a_link_to_the_rest(
    autojump_clock: MockClock, client: httpx.AsyncClient, emu: HubSpotEmulator
) -> None:
    # Past 100 a type carries `paging.next` (fact sheet §1.1), under the same key.
    _deal, items, _ = _deal_with_items(emu, 101)
    with trio.fail_after(5):
        page = await client.get("/crm/v3/objects/deals", params={"associations": "line_items"})
        cut = page.json()["results"][0]["associations"]["line items"]
        rest = await client.get(cut["paging"]["next"]["link"])
    assert len(cut["results"]) == 100
    assert [str(t["toObjectId"]) for t in rest.json()["results"]] == [
        i for i in sorted(items, key=int) if i not in {a["id"] for a in cut["results"]}]


async def test_hubspot_s_official_client_reads_them_as_real_clients_do() -> None:
    # The official SDK (a client nobody here wrote; see test_official_client.py) over
    # loopback, real clock bounded: its SimplePublicObjectWithAssociations keeps the key.
    emu = HubSpotEmulator()
    deal, items, _ = _deal_with_items(emu, 2)
    with trio.fail_after(30):
        async with serving(emu) as base:
            client = hubspot.Client.create(access_token="test-token", host=base)
            got = await trio.to_thread.run_sync(lambda: client.crm.deals.basic_api.get_by_id(
                deal, associations=["line_items"]))
    assert sorted(a.id for a in got.associations["line items"].results) == sorted(items)
