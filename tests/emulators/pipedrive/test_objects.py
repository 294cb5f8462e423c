"""Persons, organizations and deals through API v2: the envelope, record shapes, strict
validation and soft deletes (fact sheet A.3, A.7)."""

from __future__ import annotations

import httpx
import pytest
import trio
from trio.testing import MockClock

from crmsync.emulators.pipedrive import PipedriveEmulator

from .conftest import V2, client_for, make_emulator

HEX40 = set("0123456789abcdef")


async def test_person_create_get_list_in_the_envelope(
    autojump_clock: MockClock, client: httpx.AsyncClient
) -> None:
    with trio.fail_after(5):
        created = await client.post(
            f"{V2}/persons",
            json={
                "name": "Ada Lovelace",
                "emails": [
                    {"value": "ada@example.com"},
                    {"value": "a@home.example", "label": "home"},
                ],
            },
        )
        pid = created.json()["data"]["id"]
        got = await client.get(f"{V2}/persons/{pid}")
        listed = await client.get(f"{V2}/persons")
    assert created.status_code == 200 and created.json()["success"] is True
    person = got.json()["data"]
    # Shape of a v2 person (A.3); name split into first and last.
    assert {
        "id", "name", "first_name", "last_name", "owner_id", "org_id", "add_time",
        "update_time", "emails", "phones", "is_deleted", "visible_to", "label_ids",
        "picture_id", "custom_fields",
    } == set(person)  # fmt: skip
    assert (person["first_name"], person["last_name"]) == ("Ada", "Lovelace")
    # Only `value` is required, label defaults to work, the first becomes primary (A.3).
    assert person["emails"] == [
        {"value": "ada@example.com", "primary": True, "label": "work"},
        {"value": "a@home.example", "primary": False, "label": "home"},
    ]
    assert person["add_time"] == "2023-11-14T22:13:20Z"  # RFC 3339, UTC (A.3)
    assert listed.json()["data"] == [person]
    assert listed.json()["additional_data"] == {"next_cursor": None}


async def test_first_and_last_name_make_the_name(
    autojump_clock: MockClock, client: httpx.AsyncClient
) -> None:
    with trio.fail_after(5):
        r = await client.post(f"{V2}/persons", json={"first_name": "Grace", "last_name": "Hopper"})
        missing = await client.post(f"{V2}/persons", json={"first_name": "Grace"})
        pid = r.json()["data"]["id"]
        renamed = await client.patch(f"{V2}/persons/{pid}", json={"last_name": "Murray"})
    assert r.json()["data"]["name"] == "Grace Hopper"
    assert missing.status_code == 400
    assert renamed.json()["data"]["name"] == "Grace Murray"


@pytest.mark.parametrize(
    ("body", "why"),
    [
        ({"name": "A", "visible_to": "3"}, "no numbers from strings (A.3)"),
        ({"name": "A", "emails": [{"value": "a@x", "primary": 1}]}, "no 1/0 booleans"),
        ({"name": "A", "owner_id": True}, "a boolean is not an integer"),
        ({"name": "A", "emails": [{"value": "a", "primary": True}, {"value": "b", "primary": True}]}, "one primary"),
        ({"name": "A", "nickname": "x"}, "unknown keys are refused"),
        ({"name": "A", "visible_to": 2}, "visible_to is 1, 3, 5 or 7"),
        ({"name": "A", "org_id": 999}, "a reference names a live record"),
        ({"emails": [{"value": "a@x"}]}, "a name is required"),
    ],
)  # fmt: skip
async def test_strict_validation(
    autojump_clock: MockClock, client: httpx.AsyncClient, body: dict[str, object], why: str
) -> None:
    with trio.fail_after(5):
        r = await client.post(f"{V2}/persons", json=body)
    assert r.status_code == 400, why
    err = r.json()
    # The error envelope (A.7).
    assert err["success"] is False and err["data"] is None and err["additional_data"] is None
    assert isinstance(err["error"], str) and isinstance(err["error_info"], str)


async def test_soft_delete_then_purge_after_30_days(
    autojump_clock: MockClock, client: httpx.AsyncClient
) -> None:
    with trio.fail_after(40 * 86400):
        pid = (await client.post(f"{V2}/persons", json={"name": "Ann"})).json()["data"]["id"]
        await trio.sleep(5)
        deleted = await client.delete(f"{V2}/persons/{pid}")
        got = (await client.get(f"{V2}/persons/{pid}")).json()["data"]
        listed = (await client.get(f"{V2}/persons")).json()["data"]
        by_ids = (await client.get(f"{V2}/persons", params={"ids": str(pid)})).json()["data"]
        again = await client.delete(f"{V2}/persons/{pid}")
        patch = await client.patch(f"{V2}/persons/{pid}", json={"name": "B"})
        await trio.sleep(30 * 86400)
        purged = await client.get(f"{V2}/persons/{pid}")
    assert deleted.json() == {"success": True, "data": {"id": pid}}
    # DELETE sets is_deleted; update_time becomes the delete time (A.3).
    assert got["is_deleted"] is True and got["update_time"] == "2023-11-14T22:13:25Z"
    assert listed == [] and by_ids == []
    assert again.status_code == 404 and patch.status_code == 404
    assert purged.status_code == 404 and purged.json()["error"] == "Person not found"


async def test_post_cannot_create_a_deleted_record(
    autojump_clock: MockClock, client: httpx.AsyncClient
) -> None:
    with trio.fail_after(5):
        r = await client.post(f"{V2}/deals", json={"title": "x", "is_deleted": True})
        ok = await client.post(f"{V2}/deals", json={"title": "x", "is_deleted": False})
        patch = await client.patch(
            f"{V2}/deals/{ok.json()['data']['id']}", json={"is_deleted": True}
        )
    assert r.status_code == 400 and ok.status_code == 200 and patch.status_code == 400


async def test_deal_stage_pipeline_status_and_archive(
    autojump_clock: MockClock, client: httpx.AsyncClient
) -> None:
    with trio.fail_after(60):
        pipeline = (await client.post(f"{V2}/pipelines", json={"name": "Sales"})).json()["data"]
        stage = (
            await client.post(f"{V2}/stages", json={"name": "Open", "pipeline_id": pipeline["id"]})
        ).json()["data"]
        deal = (
            await client.post(f"{V2}/deals", json={"title": "Big", "stage_id": stage["id"]})
        ).json()["data"]
        default = (await client.post(f"{V2}/deals", json={"title": "Default"})).json()["data"]
        mismatch = await client.post(
            f"{V2}/deals", json={"title": "x", "stage_id": stage["id"], "pipeline_id": 1}
        )
        await trio.sleep(2)
        won = (await client.patch(f"{V2}/deals/{deal['id']}", json={"status": "won"})).json()
        archived = await client.patch(f"{V2}/deals/{deal['id']}", json={"is_archived": True})
        listed = (await client.get(f"{V2}/deals")).json()["data"]
        archive_list = (await client.get(f"{V2}/deals/archived")).json()["data"]
        edit_archived = await client.patch(f"{V2}/deals/{deal['id']}", json={"title": "y"})
    assert deal["pipeline_id"] == pipeline["id"]  # a stage implies its pipeline
    assert (default["pipeline_id"], default["stage_id"]) == (1, 1)
    assert mismatch.status_code == 400
    assert won["data"]["won_time"] == won["data"]["close_time"] == "2023-11-14T22:13:22Z"
    assert archived.json()["data"]["is_archived"] is True
    # Deal lists leave archived deals out; /deals/archived has them; not editable (A.1).
    assert [d["id"] for d in listed] == [default["id"]]
    assert [d["id"] for d in archive_list] == [deal["id"]]
    assert edit_archived.status_code == 400


async def test_deleted_deals_listed_with_status_deleted(
    autojump_clock: MockClock, client: httpx.AsyncClient
) -> None:
    with trio.fail_after(5):
        a = (await client.post(f"{V2}/deals", json={"title": "A"})).json()["data"]["id"]
        b = (await client.post(f"{V2}/deals", json={"title": "B"})).json()["data"]["id"]
        await client.delete(f"{V2}/deals/{a}")
        default = (await client.get(f"{V2}/deals")).json()["data"]
        deleted = (await client.get(f"{V2}/deals", params={"status": "deleted"})).json()["data"]
        both = (await client.get(f"{V2}/deals", params={"status": "open,deleted"})).json()["data"]
    # "If set to deleted, deals that have been deleted up to 30 days ago" (PD-spec-v2).
    assert [d["id"] for d in default] == [b]
    assert [d["id"] for d in deleted] == [a] and deleted[0]["is_deleted"] is True
    assert [d["id"] for d in both] == [a, b]


async def test_custom_fields_nest_and_validate(autojump_clock: MockClock) -> None:
    emu = make_emulator()
    money = emu.add_custom_field("deals", "Budget", "monetary")
    tier = emu.add_custom_field("deals", "Tier", "enum", ["Gold", "Silver"])
    tags = emu.add_custom_field("deals", "Tags", "set", ["a", "b", "c"])
    note = emu.add_custom_field("deals", "Note", "varchar")
    gold = emu.state.registry("deals").get(tier).options[0]["id"]  # type: ignore[index]
    async with client_for(emu) as client:
        with trio.fail_after(5):
            r = await client.post(
                f"{V2}/deals",
                json={
                    "title": "T",
                    "custom_fields": {
                        money: {"value": 2300, "currency": "EUR"},
                        tier: gold,
                        note: "hello",
                    },
                },
            )
            did = r.json()["data"]["id"]
            labels = await client.get(f"{V2}/deals/{did}", params={"include_option_labels": "true"})
            trimmed = await client.get(f"{V2}/deals/{did}", params={"custom_fields": note})
            cleared = await client.patch(f"{V2}/deals/{did}", json={"custom_fields": {note: None}})
            bad_money = await client.patch(
                f"{V2}/deals/{did}", json={"custom_fields": {money: "5"}}
            )
            empty_set = await client.patch(f"{V2}/deals/{did}", json={"custom_fields": {tags: []}})
            unknown = await client.patch(f"{V2}/deals/{did}", json={"custom_fields": {"x" * 40: 1}})
    assert len(money) == 40 and set(money) <= HEX40  # 40-hex keys (A.3)
    custom = r.json()["data"]["custom_fields"]
    # Monetary as {value, currency}; text plain (A.3).
    assert custom[money] == {"value": 2300, "currency": "EUR"} and custom[note] == "hello"
    assert custom[tier] == gold
    assert labels.json()["data"]["custom_fields"][tier] == {"id": gold, "label": "Gold"}
    assert trimmed.json()["data"]["custom_fields"] == {note: "hello"}
    assert cleared.json()["data"]["custom_fields"][note] is None
    # "sending an empty array [] is not supported" for set fields (PD-spec-v2).
    assert {bad_money.status_code, empty_set.status_code, unknown.status_code} == {400}


def test_custom_field_keys_differ_per_account_and_repeat_per_seed() -> None:
    keys = [
        PipedriveEmulator(seed=s).add_custom_field("persons", "Tier", "varchar") for s in (1, 1, 2)
    ]
    assert keys[0] == keys[1] != keys[2]


async def test_organization_shape(autojump_clock: MockClock, client: httpx.AsyncClient) -> None:
    with trio.fail_after(5):
        r = await client.post(
            f"{V2}/organizations",
            json={
                "name": "Acme",
                "website": "https://acme.example",
                "address": {"value": "1 Road"},
            },
        )
    org = r.json()["data"]
    assert org["website"] == "https://acme.example" and org["address"] == {"value": "1 Road"}
    assert "domain" not in org  # no domain field on organizations (A.3)


async def test_unknown_path_and_method(
    autojump_clock: MockClock, client: httpx.AsyncClient
) -> None:
    with trio.fail_after(5):
        v2_only = await client.get("/v2/persons")  # only the /api/v2/ prefix (A.1)
        wrong_method = await client.put(f"{V2}/persons/1", json={})
    assert v2_only.status_code == 404 and wrong_method.status_code == 405
