"""CRM search (fact sheet §2)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import trio
from trio.testing import MockClock

from crmsync.emulators.hubspot import HubSpotEmulator

from .conftest import client_for, make_emulator

SEARCH = "/crm/v3/objects/contacts/search"


def f(prop: str, op: str, value: Any = None, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"propertyName": prop, "operator": op, **extra}
    if value is not None:
        out["value"] = value
    return out


async def ids(client: httpx.AsyncClient, body: dict[str, Any], path: str = SEARCH) -> list[str]:
    r = await client.post(path, json=body)
    assert r.status_code == 200, r.text
    return [x["id"] for x in r.json()["results"]]


@pytest.fixture
async def people(emu: HubSpotEmulator) -> dict[str, str]:
    rows = [
        {
            "email": "ada@hubspot.com",
            "firstname": "Ada",
            "lastname": "Lovelace",
            "lifecyclestage": "customer",
            "date_of_birth": "1815-12-10",
        },
        {
            "email": "alan@example.com",
            "firstname": "Alan",
            "lastname": "Turing",
            "lifecyclestage": "lead",
            "date_of_birth": "1912-06-23",
        },
        {
            "email": "grace@hubspot.com",
            "firstname": "Grace",
            "lastname": "Hopper",
            "lifecyclestage": "lead",
        },
    ]
    return dict(zip(("ada", "alan", "grace"), emu.add_records("contacts", rows), strict=True))


async def test_operators(
    autojump_clock: MockClock, client: httpx.AsyncClient, people: dict[str, str]
) -> None:
    ada, alan, grace = people["ada"], people["alan"], people["grace"]
    cases: list[tuple[dict[str, Any], list[str]]] = [
        (f("firstname", "EQ", "ADA"), [ada]),  # case-insensitive for text
        (f("firstname", "NEQ", "ada"), [alan, grace]),
        (f("lifecyclestage", "EQ", "LEAD"), []),  # enumerations are case-sensitive
        (f("lifecyclestage", "EQ", "lead"), [alan, grace]),
        (f("lastname", "LT", "m"), [ada, grace]),
        (f("lastname", "LTE", "hopper"), [grace]),
        (f("lastname", "GTE", "lovelace"), [ada, alan]),
        (f("date_of_birth", "GT", "-2000000000000"), [alan]),  # dates compare as epoch ms
        (f("date_of_birth", "BETWEEN", "-5000000000000", highValue="-4000000000000"), [ada]),
        (f("firstname", "IN", values=["ada", "grace"]), [ada, grace]),
        (f("firstname", "IN", values=["Ada"]), []),  # IN values for strings must be lowercase
        (f("firstname", "NOT_IN", values=["ada"]), [alan, grace]),
        (f("date_of_birth", "HAS_PROPERTY"), [ada, alan]),
        (f("date_of_birth", "NOT_HAS_PROPERTY"), [grace]),
        (f("email", "CONTAINS_TOKEN", "*@hubspot.com"), [ada, grace]),
        (f("email", "NOT_CONTAINS_TOKEN", "*@hubspot.com"), [alan]),
        (f("lastname", "CONTAINS_TOKEN", "turing"), [alan]),
    ]
    with trio.fail_after(10):
        for filt, expected in cases:
            assert await ids(client, {"filterGroups": [{"filters": [filt]}]}) == expected, filt


async def test_groups_or_filters_and(
    autojump_clock: MockClock, client: httpx.AsyncClient, people: dict[str, str]
) -> None:
    body = {
        "filterGroups": [
            {"filters": [f("lifecyclestage", "EQ", "lead"), f("firstname", "EQ", "grace")]},
            {"filters": [f("firstname", "EQ", "ada")]},
        ]
    }
    with trio.fail_after(5):
        assert await ids(client, body) == [people["ada"], people["grace"]]


async def test_filter_limits(autojump_clock: MockClock, client: httpx.AsyncClient) -> None:
    one = f("firstname", "EQ", "x")
    with trio.fail_after(5):
        ok = await client.post(
            SEARCH, json={"filterGroups": [{"filters": [one] * 6}] * 3}
        )  # 18 in total
        too_many_total = await client.post(
            SEARCH, json={"filterGroups": [{"filters": [one] * 6}] * 3 + [{"filters": [one]}]}
        )
        too_many_groups = await client.post(SEARCH, json={"filterGroups": [{"filters": [one]}] * 6})
        too_many_in_group = await client.post(
            SEARCH, json={"filterGroups": [{"filters": [one] * 7}]}
        )
    assert ok.status_code == 200
    for r in (too_many_total, too_many_groups, too_many_in_group):
        assert r.status_code == 400 and r.json()["category"] == "VALIDATION_ERROR"


async def test_sorts_object_and_string_forms(
    autojump_clock: MockClock, client: httpx.AsyncClient, people: dict[str, str]
) -> None:
    ada, alan, grace = people["ada"], people["alan"], people["grace"]
    with trio.fail_after(5):
        assert await ids(client, {}) == [ada, alan, grace]  # no sort: oldest created first
        assert await ids(
            client, {"sorts": [{"propertyName": "firstname", "direction": "DESCENDING"}]}
        ) == [grace, alan, ada]
        assert await ids(client, {"sorts": ["-lastname"]}) == [alan, ada, grace]
        assert await ids(client, {"sorts": ["lastname"]}) == [grace, ada, alan]
        two = await client.post(SEARCH, json={"sorts": ["lastname", "firstname"]})
    assert two.status_code == 400  # only one sort per search


async def test_paging_total_and_limits(
    autojump_clock: MockClock, client: httpx.AsyncClient, emu: HubSpotEmulator
) -> None:
    emu.add_records("contacts", [{"email": f"c{i}@example.com"} for i in range(25)])
    with trio.fail_after(5):
        first = (await client.post(SEARCH, json={})).json()
        second = (
            await client.post(SEARCH, json={"after": first["paging"]["next"]["after"], "limit": 20})
        ).json()
        over = await client.post(SEARCH, json={"limit": 201})
        max_ok = await client.post(SEARCH, json={"limit": 200})
        past_cap = await client.post(SEARCH, json={"after": "10000", "limit": 10})
        at_cap = await client.post(SEARCH, json={"after": "9990", "limit": 10})
    assert first["total"] == 25 and len(first["results"]) == 10  # default limit 10
    assert first["paging"]["next"]["after"] == "10"  # numeric offset as a string
    assert len(second["results"]) == 15 and "paging" not in second
    assert over.status_code == 400 and max_ok.status_code == 200
    assert past_cap.status_code == 400  # paging past 10,000 results
    assert at_cap.status_code == 200


async def test_body_over_3000_characters(
    autojump_clock: MockClock, client: httpx.AsyncClient
) -> None:
    body = {"query": "x" * 3000}
    with trio.fail_after(5):
        r = await client.post(SEARCH, json=body)
    assert r.status_code == 400


async def test_archived_never_appear_and_default_properties(
    autojump_clock: MockClock, client: httpx.AsyncClient, emu: HubSpotEmulator
) -> None:
    a, b = emu.add_records(
        "contacts", [{"email": "a@example.com", "city": "Oslo"}, {"email": "b@example.com"}]
    )
    emu.archive_record("contacts", a)
    with trio.fail_after(5):
        r = (await client.post(SEARCH, json={})).json()
        custom = (await client.post(SEARCH, json={"properties": ["city"]})).json()
    assert [x["id"] for x in r["results"]] == [b]
    assert set(r["results"][0]["properties"]) <= {
        "firstname",
        "lastname",
        "email",
        "lastmodifieddate",
        "hs_object_id",
        "createdate",
    }
    assert "email" in r["results"][0]["properties"]
    assert "email" not in custom["results"][0]["properties"]


async def test_query_searches_default_text_fields(
    autojump_clock: MockClock, client: httpx.AsyncClient, people: dict[str, str]
) -> None:
    with trio.fail_after(5):
        assert await ids(client, {"query": "hopper"}) == [people["grace"]]
        assert await ids(client, {"query": "hubspot.com"}) == [people["ada"], people["grace"]]


async def test_last_modified_gte_and_ascending_sort(
    autojump_clock: MockClock, client: httpx.AsyncClient, emu: HubSpotEmulator
) -> None:
    [a] = emu.add_records(
        "deals", [{"dealname": "A", "pipeline": "default", "dealstage": "closedwon"}]
    )
    await trio.sleep(5)
    [b] = emu.add_records(
        "deals", [{"dealname": "B", "pipeline": "default", "dealstage": "closedwon"}]
    )
    await trio.sleep(5)
    emu.update_record("deals", a, {"amount": "10"})
    body = {
        "filterGroups": [
            {"filters": [f("hs_lastmodifieddate", "GTE", str(1_700_000_000_000 + 4_000))]}
        ],
        "sorts": [{"propertyName": "hs_lastmodifieddate", "direction": "ASCENDING"}],
    }
    with trio.fail_after(5):
        assert await ids(client, body, "/crm/v3/objects/deals/search") == [b, a]


async def test_association_pseudo_property(
    autojump_clock: MockClock, client: httpx.AsyncClient, emu: HubSpotEmulator
) -> None:
    [company] = emu.add_records("companies", [{"name": "Acme"}])
    a, _ = emu.add_records("contacts", [{"email": "a@example.com"}, {"email": "b@example.com"}])
    emu.associate("contacts", a, "companies", company)
    with trio.fail_after(5):
        assert await ids(
            client, {"filterGroups": [{"filters": [f("associations.company", "EQ", company)]}]}
        ) == [a]


async def test_search_rate_limit_and_no_headers(autojump_clock: MockClock) -> None:
    emu = make_emulator(tier="professional")
    async with client_for(emu) as client:
        with trio.fail_after(5):
            answers = [await client.post(SEARCH, json={}) for _ in range(6)]
            await trio.sleep(1.0)
            later = await client.post(SEARCH, json={})
            listing = await client.get("/crm/v3/objects/contacts")
    assert [r.status_code for r in answers] == [200] * 5 + [429]
    limited = answers[-1].json()
    assert limited["policyName"] == "SECONDLY" and limited["errorType"] == "RATE_LIMIT"
    assert limited["message"] == "You have reached your secondly limit."
    for r in answers:
        assert not any(h.lower().startswith("x-hubspot-ratelimit") for h in r.headers)
    assert later.status_code == 200
    # Search is exempt from the ten-secondly window: the listing still has its full budget.
    assert listing.headers["X-HubSpot-RateLimit-Remaining"] == "189"


async def test_writes_reach_search_after_the_indexing_delay(autojump_clock: MockClock) -> None:
    emu = make_emulator(search_index_delay=2.0)
    async with client_for(emu) as client:
        with trio.fail_after(10):
            [a] = emu.add_records("contacts", [{"email": "a@example.com", "city": "Oslo"}])
            assert await ids(client, {}) == []
            await trio.sleep(2.5)
            assert await ids(client, {}) == [a]
            emu.update_record("contacts", a, {"city": "Rome"})
            rome = {"filterGroups": [{"filters": [f("city", "EQ", "rome")]}]}
            assert await ids(client, rome) == []  # still the old version
            await trio.sleep(2.5)
            assert await ids(client, rome) == [a]
