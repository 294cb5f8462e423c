"""Initial sync end to end with a PostgreSQL app (the SQLite suite's scenarios): pairs,
creates on both sides, duplicates and exclusions reported, each direction respected."""

from __future__ import annotations

from .harness import contacts_sync
from .pg_harness import running_pg
from .test_e2e_initial import CUSTOMERS, HUB


async def test_both_ways_pairs_creates_and_reports(tmp_path, pg_db):
    async with running_pg(tmp_path, pg_db, customers=CUSTOMERS, hub_contacts=HUB) as env:
        await env.wait_ready()
        hub = env.hub_by_email()
        app = {r["email"]: r for r in env.app_rows()}
        assert hub["ann@example.com"]["properties"]["lastname"] == "Lee"
        assert hub["ann@example.com"]["properties"]["phone"] == "111"
        assert app["ann@example.com"]["first_name"] == "Annie"
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


async def test_to_hub_only_never_writes_the_app(tmp_path, pg_db):
    async with running_pg(tmp_path, pg_db, syncs=contacts_sync(direction="to_hub"),
                          customers=CUSTOMERS[:2], hub_contacts=HUB) as env:
        await env.wait_ready()
        hub = env.hub_by_email()
        assert hub["ann@example.com"]["properties"]["firstname"] == "Ann"
        assert [(r["email"], r["first_name"]) for r in env.app_rows()] == [
            ("ann@example.com", "Ann"), ("bob@example.com", "Bob")]
        # crmsync wrote nothing: its change log holds no entry of its own.
        assert pg_db.execute("SELECT count(*) FROM crmsync.changelog "
                             "WHERE origin = 'crmsync'") == [(0,)]
