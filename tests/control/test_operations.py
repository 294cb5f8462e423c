"""Operator actions' guard rails, on a stand-in daemon (no I/O, MockClock): a long action is
cut short with `not_running` when its connection stops or restarts under it, errors come out
unwrapped, and requests for things that are not there say what is."""

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

SYNC = ObjectSync(connection="shop", hub_object="contacts", app_object="customers")


def fake_daemon(state="running", ready=True):
    handle = SimpleNamespace(ctx=object(), queue=object(), ready=trio.Event())
    if ready:
        handle.ready.set()
    rt = SimpleNamespace(status=SimpleNamespace(state=state, reason="", objects={}),
                         handles={"contacts": handle}, scope=trio.CancelScope())
    daemon = SimpleNamespace(
        cfg=SimpleNamespace(connections=[SimpleNamespace(name="shop")], syncs=[SYNC]),
        connections={"shop": rt},
        find_sync=lambda c, o: SYNC if c == "shop" and o in ("contacts", "customers") else None)
    return daemon, rt, handle


async def test_a_long_action_returns_its_value(autojump_clock):
    daemon, _, _ = fake_daemon()

    async def fn(ctx, queue):
        await trio.sleep(3)
        return 42

    with trio.fail_after(10):
        assert await running.while_running(daemon, "shop", SYNC, fn) == 42


@pytest.mark.parametrize("how", ["restart", "stop", "removed"])
async def test_a_long_action_is_cut_when_the_connection_goes(autojump_clock, how):
    daemon, rt, handle = fake_daemon()

    async def fn(ctx, queue):
        await trio.sleep_forever()

    async def later():
        await trio.sleep(2)
        if how == "restart":
            handle.queue = object()  # the supervisor restarted the object sync
        elif how == "stop":
            rt.scope.cancel()
        else:
            del daemon.connections["shop"]

    with trio.fail_after(10):
        async with trio.open_nursery() as n:
            n.start_soon(later)
            start = trio.current_time()
            with pytest.raises(ops.OperationError) as info:
                await running.while_running(daemon, "shop", SYNC, fn)
            assert info.value.code == "not_running"
            assert trio.current_time() - start < 2 + 2 * running.WATCH_SECONDS


async def test_errors_of_the_action_come_out_unwrapped(autojump_clock):
    daemon, _, _ = fake_daemon()

    async def fn(ctx, queue):
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

    async def fn(ctx, queue):
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
