"""Where operator actions meet the running object syncs.

An action reaches a running object sync only through its `ObjectSyncHandle` (the daemon's
`handle(connection, hub_object)`): its statistics, `poll_now()`, `resync(...)`, the repairs,
and `running()`, the scope that cuts a long action short when the object sync stops. The rate
budgets come as statistics through `Daemon.rate_budget`. What else an action needs of the
daemon (the connection's state, its open app connector, the webhooks journal reader) is in
this module too, so that a change in how the runtime exposes itself changes this module only.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

import trio

from crmsync.config.model import ObjectSync
from crmsync.connectors.base import Connector
from crmsync.connectors.ratelimit import RateBudgetStatistics
from crmsync.control.ops.lookup import OperationError, check_connection
from crmsync.control.views import BudgetView, JournalView, QueueView
from crmsync.records import Side
from crmsync.runtime.lock_queue import SyncFailed
from crmsync.runtime.object_sync import NotRunning, ObjectSyncHandle, ObjectSyncStopped

if TYPE_CHECKING:  # types only: the control server passes the daemon in
    from crmsync.daemon.main import ConnectionRuntime, Daemon


T = TypeVar("T")


def connection_runtime(daemon: Daemon, connection: str) -> ConnectionRuntime:
    check_connection(daemon, connection)
    rt = daemon.connections.get(connection)
    if rt is None:
        raise OperationError("not_running", f"connection {connection!r} is not running")
    return rt


def ready_handle(daemon: Daemon, connection: str, sync: ObjectSync) -> ObjectSyncHandle:
    """The handle of an object sync whose connection runs (`not_running` otherwise); whether
    the object sync itself runs its workers yet, `running()` says."""
    rt = connection_runtime(daemon, connection)
    if rt.status.state in ("disabled", "paused", "error"):
        why = f": {rt.status.reason}" if rt.status.reason else ""
        raise OperationError("not_running", f"connection {connection!r} is "
                                            f"{rt.status.state}{why}")
    h = daemon.handle(connection, sync.hub_object)
    if h is None:
        raise OperationError("not_running", f"{connection}/{sync.hub_object} is not running "
                                            f"yet (connection {rt.status.state})")
    return h


async def while_running(daemon: Daemon, connection: str, sync: ObjectSync,
                        fn: Callable[[ObjectSyncHandle], Awaitable[T]]) -> T:
    """Run `fn` with the object sync's handle, inside its `running()` scope: `not_running` if
    its initial sync is not complete yet, or if it stops (its connection stops or restarts)
    meanwhile — its writers and workers are gone then, and waiting for them would never end.
    The action's own errors come out as it raised them."""
    h = ready_handle(daemon, connection, sync)
    try:
        async with h.running():
            return await fn(h)
    except ObjectSyncStopped:
        raise OperationError("not_running", f"connection {connection!r} stopped while the "
                                            "request was running; try again") from None
    except NotRunning as exc:
        raise OperationError("not_running", str(exc)) from None


async def submit_wait(h: ObjectSyncHandle, keys: list[tuple[Side, str]]) -> None:
    """Sync these records again through the lock queue and wait until they are done; a sync
    that fails is an `OperationError` ("failed")."""
    try:
        await h.resync(keys)
    except SyncFailed as exc:
        raise OperationError("failed", f"the sync failed: {exc} (the connection restarts; "
                                       "see the log)") from exc


async def stop_gently(daemon: Daemon, connection: str) -> None:
    """Stop handing out work, let running syncs finish (bounded), then cancel the
    connection's tasks."""
    rt = daemon.connections.get(connection)
    if rt is None:
        return
    if rt.handle is not None:
        with trio.move_on_after(min(daemon.cfg.daemon.shutdown_grace_seconds, 10.0)):
            await rt.handle.drain()
    daemon.stop_connection(connection)


def object_activity(daemon: Daemon, connection: str, hub_object: str
                    ) -> tuple[bool, QueueView | None]:
    """Whether an object sync's workers run (its initial sync is complete), and its lock
    queue's counts (None while it does not run)."""
    h = daemon.handle(connection, hub_object)
    if h is None:
        return False, None
    stats = h.statistics()
    q = stats.queue
    return stats.running, QueueView(ready=q.ready, running=q.running, queued=q.queued)


def _budget_view(bs: RateBudgetStatistics, unit: str, now: float | None) -> BudgetView:
    """A rate budget's statistics as the status reply shows them; `unit` names what the daily
    figures count."""
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
    bs = daemon.rate_budget()
    return _budget_view(bs, "requests", now) if bs is not None else None


def app_budget(daemon: Daemon, connection: str, now: float | None = None) -> BudgetView | None:
    """The app account's rate budget, for connectors that keep one across the connection's
    restarts (Pipedrive: its daily tokens)."""
    bs = daemon.rate_budget(connection)
    return _budget_view(bs, "tokens", now) if bs is not None else None


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
    h = ready_handle(daemon, connection, sync)
    if not h.is_running:
        phase = h.statistics().status.phase
        raise OperationError("not_running", f"{connection}/{sync.hub_object} is in its initial "
                                            f"sync (phase {phase}); try again once it is "
                                            "complete")
    h.poll_now()
    stats = h.statistics()
    return stats.hub_index_lag, (stats.hub_poller.interval if stats.hub_poller is not None
                                 else None)
