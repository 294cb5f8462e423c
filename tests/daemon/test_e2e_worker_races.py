"""Two worker batches racing on one record (issue 10 item 5, issue 17 item 7).

The traced interleaving, replayed deterministically: batch A syncs a new app row and creates
its hub record; batch B is handed that hub record (its webhook) while A is still in flight,
looks it up in the store before A committed, and is held in its read of the hub record until
A has committed and left the item gate. B must then see A's link and change nothing: no
second record on either side, no `UNIQUE constraint failed: items.sync_id, items.hub_id` and
no restart of the connection. Contacts, companies, and contacts whose sync also keeps their
company associations.
"""

from __future__ import annotations

from typing import Any

import pytest
import trio
from structlog.testing import capture_logs

from crmsync.runtime import worker as worker_module
from crmsync.runtime.object_sync import Timing

from .harness import companies_sync, contacts_sync, make_app_db, running

SCHEMA = """
CREATE TABLE organisations (
    id INTEGER PRIMARY KEY, name TEXT, domain TEXT, city TEXT, phone TEXT, industry TEXT,
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')));
CREATE TABLE customers (
    id INTEGER PRIMARY KEY, email TEXT, first_name TEXT, last_name TEXT, phone TEXT,
    job_title TEXT, company_name TEXT, company_id INTEGER REFERENCES organisations(id),
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')));
"""
ASSOC = """
[[connections.associations]]
from_object = "customers"
to_object = "organisations"
column = "company_id"
"""
TIMING = Timing(hub_poll_interval=10_000, app_poll_interval=2, workers=2)

CASES = {
    "contacts": dict(
        syncs=contacts_sync(), objects=("contacts",), obj="contacts", table="customers",
        insert="INSERT INTO customers (email, first_name) VALUES ('new@example.com', 'New')",
        key=lambda p: p.get("email") == "new@example.com", extra={}),
    "companies": dict(
        syncs=companies_sync(), objects=("companies",), obj="companies",
        table="organisations",
        insert="INSERT INTO organisations (name, domain) VALUES ('Initech', 'initech.example')",
        key=lambda p: p.get("domain") == "initech.example", extra={}),
    "associations": dict(
        syncs=contacts_sync(extra='associations = ["companies"]\n') + companies_sync(),
        objects=("contacts", "companies"), obj="contacts", table="customers",
        insert="INSERT INTO customers (email, first_name, company_id) VALUES "
               "('new@example.com', 'New', 1)",
        key=lambda p: p.get("email") == "new@example.com",
        extra={"connection_extra": ASSOC}),
}


@pytest.mark.parametrize("case", list(CASES))
async def test_a_batch_that_read_before_another_committed_changes_nothing(
        tmp_path, slow_autojump, monkeypatch, case):
    c: dict[str, Any] = CASES[case]
    db = tmp_path / "app.db"
    make_app_db(db, organisations=[{"name": "Acme", "domain": "acme.example"}],
                customers=[{"email": "ann@example.com", "first_name": "Ann", "company_id": 1}],
                schema=SCHEMA)
    created: list[str] = []
    b_reading, a_left = trio.Event(), trio.Event()

    original_leave = worker_module.ItemGate.leave

    def leave(self: Any, item_ids: Any) -> None:
        original_leave(self, item_ids)
        if b_reading.is_set():
            a_left.set()  # the only batch in the gate while B is held is A

    monkeypatch.setattr(worker_module.ItemGate, "leave", leave)
    with capture_logs() as logs:
        await _race(tmp_path, monkeypatch, c, db, created, b_reading, a_left)
    # B saw A's link before deciding: nothing it decided had to be undone at its commit.
    assert [e for e in logs if e["event"].startswith("sync to be run again")] == []
    assert [e for e in logs if e["log_level"] == "error"] == []


async def _race(tmp_path: Any, monkeypatch: Any, c: dict[str, Any], db: Any,
                created: list[str], b_reading: trio.Event, a_left: trio.Event) -> None:
    async with running(tmp_path, syncs=c["syncs"], app_db=db, webhooks=False, timing=TIMING,
                       config_kwargs=c["extra"]) as env:
        await env.wait_ready(c["objects"])
        handle = env.daemon.handle("shop", c["obj"])
        assert handle is not None
        hub = env.daemon.hub
        create, read = hub.create, hub.read

        async with trio.open_nursery() as nursery:
            async def create_then_hand_to_b(obj: str, inputs: Any) -> Any:
                results = await create(obj, inputs)
                if obj == c["obj"] and not created:
                    created.extend(r.record.id for r in results if r.ok)
                    # B is handed the new hub record (as its webhook would) while A is
                    # still in flight, and A goes on once B is reading it.
                    nursery.start_soon(handle.resync, [("hub", created[0])])
                    await b_reading.wait()
                return results

            async def read_after_a_left(obj: str, ids: Any, props: Any) -> Any:
                if created and created[0] in ids and not b_reading.is_set():
                    b_reading.set()
                    await a_left.wait()
                return await read(obj, ids, props)

            monkeypatch.setattr(hub, "create", create_then_hand_to_b)
            monkeypatch.setattr(hub, "read", read_after_a_left)
            env.app_exec(c["insert"])
            with trio.fail_after(600):
                await a_left.wait()
            await trio.sleep(30)  # both batches end; any retry or restart would show

        assert env.daemon.connections["shop"].status.restarts == 0
        hub_new = [r for r in env.hub(c["obj"]) if c["key"](r["properties"])]
        app_new = [r for r in env.app_rows(c["table"]) if c["key"](r)]
        assert [r["id"] for r in hub_new] == created and len(app_new) == 1
        items = [i for i in await env.items(c["obj"]) if i.hub_id == created[0]]
        assert len(items) == 1 and items[0].app_id == str(app_new[0]["id"])
        assert items[0].state == "syncing"
        if "companies" in c["objects"] and c["obj"] == "contacts":
            acme = next(r["id"] for r in env.hub("companies")
                        if r["properties"].get("domain") == "acme.example")
            assert env.emu.associations("contacts", created[0], "companies") == [acme]


async def test_a_commit_that_breaks_a_unique_index_runs_that_record_again(
        tmp_path, slow_autojump, monkeypatch):
    # Whatever the gate misses (a writer outside it), a unique-index conflict in a commit
    # fails neither the batch nor the connection: that record is decided again from what the
    # store holds now. Here the new hub contact is given an item (as the hub index of an
    # initial sync would) between the worker's decision and its intent commit.
    from crmsync.runtime import processor as processor_module
    from crmsync.store import items as store_items

    db = tmp_path / "app.db"
    make_app_db(db, customers=[{"email": "ann@example.com", "first_name": "Ann"}],
                schema=SCHEMA)
    original = processor_module.Processor._commit_intents
    injected: list[str] = []

    async def commit_after_another_writer(self: Any, works: Any) -> None:
        fresh = [w for w in works if w.item is None and w.hub is not None
                 and w.hub.properties.get("email") == "new@example.com"]
        if fresh and not injected:
            injected.append(fresh[0].hub.id)
            await self.ctx.store.call(store_items.apply_outcomes, self.ctx.sync_id, [
                store_items.Outcome(state="pending", hub_id=fresh[0].hub.id)])
        await original(self, works)

    monkeypatch.setattr(processor_module.Processor, "_commit_intents",
                        commit_after_another_writer)
    async with running(tmp_path, syncs=contacts_sync(), app_db=db, webhooks=False,
                       timing=TIMING) as env:
        await env.wait_ready()
        (hub_id,) = env.emu.add_records("contacts", [{"email": "new@example.com",
                                                      "firstname": "New"}])
        env.daemon.handle("shop", "contacts").poll_now()
        await env.eventually(lambda: "new@example.com" in env.app_by_email(), timeout=120)
        await trio.sleep(30)
        assert injected == [hub_id]
        assert env.daemon.connections["shop"].status.restarts == 0
        assert [r["email"] for r in env.app_rows()].count("new@example.com") == 1
        (item,) = [i for i in await env.items() if i.hub_id == hub_id]
        assert item.state == "syncing"
        assert item.app_id == str(env.app_by_email()["new@example.com"]["id"])


async def test_a_conflicting_commit_in_the_initial_sync_runs_that_record_again(
        tmp_path, slow_autojump, monkeypatch):
    # The same in an initial sync page (pages commit beside each other): the record whose
    # intent insert was refused is synced once more after its page, not left pending.
    from crmsync.runtime import processor as processor_module
    from crmsync.store import items as store_items

    db = tmp_path / "app.db"
    make_app_db(db, customers=[{"email": "ann@example.com", "first_name": "Ann"},
                               {"email": "new@example.com", "first_name": "New"}],
                schema=SCHEMA)
    original = processor_module.Processor._commit_intents
    injected: list[str] = []

    async def commit_after_another_writer(self: Any, works: Any) -> None:
        fresh = [w for w in works if w.item is None and w.app is not None
                 and w.app.properties.get("email") == "new@example.com"]
        if fresh and not injected:
            injected.append(fresh[0].app.id)
            await self.ctx.store.call(store_items.apply_outcomes, self.ctx.sync_id, [
                store_items.Outcome(state="pending", app_id=fresh[0].app.id)])
        await original(self, works)

    monkeypatch.setattr(processor_module.Processor, "_commit_intents",
                        commit_after_another_writer)
    async with running(tmp_path, syncs=contacts_sync(), app_db=db, webhooks=False,
                       timing=TIMING) as env:
        await env.wait_ready()
        assert injected == ["2"]
        assert env.daemon.connections["shop"].status.restarts == 0
        assert sorted(env.hub_by_email()) == ["ann@example.com", "new@example.com"]
        counts = await env.counts()
        assert counts["syncing"] == 2 and counts["pending"] == 0
