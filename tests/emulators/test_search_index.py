"""Search answers from indexes (issue 16 item 4): the same results as evaluating every record,
and a page that costs what it returns — paging through a search no longer evaluates the whole
table for every page. Ordering rules: fact sheet §2 (no sort: oldest created first; archived
records never appear; search sees writes after its indexing delay)."""

from __future__ import annotations

import random
from typing import Any

import httpx
import pytest
import trio
from trio.testing import MockClock

from crmsync.emulators.hubspot import HubSpotEmulator, search

from .conftest import client_for, make_emulator

SEARCH = "/crm/v3/objects/contacts/search"


def _score_property(emu: HubSpotEmulator) -> None:
    emu.state.registry.create(
        emu.state.object_type("contacts"),
        {"name": "score", "label": "Score", "type": "number", "fieldType": "number",
         "groupName": "contactinformation"},
        0,
    )


def _expected(records: list[dict[str, Any]], prop: str, op: str, value: float | None,
              descending: bool) -> list[str]:
    """What search must answer, computed from the records alone."""
    def keep(r: dict[str, Any]) -> bool:
        raw = r["properties"].get(prop)
        if op == "NONE":
            return True
        if raw is None:
            return False
        v = float(raw)
        assert value is not None
        return {"EQ": v == value, "GT": v > value, "GTE": v >= value, "LT": v < value,
                "LTE": v <= value, "HAS_PROPERTY": True}[op]

    hits = [r for r in records if keep(r)]
    present = sorted((r for r in hits if r["properties"].get(prop) is not None),
                     key=lambda r: int(r["id"]))
    present.sort(key=lambda r: float(r["properties"][prop]), reverse=descending)
    missing = sorted((r for r in hits if r["properties"].get(prop) is None),
                     key=lambda r: int(r["id"]))
    return [r["id"] for r in present + missing]


async def _all_pages(client: httpx.AsyncClient, body: dict[str, Any], limit: int) -> list[str]:
    out: list[str] = []
    after: str | None = "0"
    while after is not None:
        r = await client.post(SEARCH, json={**body, "limit": limit, "after": after})
        assert r.status_code == 200, r.text
        page = r.json()
        assert page["total"] >= len(out)
        out += [x["id"] for x in page["results"]]
        after = page.get("paging", {}).get("next", {}).get("after")
    return out


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_index_answers_as_a_full_evaluation_would(seed: int) -> None:
    rng = random.Random(seed)
    emu = make_emulator()
    _score_property(emu)
    # Few distinct scores (ties), some records without one.
    ids = emu.add_records("contacts", [
        {"email": f"p{i}@example.com", **({"score": str(rng.randint(0, 9))} if rng.random() < 0.8
                                          else {})}
        for i in range(120)])
    for record_id in rng.sample(ids, 15):
        emu.archive_record("contacts", record_id)
    for record_id in rng.sample([i for i in ids if i in {r["id"] for r in emu.records("contacts")}], 20):
        emu.update_record("contacts", record_id, {"score": str(rng.randint(0, 9))})
    live = emu.records("contacts")
    async with client_for(emu) as client:
        for op in ("NONE", "EQ", "GT", "GTE", "LT", "LTE", "HAS_PROPERTY"):
            for descending in (False, True):
                value = float(rng.randint(0, 9))
                body: dict[str, Any] = {"sorts": [{"propertyName": "score", "direction":
                                                   "DESCENDING" if descending else "ASCENDING"}]}
                if op != "NONE":
                    flt: dict[str, Any] = {"propertyName": "score", "operator": op}
                    if op != "HAS_PROPERTY":
                        flt["value"] = str(int(value))
                    body["filterGroups"] = [{"filters": [flt]}]
                got = await _all_pages(client, body, limit=rng.choice([1, 7, 50]))
                assert got == _expected(live, "score", op, value, descending), (op, descending)


async def test_index_follows_the_indexing_delay(autojump_clock: MockClock) -> None:
    emu = make_emulator(search_index_delay=2.0)
    _score_property(emu)
    body = {"filterGroups": [{"filters": [{"propertyName": "score", "operator": "GTE",
                                           "value": "5"}]}],
            "sorts": [{"propertyName": "score", "direction": "ASCENDING"}]}
    async with client_for(emu) as client:
        with trio.fail_after(30):
            [a, b] = emu.add_records("contacts", [{"email": "a@x.co", "score": "7"},
                                                  {"email": "b@x.co", "score": "3"}])
            assert await _all_pages(client, body, 10) == []  # not indexed yet
            await trio.sleep(2)
            assert await _all_pages(client, body, 10) == [a]
            emu.update_record("contacts", b, {"score": "9"})
            emu.update_record("contacts", a, {"score": "1"})
            assert await _all_pages(client, body, 10) == [a]  # still the old values
            await trio.sleep(1)
            emu.update_record("contacts", a, {"score": "6"})  # written again while pending
            await trio.sleep(1)
            # b is indexed with 9; a's two writes are not yet: search still sees 7.
            r = await client.post(SEARCH, json={**body, "properties": ["score"]})
            assert [(x["id"], x["properties"]["score"]) for x in r.json()["results"]] == [
                (a, "7"), (b, "9")]
            await trio.sleep(1)
            r = await client.post(SEARCH, json={**body, "properties": ["score"]})
            assert [(x["id"], x["properties"]["score"]) for x in r.json()["results"]] == [
                (a, "6"), (b, "9")]
            emu.archive_record("contacts", b)
            assert await _all_pages(client, body, 10) == [a]


async def test_a_record_indexed_while_no_search_looked_shows_its_indexed_version(
        autojump_clock: MockClock) -> None:
    # Fact sheet §2: search sees a write once its indexing delay has passed, whether or not a
    # search ran in between; a later write leaves that version visible until it is indexed
    # itself (the record does not vanish from search while its next write waits).
    emu = make_emulator(search_index_delay=2.0)
    body = {"filterGroups": [{"filters": [{"propertyName": "hs_object_id", "operator": "IN",
                                           "values": []}]}], "properties": ["firstname"]}
    async with client_for(emu) as client:
        with trio.fail_after(30):
            [a] = emu.add_records("contacts", [{"email": "a@x.co", "firstname": "Ann"}])
            await trio.sleep(3)  # indexed, with no search since
            emu.update_record("contacts", a, {"firstname": "Bea"})
            body["filterGroups"][0]["filters"][0]["values"] = [a]  # type: ignore[index]
            r = await client.post(SEARCH, json=body)
            assert [(x["id"], x["properties"]["firstname"]) for x in r.json()["results"]] == [
                (a, "Ann")]
            # Its `updatedAt` is the indexed version's too, as its last-modified date says.
            [found] = r.json()["results"]
            assert found["updatedAt"] == found["properties"]["lastmodifieddate"]
            assert found["updatedAt"] != emu.records("contacts")[0]["updatedAt"]
            await trio.sleep(2)
            r = await client.post(SEARCH, json=body)
            assert [(x["id"], x["properties"]["firstname"]) for x in r.json()["results"]] == [
                (a, "Bea")]


async def test_paging_does_not_evaluate_the_table_for_every_page(monkeypatch) -> None:
    evaluations = 0
    make_matcher = search._matcher

    def counting(*args: Any) -> Any:
        matcher = make_matcher(*args)

        def counted(rec: Any, props: Any) -> bool:
            nonlocal evaluations
            evaluations += 1
            return matcher(rec, props)

        return counted

    monkeypatch.setattr(search, "_matcher", counting)
    emu = make_emulator()
    emu.add_records("contacts", [{"email": f"p{i}@example.com",
                                  "lifecyclestage": "customer" if i % 2 else "lead"}
                                 for i in range(2_000)])
    change_scan = {"filterGroups": [{"filters": [{"propertyName": "lastmodifieddate",
                                                  "operator": "GTE", "value": "0"}]}],
                   "sorts": [{"propertyName": "lastmodifieddate", "direction": "ASCENDING"}]}
    other = {"filterGroups": [{"filters": [{"propertyName": "lifecyclestage", "operator": "EQ",
                                            "value": "customer"}]}],
             "sorts": [{"propertyName": "createdate", "direction": "DESCENDING"}]}
    async with client_for(emu) as client:
        assert len(await _all_pages(client, change_scan, 100)) == 2_000
        # The sort property's index answers every page: no record is evaluated.
        assert evaluations == 0
        assert len(await _all_pages(client, other, 100)) == 1_000
        # Evaluated once for the ten pages, not once per page.
        assert evaluations == 2_000


async def test_kept_results_follow_association_changes(emu: HubSpotEmulator,
                                                       client: httpx.AsyncClient) -> None:
    contacts = emu.add_records("contacts", [{"email": f"a{i}@example.com"} for i in range(3)])
    [company] = emu.add_records("companies", [{"name": "Acme"}])
    body = {"filterGroups": [{"filters": [{"propertyName": "associations.company",
                                           "operator": "EQ", "value": company}]}]}
    emu.associate("contacts", contacts[0], "companies", company)
    assert await _all_pages(client, body, 1) == contacts[:1]
    # Associations change records' matches without touching the records themselves.
    emu.associate("contacts", contacts[2], "companies", company)
    assert await _all_pages(client, body, 1) == [contacts[0], contacts[2]]
