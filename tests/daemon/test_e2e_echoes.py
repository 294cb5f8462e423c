"""Webhook echoes end to end (issue 16, runtime/echoes.py): HubSpot sends an event for every
change, ours included (fact sheet §8.2); the events of a record the sync created itself —
its creation, and each property it wrote, a date reported as the instant HubSpot stores —
read nothing. Counts of requests at the emulator are behaviour (a user's daily HubSpot
budget), not timing."""

from __future__ import annotations

import sqlite3

import trio

from crmsync.emulators.hubspot.state import Change
from crmsync.emulators.hubspot.webhooks import WebhookDispatcher
from crmsync.runtime.object_sync import Timing
from crmsync.store import inbox as store_inbox

from .harness import running, wait_for
from .test_e2e_api_requests import by_endpoint
from .test_e2e_deals import CONNECTION, DEALS, SCHEMA

TIMING = Timing(hub_poll_interval=10_000, app_poll_interval=2)


def _app_db(tmp_path):
    db = tmp_path / "app.db"
    conn = sqlite3.connect(db)
    conn.executescript(SCHEMA)
    conn.commit()
    conn.close()
    return db


def _deal_reads(calls) -> dict[str, int]:
    return {k: v for k, v in calls.items() if "/crm/v3/objects/deals" in k
            and not k.endswith(("/batch/create", "/batch/update")) and not k.startswith(
                ("POST /crm/v3/objects/deals ", "PATCH "))}


async def test_events_of_a_deal_the_sync_created_read_nothing(tmp_path, slow_autojump,
                                                              monkeypatch):
    """A deal created in HubSpot from the app, its close date written as the app's
    YYYY-MM-DD: HubSpot stores it as an instant and its propertyChange event reports
    "2026-01-01T00:00:00.000Z" (fact sheet §7: dates are midnight-UTC epoch ms or ISO). Its
    creation event and its property events are echoes: no read of the deal. A close date
    changed in HubSpot to another day is no echo: it reaches the app."""
    db = _app_db(tmp_path)
    sent: list[Change] = []
    notify = WebhookDispatcher.notify

    def noted(self: WebhookDispatcher, change: Change) -> None:
        sent.append(change)
        notify(self, change)

    monkeypatch.setattr(WebhookDispatcher, "notify", noted)
    async with running(tmp_path, syncs=DEALS, app_db=db, timing=TIMING,
                       config_kwargs={"connection_extra": CONNECTION}) as env:
        await env.wait_ready(["deals"])
        dispatcher = env.emu.dispatcher
        assert dispatcher is not None

        async def all_done() -> bool:
            waiting = await env.daemon.store.read(store_inbox.count_waiting,
                                                  ["hub:shop:deals"])
            return not dispatcher.pending and dispatcher.in_flight == 0 and waiting == 0

        env.emu.request_log.clear()
        env.app_exec("INSERT INTO opportunities (name, amount, close_date, pipeline, stage) "
                     "VALUES ('Alpha', 100, '2026-01-01', 'sales', 'appt')")
        await env.eventually(lambda: any(r["properties"].get("dealname") == "Alpha"
                                         for r in env.hub("deals")))
        deal = next(r for r in env.hub("deals") if r["properties"]["dealname"] == "Alpha")
        assert deal["properties"]["closedate"] == "2026-01-01T00:00:00.000Z"
        # The deal's events were sent and handled.
        mine = [c for c in sent if str(c.object_id) == deal["id"]]
        assert {c.kind for c in mine} == {"creation", "propertyChange"}
        assert ("closedate", "2026-01-01T00:00:00.000Z") in {
            (c.property_name, c.property_value) for c in mine}
        await wait_for(all_done, timeout=120, step=1.0)
        await trio.sleep(10)
        calls = by_endpoint(env.emu.request_log)
        assert calls["POST /crm/v3/objects/deals/batch/create"] == 1
        assert _deal_reads(calls) == {}
        assert (await env.counts("deals"))["syncing"] == 1

        # Another day set in HubSpot is synced to the app.
        env.emu.update_record("deals", deal["id"], {"closedate": "2026-02-03"})
        await env.eventually(lambda: {r["name"]: r for r in env.app_rows("opportunities")}
                             ["Alpha"]["close_date"] == "2026-02-03", timeout=120)
