"""Actions on a whole connection: `crmsync ctl disable`, `enable` and `delete-sync` (which stop
and start it through the daemon), `reload` of the configuration, and `poll-now`."""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING

import structlog

from crmsync.config import ConfigError
from crmsync.control.ops.lookup import (
    OperationError,
    check_connection,
    object_syncs,
    store_of,
)
from crmsync.control.ops.running import poll_at_once, read_journal_now, stop_gently
from crmsync.control.views import (
    ConnectionStateView,
    DeleteSyncView,
    FootprintView,
    PollNowView,
    ReloadView,
)
from crmsync.runtime.context import sync_id_of
from crmsync.store import connections as store_connections
from crmsync.store import items as store_items
from crmsync.store import reports

if TYPE_CHECKING:  # types only: the control server passes the daemon in
    from crmsync.daemon.main import Daemon

log = structlog.get_logger("crmsync.control")


async def _restart(daemon: Daemon, connection: str) -> None:
    await stop_gently(daemon, connection)
    await daemon.start_connection(connection)


def _state_view(daemon: Daemon, connection: str, changed: bool,
                message: str) -> ConnectionStateView:
    rt = daemon.connections.get(connection)
    return ConnectionStateView(connection=connection,
                               state=rt.status.state if rt else "stopped",
                               reason=rt.status.reason if rt else "", changed=changed,
                               message=message)


async def disable(daemon: Daemon, connection: str, reason: str = "") -> ConnectionStateView:
    """Stop a connection and keep it stopped across restarts (persisted in the store)."""
    check_connection(daemon, connection)
    store = store_of(daemon)
    was = await store.read(store_connections.disabled)
    why = reason or "disabled by operator"
    await store.call(store_connections.set_disabled, connection, True, why)
    if connection in was and (rt := daemon.connections.get(connection)) is not None \
            and rt.status.state == "disabled":
        return _state_view(daemon, connection, False, "already disabled")
    await _restart(daemon, connection)
    return _state_view(daemon, connection, True, "disabled: its object syncs are stopped")


async def enable(daemon: Daemon, connection: str) -> ConnectionStateView:
    """Start a disabled connection again (it resumes where it stopped)."""
    check_connection(daemon, connection)
    store = store_of(daemon)
    was = await store.read(store_connections.disabled)
    if connection not in was:
        return _state_view(daemon, connection, False, "not disabled")
    await store.call(store_connections.set_disabled, connection, False, "")
    await _restart(daemon, connection)
    return _state_view(daemon, connection, True, "enabled: its object syncs start")


DELETED_REASON = ("sync deleted by operator: remove the connection from the configuration, "
                  "or enable it to start over with a new initial sync")


async def delete_sync(daemon: Daemon, connection: str, yes: bool = False) -> DeleteSyncView:
    """Forget everything crmsync keeps for a connection's object syncs (index, links and
    snapshots, states, history, cursors, initial-sync checkpoints and plans, parked deletes);
    the connection stays disabled. Never touches either side's data. Without `yes`, only
    reports what would be dropped."""
    check_connection(daemon, connection)
    store = store_of(daemon)
    configured = [sync_id_of(connection, s.hub_object) for s in daemon.cfg.syncs
                  if s.connection == connection]

    def survey(conn: sqlite3.Connection) -> list[FootprintView]:
        ids = sorted(set(configured) | set(reports.sync_ids_of(conn, connection)))
        return [FootprintView(sync_id=i, rows=reports.footprint(conn, i)) for i in ids]

    before = await store.read(survey)
    if not yes:
        return DeleteSyncView(connection=connection, deleted=False, syncs=before,
                              message="nothing deleted: add --yes to delete")
    await store.call(store_connections.set_disabled, connection, True, DELETED_REASON)
    # Stopped (and restarted disabled) before dropping: no worker writes after the drop.
    await _restart(daemon, connection)

    def drop(conn: sqlite3.Connection) -> None:
        for i in sorted(set(configured) | set(reports.sync_ids_of(conn, connection))):
            store_items.drop_sync(conn, i)

    await store.call(drop)
    log.warning("object syncs deleted", connection=connection,
                         syncs=[f.sync_id for f in before],
                         items=sum(f.rows.get("items", 0) for f in before))
    return DeleteSyncView(connection=connection, deleted=True, syncs=before,
                          message="deleted; the connection stays disabled")


async def reload(daemon: Daemon) -> ReloadView:
    """Re-read the configuration (as SIGHUP does); an invalid one is refused and the daemon
    keeps running on the old one."""
    try:
        changes = await daemon.reload()
    except ConfigError as exc:
        raise OperationError("config", "the configuration is not valid; nothing changed:\n"
                             + "\n".join(f"  {p}" for p in exc.problems)) from exc
    except Exception as exc:
        raise OperationError("config", f"reload failed; nothing changed: {exc}") from exc
    return ReloadView(changes=changes)


async def poll_now(daemon: Daemon, connection: str, obj: str = "") -> PollNowView:
    """Ask the pollers of one object sync (or all of the connection) to poll at once, and
    return without waiting for them. The reply says what those polls cannot see yet: HubSpot's
    search index lags behind its writes, so a hub poll reads changes up to
    `search_index_lag_seconds` ago and leaves younger ones to the first poll after that."""
    syncs = object_syncs(daemon, connection, obj)
    polled: list[str] = []
    lag = 0.0
    intervals: list[float] = []
    for s in syncs:
        index_lag, interval = poll_at_once(daemon, connection, s)
        polled.append(s.hub_object)
        lag = max(lag, index_lag)
        if interval is not None:
            intervals.append(interval)
    interval = max(intervals) if intervals else None
    message = f"polling {', '.join(polled)} now"
    if read_journal_now(daemon):
        message += " and reading HubSpot's webhooks journal"
    if lag > 0:
        then = (f"the first hub poll after that (hub polls run every {interval:g} s)"
                if interval is not None else "a later hub poll")
        message += (f". HubSpot's search index lags behind its writes, so a hub poll reads "
                    f"changes up to {lag:g} s old (search_index_lag_seconds): a HubSpot change "
                    f"made in the last {lag:g} s is not seen by this poll but by {then}. "
                    "Hub webhooks, where configured, bring changes at once; app changes are "
                    "read now")
    return PollNowView(connection=connection, objects=polled, hub_index_lag_seconds=lag,
                       hub_poll_interval_seconds=interval, message=message)
