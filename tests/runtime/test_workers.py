"""Sync workers as actors: they receive batches from the lock queue, sync them (both sides
read, decided, written through the batch writers, committed with the inbox ids that rode
along) and report each batch done; a record that fails alone is failed and the rest of its
batch syncs; an error about the connection ends the worker and fails its batch's waiters."""

from __future__ import annotations

import pytest
import trio

from crmsync.connectors.base import ConnectorError
from crmsync.runtime.lock_queue import RecordLockQueue, SyncFailed
from crmsync.runtime.processor import Processor
from crmsync.runtime.worker import ItemGate, run_worker
from crmsync.store import inbox as store_inbox
from crmsync.store import items as store_items

from .rig import rig


async def test_a_worker_syncs_its_batches_and_acknowledges_their_events(tmp_path,
                                                                       slow_autojump):
    async with rig(tmp_path, hub_contacts=[{"email": "ann@example.com", "firstname": "Ann"},
                                           {"email": "bob@example.com", "firstname": "Bob"}]
                   ) as r:
        ctx = r.ctx
        await ctx.store.call(store_inbox.add_events, "hub:shop:contacts",
                             [("e1", b"{}"), ("e2", b"{}")])
        (i1, _), (i2, _) = await ctx.store.read(store_inbox.pending_events,
                                                "hub:shop:contacts", 0, 10)
        ids = [rec["id"] for rec in r.emu.records("contacts")]
        queue = RecordLockQueue(workers=1)
        async with trio.open_nursery() as nursery:
            await nursery.start(queue.run)
            await nursery.start(run_worker, ctx, queue.worker_ends(), Processor(ctx),
                                ItemGate())
            async with queue.changes() as changes:
                with trio.fail_after(300):
                    await changes.sync([("hub", ids[0]), ("hub", ids[1])],
                                       {("hub", ids[0]): [i1, i2]})
            assert sorted(row["email"] for row in r.app_rows()) == ["ann@example.com",
                                                                     "bob@example.com"]
            assert await ctx.store.read(store_inbox.pending_events, "hub:shop:contacts",
                                        0, 10) == []
            counts = await ctx.store.read(store_items.counts, ctx.sync_id)
            assert counts["syncing"] == 2
            assert queue.statistics().running == 0
            nursery.cancel_scope.cancel()


async def test_a_record_that_fails_alone_is_failed_and_its_batch_syncs(tmp_path,
                                                                       slow_autojump,
                                                                       monkeypatch):
    async with rig(tmp_path, hub_contacts=[{"email": "ann@example.com"},
                                           {"email": "bob@example.com"}]) as r:
        ctx = r.ctx
        ann, bob = [rec["id"] for rec in r.emu.records("contacts")]
        original = Processor._decide

        def decide(self, w):
            if w.hub is not None and w.hub.id == bob:
                raise ValueError("a defect met with bob's record")
            original(self, w)

        monkeypatch.setattr(Processor, "_decide", decide)
        queue = RecordLockQueue(workers=1)
        async with trio.open_nursery() as nursery:
            await nursery.start(queue.run)
            await nursery.start(run_worker, ctx, queue.worker_ends(), Processor(ctx))
            async with queue.changes() as changes:
                with trio.fail_after(300):
                    await changes.sync([("hub", ann), ("hub", bob)])
            assert [row["email"] for row in r.app_rows()] == ["ann@example.com"]
            (failed,) = await ctx.store.read(store_items.list_items, ctx.sync_id, "failed",
                                             None, 10)
            assert failed.hub_id == bob and failed.category == "internal"
            nursery.cancel_scope.cancel()


async def test_a_connection_error_ends_the_worker_and_fails_its_waiters(tmp_path,
                                                                        slow_autojump,
                                                                        monkeypatch):
    async with rig(tmp_path, hub_contacts=[{"email": "ann@example.com"}]) as r:
        ctx = r.ctx
        (ann,) = [rec["id"] for rec in r.emu.records("contacts")]

        async def down(*args, **kwargs):
            raise ConnectorError("transient", "api_unavailable", "HubSpot answered 503")

        monkeypatch.setattr(ctx.hub, "read", down)
        queue = RecordLockQueue(workers=1)
        failed = trio.Event()
        outcome: list[BaseException] = []
        async with trio.open_nursery() as outer:
            await outer.start(queue.run)
            changes = queue.changes()

            async def wait_for_sync():
                try:
                    await changes.sync([("hub", ann)])
                except SyncFailed as exc:
                    outcome.append(exc)
                    failed.set()

            outer.start_soon(wait_for_sync)
            with trio.fail_after(300):
                # The worker's own nursery: its error ends it (the object sync's, in the daemon).
                with pytest.RaisesGroup(pytest.RaisesExc(ConnectorError, match="503"),
                                        flatten_subgroups=True):
                    async with trio.open_nursery() as nursery:
                        await nursery.start(run_worker, ctx, queue.worker_ends(),
                                            Processor(ctx))
                await failed.wait()
            assert "503" in str(outcome[0])
            outer.cancel_scope.cancel()
