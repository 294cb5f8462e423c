"""The HubSpot connector reads a record's line items from a list with `associations=`, where
HubSpot names them "line items" (a space; public clients read
`deal['associations']['line items']['results']`), against the emulator in process."""

from __future__ import annotations

import trio

from .test_hubspot_emulator import connector, in_process


async def test_a_scan_of_deals_carries_their_line_items(autojump_clock):
    emu, clocks = in_process()
    [deal, bare] = emu.add_records(
        "deals", [{"dealname": n, "pipeline": "default", "dealstage": "closedwon"}
                  for n in ("D", "E")])
    items = emu.add_records("line_items", [{"name": f"Item {i}", "quantity": "1",
                                            "price": "5"} for i in range(3)])
    for item in items:
        emu.associate("deals", deal, "line_items", item)
    [contact] = emu.add_records("contacts", [{"email": "a@example.com"}])
    emu.associate("deals", deal, "contacts", contact)
    c = connector(emu, clocks)
    with trio.fail_after(60):
        emu.request_log.clear()
        page = await c.scan_associated("deals", None, ["dealname"], ["line_items", "contacts"])
    assert [m for m, _, _ in emu.request_log] == ["GET"]  # in the list request itself
    assert page.associations == {deal: {"line_items": sorted(items, key=int),
                                        "contacts": [contact]},
                                 bare: {"line_items": [], "contacts": []}}
