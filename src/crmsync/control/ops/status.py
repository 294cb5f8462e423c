"""`crmsync ctl status`: the daemon, its connections and their object syncs, as they run now,
with the store's counts per record state."""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

from crmsync import __version__
from crmsync.config.model import ObjectSync
from crmsync.control.ops.lookup import check_connection
from crmsync.control.ops.running import app_budget, hub_budget, journal_view, object_activity
from crmsync.control.views import (
    ConnectionView,
    ObjectView,
    QueueView,
    StatusView,
    WebhookView,
)
from crmsync.runtime.context import sync_id_of
from crmsync.store import reconciles as store_reconciles
from crmsync.store import reports

if TYPE_CHECKING:  # types only: the control server passes the daemon in
    from crmsync.daemon.main import Daemon


def _object_view(st: Any, report: reports.SyncReport | None, running: bool,
                 queue: QueueView | None, sync: ObjectSync, now: float,
                 reconcile_pending: str = "") -> ObjectView:
    initial = report.initial if report is not None else None
    phase, done, total = st.phase, st.done, st.total
    started, completed = st.started_at, st.completed_at
    if phase == "starting" and initial is not None:
        phase, done, total = initial.phase, initial.done, initial.total
        started, completed = initial.started_at, initial.completed_at
    elif phase == "starting":
        phase = "not started"
    percent = eta = None
    if phase != "complete" and not running and total > 0:
        percent = round(min(100.0, 100.0 * done / total), 1)
        if started and done > 0 and now > started:
            rate = done / (now - started)
            eta = round(max(0.0, (total - done) / rate), 1)
    return ObjectView(
        hub_object=sync.hub_object, app_object=sync.app_object, direction=sync.direction,
        phase=phase, preview=bool(st.preview or (initial is not None and initial.preview
                                                 and not initial.approved)),
        running=running, done=done, total=total, percent=percent, eta_seconds=eta,
        started_at=started, completed_at=completed, last_poll=st.last_poll,
        last_app_poll=st.last_app_poll, last_webhook=st.last_webhook,
        last_reconcile=st.last_reconcile, last_reconcile_reason=st.last_reconcile_reason,
        reconcile_pending=reconcile_pending, error=st.error,
        counts=report.counts if report is not None else {},
        parked_deletes=report.parked if report is not None else 0,
        webhook_backlog=report.webhook_backlog if report is not None else 0,
        queue=queue)


async def status(daemon: Daemon, connection: str = "") -> StatusView:
    """The daemon, every connection (or one) and every object sync, with counts per state."""
    if connection:
        check_connection(daemon, connection)
    now = time.time()
    runtimes = [rt for name, rt in daemon.connections.items()
                if not connection or name == connection]
    sync_ids = [sync_id_of(rt.settings.name, s.hub_object) for rt in runtimes for s in rt.syncs]
    found = await daemon.store.read(reports.status_report, sync_ids) if daemon.store else {}
    asked = (await daemon.store.read(
        lambda conn: {sid: store_reconciles.pending(conn, sid) for sid in sync_ids})
        if daemon.store else {})
    conns: list[ConnectionView] = []
    for rt in runtimes:
        objects = []
        for s in rt.syncs:
            st = rt.status.objects.get(s.hub_object)
            if st is None:
                continue
            sid = sync_id_of(rt.settings.name, s.hub_object)
            running, queue = object_activity(daemon, rt.settings.name, s.hub_object)
            request = asked.get(sid)
            objects.append(_object_view(st, found.get(sid), running, queue, s, now,
                                        request.reason if request is not None else ""))
        conns.append(ConnectionView(name=rt.status.name, connector=rt.status.connector,
                                    state=rt.status.state, reason=rt.status.reason,
                                    restarts=rt.status.restarts, since=rt.status.since,
                                    objects=objects,
                                    budget=app_budget(daemon, rt.settings.name, now)))
    wh = daemon.webhooks
    whs = daemon.cfg.daemon.webhooks
    return StatusView(
        version=__version__, pid=os.getpid(), started_at=daemon.started_at,
        uptime_seconds=round(now - daemon.started_at, 3), now=now,
        ready=daemon.ready.is_set(), stopping=daemon.stopping.is_set(),
        control_path=daemon.control_path,
        webhooks=WebhookView(enabled=whs.enabled, listen=whs.listen if whs.enabled else "",
                             accepted=wh.accepted if wh else 0,
                             rejected=wh.rejected if wh else 0,
                             last_delivery=wh.last_delivery if wh else None),
        rate_budget=hub_budget(daemon, now), connections=conns, changes=daemon.cfg.hub.changes,
        journal=journal_view(daemon))
