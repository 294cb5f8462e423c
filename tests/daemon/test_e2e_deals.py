"""Deals end to end: stages mapped by configuration and by similar labels, deals in unmapped
stages excluded with the reason, unknown stages failed with a hint, stage changes moving
through the map both ways."""

from structlog.testing import capture_logs

from crmsync.runtime.object_sync import Timing

from .harness import make_app_db, running

SCHEMA = """
CREATE TABLE pipelines (id TEXT PRIMARY KEY, label TEXT);
CREATE TABLE stages (id TEXT PRIMARY KEY, pipeline_id TEXT, label TEXT, display_order INTEGER);
CREATE TABLE opportunities (
    id INTEGER PRIMARY KEY, name TEXT, amount REAL, close_date TEXT, pipeline TEXT, stage TEXT,
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')));
INSERT INTO pipelines VALUES ('sales', 'Sales');
INSERT INTO stages VALUES ('appt', 'sales', 'Appointment Scheduled', 1),
    ('qual', 'sales', 'Qualified to buy', 2), ('nego', 'sales', 'Negotiation', 3),
    ('won', 'sales', 'closed-won', 4), ('lost', 'sales', 'Closed Lost', 5);
CREATE TABLE customers (id INTEGER PRIMARY KEY, email TEXT, updated_at TEXT);
CREATE TABLE organisations (id INTEGER PRIMARY KEY, name TEXT, domain TEXT, updated_at TEXT);
"""

CONNECTION = """
[[connections.tables]]
object = "opportunities"
table = "opportunities"
pipeline_column = "pipeline"
stage_column = "stage"

[connections.pipelines]
pipelines_table = "pipelines"
stages_table = "stages"
"""

DEALS = """
[[syncs]]
connection = "shop"
hub_object = "deals"
app_object = "opportunities"
unique_property = "dealname"
auto_map_stages = true

[[syncs.stage_map]]
hub_pipeline = "default"
hub_stage = "appointmentscheduled"
app_pipeline = "sales"
app_stage = "appt"
"""


def opportunities(env):
    return {r["name"]: r for r in env.app_rows("opportunities")}


def hub_deals(env):
    return {r["properties"]["dealname"]: r for r in env.hub("deals")}


async def test_deals_sync_in_mapped_stages_only(tmp_path, slow_autojump):
    db = tmp_path / "app.db"
    make_app_db(db, schema=SCHEMA)
    import sqlite3
    conn = sqlite3.connect(db)
    conn.executemany("INSERT INTO opportunities (name, amount, pipeline, stage) VALUES (?,?,?,?)",
                     [("Alpha", 100, "sales", "appt"), ("Beta", 2500.5, "sales", "won"),
                      ("Gamma", 10, "sales", "nego"), ("Delta", 5, "sales", "ghost")])
    conn.commit()
    conn.close()

    def configure(emu):
        emu.add_records("deals", [
            {"dealname": "Hub One", "pipeline": "default", "dealstage": "contractsent"},
            {"dealname": "Hub Two", "pipeline": "default", "dealstage": "closedlost",
             "amount": "42"}])

    with capture_logs() as logs:
        async with running(tmp_path, syncs=DEALS, app_db=db, configure=configure,
                           timing=Timing(hub_poll_interval=10_000, app_poll_interval=2),
                           config_kwargs={"connection_extra": CONNECTION}) as env:
            await env.wait_ready(["deals"])
            hub = hub_deals(env)
            app = opportunities(env)
            # Mapped by configuration (appt) and by similar labels (closed-won, Closed Lost).
            assert hub["Alpha"]["properties"]["dealstage"] == "appointmentscheduled"
            assert hub["Beta"]["properties"]["dealstage"] == "closedwon"
            assert hub["Beta"]["properties"]["amount"] == "2500.5"
            assert app["Hub Two"]["stage"] == "lost" and app["Hub Two"]["pipeline"] == "sales"
            # Unmapped stages: excluded with the reason, on either side; unknown: failed.
            assert "Gamma" not in hub and "Hub One" not in app
            excluded = {i.detail: i.category for i in await env.items("deals", "excluded")}
            assert sorted(excluded.values()) == ["stage_not_mapped", "stage_not_mapped"]
            assert any("'nego'" in d and "Negotiation" in d for d in excluded)
            assert any("'contractsent'" in d for d in excluded)
            (failed,) = await env.items("deals", "failed")
            assert failed.category == "unmapped_stage" and "'ghost'" in failed.detail

            # A stage change on either side moves the other through the map.
            env.app_exec("UPDATE opportunities SET stage = 'won' WHERE name = 'Alpha'")
            await env.eventually(
                lambda: hub_deals(env)["Alpha"]["properties"]["dealstage"] == "closedwon")
            two = hub_deals(env)["Hub Two"]["id"]
            env.emu.update_record("deals", two, {"dealstage": "qualifiedtobuy"})
            env.daemon.handle("shop", "deals").poll_now()
            await env.eventually(lambda: opportunities(env)["Hub Two"]["stage"] == "qual")
    warnings = [e for e in logs if e["event"] == "unmapped deal stages: deals in them are excluded"]
    assert warnings and any("nego" in s for s in warnings[0]["app"])
    assert any("contractsent" in s for s in warnings[0]["hub"])
