"""Operator actions' guard rails, on a stand-in daemon (no I/O, MockClock): a long action is
cut short with `not_running` when its connection stops or restarts under it (through the
object sync handle's `running()` scope), errors come out unwrapped, and requests for things
that are not there say what is."""

from types import SimpleNamespace

import pytest
import trio
from structlog.testing import capture_logs

from crmsync.config.model import ObjectSync
from crmsync.control import ops
from crmsync.control import protocol as p
from crmsync.control.ops import lookup, running
from crmsync.control.server import ControlServer
from crmsync.daemon import logging as daemon_logging
from crmsync.runtime.lock_queue import RecordLockQueue
from crmsync.runtime.object_sync import ObjectSyncHandle

SYNC = ObjectSync(connection="shop", hub_object="contacts", app_object="customers")


def object_sync_handle(phase: str = "complete", running: bool = True) -> ObjectSyncHandle:
    """A real handle over a stand-in object sync (no actors run: the actions below only
    need its `running()` scope)."""
    ctx = SimpleNamespace(connection="shop", hub_object="contacts", app_object="customers",
                          sync_id="shop/contacts", status=SimpleNamespace(phase=phase))
    h = ObjectSyncHandle(ctx, RecordLockQueue(workers=1), None, None)  # type: ignore[arg-type]
    if running:
        h._running.set()
    return h


async def live(handle: ObjectSyncHandle, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Stands for the object sync's task: its handle stops when it ends (run_object_sync)."""
    try:
        task_status.started()
        await trio.sleep_forever()
    finally:
        handle._stop()


def fake_daemon(state="running", ready=True):
    handle = object_sync_handle("complete" if ready else "app_pass", running=ready)
    rt = SimpleNamespace(status=SimpleNamespace(state=state, reason="", objects={}),
                         current=handle, scope=trio.CancelScope())
    daemon = SimpleNamespace(
        cfg=SimpleNamespace(connections=[SimpleNamespace(name="shop")], syncs=[SYNC]),
        connections={"shop": rt},
        find_sync=lambda c, o: SYNC if c == "shop" and o in ("contacts", "customers") else None)
    daemon.handle = lambda c, o: (daemon.connections[c].current
                                  if c in daemon.connections and o == "contacts" else None)
    return daemon, rt, handle


async def test_a_long_action_returns_its_value(autojump_clock):
    daemon, _, _ = fake_daemon()

    async def fn(h):
        await trio.sleep(3)
        return 42

    with trio.fail_after(10):
        assert await running.while_running(daemon, "shop", SYNC, fn) == 42


@pytest.mark.parametrize("how", ["restart", "stop", "removed"])
async def test_a_long_action_is_cut_when_the_connection_goes(autojump_clock, how):
    daemon, rt, handle = fake_daemon()

    async def fn(h):
        await trio.sleep_forever()

    async def later():
        await trio.sleep(2)
        if how == "restart":
            rt.current = object_sync_handle()  # the supervisor restarted the object sync
        elif how == "removed":
            del daemon.connections["shop"]
        rt.scope.cancel()  # the old object sync's task ends, whatever the cause

    with trio.fail_after(10):
        async with trio.open_nursery() as n:
            async def object_sync():
                with rt.scope:
                    await live(handle)

            n.start_soon(object_sync)
            n.start_soon(later)
            start = trio.current_time()
            with pytest.raises(ops.OperationError) as info:
                await running.while_running(daemon, "shop", SYNC, fn)
            assert info.value.code == "not_running"
            # Cut when the object sync ended, not at the next look of a watcher.
            assert trio.current_time() - start == 2


async def test_errors_of_the_action_come_out_unwrapped(autojump_clock):
    daemon, _, _ = fake_daemon()

    async def fn(h):
        raise ops.OperationError("failed", "the sync failed")

    with pytest.raises(ops.OperationError, match="the sync failed"):
        await running.while_running(daemon, "shop", SYNC, fn)


@pytest.mark.parametrize("state, ready, fragment", [
    ("disabled", True, "is disabled"),
    ("paused", True, "is paused"),
    ("running", False, "initial sync"),
])
async def test_actions_need_a_running_object_sync(state, ready, fragment):
    daemon, _, _ = fake_daemon(state, ready)

    async def fn(h):
        return 1

    with pytest.raises(ops.OperationError, match=fragment) as info:
        await running.while_running(daemon, "shop", SYNC, fn)
    assert info.value.code == "not_running"


def test_unknown_names_say_what_exists():
    daemon, _, _ = fake_daemon()
    with pytest.raises(ops.OperationError, match=r"no connection 'nope' \(configured: shop\)"):
        lookup.object_sync(daemon, "nope", "contacts")
    with pytest.raises(ops.OperationError, match=r"configured: contacts \(customers\)"):
        lookup.object_sync(daemon, "shop", "deals")
    assert lookup.object_sync(daemon, "shop", "customers") is SYNC


def test_record_ids_name_their_side():
    assert lookup.parse_record("hub:12", "") == ("12", "hub")
    assert lookup.parse_record("app:12", "") == ("12", "app")
    assert lookup.parse_record("12", "app") == ("12", "app")
    assert lookup.parse_record("12", "") == ("12", "")
    with pytest.raises(ops.OperationError):
        lookup.parse_record("12", "both")


async def test_error_replies_never_carry_a_secret():
    secret = "pat-na1-0123456789abcdef"
    daemon_logging.register_secret(secret)

    async def leaky(req):
        raise RuntimeError(f"upstream said: bad token {secret}")

    server = ControlServer(leaky)
    with capture_logs():
        reply = await server.answer(p.encode(p.Ping()))
    assert reply.code == "internal" and secret not in reply.message
    assert daemon_logging.REDACTED in reply.message
