"""Record owners end to end: `hubspot_owner_id` ⇄ the app's rep email through the emulator's
`/crm/v3/owners`, both ways; an owner HubSpot does not know syncs the record without its owner
and a warning in the history, and once the owner exists the next sync assigns it."""

from __future__ import annotations

import msgspec
import trio

from crmsync.store import items as store_items

from .harness import contacts_sync, make_app_db, running

SCHEMA = """
CREATE TABLE customers (
    id INTEGER PRIMARY KEY, email TEXT, first_name TEXT, last_name TEXT, rep_email TEXT,
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE TABLE organisations (
    id INTEGER PRIMARY KEY, name TEXT, domain TEXT,
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
"""

OWNER_MAPPING = """
[[syncs.mappings]]
hub = "hubspot_owner_id"
app = "rep_email"
transform = "owner"
"""


async def test_owners_sync_both_ways_and_an_unknown_one_is_a_warning(tmp_path, slow_autojump):
    app_db = tmp_path / "app.db"
    make_app_db(app_db, [
        {"email": "ann@example.com", "first_name": "Ann", "rep_email": None},
        {"email": "bob@example.com", "first_name": "Bob", "rep_email": "Rita@Example.com"},
        {"email": "cy@example.com", "first_name": "Cy", "rep_email": "sam@example.com"},
    ], schema=SCHEMA)
    owners: dict[str, str] = {}

    def configure(emu) -> None:
        for email in ("rita@example.com", "lou@example.com"):
            owners[email] = str(emu.state.owners.add({"email": email}).id)
        emu.add_records("contacts", [{"email": "ann@example.com", "firstname": "Ann",
                                      "hubspot_owner_id": owners["lou@example.com"]}])

    async with running(tmp_path, syncs=contacts_sync(extra=OWNER_MAPPING), app_db=app_db,
                       configure=configure) as env:
        await env.wait_ready()
        hub = env.hub_by_email()
        app = env.app_by_email()
        # HubSpot's owner reaches the app as an email; the app's rep reaches HubSpot as the
        # owner's id (hubspot-onboarding.md §4).
        assert app["ann@example.com"]["rep_email"] == "lou@example.com"
        assert hub["bob@example.com"]["properties"]["hubspot_owner_id"] == owners[
            "rita@example.com"]
        # Sam has no HubSpot seat: Cy is created in HubSpot without an owner, not failed.
        assert hub["cy@example.com"]["properties"].get("hubspot_owner_id") in (None, "")
        counts = await env.counts()
        assert counts["syncing"] == 3 and counts["failed"] == 0
        [cy] = [i for i in await env.items() if i.app_id == "3"]
        assert env.daemon.store is not None
        history = await env.daemon.store.read(store_items.history_for, "shop/contacts",
                                              cy.item_id)
        details = " | ".join(str(h[5]) for h in history)
        assert ("warning: hubspot_owner_id not written to the hub: sam@example.com is not a "
                "HubSpot owner") in details

        # Sam gets a seat; Cy's next change brings the owner along: the owners are read
        # again because a record names one the directory does not know (at most every 30 s).
        sam = str(env.emu.state.owners.add({"email": "sam@example.com"}).id)
        await trio.sleep(31)
        env.app_exec("UPDATE customers SET first_name = 'Cyrus', updated_at = "
                     "strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '+1 second') WHERE email = ?",
                     "cy@example.com")
        await env.eventually(lambda: env.hub_by_email()["cy@example.com"]["properties"].get(
            "hubspot_owner_id") == sam, timeout=120)
        assert env.hub_by_email()["cy@example.com"]["properties"]["firstname"] == "Cyrus"

        # A new owner in HubSpot for Ann reaches the app.
        env.emu.update_record("contacts", env.hub_by_email()["ann@example.com"]["id"],
                              {"hubspot_owner_id": owners["rita@example.com"]})
        await env.eventually(lambda: env.app_by_email()["ann@example.com"]["rep_email"]
                             == "rita@example.com", timeout=120)
    decoded = [msgspec.json.decode(h[4]) for h in history]
    assert all(isinstance(d, list) for d in decoded)


USERS_SCHEMA = """
CREATE TABLE customers (
    id INTEGER PRIMARY KEY, email TEXT, first_name TEXT, last_name TEXT, rep_id INTEGER,
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE TABLE organisations (
    id INTEGER PRIMARY KEY, name TEXT, domain TEXT,
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE TABLE users (
    id INTEGER PRIMARY KEY, login TEXT, work_email TEXT,
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
INSERT INTO users (id, login, work_email) VALUES (1, 'rita', 'rita@example.com'),
                                                (2, 'sam', 'sam@example.com');
"""

OWNER_THROUGH_USERS = """
[[syncs.mappings]]
hub = "hubspot_owner_id"
app = "rep_id"
transform = "owner"
owner_object = "users"
owner_email_field = "work_email"
"""


async def test_owners_through_the_apps_users_table(tmp_path, slow_autojump):
    """The app holds a user id (`customers.rep_id` → `users.id`): owners are paired by the
    email of that user row, both ways, and one the other side lacks is a warning."""
    app_db = tmp_path / "app.db"
    make_app_db(app_db, [
        {"email": "bob@example.com", "first_name": "Bob", "rep_id": 1},
        {"email": "cy@example.com", "first_name": "Cy", "rep_id": 2},
    ], schema=USERS_SCHEMA)
    owners: dict[str, str] = {}

    def configure(emu) -> None:
        for email in ("Rita@Example.com", "lou@example.com"):
            owners[email.lower()] = str(emu.state.owners.add({"email": email}).id)
        emu.add_records("contacts", [
            {"email": "ann@example.com", "firstname": "Ann",
             "hubspot_owner_id": owners["rita@example.com"]},
            {"email": "dee@example.com", "firstname": "Dee",
             "hubspot_owner_id": owners["lou@example.com"]}])

    users_table = '[[connections.tables]]\nobject = "users"\ntable = "users"\n'
    async with running(tmp_path, syncs=contacts_sync(extra=OWNER_THROUGH_USERS), app_db=app_db,
                       configure=configure,
                       config_kwargs={"connection_extra": users_table}) as env:
        await env.wait_ready()
        hub = env.hub_by_email()
        app = env.app_by_email()
        # App user 1 is rita@example.com: HubSpot gets Rita's owner id; Rita in HubSpot
        # reaches the app as user 1.
        assert hub["bob@example.com"]["properties"]["hubspot_owner_id"] == owners[
            "rita@example.com"]
        assert app["ann@example.com"]["rep_id"] == 1
        # Sam (user 2) has no HubSpot seat, Lou no app user: both records sync without the
        # owner, each with a warning in its history.
        assert hub["cy@example.com"]["properties"].get("hubspot_owner_id") in (None, "")
        assert app["dee@example.com"]["rep_id"] is None
        counts = await env.counts()
        assert counts["syncing"] == 4 and counts["failed"] == 0
        assert env.daemon.store is not None
        details = []
        for item in await env.items():
            if item.app_id is not None and app_of(env, item.app_id) in ("cy@example.com",
                                                                         "dee@example.com"):
                history = await env.daemon.store.read(store_items.history_for,
                                                      "shop/contacts", item.item_id)
                details.append(" | ".join(str(h[5]) for h in history))
        assert len(details) == 2
        assert any("sam@example.com is not a HubSpot owner" in d for d in details), details
        assert any("hubspot_owner_id not written to the app: lou@example.com is not a user "
                   "in the app's owners table" in d for d in details), details


def app_of(env, app_id: str) -> str | None:
    return next((email for email, row in env.app_by_email().items()
                 if str(row["id"]) == str(app_id)), None)
