"""Cursor paging, `ids=` and `updated_since` / `updated_until` (fact sheet A.2, A.4)."""

from __future__ import annotations

import base64
import json

import httpx
import trio
from trio.testing import MockClock

from crmsync.emulators.pipedrive import PipedriveEmulator

from .conftest import V2


async def _all_pages(
    client: httpx.AsyncClient, path: str, **params: str | int
) -> tuple[list[dict[str, object]], int]:
    items: list[dict[str, object]] = []
    cursor: str | None = None
    pages = 0
    while True:
        query = dict(params)
        if cursor:
            query["cursor"] = cursor
        body = (await client.get(path, params=query)).json()
        items.extend(body["data"])
        pages += 1
        cursor = body["additional_data"]["next_cursor"]
        if cursor is None:
            return items, pages


async def test_cursor_pages_to_the_end(
    autojump_clock: MockClock, emu: PipedriveEmulator, client: httpx.AsyncClient
) -> None:
    emu.add_records("persons", ({"name": f"P {i}"} for i in range(250)))
    with trio.fail_after(10):
        first = (await client.get(f"{V2}/persons")).json()
        everything, pages = await _all_pages(client, f"{V2}/persons", limit=100)
        big = (await client.get(f"{V2}/persons", params={"limit": 500})).json()
        too_big = await client.get(f"{V2}/persons", params={"limit": 501})
        bad_cursor = await client.get(f"{V2}/persons", params={"cursor": "nonsense!"})
    assert len(first["data"]) == 100  # the default limit (A.2)
    assert pages == 3 and [p["id"] for p in everything] == list(range(1, 251))
    assert len(big["data"]) == 250 and big["additional_data"]["next_cursor"] is None
    assert too_big.status_code == 400 and bad_cursor.status_code == 400
    # Opaque, but shaped like the spec's example cursor (base64url JSON).
    raw = first["additional_data"]["next_cursor"]
    decoded = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
    assert decoded == {"field": "id", "fieldValue": 100, "sortDirection": "asc", "id": 100}


async def test_ids_list(
    autojump_clock: MockClock, emu: PipedriveEmulator, client: httpx.AsyncClient
) -> None:
    emu.add_records("organizations", ({"name": f"O {i}"} for i in range(5)))
    with trio.fail_after(5):
        some = (await client.get(f"{V2}/organizations", params={"ids": "4,2,99"})).json()
        too_many = await client.get(
            f"{V2}/organizations", params={"ids": ",".join(str(i) for i in range(1, 102))}
        )
        not_ints = await client.get(f"{V2}/organizations", params={"ids": "1,x"})
    # Missing ids are silently left out; at most 100 (A.1).
    assert [o["id"] for o in some["data"]] == [2, 4]
    assert too_many.status_code == 400 and not_ints.status_code == 400


async def test_updated_since_polling(
    autojump_clock: MockClock, emu: PipedriveEmulator, client: httpx.AsyncClient
) -> None:
    [a, b, c] = emu.add_records("persons", ({"name": n} for n in ("A", "B", "C")))
    with trio.fail_after(100):
        await trio.sleep(10)  # 22:13:30
        emu.update_record("persons", b, {"name": "B2"})
        await trio.sleep(10)  # 22:13:40
        emu.update_record("persons", a, {"name": "A2"})
        since = {"updated_since": "2023-11-14T22:13:30Z", "sort_by": "update_time"}
        changed = (await client.get(f"{V2}/persons", params=since)).json()["data"]
        window = (
            await client.get(
                f"{V2}/persons",
                params={**since, "updated_until": "2023-11-14T22:13:40Z"},
            )
        ).json()["data"]
        bad = await client.get(f"{V2}/persons", params={"updated_since": "yesterday"})
    # updated_since is ≥, updated_until is < (A.4), ordered by update_time.
    assert [p["id"] for p in changed] == [b, a]
    assert [p["id"] for p in window] == [b]
    assert c not in [p["id"] for p in changed]
    assert bad.status_code == 400


async def test_a_record_updated_mid_scan_comes_again(
    autojump_clock: MockClock, emu: PipedriveEmulator, client: httpx.AsyncClient
) -> None:
    # The cursor is keyset on (update_time, id): a change during the scan moves the record
    # behind the cursor, so a poller sees it again rather than missing it.
    ids = emu.add_records("persons", ({"name": f"P{i}"} for i in range(4)))
    with trio.fail_after(100):
        params = {"sort_by": "update_time", "limit": 2}
        first = (await client.get(f"{V2}/persons", params=params)).json()
        await trio.sleep(5)
        emu.update_record("persons", ids[0], {"name": "changed"})
        rest, _ = await _all_pages(
            client, f"{V2}/persons", **params, cursor=first["additional_data"]["next_cursor"]
        )
    assert [p["id"] for p in first["data"]] == ids[:2]
    assert [p["id"] for p in rest] == [ids[2], ids[3], ids[0]]


async def test_cursor_belongs_to_its_sort(
    autojump_clock: MockClock, emu: PipedriveEmulator, client: httpx.AsyncClient
) -> None:
    emu.add_records("persons", ({"name": f"P{i}"} for i in range(3)))
    with trio.fail_after(5):
        first = (await client.get(f"{V2}/persons", params={"limit": 1})).json()
        cursor = first["additional_data"]["next_cursor"]
        mixed = await client.get(
            f"{V2}/persons", params={"limit": 1, "cursor": cursor, "sort_by": "update_time"}
        )
        desc = (await client.get(f"{V2}/persons", params={"sort_direction": "desc"})).json()
    assert mixed.status_code == 400
    assert [p["id"] for p in desc["data"]] == [3, 2, 1]
