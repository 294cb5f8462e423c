"""Issue 16 end to end: a contact and its company created together in the app are linked by
their two object syncs at once; whichever links second finds its association written and its
wait answered by the other's sync, and its record is not read again from HubSpot for it.
Requests are counted at the emulator per endpoint (what a user's daily HubSpot budget pays
for), not timed."""

from typing import Any

import pytest
import trio

from crmsync.runtime.associations import AssociationSyncer
from crmsync.store import associations as store_assoc

from .harness import running, wait_for
from .test_e2e_api_requests import by_endpoint
from .test_e2e_associations import ASSOC, SYNCS, TIMING, setup

N = 6


class BothEndsWait:
    """Holds the end of the first association sync of each of the two object syncs (before
    its link commit) until the other's has ended too: each found its partners not linked
    yet, so both ends wait for each other, as when two object syncs link a contact and its
    company at once."""

    def __init__(self) -> None:
        self.armed = False
        self.arrived: set[str] = set()
        self.both = trio.Event()

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        sync_links = AssociationSyncer.sync_links
        barrier = self

        async def held(self: AssociationSyncer, *args: Any, **kwargs: Any) -> dict[str, str]:
            failed = await sync_links(self, *args, **kwargs)
            obj = self.ctx.hub_object
            if barrier.armed and obj not in barrier.arrived and not barrier.both.is_set():
                barrier.arrived.add(obj)
                if len(barrier.arrived) == 2:
                    barrier.both.set()
                await barrier.both.wait()
            return failed

        monkeypatch.setattr(AssociationSyncer, "sync_links", held)


async def test_contacts_and_companies_linked_at_once_are_not_read_again_for_their_waits(
        tmp_path, slow_autojump, monkeypatch):
    barrier = BothEndsWait()
    barrier.install(monkeypatch)
    db = setup(tmp_path, [], [])
    async with running(tmp_path, syncs=SYNCS, app_db=db, timing=TIMING, webhooks=False,
                       config_kwargs={"connection_extra": ASSOC}) as env:
        await env.wait_ready(["contacts", "companies"])
        env.emu.request_log.clear()
        barrier.armed = True
        # Each company and its contact appear in one app transaction: both object syncs
        # see them at their next poll and link them at once.
        for i in range(N):
            env.app_exec(f"INSERT INTO organisations (id, name, domain) VALUES ({i + 1}, "
                         f"'Org{i}', 'org{i}.example')")
            env.app_exec(f"INSERT INTO customers (email, first_name, company_id) VALUES "
                         f"('p{i}@example.com', 'P{i}', {i + 1})")

        def associated() -> bool:
            hub = env.hub_by_email()
            names = {r["id"]: r["properties"]["name"] for r in env.hub("companies")}
            for i in range(N):
                rec = hub.get(f"p{i}@example.com")
                if rec is None or [names.get(c) for c in env.emu.associations(
                        "contacts", rec["id"], "companies")] != [f"Org{i}"]:
                    return False
            return True

        await env.eventually(associated)
        assert barrier.both.is_set()

        async def settled() -> bool:
            assert env.daemon.store is not None
            return (await env.daemon.store.read(store_assoc.pending_count, "shop") == 0
                    and (await env.counts("contacts")).get("syncing") == N
                    and (await env.counts("companies")).get("syncing") == N)

        await wait_for(settled, timeout=120, step=1.0)
        # The app kept each contact's company (its foreign key, what created the pairs).
        orgs = {r["id"]: r["name"] for r in env.app_rows("organisations")}
        assert {r["email"]: orgs.get(r["company_id"]) for r in env.app_rows()} == {
            f"p{i}@example.com": f"Org{i}" for i in range(N)}
        calls = by_endpoint(env.emu.request_log)
        # Created, never read back: each end was sent again for its wait once the other
        # linked; the first synced its associations alone, which answered the second's
        # wait; neither was synced whole (with the marker path off: one batch read each).
        assert calls["POST /crm/v3/objects/contacts/batch/read"] == 0
        assert calls["POST /crm/v3/objects/companies/batch/read"] == 0
