"""Deal pipelines (fact sheet §6, DOC-PIPE)."""

from __future__ import annotations

import httpx
import trio
from trio.testing import MockClock

from crmsync.emulators.hubspot import HubSpotEmulator

PIPES = "/crm/v3/pipelines/deals"


async def test_default_sales_pipeline(autojump_clock: MockClock, client: httpx.AsyncClient) -> None:
    with trio.fail_after(5):
        r = await client.get(PIPES)
    [pipeline] = r.json()["results"]
    assert "paging" not in r.json()
    assert pipeline["id"] == "default" and pipeline["label"] == "Sales Pipeline"
    assert pipeline["createdAt"] == "1970-01-01T00:00:00.000Z"  # default pipelines: epoch 0
    stages = {s["id"]: s["metadata"] for s in pipeline["stages"]}
    assert list(stages) == [
        "appointmentscheduled",
        "qualifiedtobuy",
        "presentationscheduled",
        "decisionmakerboughtin",
        "contractsent",
        "closedwon",
        "closedlost",
    ]
    assert stages["closedwon"] == {"probability": "1.0", "isClosed": "true"}
    assert stages["closedlost"] == {"probability": "0.0", "isClosed": "true"}
    assert stages["contractsent"] == {"probability": "0.9", "isClosed": "false"}


async def test_create_update_pipeline_and_stages(
    autojump_clock: MockClock, client: httpx.AsyncClient
) -> None:
    body = {
        "displayOrder": 3,
        "label": "Renewals",
        "stages": [
            {"label": "Open", "displayOrder": 0, "metadata": {"probability": "0.2"}},
            {"label": "Won", "displayOrder": 1, "metadata": {"probability": "1.0"}},
        ],
    }
    with trio.fail_after(5):
        created = await client.post(PIPES, json=body)
        assert created.status_code == 201
        pid = created.json()["id"]
        patched = await client.patch(f"{PIPES}/{pid}", json={"label": "Renewals 2"})
        stage = await client.post(
            f"{PIPES}/{pid}/stages",
            json={"label": "Lost", "displayOrder": 2, "metadata": {"probability": "0.0"}},
        )
        sid = stage.json()["id"]
        stage_patch = await client.patch(
            f"{PIPES}/{pid}/stages/{sid}", json={"label": "Lost for good"}
        )
        stages = await client.get(f"{PIPES}/{pid}/stages")
        no_probability = await client.post(
            f"{PIPES}/{pid}/stages", json={"label": "X", "displayOrder": 3}
        )
        duplicate_label = await client.post(
            f"{PIPES}/{pid}/stages", json={"label": "Open", "metadata": {"probability": "0.5"}}
        )
        listing = await client.get(PIPES)
    assert patched.json()["label"] == "Renewals 2"
    assert stage.status_code == 201
    assert stage_patch.json()["label"] == "Lost for good"
    assert [s["label"] for s in stages.json()["results"]] == ["Open", "Won", "Lost for good"]
    # Deal stages require metadata.probability; labels are unique per pipeline (DOC-PIPE).
    assert no_probability.status_code == 400
    assert duplicate_label.status_code == 400
    assert [p["label"] for p in listing.json()["results"]] == ["Sales Pipeline", "Renewals 2"]


async def test_deleting_a_stage_in_use_fails(
    autojump_clock: MockClock, client: httpx.AsyncClient, emu: HubSpotEmulator
) -> None:
    [deal] = emu.add_records(
        "deals", [{"dealname": "D", "pipeline": "default", "dealstage": "contractsent"}]
    )
    with trio.fail_after(5):
        r = await client.delete(f"{PIPES}/default/stages/contractsent")
        unused = await client.delete(f"{PIPES}/default/stages/decisionmakerboughtin")
    assert r.status_code == 400
    body = r.json()
    # The shape of DOC-PIPE's example.
    assert body["category"] == "VALIDATION_ERROR"
    assert body["subCategory"] == "PipelineError.STAGE_ID_IN_USE"
    assert (
        body["message"] == f"Stage IDs: [contractsent] are being referenced by object IDs: [{deal}]"
    )
    assert body["context"] == {"stageIds": ["[contractsent]"], "objectIds": [f"[{deal}]"]}
    assert unused.status_code == 204


async def test_pipeline_delete_validates_references_when_asked(
    autojump_clock: MockClock, client: httpx.AsyncClient, emu: HubSpotEmulator
) -> None:
    with trio.fail_after(5):
        pid = (
            await client.post(
                PIPES,
                json={
                    "label": "P",
                    "displayOrder": 1,
                    "stages": [{"label": "S", "metadata": {"probability": "0.5"}}],
                },
            )
        ).json()
        stage_id = pid["stages"][0]["id"]
        emu.add_records("deals", [{"dealname": "D", "pipeline": pid["id"], "dealstage": stage_id}])
        refused = await client.delete(
            f"{PIPES}/{pid['id']}", params={"validateReferencesBeforeDelete": "true"}
        )
        deleted = await client.delete(f"{PIPES}/{pid['id']}")
        gone = await client.get(f"{PIPES}/{pid['id']}")
    assert (
        refused.status_code == 400
        and refused.json()["subCategory"] == "PipelineError.STAGE_ID_IN_USE"
    )
    assert deleted.status_code == 204
    assert gone.status_code == 404


async def test_deal_stage_writes_are_checked_against_the_pipeline(
    autojump_clock: MockClock, client: httpx.AsyncClient
) -> None:
    with trio.fail_after(5):
        bad = await client.post(
            "/crm/v3/objects/deals",
            json={"properties": {"dealname": "D", "pipeline": "default", "dealstage": "nosuch"}},
        )
        bad_pipeline = await client.post(
            "/crm/v3/objects/deals",
            json={"properties": {"dealname": "D", "pipeline": "p9", "dealstage": "closedwon"}},
        )
        ok = await client.post(
            "/crm/v3/objects/deals",
            json={"properties": {"dealname": "D", "pipeline": "default", "dealstage": "closedwon"}},
        )
        move = await client.patch(
            f"/crm/v3/objects/deals/{ok.json()['id']}", json={"properties": {"dealstage": "other"}}
        )
    assert bad.status_code == 400
    assert bad.json()["errors"][0]["code"] == "INVALID_OPTION"
    assert bad.json()["errors"][0]["context"]["propertyName"] == ["dealstage"]
    assert bad_pipeline.status_code == 400
    assert ok.status_code == 201
    assert move.status_code == 400
