"""Writes decided from a picture that is no longer true by the time they land: an edit made on
the written side while the sync's batch was in flight is not overwritten blindly (issue 17
item 3: the app database refuses a stale update)."""

import sqlite3

import trio

from crmsync.connectors.sqlite import SqliteAppConnector
from crmsync.runtime.object_sync import Timing

from .harness import contacts_sync, running

TIMING = Timing(hub_poll_interval=10_000, app_poll_interval=2)


async def test_an_app_edit_made_while_a_hub_value_is_written_is_not_overwritten(
        tmp_path, slow_autojump, monkeypatch):
    original = SqliteAppConnector.update
    edited = {"done": False}
    db = tmp_path / "app.db"

    async def update_after_an_app_edit(self, object_name, inputs, expected=None):
        if not edited["done"] and any("first_name" in ch for _, ch in inputs):
            edited["done"] = True
            # The app's user edits the same field after the sync read the row and before
            # its write lands (a slow batch).
            conn = sqlite3.connect(db)
            conn.execute("UPDATE customers SET first_name = 'App-Ann'")
            conn.commit()
            conn.close()
        if expected is None:
            return await original(self, object_name, inputs)
        return await original(self, object_name, inputs, expected)

    monkeypatch.setattr(SqliteAppConnector, "update", update_after_an_app_edit)
    async with running(tmp_path, syncs=contacts_sync(winner="app"), timing=TIMING,
                       customers=[{"email": "ann@example.com", "first_name": "Ann"}]) as env:
        await env.wait_ready()
        (hub,) = env.hub()
        env.emu.update_record("contacts", hub["id"], {"firstname": "Hub-Ann"})
        await env.eventually(lambda: edited["done"], timeout=120)
        # Both sides changed the field: the conflict rule decides, here for the app's value.
        await env.eventually(
            lambda: env.hub_by_email()["ann@example.com"]["properties"]["firstname"]
            == "App-Ann", timeout=120)
        await trio.sleep(30)
        assert env.app_by_email()["ann@example.com"]["first_name"] == "App-Ann"
        assert env.hub_by_email()["ann@example.com"]["properties"]["firstname"] == "App-Ann"
        (item,) = await env.items()
        assert item.state == "syncing"
