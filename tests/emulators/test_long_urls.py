"""A GET whose URL is too long answers 414 URI Too Long with a HubSpot error body (fact sheet
§4 lists 414; hubspot-onboarding.md §7: third parties saw it from about 16.2k characters; the
emulator's limit is 16,384 characters of path and query [INF]) — in process and over loopback,
where the server used to answer 431 with an empty body before the emulator saw the request."""

from __future__ import annotations

import httpx
import trio

from crmsync.emulators.hubspot import HubSpotEmulator

from .conftest import BASE_URL
from .serving import serving

PATH = "/crm/v3/objects/contacts"


def _url_of_length(n: int) -> str:
    """A list URL whose path and query have exactly `n` characters (the SDK's repeated
    `properties=` form, hubspot-onboarding.md §7)."""
    head = "properties=email"
    repeats = (n - len(PATH) - 1 - len(head) - 3) // len("&properties=p") - 1
    query = head + "&properties=p" * repeats
    query += "&x=" + "y" * (n - len(PATH) - 1 - len(query) - 3)
    url = f"{PATH}?{query}"
    assert len(url) == n
    return url


async def test_limit_in_process(client: httpx.AsyncClient) -> None:
    at_limit = await client.get(_url_of_length(16_384))
    over = await client.get(_url_of_length(16_385))
    assert at_limit.status_code == 200
    assert over.status_code == 414
    body = over.json()
    assert body["status"] == "error" and body["correlationId"] and "URI Too Long" in body["message"]


async def test_over_loopback_the_emulator_answers() -> None:
    emu = HubSpotEmulator()
    with trio.fail_after(30):
        async with serving(emu) as base, httpx.AsyncClient(
            base_url=base, headers={"Authorization": "Bearer test-token"}
        ) as client:
            # httpx refuses URLs over 65,536 characters itself.
            r = await client.get(_url_of_length(65_400))
    assert r.status_code == 414
    assert r.json()["category"] and "16384" in r.json()["message"]
    assert base != BASE_URL
