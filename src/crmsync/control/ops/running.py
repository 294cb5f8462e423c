"""Where operator actions meet the running object syncs.

Every use an action makes of the runtime's internals (a connection's handles, an object sync's
context and lock queue, the connection's cancel scope and open app connector, the hub's and the
apps' rate budgets, the webhooks journal reader) is in this module, so that a change in how the
runtime exposes a running object sync changes this module only.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import trio

from crmsync.config.model import ObjectSync
from crmsync.connectors.base import Connector
from crmsync.control.ops.lookup import OperationError, check_connection
from crmsync.control.views import BudgetView, JournalView, QueueView
from crmsync.records import Side
from crmsync.runtime.context import ObjectSyncContext
from crmsync.runtime.lock_queue import RecordLockQueue, SyncFailed
from crmsync.runtime.object_sync import ObjectSyncHandle

if TYPE_CHECKING:  # types only: the control server passes the daemon in
    from crmsync.daemon.main import ConnectionRuntime, Daemon


T = TypeVar("T")

# How often a long action checks that its connection still runs.
WATCH_SECONDS = 0.25


def connection_runtime(daemon: Daemon, connection: str) -> ConnectionRuntime:
    check_connection(daemon, connection)
    rt = daemon.connections.get(connection)
    if rt is None:
        raise OperationError("not_running", f"connection {connection!r} is not running")
    return rt


def ready_handle(daemon: Daemon, connection: str, sync: ObjectSync
                 ) -> tuple[ConnectionRuntime, ObjectSyncHandle]:
    """The handle of an object sync whose workers run (its initial sync is complete)."""
    rt = connection_runtime(daemon, connection)
    if rt.status.state in ("disabled", "paused", "error"):
        why = f": {rt.status.reason}" if rt.status.reason else ""
        raise OperationError("not_running", f"connection {connection!r} is "
                                            f"{rt.status.state}{why}")
    h = rt.handles.get(sync.hub_object)
    if h is None or h.ctx is None or h.queue is None:
        raise OperationError("not_running", f"{connection}/{sync.hub_object} is not running "
                                            f"yet (connection {rt.status.state})")
    if not h.ready.is_set():
        st = rt.status.objects.get(sync.hub_object)
        phase = st.phase if st is not None else "starting"
        raise OperationError("not_running", f"{connection}/{sync.hub_object} is in its initial "
                                            f"sync (phase {phase}); try again once it is "
                                            "complete")
    return rt, h


async def while_running(daemon: Daemon, connection: str, sync: ObjectSync,
                        fn: Callable[[ObjectSyncContext, RecordLockQueue], Awaitable[T]]) -> T:
    """Run `fn` with the object sync's context and queue; cancel it with a `not_running`
    error if the connection stops or restarts meanwhile (its writers and workers are gone
    then, and waiting for them would never end)."""
    rt, h = ready_handle(daemon, connection, sync)
    ctx, queue = h.ctx, h.queue
    assert ctx is not None and queue is not None

    def current() -> bool:
        return (daemon.connections.get(connection) is rt
                and not (rt.scope is not None and rt.scope.cancel_called)
                and rt.handles.get(sync.hub_object) is h and h.ctx is ctx and h.queue is queue)

    out: list[T] = []

    async def watch(scope: trio.CancelScope) -> None:
        while True:
            await trio.sleep(WATCH_SECONDS)
            if not current():
                scope.cancel()
                return

    try:
        with trio.CancelScope() as outer:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(watch, outer)
                out.append(await fn(ctx, queue))
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        leaf = _single(group)
        if isinstance(leaf, Exception):  # the action's own error, as it raised it
            raise leaf from None
        raise  # cancellation: let Trio see it as it is
    if not out:  # the watcher cut it short
        raise OperationError("not_running", f"connection {connection!r} stopped while the "
                                            "request was running; try again")
    return out[0]


def _single(group: BaseExceptionGroup) -> BaseException:
    """The error inside a nursery's group (it holds one: the body's), or the group."""
    leaves: list[BaseException] = []

    def walk(e: BaseException) -> None:
        if isinstance(e, BaseExceptionGroup):
            for x in e.exceptions:
                walk(x)
        else:
            leaves.append(e)

    walk(group)
    return leaves[0] if len(leaves) == 1 else group


async def submit_wait(queue: RecordLockQueue, keys: list[tuple[Side, str]]) -> None:
    """Sync these records again through the lock queue and wait until they are done; a sync
    that fails is an `OperationError` ("failed")."""
    if not keys:
        return
    ticket = await queue.submit(keys)
    try:
        await ticket.wait()
    except SyncFailed as exc:
        raise OperationError("failed", f"the sync failed: {exc} (the connection restarts; "
                                       "see the log)") from exc


async def stop_gently(daemon: Daemon, connection: str) -> None:
    """Stop handing out work, let running syncs finish (bounded), then cancel the
    connection's tasks."""
    rt = daemon.connections.get(connection)
    if rt is None:
        return
    handles = list(rt.handles.values())
    for h in handles:
        h.close()
    with trio.move_on_after(min(daemon.cfg.daemon.shutdown_grace_seconds, 10.0)):
        for h in handles:
            await h.wait_idle()
    daemon.stop_connection(connection)


def object_activity(rt: ConnectionRuntime, hub_object: str) -> tuple[bool, QueueView | None]:
    """Whether an object sync's workers run (its initial sync is complete), and its lock
    queue's counts (None while it has none)."""
    h = rt.handles.get(hub_object)
    running = h is not None and h.ready.is_set()
    q = h.queue.statistics() if h is not None and h.queue is not None else None
    return running, (QueueView(ready=q.ready, running=q.running, queued=q.queued) if q
                     else None)


def _budget_view(b: Any, unit: str, now: float | None) -> BudgetView:
    """A RateBudget's statistics as the status reply shows them; `unit` names what the daily
    figures count."""
    bs = b.statistics()
    resets = getattr(bs, "daily_resets_in", None)
    at = (now if now is not None else time.time()) + resets if resets is not None else None
    return BudgetView(name=bs.name, window_used=bs.window_used, window_limit=bs.window_limit,
                      window_seconds=bs.window_seconds, daily_used=bs.daily_used,
                      daily_limit=bs.daily_limit, daily_remaining=bs.daily_remaining,
                      rate_limited=bs.rate_limited, blocked_for=round(bs.blocked_for, 3),
                      requests=bs.requests, unit=unit,
                      resets_at=round(at, 3) if at is not None else None)


def hub_budget(daemon: Daemon, now: float | None = None) -> BudgetView | None:
    """The HubSpot account's rate budget as it stands, where the hub connector has one."""
    b = getattr(daemon.hub, "budget", None)
    if b is None or not hasattr(b, "statistics"):
        return None
    return _budget_view(b, "requests", now)


def app_budget(rt: ConnectionRuntime, now: float | None = None) -> BudgetView | None:
    """The app account's rate budget, for connectors that keep one across the connection's
    restarts (Pipedrive: its daily tokens)."""
    b = rt.env.shared.get("budget")
    if b is None or not hasattr(b, "statistics"):
        return None
    return _budget_view(b, "tokens", now)


def journal_view(daemon: Daemon) -> JournalView | None:
    """The webhooks journal reader's state and figures (None unless hub.changes = journal)."""
    if daemon.journal is None:
        return None
    s = daemon.journal.statistics()
    return JournalView(state=s.state, reason=s.reason, restarts=s.restarts,
                       portal_id=s.portal_id, offset=s.offset, last_read=s.last_read,
                       entries=s.entries, events=s.events, duplicates=s.duplicates,
                       skipped=s.skipped, foreign=s.foreign, gaps=s.gaps, last_gap=s.last_gap,
                       last_gap_reason=s.last_gap_reason, subscriptions=list(s.subscriptions),
                       token_expires_in=s.token_expires_in, token_grants=s.token_grants)


def read_journal_now(daemon: Daemon) -> bool:
    """Wake the webhooks journal reader, without waiting for it; False when HubSpot's changes
    do not come through the journal."""
    if daemon.journal is None:
        return False
    daemon.journal.read_now()
    return True


def app_connector(daemon: Daemon, connection: str) -> tuple[str, Connector]:
    """The connector type and the open app connector of a connection; `not_running` while the
    connection is not connected (stopped, paused, disabled, restarting)."""
    check_connection(daemon, connection)
    rt = daemon.connections.get(connection)
    app = rt.app if rt is not None else None
    if rt is None or app is None:
        state = rt.status.state if rt is not None else "stopped"
        raise OperationError("not_running", f"connection {connection!r} is not connected "
                                            f"({state}); its app cannot be reached now")
    return rt.status.connector, app


def start_approved(daemon: Daemon, connection: str, hub_object: str) -> None:
    """Wake an object sync whose preview was just approved in the store, so its initial sync
    goes on at once (it would find the approval in the store by itself, later)."""
    h = daemon.handle(connection, hub_object)
    if h is not None:
        h.approve()


def poll_at_once(daemon: Daemon, connection: str, sync: ObjectSync) -> tuple[float, float | None]:
    """Wake a running object sync's pollers, without waiting for them; returns how far the
    hub's search index lags (seconds, 0 when it does not) and the hub poll's period (None
    without a hub poller). `not_running` while the object sync does not run."""
    _, h = ready_handle(daemon, connection, sync)
    h.poll_now()
    lag = float(getattr(h.ctx.hub, "index_lag", 0.0) or 0.0) if h.ctx is not None else 0.0
    return lag, (h.hub_poller.interval if h.hub_poller is not None else None)
