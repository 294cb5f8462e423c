"""Object batch endpoints: read, create, update, upsert, archive (fact sheet §1.2–§1.3)."""

from __future__ import annotations

import httpx
import trio
from trio.testing import MockClock

from crmsync.emulators.hubspot import HubSpotEmulator

BATCH = "/crm/v3/objects/contacts/batch"


async def test_batch_read_partial_is_207_with_object_not_found(
    autojump_clock: MockClock, client: httpx.AsyncClient, emu: HubSpotEmulator
) -> None:
    a, b = emu.add_records(
        "contacts", [{"email": "a@example.com", "city": "Oslo"}, {"email": "b@example.com"}]
    )
    with trio.fail_after(5):
        ok = await client.post(
            f"{BATCH}/read", json={"properties": ["city"], "inputs": [{"id": a}, {"id": b}]}
        )
        partial = await client.post(
            f"{BATCH}/read", json={"inputs": [{"id": a}, {"id": "1"}, {"id": "2"}]}
        )
    assert ok.status_code == 200
    body = ok.json()
    assert body["status"] == "COMPLETE" and "startedAt" in body and "completedAt" in body
    assert {r["id"] for r in body["results"]} == {a, b}
    assert body["results"][0]["properties"]["city"] == "Oslo"
    # Unknown ids: 207 with OBJECT_NOT_FOUND (fact sheet §4).
    assert partial.status_code == 207
    p = partial.json()
    assert p["numErrors"] == 1
    [err] = p["errors"]
    assert err["status"] == "error" and err["category"] == "OBJECT_NOT_FOUND"
    assert err["context"]["ids"] == ["1", "2"]
    assert [r["id"] for r in p["results"]] == [a]


async def test_batch_read_by_email_and_archived(
    autojump_clock: MockClock, client: httpx.AsyncClient, emu: HubSpotEmulator
) -> None:
    a, b = emu.add_records("contacts", [{"email": "a@example.com"}, {"email": "b@example.com"}])
    emu.archive_record("contacts", b)
    with trio.fail_after(5):
        by_email = await client.post(
            f"{BATCH}/read", json={"idProperty": "email", "inputs": [{"id": "A@EXAMPLE.COM"}]}
        )
        archived = await client.post(f"{BATCH}/read?archived=true", json={"inputs": [{"id": b}]})
    assert by_email.status_code == 200 and by_email.json()["results"][0]["id"] == a
    assert archived.status_code == 200 and archived.json()["results"][0]["archived"] is True


async def test_more_than_100_inputs_is_a_validation_error(
    autojump_clock: MockClock, client: httpx.AsyncClient
) -> None:
    inputs = [{"properties": {"email": f"c{i}@example.com"}} for i in range(101)]
    with trio.fail_after(5):
        for op, body in (
            ("create", {"inputs": inputs}),
            ("read", {"inputs": [{"id": str(i)} for i in range(101)]}),
            ("update", {"inputs": [{"id": str(i), "properties": {}} for i in range(101)]}),
            (
                "upsert",
                {
                    "inputs": [
                        {"id": f"{i}@x.com", "idProperty": "email", "properties": {}}
                        for i in range(101)
                    ]
                },
            ),
            ("archive", {"inputs": [{"id": str(i)} for i in range(101)]}),
        ):
            r = await client.post(f"{BATCH}/{op}", json=body)
            assert r.status_code == 400, op
            assert r.json()["category"] == "VALIDATION_ERROR"
        ok = await client.post(f"{BATCH}/create", json={"inputs": inputs[:100]})
    assert ok.status_code == 201
    assert len(ok.json()["results"]) == 100


async def test_batch_create_without_trace_ids_fails_whole_on_a_bad_input(
    autojump_clock: MockClock, client: httpx.AsyncClient, emu: HubSpotEmulator
) -> None:
    body = {
        "inputs": [{"properties": {"email": "ok@example.com"}}, {"properties": {"nosuch": "1"}}]
    }
    with trio.fail_after(5):
        r = await client.post(f"{BATCH}/create", json=body)
    assert r.status_code == 400
    assert r.json()["errors"][0]["code"] == "PROPERTY_DOESNT_EXIST"
    assert emu.records("contacts") == []


async def test_batch_create_with_trace_ids_is_multi_status(
    autojump_clock: MockClock, client: httpx.AsyncClient, emu: HubSpotEmulator
) -> None:
    # DOC-OBJ "Multi-status errors for batch create requests": a unique objectWriteTraceId per
    # input turns on 207, failed inputs echo it in errors[].context.objectWriteTraceId.
    body = {
        "inputs": [
            {"objectWriteTraceId": "t1", "properties": {"email": "ok@example.com"}},
            {"objectWriteTraceId": "t2", "properties": {"missing": "1"}},
        ]
    }
    with trio.fail_after(5):
        r = await client.post(f"{BATCH}/create", json=body)
    assert r.status_code == 207
    out = r.json()
    assert out["numErrors"] == 1
    assert out["errors"][0]["context"]["objectWriteTraceId"] == ["t2"]
    assert out["errors"][0]["category"] == "VALIDATION_ERROR"
    assert out["errors"][0]["message"].startswith("Property values were not valid: ")
    assert [r["objectWriteTraceId"] for r in out["results"]] == ["t1"]
    assert len(emu.records("contacts")) == 1


async def test_batch_update_200_and_207(
    autojump_clock: MockClock, client: httpx.AsyncClient, emu: HubSpotEmulator
) -> None:
    a, b = emu.add_records("contacts", [{"email": "a@example.com"}, {"email": "b@example.com"}])
    with trio.fail_after(5):
        ok = await client.post(
            f"{BATCH}/update",
            json={
                "inputs": [
                    {"id": a, "properties": {"city": "Oslo"}},
                    {"id": "b@example.com", "idProperty": "email", "properties": {"city": "Rome"}},
                ]
            },
        )
        partial = await client.post(
            f"{BATCH}/update",
            json={
                "inputs": [
                    {"id": a, "properties": {"city": "Paris"}},
                    {"id": b, "properties": {"lifecyclestage": "nope"}},
                    {"id": "77", "properties": {"city": "x"}},
                ]
            },
        )
        dupes = await client.post(
            f"{BATCH}/update",
            json={"inputs": [{"id": a, "properties": {}}, {"id": a, "properties": {}}]},
        )
    assert ok.status_code == 200
    assert {r["properties"]["city"] for r in ok.json()["results"]} == {"Oslo", "Rome"}
    assert partial.status_code == 207
    errors = {e["context"]["ids"][0]: e["category"] for e in partial.json()["errors"]}
    assert errors == {b: "VALIDATION_ERROR", "77": "OBJECT_NOT_FOUND"}
    assert [r["properties"]["city"] for r in partial.json()["results"]] == ["Paris"]
    assert dupes.status_code == 400 and "Duplicate IDs" in dupes.json()["message"]


async def test_upsert_by_email_sets_new_flag(
    autojump_clock: MockClock, client: httpx.AsyncClient, emu: HubSpotEmulator
) -> None:
    [a] = emu.add_records("contacts", [{"email": "luke@example.com"}])
    body = {
        "inputs": [
            {"id": "Luke@example.com", "idProperty": "email", "properties": {"phone": "555"}},
            {"id": "lorelai@example.com", "idProperty": "email", "properties": {"phone": "777"}},
        ]
    }
    with trio.fail_after(5):
        r = await client.post(f"{BATCH}/upsert", json=body)
    assert r.status_code == 200
    results = {x["properties"]["email"]: x for x in r.json()["results"]}
    assert results["luke@example.com"]["new"] is False and results["luke@example.com"]["id"] == a
    assert results["lorelai@example.com"]["new"] is True
    assert results["lorelai@example.com"]["properties"]["phone"] == "777"


async def test_upsert_by_email_is_all_or_nothing(
    autojump_clock: MockClock, client: httpx.AsyncClient, emu: HubSpotEmulator
) -> None:
    # "Partial upserts are not supported when idProperty=email" (fact sheet §1.3).
    body = {
        "inputs": [
            {"id": "new@example.com", "idProperty": "email", "properties": {"phone": "1"}},
            {
                "id": "bad@example.com",
                "idProperty": "email",
                "properties": {"lifecyclestage": "nope"},
            },
        ]
    }
    with trio.fail_after(5):
        r = await client.post(f"{BATCH}/upsert", json=body)
    assert r.status_code == 400
    assert emu.records("contacts") == []


async def test_upsert_by_custom_unique_property_is_partial(
    autojump_clock: MockClock, client: httpx.AsyncClient, emu: HubSpotEmulator
) -> None:
    with trio.fail_after(5):
        created = await client.post(
            "/crm/v3/properties/deals",
            json={
                "name": "system_a_id",
                "label": "System A id",
                "type": "string",
                "fieldType": "text",
                "groupName": "dealinformation",
                "hasUniqueValue": True,
            },
        )
        assert created.status_code == 201
        base = {"pipeline": "default", "dealstage": "qualifiedtobuy", "dealname": "D"}
        r = await client.post(
            "/crm/v3/objects/deals/batch/upsert",
            json={
                "inputs": [
                    {"id": "A-1", "idProperty": "system_a_id", "properties": base},
                    {
                        "id": "A-2",
                        "idProperty": "system_a_id",
                        "properties": {**base, "dealstage": "nosuchstage"},
                    },
                ]
            },
        )
        again = await client.post(
            "/crm/v3/objects/deals/batch/upsert",
            json={
                "inputs": [
                    {"id": "A-1", "idProperty": "system_a_id", "properties": {"amount": "5"}}
                ]
            },
        )
    assert r.status_code == 207
    assert [x["new"] for x in r.json()["results"]] == [True]
    assert r.json()["errors"][0]["context"]["ids"] == ["A-2"]
    assert again.status_code == 200 and again.json()["results"][0]["new"] is False
    assert again.json()["results"][0]["properties"]["system_a_id"] == "A-1"


async def test_batch_archive_is_204(
    autojump_clock: MockClock, client: httpx.AsyncClient, emu: HubSpotEmulator
) -> None:
    a, b = emu.add_records("contacts", [{"email": "a@example.com"}, {"email": "b@example.com"}])
    with trio.fail_after(5):
        r = await client.post(f"{BATCH}/archive", json={"inputs": [{"id": a}, {"id": "999"}]})
    assert r.status_code == 204
    assert [x["id"] for x in emu.records("contacts")] == [b]
