"""`crmsync ctl preview` and `approve`: the plan an object sync that starts in preview would
carry out, and the operator's go-ahead that lets its initial sync run for real."""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING

from crmsync.control.ops.lookup import object_syncs, store_of
from crmsync.control.ops.running import start_approved
from crmsync.control.views import (
    MAX_PAGE,
    ApproveResultView,
    ApproveView,
    PlanEntryView,
    PlanView,
    PreviewView,
)
from crmsync.runtime.context import sync_id_of
from crmsync.store import initial as store_initial

if TYPE_CHECKING:  # types only: the control server passes the daemon in
    from crmsync.daemon.main import Daemon


async def preview(daemon: Daemon, connection: str, obj: str = "",
                  limit: int = 20) -> PreviewView:
    """The initial-sync plan of object syncs that start in preview: counts per kind (match,
    create_hub, create_app, duplicate, conflict, exclude, ...) and the first entries of each."""
    syncs = object_syncs(daemon, connection, obj)
    limit = max(0, min(limit, MAX_PAGE))

    def read(conn: sqlite3.Connection) -> list[PlanView]:
        out = []
        for s in syncs:
            sid = sync_id_of(connection, s.hub_object)
            initial = store_initial.get_initial(conn, sid)
            summary = store_initial.plan_summary(conn, sid)
            entries = [PlanEntryView(kind=k, hub_id=h, app_id=a, detail=d)
                       for kind in sorted(summary)
                       for k, h, a, d in store_initial.plan_entries(conn, sid, kind, limit)]
            out.append(PlanView(
                hub_object=s.hub_object, app_object=s.app_object,
                phase=initial.phase if initial else "not started",
                preview=bool(initial.preview and not initial.approved) if initial
                else s.start_in_preview,
                ready=initial is not None and initial.phase == "previewed",
                done=initial.done if initial else 0, total=initial.total if initial else 0,
                summary=summary, entries=entries))
        return out

    return PreviewView(connection=connection, objects=await store_of(daemon).read(read))


async def approve(daemon: Daemon, connection: str, obj: str = "") -> ApproveView:
    """Let object syncs whose preview is ready run their initial sync for real."""
    syncs = object_syncs(daemon, connection, obj)
    store = store_of(daemon)
    out = []
    for s in syncs:
        sid = sync_id_of(connection, s.hub_object)

        def go(conn: sqlite3.Connection, sid: str = sid) -> tuple[bool, str]:
            initial = store_initial.get_initial(conn, sid)
            if initial is None:
                return False, "the initial sync has not started"
            if not initial.preview:
                return False, ("already approved" if initial.approved
                               else "not in preview (start_in_preview is false)")
            if initial.phase != "previewed":
                return False, (f"the preview is not ready yet (phase {initial.phase}, "
                               f"{initial.done} of {initial.total})")
            return store_initial.approve(conn, sid), "approved: the initial sync starts"

        ok, message = await store.call(go)
        if ok:
            start_approved(daemon, connection, s.hub_object)
        out.append(ApproveResultView(hub_object=s.hub_object, approved=ok, message=message))
    return ApproveView(connection=connection, objects=out)
