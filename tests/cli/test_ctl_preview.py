"""preview / approve: an object sync started in preview shows its plan and writes nothing
until `crmsync ctl approve`; and `watch` shows it."""

import json

import trio

from ..daemon.harness import contacts_sync
from .ctl_env import ctl_daemon, ctl_json, run_ctl, wait_for

CUSTOMERS = [
    {"email": "ann@example.com", "first_name": "Ann", "last_name": "App"},
    {"email": "bob@example.com", "first_name": "Bob"},
    {"email": "app-only@example.com", "first_name": "Solo"},
    {"email": "BOB@example.com", "first_name": "Bobby"},  # a duplicate of bob
    {"email": "broken", "first_name": "Nope"},  # excluded
]
HUB = [
    {"email": "ann@example.com", "firstname": "Annie", "lastname": "App"},  # conflict
    {"email": "bob@example.com", "firstname": "Bob"},
    {"email": "hub-only@example.com", "firstname": "Hubert"},
]


async def phase(c):
    st = await ctl_json(c, "status")
    return st["connections"][0]["objects"][0]["phase"]


async def test_preview_then_approve(tmp_path):
    with trio.fail_after(40):
        async with ctl_daemon(tmp_path, syncs=contacts_sync(preview=True), customers=CUSTOMERS,
                              hub_contacts=HUB) as c:
            env = c.env

            async def previewed():
                return await phase(c) == "previewed"

            await wait_for(previewed)
            st = (await ctl_json(c, "status"))["connections"][0]["objects"][0]
            assert st["preview"] is True and st["running"] is False

            plan = await ctl_json(c, "preview", "shop")
            (obj,) = plan["objects"]
            assert obj["hub_object"] == "contacts" and obj["ready"] is True
            assert obj["preview"] is True and obj["phase"] == "previewed"
            # ann's first name differs: a conflict, and the update the hub's value makes.
            assert obj["summary"] == {"match": 2, "create_hub": 1, "create_app": 1,
                                      "duplicate": 1, "exclude": 1, "conflict": 1,
                                      "update_app": 1}
            kinds = {e["kind"] for e in obj["entries"]}
            assert kinds == set(obj["summary"])
            conflict = next(e for e in obj["entries"] if e["kind"] == "conflict")
            assert "firstname" in conflict["detail"] and "hub wins" in conflict["detail"]
            assert (await ctl_json(c, "preview", "shop", "customers"))["objects"] == \
                plan["objects"]
            code, out, _ = await run_ctl(c.socket, "preview", "shop")
            assert code == 0 and "creates in the hub" in out and "approve" in out
            # Nothing written to either side yet.
            assert len(env.hub()) == 3 and len(env.app_rows()) == 5

            ok = await ctl_json(c, "approve", "shop", "contacts")
            assert ok == {"op": "approve", "connection": "shop", "objects": [
                {"hub_object": "contacts", "approved": True,
                 "message": "approved: the initial sync starts"}]}
            await env.wait_ready(timeout=20)
            assert len(env.hub()) == 4 and len(env.app_rows()) == 6
            assert env.app_by_email()["ann@example.com"]["first_name"] == "Annie"
            again = await ctl_json(c, "approve", "shop")
            assert again["objects"][0]["approved"] is False
            assert again["objects"][0]["message"] == "already approved"
            after = (await ctl_json(c, "preview", "shop"))["objects"][0]
            assert after["phase"] == "complete" and after["ready"] is False

            # watch: a few frames as JSON lines, then a human frame.
            code, out, _ = await run_ctl(c.socket, "watch", "--count", "2", "--interval",
                                         "0.05", "--json")
            frames = [json.loads(line) for line in out.splitlines()]
            assert code == 0 and len(frames) == 2
            assert all(f["op"] == "status" for f in frames)
            code, out, _ = await run_ctl(c.socket, "watch", "--count", "1")
            assert code == 0 and "contacts ⇄ customers" in out and "in sync" in out


async def test_approve_refuses_until_the_preview_is_ready_and_without_preview(tmp_path):
    with trio.fail_after(30):
        async with ctl_daemon(tmp_path, customers=CUSTOMERS[:2], hub_contacts=HUB[:1]) as c:
            await c.env.wait_ready()
            res = await ctl_json(c, "approve", "shop")
            assert res["objects"][0]["approved"] is False
            assert "not in preview" in res["objects"][0]["message"]
            plan = await ctl_json(c, "preview", "shop")
            assert plan["objects"][0]["summary"] == {} and plan["objects"][0]["ready"] is False
            code, out, _ = await run_ctl(c.socket, "preview", "shop")
            assert code == 0 and "did not start in preview" in out


async def test_a_one_way_preview_lists_the_values_it_overwrites(tmp_path):
    # app -> hub only, HubSpot the configured winner: ann's hub first name is overwritten by
    # the app's (the direction decides); the preview still shows it as a conflicting field,
    # with the side whose value is copied.
    with trio.fail_after(40):
        async with ctl_daemon(tmp_path, syncs=contacts_sync(direction="to_hub", preview=True),
                              customers=CUSTOMERS, hub_contacts=HUB) as c:
            async def previewed():
                return await phase(c) == "previewed"

            await wait_for(previewed)
            (obj,) = (await ctl_json(c, "preview", "shop"))["objects"]
            assert obj["summary"]["conflict"] == 1
            conflict = next(e for e in obj["entries"] if e["kind"] == "conflict")
            assert conflict["detail"] == "firstname: 'Annie' -> 'Ann' (app wins)"
