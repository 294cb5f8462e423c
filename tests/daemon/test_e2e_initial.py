"""Initial sync end to end: hub index -> app pass -> hub pass against the HubSpot emulator and
a SQLite app, in each direction, with exclusions, duplicates, preview and the notification."""

import json
import sys

from crmsync.store import initial as store_initial

from .harness import companies_sync, contacts_sync, running

CUSTOMERS = [
    {"email": "ann@example.com", "first_name": "Ann", "last_name": "Lee", "phone": "111"},
    {"email": "bob@example.com", "first_name": "Bob", "last_name": "Ng"},
    {"email": " ANN@Example.com ", "first_name": "Ann", "last_name": "Again"},  # duplicate
    {"email": "not-an-email", "first_name": "X"},  # invalid
    {"email": None, "first_name": "No", "last_name": "Mail"},  # no email
]
HUB = [
    {"email": "ann@example.com", "firstname": "Annie"},
    {"email": "carl@example.com", "firstname": "Carl", "lastname": "Cole"},
]


async def test_both_ways_pairs_creates_and_reports(tmp_path, slow_autojump):
    async with running(tmp_path, customers=CUSTOMERS, hub_contacts=HUB) as env:
        await env.wait_ready()
        hub = env.hub_by_email()
        rows = env.app_rows()
        app = {r["email"]: r for r in rows}  # exact emails: the duplicate differs in case
        # ann paired: hub wins the conflicting first name, empty fields filled both ways.
        assert hub["ann@example.com"]["properties"]["lastname"] == "Lee"
        assert hub["ann@example.com"]["properties"]["phone"] == "111"
        assert app["ann@example.com"]["first_name"] == "Annie"
        # bob created in the hub, carl created in the app: one record each, no duplicates.
        assert hub["bob@example.com"]["properties"]["firstname"] == "Bob"
        assert app["carl@example.com"]["last_name"] == "Cole"
        assert len(env.hub()) == 3
        assert len(env.app_rows()) == 6
        counts = await env.counts()
        assert counts == {"syncing": 3, "failed": 1, "excluded": 2, "pending": 0,
                          "queued": 0, "deleted": 0}
        failed = await env.items(state="failed")
        assert [(i.category, i.detail) for i in failed] == [
            ("duplicate", "same match key as app record 1")]
        excluded = sorted(i.category for i in await env.items(state="excluded"))
        assert excluded == ["invalid_email", "no_email"]


async def test_to_hub_only_never_writes_the_app(tmp_path, slow_autojump):
    async with running(tmp_path, syncs=contacts_sync(direction="to_hub", winner="hub"),
                       customers=CUSTOMERS[:2], hub_contacts=HUB) as env:
        await env.wait_ready()
        before = env.app_rows()
        hub = env.hub_by_email()
        # One-way to the hub: the app's values win, whatever the conflict winner says.
        assert hub["ann@example.com"]["properties"]["firstname"] == "Ann"
        assert hub["bob@example.com"]["properties"]["firstname"] == "Bob"
        assert [r["email"] for r in before] == ["ann@example.com", "bob@example.com"]
        assert before[0]["first_name"] == "Ann"
        hub_only = [i for i in await env.items(state="excluded") if i.category == "one_way"]
        assert len(hub_only) == 1  # carl stays in the hub only


async def test_to_app_only_never_writes_the_hub(tmp_path, slow_autojump):
    async with running(tmp_path, syncs=contacts_sync(direction="to_app", winner="app"),
                       customers=CUSTOMERS[:2], hub_contacts=HUB) as env:
        await env.wait_ready()
        hub = env.hub_by_email()
        assert set(hub) == {"ann@example.com", "carl@example.com"}
        assert hub["ann@example.com"]["properties"].get("lastname") in (None, "")
        app = env.app_by_email()
        assert app["ann@example.com"]["first_name"] == "Annie"
        assert app["carl@example.com"]["first_name"] == "Carl"


async def test_companies_match_by_name_or_domain(tmp_path, slow_autojump):
    orgs = [
        {"name": "ACME", "domain": "https://www.acme.example/about"},  # domain match
        {"name": "Globex Inc.", "domain": None},  # name match
        {"name": "Initech", "domain": "initech.example"},  # app only
        {"name": "Acme Holdings", "domain": "acme.example"},  # duplicate by domain
    ]
    hub = [{"name": "Acme Corp", "domain": "acme.example"}, {"name": "Globex", "domain": ""}]
    async with running(tmp_path, syncs=companies_sync(), organisations=orgs,
                       hub_companies=hub) as env:
        await env.wait_ready(["companies"])
        names = sorted(r["properties"]["name"] for r in env.hub("companies"))
        assert names == ["Acme Corp", "Globex", "Initech"]
        counts = await env.counts("companies")
        assert counts["syncing"] == 3 and counts["failed"] == 1


async def test_preview_writes_nothing_until_approved(tmp_path, slow_autojump):
    async with running(tmp_path, syncs=contacts_sync(preview=True), customers=CUSTOMERS,
                       hub_contacts=HUB) as env:
        store = env.daemon.store
        await env.eventually(lambda: env.daemon.connections["shop"].status.objects[
            "contacts"].phase == "previewed")
        plan = await store.read(store_initial.plan_summary, "shop/contacts")
        assert plan["match"] == 1
        assert plan["create_hub"] == 1 and plan["create_app"] == 1
        assert plan["duplicate"] == 1 and plan["exclude"] == 2
        assert plan["conflict"] == 1  # ann's first name differs
        assert len(env.hub()) == 2 and len(env.app_rows()) == 5
        assert await store.call(store_initial.approve, "shop/contacts")
        env.daemon.handle("shop", "contacts").approve()
        await env.wait_ready()
        assert len(env.hub()) == 3 and len(env.app_rows()) == 6


async def test_completion_notification_runs_the_command(tmp_path, slow_autojump):
    out = tmp_path / "notified.json"
    cmd = json.dumps([sys.executable, "-c",
                      f"import sys; open({str(out)!r}, 'wb').write(sys.stdin.buffer.read())"])
    async with running(tmp_path, customers=CUSTOMERS[:1], hub_contacts=HUB,
                       config_kwargs={"daemon_extra": f"[daemon.notify]\ncommand = {cmd}"}) as env:
        await env.wait_ready()
        await env.eventually(out.exists)
        note = json.loads(out.read_text())
        assert note["event"] == "initial_sync_complete"
        assert note["connection"] == "shop" and note["hub_object"] == "contacts"
        assert note["counts"]["syncing"] == 2
