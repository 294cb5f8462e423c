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
    """The requests about deals other than the one create (a read of one, or of a page)."""
    return {k: v for k, v in calls.items() if "/objects/deals" in k
            and k != "POST /crm/v3/objects/deals/batch/create"}


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

        async def all_done() -> bool:
            return await env.webhooks_settled(["deals"])

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


async def test_a_hub_association_written_to_the_app_answers_the_partner_s_wait(
        tmp_path, slow_autojump, monkeypatch):
    """A company made in HubSpot and associated there with a linked contact (fact sheet
    §8.2: an associationChange event for each end). The contact's sync comes first and
    waits for the company, not linked yet; the company's sync then finds the association on
    the hub side with both ends linked and writes it to the app. That answers the contact's
    wait — its partner is found by its hub id, the side the association came from — so the
    contact is not synced again for it (a read of its associations on both sides, to decide
    nothing)."""
    from crmsync.runtime.associations import AssociationSyncer
    from crmsync.store import associations as store_assoc

    from .test_e2e_associations import ASSOC, SYNCS, TIMING, setup

    db = setup(tmp_path, [{"email": "cy@example.com", "first_name": "Cy"}], [])
    synced: list[str] = []
    sync_links = AssociationSyncer.sync_links

    async def spy(self, linked, *args, **kwargs):
        synced.append(self.ctx.hub_object)
        return await sync_links(self, linked, *args, **kwargs)

    monkeypatch.setattr(AssociationSyncer, "sync_links", spy)
    async with running(tmp_path, syncs=SYNCS, app_db=db, timing=TIMING,
                       config_kwargs={"connection_extra": ASSOC}) as env:
        await env.wait_ready(["contacts", "companies"])

        async def all_done() -> bool:
            return await env.webhooks_settled(["contacts", "companies"])

        await wait_for(all_done, timeout=120, step=1.0)  # the initial sync's echoes
        # The company's association sync is held back until the contact's saw it unlinked.
        waited = trio.Event()
        order: list[str] = []
        sync_pair = AssociationSyncer._sync_pair

        async def in_order(self, pair, *args, **kwargs):
            if self.ctx.hub_object == "companies":
                await waited.wait()
            order.append(self.ctx.hub_object)
            out = await sync_pair(self, pair, *args, **kwargs)
            if self.ctx.hub_object == "contacts":
                waited.set()
            return out

        monkeypatch.setattr(AssociationSyncer, "_sync_pair", in_order)
        synced.clear()
        cy = env.hub_by_email()["cy@example.com"]["id"]
        (hooli,) = env.emu.add_records("companies", [{"name": "Hooli",
                                                      "domain": "hooli.example"}])
        env.emu.associate("contacts", cy, "companies", hooli)

        def linked() -> bool:
            orgs = {r["id"]: r["name"] for r in env.app_rows("organisations")}
            return orgs.get(env.app_by_email()["cy@example.com"]["company_id"]) == "Hooli"

        await env.eventually(linked, timeout=120)
        await wait_for(lambda: _nothing_waits(env, store_assoc), timeout=60, step=1.0)
        await wait_for(all_done, timeout=120, step=1.0)
        await trio.sleep(30)  # a sync asked for by the last commit would run now
        assert order == ["contacts", "companies"]
        assert sorted(synced) == ["companies", "contacts"]


async def _nothing_waits(env, store_assoc) -> bool:
    return await env.daemon.store.read(store_assoc.pending_count, "shop") == 0
