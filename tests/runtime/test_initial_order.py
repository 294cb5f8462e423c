"""The order of a connection's initial syncs (runtime/initial_order.py): an object sync's app
pass waits for the initial syncs of the objects it keeps associations with that come first,
while they link records, and never for one that does not (complete, idle, stopped)."""

import trio
import trio.testing

from crmsync.runtime.initial_order import InitialOrder, earlier


def test_earlier_names_the_partners_that_come_first():
    partners = [("companies", "c/companies"), ("deals", "c/deals"),
                ("invoices", "c/invoices")]
    assert earlier("contacts", partners) == ["c/companies"]
    assert earlier("companies", partners) == []
    assert earlier("line_items", [("invoices", "c/invoices")]) == ["c/invoices"]
    # An object outside the ranking waits for nobody, and nobody for it.
    assert earlier("tickets", partners) == []
    assert earlier("contacts", [("tickets", "c/tickets")]) == []


async def test_a_wait_lasts_while_an_earlier_sync_links_records(autojump_clock):
    order = InitialOrder()
    order.expect("c/companies")
    order.expect("c/deals")
    ended: list[float] = []

    async def later() -> None:
        await order.wait_for(["c/companies"])
        ended.append(trio.current_time())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(later)
        await trio.sleep(5)
        assert ended == []  # pending: registered, not started yet
        order.set("c/companies", "running")
        await trio.sleep(5)
        assert ended == []
        order.set("c/deals", "done")  # not waited for
        await trio.sleep(5)
        assert ended == []
        order.set("c/companies", "done")
    assert ended == [15.0]


async def test_idle_or_stopped_earlier_syncs_hold_nobody(autojump_clock):
    order = InitialOrder()
    order.expect("c/companies")
    order.set("c/companies", "idle")  # waiting in preview or for its mappings
    with trio.fail_after(1):
        assert await order.wait_for(["c/companies"]) is False
    order.set("c/companies", "running")
    order.set("c/companies", "done")  # stopped or complete
    with trio.fail_after(1):
        assert await order.wait_for(["c/companies"]) is False


async def test_the_wait_is_bounded(autojump_clock):
    order = InitialOrder()
    order.expect("c/companies")
    order.set("c/companies", "running")
    started = trio.current_time()
    assert await order.wait_for(["c/companies"], limit=60) is True
    assert trio.current_time() - started == 60


async def test_a_restart_registers_the_sync_as_pending_again(autojump_clock):
    order = InitialOrder()
    order.expect("c/companies")
    order.set("c/companies", "done")
    order.expect("c/companies")  # the connection restarts its object syncs
    assert order.blocking(["c/companies"]) == ["c/companies"]


async def test_a_sync_that_failed_holds_nobody_even_restarted(autojump_clock):
    # One failing again and again (say on one bad record) would otherwise hold the later
    # initial syncs back at every restart of the connection's object syncs.
    order = InitialOrder()
    order.expect("c/companies")
    order.set("c/companies", "running")
    order.set("c/companies", "failed")
    order.expect("c/companies")  # restarted
    order.set("c/companies", "running")
    assert order.blocking(["c/companies"]) == []
    order.set("c/companies", "done")  # complete at last: an ordinary sync again
    order.expect("c/companies")
    assert order.blocking(["c/companies"]) == ["c/companies"]


async def test_the_bound_is_a_total_across_restarts(autojump_clock):
    order = InitialOrder()
    order.expect("c/companies")
    order.set("c/companies", "running")
    with trio.move_on_after(40):
        await order.wait_for(["c/companies"], "c/contacts", limit=60)  # cut short: restart
    started = trio.current_time()
    assert await order.wait_for(["c/companies"], "c/contacts", limit=60) is True
    assert trio.current_time() - started == 20


async def test_an_initial_sync_run_again_does_not_wait(tmp_path, slow_autojump):
    # A saved change restarts an initial sync whose records are linked already: their
    # associations were decided, and its feeds (paused while it runs) must not wait for
    # another object sync's initial sync.
    from crmsync.runtime.initial_sync import InitialSyncActor
    from crmsync.store import Store
    from crmsync.store import items as store_items
    from crmsync.store.items import Outcome

    from .fakes import MemorySide, make_ctx
    from .test_association_snapshots import CONTACTS

    order = InitialOrder()
    order.expect("shop/companies")
    order.set("shop/companies", "running")
    async with Store.open(tmp_path / "state.db") as store:
        ctx = make_ctx(store, CONTACTS, MemorySide("contacts"), MemorySide("customers"))
        actor = InitialSyncActor(ctx, None, None, order=order,  # type: ignore[arg-type]
                                 earlier=["shop/companies"])
        with trio.move_on_after(10) as scope:
            await actor._wait_for_earlier()  # a first initial sync waits
        assert scope.cancelled_caught
        await store.call(store_items.apply_outcomes, "shop/contacts", [Outcome(
            state="syncing", hub_id="1", app_id="1", snapshot=b"{}")])
        with trio.fail_after(60):  # it would wait for the companies for 3,590 s more
            await actor._wait_for_earlier()
