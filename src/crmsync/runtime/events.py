"""Event sync, one way (app -> hub): the app's contact events become custom behavioral events
on the hub contact with the same email.

An event is sent only when its contact already exists in the hub — found through the hub
index by email, even if that contact's own sync failed — and never twice: ids already sent
are skipped, and the hub deduplicates a resend (after a crash before the commit) by the uuid
derived from the event id. Events for contacts the hub does not have are counted and skipped
with the reason. The cursor advances in the transaction that records what was sent.
"""

from __future__ import annotations

import sqlite3

import trio

from crmsync.connectors.base import AppEvent, SupportsEventIntake, SupportsEventSource
from crmsync.engine.match_keys import contact_keys, normalize_email
from crmsync.runtime.context import ObjectSyncContext
from crmsync.runtime.requests import RequestReceiver, wait_asked
from crmsync.store import cursors as store_cursors
from crmsync.store import events as store_events
from crmsync.store import items as store_items

CURSOR = "events"
PAGE = 500


class EventSync:
    def __init__(self, ctx: ObjectSyncContext, interval: float) -> None:
        self.ctx = ctx
        self.interval = interval

    async def run_once(self) -> int:
        """Handle every event available now; returns how many were looked at."""
        ctx = self.ctx
        app, hub = ctx.app, ctx.hub
        if not isinstance(app, SupportsEventSource) or not isinstance(hub, SupportsEventIntake):
            raise RuntimeError("event sync needs an app with events and a hub that accepts them")
        cursor = await ctx.store.read(store_cursors.get_cursor, ctx.sync_id, CURSOR)
        seen = 0
        while True:
            events, nxt = await app.events_since(cursor, PAGE)
            if not events:
                break
            seen += len(events)
            # Event ids are the app's: namespaced by connection before they reach the hub.
            fresh_ids = await ctx.store.read(store_events.unsent, ctx.sync_id,
                                             [e.event_id for e in events])
            fresh = [e for e in events if e.event_id in fresh_ids]
            contacts = await self._hub_contacts({e.contact_key for e in fresh})
            to_send: list[tuple[str, AppEvent]] = []
            ids: list[str] = []
            skipped = invalid = 0
            for e in fresh:
                hub_id = contacts.get(normalize_email(e.contact_key) or "")
                if hub_id is None:
                    skipped += 1
                    continue
                ids.append(e.event_id)
                to_send.append((hub_id, AppEvent(f"{ctx.connection}:{e.event_id}",
                                                 e.contact_key, e.name, e.occurred_at,
                                                 e.properties)))
            results = await hub.send_events(to_send) if to_send else []
            sent = [i for i, r in zip(ids, results, strict=True) if r.ok]
            invalid = sum(1 for r in results if not r.ok)
            if skipped or invalid:
                ctx.log.info("events skipped", no_contact_in_hub=skipped, refused=invalid)

            def commit(conn: sqlite3.Connection, sent: list[str] = sent, nxt: str = nxt,
                       skipped: int = skipped, invalid: int = invalid) -> None:
                store_events.record_sent(conn, ctx.sync_id, sent)
                if skipped:
                    store_events.count(conn, ctx.sync_id, "skipped_no_contact", skipped)
                if invalid:
                    store_events.count(conn, ctx.sync_id, "refused", invalid)
                store_cursors.set_cursor(conn, ctx.sync_id, CURSOR, nxt)

            await ctx.store.call(commit)
            if sent:
                ctx.log.info("events sent", events=len(sent))
            cursor = nxt
            if len(events) < PAGE:
                break
        return seen

    async def _hub_contacts(self, emails: set[str]) -> dict[str, str]:
        """Hub contact id by normalised email: the hub index first, then the hub itself for
        contacts the index does not know yet."""
        ctx = self.ctx
        keys = {k: e for e in emails for k in contact_keys(e)}
        holders = await ctx.store.read(store_items.key_holders, ctx.sync_id, "hub", list(keys))
        out: dict[str, str] = {}
        for key, item in holders.items():
            if item.hub_id:
                out[key.removeprefix("email:")] = item.hub_id
        for key in keys:
            email = key.removeprefix("email:")
            if email in out:
                continue
            found = await ctx.hub.find(ctx.hub_object, "email", email, ["email"])
            live = [r for r in found if not r.archived]
            if live:
                out[email] = live[0].id
        return out

    async def run(self, requests: RequestReceiver, *,
                  task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Every `interval`, or at once when asked (the app announced new events)."""
        async with requests:
            task_status.started()
            while True:
                await self.run_once()
                if not await wait_asked(requests, self.interval):
                    return
