"""A mapping that does not fit a side pauses its object sync before anything is synced, with a
configuration error naming the mapping and the fix; the connection's other object syncs keep
running; once the field exists (or the configuration is fixed) the object sync resumes. A
record that failed because of such a mapping recovers once the configuration is fixed.

HubSpot facts: writing a property that does not exist is refused (fact sheet §1.1, §4:
VALIDATION_ERROR with `PROPERTY_DOESNT_EXIST`); a custom property is created with
`POST /crm/v3/properties/{object}` (§7), archived with `DELETE .../{name}`.
"""

from __future__ import annotations

from structlog.testing import capture_logs

from crmsync.control.ops import connections as connection_ops
from crmsync.control.ops import status
from crmsync.emulators.hubspot import HubSpotEmulator
from crmsync.runtime.object_sync import Timing

from .harness import APP_SCHEMA, Env, companies_sync, contacts_sync, make_app_db, running, wait_for

SCHEMA = APP_SCHEMA.replace("    company_name TEXT,\n", "    company_name TEXT,\n    color TEXT,\n")
CUSTOMERS = [{"email": f"c{i}@example.com", "first_name": f"C{i}", "color": f"blue{i}"}
             for i in range(5)]
ORGS = [{"name": "Acme", "domain": "acme.example"}]
# Few wake-ups: the test waits for checks ten minutes apart.
SLOW = Timing(hub_poll_interval=300, app_poll_interval=30)
COLOR = """
[[syncs.mappings]]
hub = "favorite_color"
app = "color"
"""


def create_property(env: Env, name: str = "favorite_color") -> None:
    create_property_in(env.emu, name)


def create_property_in(emu: HubSpotEmulator, name: str = "favorite_color") -> None:
    state = emu.state
    state.registry.create(state.object_type("contacts"), {
        "name": name, "label": "Favorite color", "type": "string", "fieldType": "text",
        "groupName": "contactinformation"}, state.now_ms())


def contacts_status(env: Env):
    return env.daemon.connections["shop"].status.objects["contacts"]


async def test_a_missing_hubspot_property_pauses_only_its_object_sync(tmp_path, slow_autojump):
    db = tmp_path / "app.db"
    make_app_db(db, CUSTOMERS, ORGS, schema=SCHEMA)
    with capture_logs() as logs:
        async with running(tmp_path, app_db=db, timing=SLOW,
                           syncs=contacts_sync(extra=COLOR) + companies_sync()) as env:
            # The other object sync of the connection runs and syncs.
            await env.wait_ready(["companies"])
            await env.eventually(lambda: [r["properties"].get("name")
                                          for r in env.hub("companies")] == ["Acme"])
            await env.eventually(lambda: contacts_status(env).phase == "paused")
            error = contacts_status(env).error
            assert "$.syncs[0].mappings[0].hub: mapping favorite_color ⇄ color" in error
            assert "HubSpot has no contacts property 'favorite_color'" in error
            assert "create it in HubSpot or correct `hub`" in error
            view = await status.status(env.daemon, "shop")
            [contacts] = [o for o in view.connections[0].objects if o.hub_object == "contacts"]
            assert contacts.phase == "paused" and "favorite_color" in contacts.error
            assert view.connections[0].state == "running"

            # Nothing was synced, so nothing failed: no record of it is indexed or written.
            assert env.hub() == []
            assert await env.counts() == {"pending": 0, "syncing": 0, "failed": 0,
                                          "excluded": 0, "queued": 0, "deleted": 0}
            # Checked again later (HubSpot's properties read anew), still paused, logged once.
            env.emu.request_log.clear()
            await env.eventually(lambda: any(path.endswith("/properties/contacts")
                                             for _, path, _ in env.emu.request_log),
                                 timeout=1_300, step=20)
            assert contacts_status(env).phase == "paused"

            # The property is created in HubSpot: the sync resumes by itself.
            create_property(env)
            await env.eventually(lambda: contacts_status(env).phase != "paused",
                                 timeout=1_300, step=20)
            await env.wait_ready(["contacts"])
            await env.eventually(lambda: sorted(
                str(r["properties"].get("favorite_color")) for r in env.hub())
                == [f"blue{i}" for i in range(5)])
            assert contacts_status(env).error == ""
            assert (await env.counts())["failed"] == 0
            assert env.daemon.connections["shop"].status.restarts == 0
    paused = [e for e in logs if e["event"] == "object sync paused: its mappings do not fit"]
    assert len(paused) == 1
    assert paused[0]["log_level"] == "error" and "favorite_color" in paused[0]["problems"][0]


async def test_a_missing_app_column_pauses_until_it_is_added_and_the_config_reloaded(
        tmp_path, slow_autojump):
    db = tmp_path / "app.db"
    make_app_db(db, [{k: v for k, v in c.items() if k != "color"} for c in CUSTOMERS], ORGS,
                schema=APP_SCHEMA)
    # The HubSpot property exists before the daemon starts (created after, it would race
    # the first check, whose answer the hub connector caches).
    async with running(tmp_path, app_db=db, syncs=contacts_sync(extra=COLOR),
                       configure=create_property_in) as env:
        await env.eventually(lambda: contacts_status(env).phase == "paused")
        error = contacts_status(env).error
        assert "$.syncs[0].mappings[0].app: mapping favorite_color ⇄ color" in error
        assert "app object 'customers' has no column 'color'" in error

        env.app_exec("ALTER TABLE customers ADD COLUMN color TEXT")
        env.app_exec("UPDATE customers SET color = 'red' WHERE email = 'c1@example.com'")
        done = await connection_ops.reload(env.daemon)
        assert any("restarted shop" in d for d in done.changes)
        await env.wait_ready(["contacts"])
        await env.eventually(lambda: env.hub_by_email().get("c1@example.com", {}).get(
            "properties", {}).get("favorite_color") == "red")
        assert (await env.counts())["syncing"] == len(CUSTOMERS)


async def test_records_failed_by_a_mapping_recover_once_the_config_is_fixed(
        tmp_path, slow_autojump):
    """The issue's sequel: records failed with PROPERTY_DOESNT_EXIST, and a later first-name
    edit of them never reached HubSpot. Here the property disappears while the sync runs
    (the check before the initial sync cannot see that), records fail, the mapping is
    removed from the configuration: they sync again, edits included."""
    db = tmp_path / "app.db"
    make_app_db(db, CUSTOMERS, ORGS, schema=SCHEMA)

    def configure(emu):
        state = emu.state
        state.registry.create(state.object_type("contacts"), {
            "name": "favorite_color", "label": "Favorite color", "type": "string",
            "fieldType": "text", "groupName": "contactinformation"}, 0)

    async with running(tmp_path, app_db=db, syncs=contacts_sync(extra=COLOR),
                       configure=configure) as env:
        await env.wait_ready()
        assert (await env.counts())["syncing"] == len(CUSTOMERS)
        state = env.emu.state
        state.registry.archive(state.object_type("contacts"), "favorite_color")
        for i in (1, 2):
            env.app_exec("UPDATE customers SET first_name = ?, color = 'green' WHERE email = ?",
                         f"Edited{i}", f"c{i}@example.com")

        async def failed() -> bool:
            return (await env.counts())["failed"] == 2

        await wait_for(failed, timeout=300)
        assert {it.category for it in await env.items(state="failed")} == {"invalid_value"}

        # Fixed in the configuration: the mapping goes.
        cfg = env.daemon.config_path
        cfg.write_text(cfg.read_text().replace(COLOR, ""))
        await connection_ops.reload(env.daemon)

        def edited() -> bool:
            hub = env.hub_by_email()
            return all(hub[f"c{i}@example.com"]["properties"].get("firstname")
                       == f"Edited{i}" for i in (1, 2))

        await env.eventually(edited, timeout=600)

        async def recovered() -> bool:
            return (await env.counts())["failed"] == 0

        await wait_for(recovered, timeout=600)
        assert (await env.counts())["syncing"] == len(CUSTOMERS)
