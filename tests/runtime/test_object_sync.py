"""An object sync as an actor: it reports started, with its handle, only once its resources
are set up (an error before that comes out of `start`); its initial sync's pages run through
the lock queue's page workers and its progress shows through the handle; requests made in
`handle.running()` are refused before it runs and cancelled when it stops."""

from __future__ import annotations

import json

import pytest
import structlog
import trio
from structlog.testing import capture_logs

from crmsync.connectors.base import ConnectorError
from crmsync.runtime.intake import IDLE_POLL_SECONDS
from crmsync.runtime.object_sync import (
    IntakeSource,
    NotRunning,
    ObjectSyncSetup,
    ObjectSyncStopped,
    Timing,
    run_object_sync,
)
from crmsync.store import inbox as store_inbox
from crmsync.store import initial as store_initial

from ..daemon.harness import contacts_sync
from .rig import parts

CUSTOMERS = [{"email": f"c{i}@example.com", "first_name": f"C{i}"} for i in range(1200)]
HUB = [{"email": f"h{i}@example.com", "firstname": f"H{i}"} for i in range(30)]


def setup_of(p, **kwargs) -> ObjectSyncSetup:
    return ObjectSyncSetup(connection="shop", connector_type="sqlite", sync=p.sync,
                           timing=Timing(hub_poll_interval=300, app_poll_interval=300),
                           **kwargs)


async def test_an_error_while_setting_up_comes_out_of_start(tmp_path, slow_autojump,
                                                            monkeypatch):
    async with parts(tmp_path) as p:
        async def refused(object_name):
            raise ConnectorError("config", "not_found", "no table 'customers'")

        monkeypatch.setattr(p.app, "describe", refused)
        with trio.fail_after(300):
            async with trio.open_nursery() as nursery:
                with pytest.raises(ConnectorError, match="no table"):
                    await nursery.start(run_object_sync, setup_of(p), p.store, p.hub, p.app,
                                        p.status())


async def test_it_runs_its_initial_sync_in_pages_and_reports_progress(tmp_path, slow_autojump,
                                                                      monkeypatch):
    async with parts(tmp_path, customers=CUSTOMERS, hub_contacts=HUB) as p:
        scan = p.app.scan

        async def slow_scan(*args, **kwargs):
            # Each app page takes 5 virtual seconds to read: the sampler below runs between
            # pages whatever the machine's load (without it the pages can all be processed
            # before virtual time moves at all).
            await trio.sleep(5)
            return await scan(*args, **kwargs)

        monkeypatch.setattr(p.app, "scan", slow_scan)
        status = p.status()
        seen: list[tuple[str, int, int]] = []
        async with trio.open_nursery() as nursery:
            handle = await nursery.start(run_object_sync, setup_of(p), p.store, p.hub, p.app,
                                         status)
            assert not handle.is_running

            async def watch():
                while not handle.is_running:
                    st = handle.statistics().status
                    seen.append((st.phase, st.done, st.total))
                    await trio.sleep(0.5)

            nursery.start_soon(watch)
            with trio.fail_after(600):
                await handle.wait_running()
            stats = handle.statistics()
            assert stats.running and stats.status.phase == "complete"
            assert stats.status.done == stats.status.total == 30 + 1200 + 30
            # Pages of 500 app records: done grew page by page (30 hub records indexed).
            app_pass = {d for phase, d, _ in seen if phase == "app_pass"}
            assert app_pass <= {30, 530, 1030, 1230} and app_pass & {530, 1030}
            assert len(p.app_rows()) == 1230
            nursery.cancel_scope.cancel()


async def test_requests_wait_for_it_to_run_and_end_when_it_stops(tmp_path, slow_autojump):
    async with (parts(tmp_path, customers=CUSTOMERS[:3],
                      syncs=contacts_sync(preview=True)) as p,
                trio.open_nursery() as outer):
        async with trio.open_nursery() as nursery:
            handle = await nursery.start(run_object_sync, setup_of(p), p.store, p.hub,
                                         p.app, p.status())
            with trio.fail_after(600):
                while handle.statistics().status.phase != "previewed":
                    await trio.sleep(0.5)
            with pytest.raises(NotRunning, match="initial sync"):
                async with handle.running():
                    pass  # pragma: no cover
            assert await p.store.call(store_initial.approve, "shop/contacts")
            handle.approve()
            with trio.fail_after(600):
                await handle.wait_running()
            cut: list[BaseException] = []

            async def long_request(*, task_status=trio.TASK_STATUS_IGNORED):
                try:
                    async with handle.running():
                        task_status.started()
                        await trio.sleep_forever()
                except ObjectSyncStopped as exc:
                    cut.append(exc)

            await outer.start(long_request)
            nursery.cancel_scope.cancel()  # the connection stops
        await trio.sleep(0)
        assert len(cut) == 1
        with pytest.raises(ObjectSyncStopped):
            async with handle.running():
                pass  # pragma: no cover


def records_named(payload: bytes) -> list[tuple[str, str]]:
    return [("app", str(r)) for r in json.loads(payload)["records"]]


async def test_a_wake_reaches_only_the_intake_of_the_source_stored_to(tmp_path, slow_autojump):
    # What the webhook server does after storing a delivery (Daemon.intake_stored): only the
    # intake reading that source reads now; another source's event waits for its intake's
    # idle read (IDLE_POLL_SECONDS), it is not read along.
    woken, other = store_inbox.app_source("shop", "contacts"), "app:shop:other"
    async with parts(tmp_path, customers=CUSTOMERS[:4]) as p:
        setup = setup_of(p, intakes=[IntakeSource(woken, records_named),
                                     IntakeSource(other, records_named)])
        async with trio.open_nursery() as nursery:
            handle = await nursery.start(run_object_sync, setup, p.store, p.hub, p.app,
                                         p.status())
            with trio.fail_after(600):
                await handle.wait_running()
            idle_read = trio.current_time() + IDLE_POLL_SECONDS  # both intakes read at start

            async def waiting(source: str) -> int:
                return await p.store.read(store_inbox.count_waiting, [source])

            for source, record in ((woken, 1), (other, 2)):
                await p.store.call(store_inbox.add_events, source,
                                   [(f"{source}-e", json.dumps({"records": [record]}).encode())])
            assert handle.wake_intake(woken)
            assert not handle.wake_intake("app:shop:nobody")
            with trio.fail_after(600):
                while await waiting(woken):
                    await trio.sleep(0.1)
            assert trio.current_time() < idle_read
            assert await waiting(other) == 1
            with trio.fail_after(600):
                while await waiting(other):
                    await trio.sleep(0.1)
            assert trio.current_time() >= idle_read
            nursery.cancel_scope.cancel()


async def test_log_lines_of_a_connector_call_say_what_it_was_for(tmp_path, slow_autojump,
                                                                 monkeypatch):
    # Issue 11 item 7: the object sync binds connection and object, a worker the record it
    # works on, with structlog's contextvars; a line logged inside a connector call carries
    # them without the connector knowing.
    async with parts(tmp_path, customers=CUSTOMERS[:3]) as p:
        read = p.app.read

        async def logging_read(*args, **kwargs):
            structlog.get_logger("test").info("app read")
            return await read(*args, **kwargs)

        monkeypatch.setattr(p.app, "read", logging_read)
        async with trio.open_nursery() as nursery:
            handle = await nursery.start(run_object_sync, setup_of(p), p.store, p.hub, p.app,
                                         p.status())
            with trio.fail_after(600):
                await handle.wait_running()
                # The first polls bring the initial sync's own writes back: let them sync
                # first (a batch of several records binds no `record`).
                await trio.sleep(5)
                while (q := handle.statistics().queue).ready or q.running:
                    await trio.sleep(0.5)
            with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
                with trio.fail_after(600):
                    await handle.resync([("app", "2")])
            reads = [e for e in logs if e["event"] == "app read"]
            assert reads and all(e.get("connection") == "shop" and e.get("object") == "contacts"
                                 and e.get("record") == "app:2" for e in reads)
            nursery.cancel_scope.cancel()


async def test_an_item_key_waiting_behind_its_own_sync_shows_queued(tmp_path, slow_autojump):
    # An item no record id names is synced by its item key (loader.ITEM); a second request
    # for it while its sync runs makes it wait, shown as `queued` like any record.
    from crmsync.config.model import ObjectSync
    from crmsync.runtime.loader import item_key
    from crmsync.runtime.object_sync import _mark_queued
    from crmsync.store import Store
    from crmsync.store import items as store_items
    from crmsync.store.items import Outcome

    from .fakes import MemorySide, make_ctx

    sync = ObjectSync(connection="shop", hub_object="contacts", app_object="customers")
    async with Store.open(tmp_path / "state.db") as store:
        await store.call(lambda conn: store_items.apply_outcomes(conn, "shop/contacts", [
            Outcome(state="syncing", creating="hub", match_key="email:a@example.com")]))
        (item,) = await store.read(store_items.list_items, "shop/contacts", None, None, None)
        ctx = make_ctx(store, sync, MemorySide("hub"), MemorySide("app"))
        await _mark_queued(ctx)([item_key(item.item_id), ("app", "7")])
        (item,) = await store.read(store_items.list_items, "shop/contacts", None, None, None)
        assert item.state == "queued"
