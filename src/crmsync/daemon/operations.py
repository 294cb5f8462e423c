"""Operator actions on a running daemon: what `crmsync ctl` asks for through the control socket.

Each function takes the `Daemon` and plain arguments and returns a frozen view (a msgspec
Struct the control protocol sends as it is), or raises `OperationError` with a code and a
message for the operator. Reads come from the store and the actors' live status; actions go
through the object syncs' handles (lock queue, pollers, initial sync) and the supervisor, so
they follow the same rules as the daemon's own work.

Views follow schema evolution (msgspec): fields added later get defaults, types never change.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import msgspec
import trio

from crmsync import __version__
from crmsync.config import ConfigError
from crmsync.config.model import ObjectSync
from crmsync.connectors.base import ConnectorError
from crmsync.connectors.ratelimit import RateBudgetStatistics
from crmsync.engine.categories import hint_for
from crmsync.engine.types import FieldChange
from crmsync.records import Side
from crmsync.runtime.context import sync_id_of
from crmsync.runtime.lock_queue import SyncFailed
from crmsync.runtime.object_sync import NotRunning, ObjectSyncHandle, ObjectSyncStopped
from crmsync.runtime.restore import RestoreCandidate, RestoreResult
from crmsync.store import Store, reports
from crmsync.store import connections as store_connections
from crmsync.store import initial as store_initial
from crmsync.store import items as store_items
from crmsync.store import reconciles as store_reconciles
from crmsync.store.items import STATES, Item

if TYPE_CHECKING:  # types only: this module is imported by the CLI too (its views)
    from crmsync.daemon.main import ConnectionRuntime, Daemon

T = TypeVar("T")

# Largest page of records one request may ask for.
MAX_PAGE = 1000
# How many records a restore / resync handles per step.
STEP = 100

State = Literal["pending", "syncing", "failed", "excluded", "queued", "deleted"]


class OperationError(Exception):
    """An operator request that cannot be done; `code` is machine-readable:
    not_found, not_running, invalid, ambiguous, config, failed."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class _View(msgspec.Struct, frozen=True, kw_only=True):
    pass


# --- status ---------------------------------------------------------------------------------


class QueueView(_View, frozen=True, kw_only=True):
    ready: int
    running: int
    queued: int


class ObjectView(_View, frozen=True, kw_only=True):
    hub_object: str
    app_object: str
    direction: str
    phase: str
    preview: bool = False
    running: bool = False  # initial sync done, workers and pollers running
    done: int = 0
    total: int = 0
    percent: float | None = None  # initial sync progress; None once complete
    eta_seconds: float | None = None
    started_at: float | None = None
    completed_at: float | None = None
    last_poll: float | None = None
    last_app_poll: float | None = None
    last_webhook: float | None = None
    last_reconcile: float | None = None
    last_reconcile_reason: str = ""  # "periodic", or why one was asked for (a journal gap)
    reconcile_pending: str = ""  # a reconciliation asked for and not run yet: why
    error: str = ""
    counts: dict[str, int] = {}
    parked_deletes: int = 0
    webhook_backlog: int = 0  # events stored, not synced yet (e.g. while disabled)
    queue: QueueView | None = None


class BudgetView(_View, frozen=True, kw_only=True):
    name: str
    window_used: int
    window_limit: int | None
    window_seconds: float
    daily_used: int
    daily_limit: int | None
    daily_remaining: int | None
    rate_limited: int = 0
    blocked_for: float = 0.0
    requests: int = 0
    unit: str = "requests"  # what the daily figures count: requests (HubSpot), tokens
    resets_at: float | None = None  # when the daily figures reset (epoch seconds)


class ConnectionView(_View, frozen=True, kw_only=True):
    name: str
    connector: str
    state: str  # starting | running | paused | disabled | error
    reason: str = ""
    restarts: int = 0
    since: float | None = None
    objects: list[ObjectView] = []
    # The app account's rate budget, for connectors that keep one (Pipedrive: tokens).
    budget: BudgetView | None = None


def budget_view(bs: RateBudgetStatistics, unit: str = "requests",
                now: float | None = None) -> BudgetView:
    """A rate budget's statistics for the status reply."""
    resets = getattr(bs, "daily_resets_in", None)
    at = (now if now is not None else time.time()) + resets if resets is not None else None
    return BudgetView(name=bs.name, window_used=bs.window_used, window_limit=bs.window_limit,
                      window_seconds=bs.window_seconds, daily_used=bs.daily_used,
                      daily_limit=bs.daily_limit, daily_remaining=bs.daily_remaining,
                      rate_limited=bs.rate_limited, blocked_for=round(bs.blocked_for, 3),
                      requests=bs.requests, unit=unit,
                      resets_at=round(at, 3) if at is not None else None)


class WebhookView(_View, frozen=True, kw_only=True):
    enabled: bool
    listen: str = ""
    accepted: int = 0
    rejected: int = 0
    last_delivery: float | None = None


class JournalView(_View, frozen=True, kw_only=True):
    """What `ctl status` shows of the journal."""

    state: str  # starting | running | paused | error
    reason: str = ""
    restarts: int = 0
    portal_id: int = 0
    offset: str | None = None
    last_read: float | None = None  # epoch seconds of the last read to the end or of an entry
    entries: int = 0
    events: int = 0  # events stored (new ones)
    duplicates: int = 0  # events already in the inbox
    skipped: int = 0  # unreadable events left out
    foreign: int = 0  # events of another account, left out
    gaps: int = 0
    last_gap: float | None = None
    last_gap_reason: str = ""
    subscriptions: list[str] = []
    token_expires_in: float | None = None
    token_grants: int = 0


class StatusView(_View, frozen=True, kw_only=True):
    version: str
    pid: int
    started_at: float
    uptime_seconds: float
    now: float
    ready: bool
    stopping: bool = False
    control_path: str | None = None
    webhooks: WebhookView
    rate_budget: BudgetView | None = None
    connections: list[ConnectionView] = []
    changes: str = "webhooks"  # how HubSpot's changes arrive: webhooks | journal | poll
    journal: JournalView | None = None  # the webhooks journal reader, with changes = journal


# --- records and history ----------------------------------------------------------------------


class RecordView(_View, frozen=True, kw_only=True):
    item_id: int
    hub_id: str | None
    app_id: str | None
    match_key: str
    state: str
    category: str = ""
    hint: str = ""
    detail: str = ""
    deleted_side: str = ""
    attempts: int = 0
    updated_at: float = 0.0
    # With `records … values`: the mapped values by field (hub property name), as the record
    # holds them now on `values_side` (the app's record where there is one, else the hub's).
    values: dict[str, str | None] = {}
    values_side: str = ""


class RecordsPage(_View, frozen=True, kw_only=True):
    connection: str
    hub_object: str
    app_object: str
    state: str
    category: str = ""
    total: int = 0  # records in this state (every category)
    records: list[RecordView] = []
    next_after: int | None = None  # pass as `after` for the next page; None: last page
    fields: list[str] = []  # with `values`: the mapped fields, in mapping order
    values_error: str = ""  # with `values`: why they could not be read (the rows still come)


class ChangeView(_View, frozen=True, kw_only=True):
    field: str
    side: str  # the side written
    old: str | None
    new: str | None
    winner: str  # whose value it is
    reason: str
    why: str  # the reason in plain words


class HistoryEntryView(_View, frozen=True, kw_only=True):
    at: float
    action: str
    hub_id: str | None
    app_id: str | None
    detail: str = ""
    changes: list[ChangeView] = []


class RecordHistory(_View, frozen=True, kw_only=True):
    connection: str
    hub_object: str
    record: RecordView
    entries: list[HistoryEntryView] = []


# --- preview / approve / resync --------------------------------------------------------------


class PlanEntryView(_View, frozen=True, kw_only=True):
    kind: str
    hub_id: str | None
    app_id: str | None
    detail: str = ""


class PlanView(_View, frozen=True, kw_only=True):
    hub_object: str
    app_object: str
    phase: str  # hub_index | app_pass | hub_pass | previewed | complete | not started
    preview: bool
    ready: bool  # the plan is complete and waits for approval
    done: int = 0
    total: int = 0
    summary: dict[str, int] = {}
    entries: list[PlanEntryView] = []


class PreviewView(_View, frozen=True, kw_only=True):
    connection: str
    objects: list[PlanView] = []


class ApproveResultView(_View, frozen=True, kw_only=True):
    hub_object: str
    approved: bool
    message: str = ""


class ApproveView(_View, frozen=True, kw_only=True):
    connection: str
    objects: list[ApproveResultView] = []


class ResyncResultView(_View, frozen=True, kw_only=True):
    hub_object: str
    mode: str  # record | failed | all
    submitted: int
    counts: dict[str, int] = {}  # the object sync's counts afterwards
    records: list[RecordView] = []  # with `record`: the record afterwards
    message: str = ""


class ResyncView(_View, frozen=True, kw_only=True):
    connection: str
    objects: list[ResyncResultView] = []


# --- restore / deletes ----------------------------------------------------------------------


class RestoreRowView(_View, frozen=True, kw_only=True):
    item_id: int
    hub_id: str | None
    app_id: str | None
    match_key: str
    restorable: bool
    reason: str = ""  # why not
    source_id: str | None = None  # the surviving record
    values: dict[str, Any] = {}  # what is (or would be) written
    outcome: str = ""  # with `yes`: restored | relinked | failed | skipped
    new_id: str | None = None
    state: str = ""  # with `yes`: the item's state afterwards
    detail: str = ""


class RestoreView(_View, frozen=True, kw_only=True):
    connection: str
    hub_object: str
    to: str
    applied: bool
    candidates: int = 0  # deleted records considered
    restorable: int = 0
    restored: int = 0
    failed: int = 0
    records: list[RestoreRowView] = []  # at most `limit` of them
    truncated: bool = False


class ParkedView(_View, frozen=True, kw_only=True):
    item_id: int
    deleted_side: str
    hub_id: str | None
    app_id: str | None
    match_key: str
    other_id: str  # the record still there, which `approve` deletes
    parked_at: float
    can_delete_other: bool


class DeletesView(_View, frozen=True, kw_only=True):
    connection: str
    hub_object: str
    app_object: str
    on_delete: str
    total: int = 0
    parked: list[ParkedView] = []


class ReviewRowView(_View, frozen=True, kw_only=True):
    item_id: int
    hub_id: str | None
    app_id: str | None
    outcome: str  # deleted | kept | refused | failed
    detail: str = ""


class ReviewView(_View, frozen=True, kw_only=True):
    connection: str
    hub_object: str
    action: str  # approve | ignore
    results: list[ReviewRowView] = []


# --- connections ------------------------------------------------------------------------------


class ConnectionStateView(_View, frozen=True, kw_only=True):
    connection: str
    state: str
    reason: str = ""
    changed: bool = False
    message: str = ""


class FootprintView(_View, frozen=True, kw_only=True):
    sync_id: str
    rows: dict[str, int] = {}


class DeleteSyncView(_View, frozen=True, kw_only=True):
    connection: str
    deleted: bool
    syncs: list[FootprintView] = []
    message: str = ""


class ReloadView(_View, frozen=True, kw_only=True):
    changes: list[str] = []


class PollNowView(_View, frozen=True, kw_only=True):
    connection: str
    objects: list[str] = []
    # A hub poll reads changes up to (now - this): younger ones wait for a later poll.
    hub_index_lag_seconds: float = 0.0
    hub_poll_interval_seconds: float | None = None  # the regular hub poll's period
    message: str = ""  # what the poll will and will not see, in plain words


class WebhookEntry(_View, frozen=True, kw_only=True):
    id: str
    entity: str
    url: str
    user: str | None = None
    active: bool = True


class WebhooksView(_View, frozen=True, kw_only=True):
    connection: str
    action: str  # list | register | remove
    webhooks: list[WebhookEntry] = []
    message: str = ""


# --- helpers ------------------------------------------------------------------------------------


def _store(daemon: Daemon) -> Store:
    if daemon.store is None:
        raise OperationError("not_running", "the daemon is still starting")
    return daemon.store


def _check_connection(daemon: Daemon, connection: str) -> None:
    if not any(c.name == connection for c in daemon.cfg.connections):
        known = ", ".join(sorted(c.name for c in daemon.cfg.connections)) or "none"
        raise OperationError("not_found", f"no connection {connection!r} (configured: {known})")


def _sync(daemon: Daemon, connection: str, obj: str) -> ObjectSync:
    _check_connection(daemon, connection)
    s = daemon.find_sync(connection, obj)
    if s is None:
        known = ", ".join(f"{x.hub_object} ({x.app_object})" for x in daemon.cfg.syncs
                          if x.connection == connection) or "none"
        raise OperationError("not_found", f"connection {connection!r} has no object sync "
                                          f"{obj!r} (configured: {known})")
    return s


def _syncs(daemon: Daemon, connection: str, obj: str) -> list[ObjectSync]:
    """One object sync (by hub or app object name), or every one of the connection."""
    if obj:
        return [_sync(daemon, connection, obj)]
    _check_connection(daemon, connection)
    return [s for s in daemon.cfg.syncs if s.connection == connection]


def _runtime(daemon: Daemon, connection: str) -> ConnectionRuntime:
    _check_connection(daemon, connection)
    rt = daemon.connections.get(connection)
    if rt is None:
        raise OperationError("not_running", f"connection {connection!r} is not running")
    return rt


def _ready_handle(daemon: Daemon, connection: str, sync: ObjectSync) -> ObjectSyncHandle:
    """The handle of an object sync whose connection runs."""
    rt = _runtime(daemon, connection)
    if rt.status.state in ("disabled", "paused", "error"):
        why = f": {rt.status.reason}" if rt.status.reason else ""
        raise OperationError("not_running", f"connection {connection!r} is "
                                            f"{rt.status.state}{why}")
    h = daemon.handle(connection, sync.hub_object)
    if h is None:
        raise OperationError("not_running", f"{connection}/{sync.hub_object} is not running "
                                            f"yet (connection {rt.status.state})")
    return h


async def _while_running(daemon: Daemon, connection: str, sync: ObjectSync,
                         fn: Callable[[ObjectSyncHandle], Awaitable[T]]) -> T:
    """Run `fn` with the object sync's handle, inside its `running()` scope: a `not_running`
    error if it does not run its workers yet, or if it stops (its connection stops or
    restarts) meanwhile — its writers and workers are gone then, and waiting for them would
    never end."""
    h = _ready_handle(daemon, connection, sync)
    try:
        async with h.running():
            return await fn(h)
    except ObjectSyncStopped:
        raise OperationError("not_running", f"connection {connection!r} stopped while the "
                                            "request was running; try again") from None
    except NotRunning as exc:
        raise OperationError("not_running", str(exc)) from None


def _extra_hint(it: Item, connection: str, obj: str) -> str:
    h = hint_for(it.state, it.category)
    if h:
        return h
    rid = it.hub_id or it.app_id or str(it.item_id)
    if it.state == "deleted":
        if it.category == "pending_review":
            return (f"The delete waits for review: `crmsync ctl deletes approve|ignore "
                    f"{connection} {obj} --record {rid}`.")
        # (A linked record deleted in an app that reuses ids lets go of its app id: the
        # snapshot tells that it was linked.)
        if it.deleted_side in ("hub", "app") and it.snapshot is None and (
                it.hub_id is None or it.app_id is None):
            return (f"Deleted on {it.deleted_side} before it was linked: there is no record on "
                    "the other side to restore it from; nothing to do.")
        if it.deleted_side in ("hub", "app"):
            return (f"Deleted on {it.deleted_side}; the other side kept its record. Re-create "
                    f"it with `crmsync ctl restore-deleted {connection} {obj} --to "
                    f"{it.deleted_side} --record {rid}`.")
        return "Deleted on both sides: nothing is left to sync."
    if it.state == "queued":
        return "Waiting for a running sync of the same record; it clears by itself."
    if it.state == "pending":
        return "Not synced yet: the initial sync has not reached it (or waits for approval)."
    return ""


def record_view(it: Item, connection: str, obj: str) -> RecordView:
    return RecordView(item_id=it.item_id, hub_id=it.hub_id, app_id=it.app_id,
                      match_key=it.match_key, state=it.state, category=it.category,
                      hint=_extra_hint(it, connection, obj), detail=it.detail,
                      deleted_side=it.deleted_side, attempts=it.attempts,
                      updated_at=it.updated_at)


def _parse_record(record: str, side: str) -> tuple[str, str]:
    """`hub:123` / `app:123` name the side; a bare id is looked up on both sides."""
    if not side and record[:4] in ("hub:", "app:"):
        return record[4:], record[:3]
    if side not in ("", "hub", "app"):
        raise OperationError("invalid", f"side must be hub or app, not {side!r}")
    return record, side


async def _find(daemon: Daemon, sync: ObjectSync, record: str, side: str = "") -> Item:
    rid, side = _parse_record(record, side)
    sid = sync_id_of(sync.connection, sync.hub_object)
    found = await _store(daemon).read(reports.find_record, sid, rid, side)
    if not found:
        where = f"{side} record" if side else "record"
        raise OperationError("not_found", f"no {where} {rid!r} in {sid}")
    if len(found) > 1:
        raise OperationError("ambiguous", f"{rid!r} is a hub id and an app id in {sid}: "
                                          f"write hub:{rid} or app:{rid}")
    return found[0]


# --- status -------------------------------------------------------------------------------------


def _object_view(st: Any, report: reports.SyncReport | None, handle: ObjectSyncHandle | None,
                 sync: ObjectSync, now: float, reconcile_pending: str = "") -> ObjectView:
    initial = report.initial if report is not None else None
    phase, done, total = st.phase, st.done, st.total
    started, completed = st.started_at, st.completed_at
    if phase == "starting" and initial is not None:
        phase, done, total = initial.phase, initial.done, initial.total
        started, completed = initial.started_at, initial.completed_at
    elif phase == "starting":
        phase = "not started"
    stats = handle.statistics() if handle is not None else None
    running = stats is not None and stats.running
    percent = eta = None
    if phase != "complete" and not running and total > 0:
        percent = round(min(100.0, 100.0 * done / total), 1)
        if started and done > 0 and now > started:
            rate = done / (now - started)
            eta = round(max(0.0, (total - done) / rate), 1)
    q = stats.queue if stats is not None else None
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
        queue=QueueView(ready=q.ready, running=q.running, queued=q.queued) if q else None)


async def status(daemon: Daemon, connection: str = "") -> StatusView:
    """The daemon, every connection (or one) and every object sync, with counts per state."""
    if connection:
        _check_connection(daemon, connection)
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
            request = asked.get(sid)
            objects.append(_object_view(st, found.get(sid),
                                        daemon.handle(rt.settings.name, s.hub_object), s,
                                        now, request.reason if request is not None else ""))
        app_budget = daemon.rate_budget(rt.settings.name)
        conns.append(ConnectionView(name=rt.status.name, connector=rt.status.connector,
                                    state=rt.status.state, reason=rt.status.reason,
                                    restarts=rt.status.restarts, since=rt.status.since,
                                    objects=objects,
                                    budget=(budget_view(app_budget, "tokens", now)
                                            if app_budget is not None else None)))
    budget = None
    hub_budget = daemon.rate_budget()
    if hub_budget is not None:
        budget = budget_view(hub_budget, "requests", now)
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
        rate_budget=budget, connections=conns, changes=daemon.cfg.hub.changes,
        journal=daemon.journal.view() if daemon.journal is not None else None)


# --- records and history ------------------------------------------------------------------------


async def records(daemon: Daemon, connection: str, obj: str, state: str, category: str = "",
                  limit: int = 100, after: int = 0, values: bool = False) -> RecordsPage:
    """One page of an object sync's records in `state` (optionally of one category), by item
    id; `next_after` continues it. With `values`, each record also carries its mapped values,
    read now from one side (runtime/record_values.py: one batch read per side); if they
    cannot be read (the object sync is not running, a side fails), the page still comes,
    with `values_error` saying why."""
    sync = _sync(daemon, connection, obj)
    if state not in STATES:
        raise OperationError("invalid", f"state must be one of {', '.join(STATES)}")
    limit = max(1, min(limit, MAX_PAGE))
    sid = sync_id_of(connection, sync.hub_object)

    def page(conn: sqlite3.Connection) -> tuple[list[Item], dict[str, int]]:
        return (store_items.list_items(conn, sid, state, category or None, limit, after),
                store_items.counts(conn, sid))

    items, counts = await _store(daemon).read(page)
    views = [record_view(it, connection, sync.hub_object) for it in items]
    fields: list[str] = []
    values_error = ""
    if values:
        try:
            read, fields = await _while_running(
                daemon, connection, sync, lambda h: h.read_values(items))
            views = [msgspec.structs.replace(v, values=read[v.item_id].values,
                                             values_side=read[v.item_id].side)
                     if v.item_id in read else v for v in views]
        except OperationError as exc:
            values_error = f"values not read: {exc.message}"
        except Exception as exc:  # a report's extra: the rows still come, the error is shown
            daemon_log().warning("record values not read", connection=connection,
                                 object=sync.hub_object, exc_info=True)
            values_error = f"values not read: {type(exc).__name__}: {exc}"
    return RecordsPage(
        connection=connection, hub_object=sync.hub_object, app_object=sync.app_object,
        state=state, category=category, total=counts.get(state, 0), records=views,
        next_after=items[-1].item_id if len(items) == limit else None, fields=fields,
        values_error=values_error)


_WHY = {
    "one_sided_change": "changed on {winner} only since the last sync",
    "conflict_winner": "changed on both sides; {winner} wins conflicts",
    "empty_winner": "changed on both sides; the winner's value was empty, so {winner}'s "
                    "value was kept",
    "first_pairing": "first pairing, the values differed; {winner} wins conflicts",
    "first_pairing_empty": "first pairing, empty on {side}: took {winner}'s value",
    "new_record": "record created on {side} from {winner}'s values",
    "first_pairing_one_way": "first pairing, the values differed; the field syncs one way, "
                             "{winner} → {side}, so {winner}'s value was copied (the "
                             "direction rule: conflict_winner applies to two-way fields only)",
    "conflict_one_way": "changed on both sides; the field syncs one way, {winner} → {side}, "
                        "so {winner}'s value was copied (the direction rule: conflict_winner "
                        "applies to two-way fields only)",
}

_changes_dec = msgspec.json.Decoder(list[FieldChange])


def _changes(blob: bytes) -> list[ChangeView]:
    try:
        changes = _changes_dec.decode(blob or b"[]")
    except msgspec.DecodeError:
        return []
    return [ChangeView(field=c.field, side=c.side, old=c.old, new=c.new, winner=c.winner,
                       reason=c.reason,
                       why=_WHY.get(c.reason, c.reason).format(winner=c.winner, side=c.side))
            for c in changes]


async def history(daemon: Daemon, connection: str, obj: str, record: str, side: str = "",
                  limit: int = 50) -> RecordHistory:
    """A record's decisions, newest first, with per field the old and new value, the side
    that won and why."""
    sync = _sync(daemon, connection, obj)
    it = await _find(daemon, sync, record, side)
    sid = sync_id_of(connection, sync.hub_object)
    rows = await _store(daemon).read(store_items.history_for, sid, it.item_id,
                                     max(1, min(limit, MAX_PAGE)))
    return RecordHistory(
        connection=connection, hub_object=sync.hub_object,
        record=record_view(it, connection, sync.hub_object),
        entries=[HistoryEntryView(at=at, action=action, hub_id=h, app_id=a, detail=detail,
                                  changes=_changes(changes))
                 for at, h, a, action, changes, detail in rows])


# --- preview / approve ------------------------------------------------------------------------


async def preview(daemon: Daemon, connection: str, obj: str = "",
                  limit: int = 20) -> PreviewView:
    """The initial-sync plan of object syncs that start in preview: counts per kind (match,
    create_hub, create_app, duplicate, conflict, exclude, ...) and the first entries of each."""
    syncs = _syncs(daemon, connection, obj)
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

    return PreviewView(connection=connection, objects=await _store(daemon).read(read))


async def approve(daemon: Daemon, connection: str, obj: str = "") -> ApproveView:
    """Let object syncs whose preview is ready run their initial sync for real."""
    syncs = _syncs(daemon, connection, obj)
    store = _store(daemon)
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
            h = daemon.handle(connection, s.hub_object)
            if h is not None:
                h.approve()
        out.append(ApproveResultView(hub_object=s.hub_object, approved=ok, message=message))
    return ApproveView(connection=connection, objects=out)


# --- resync -----------------------------------------------------------------------------------


def _key(it: Item) -> tuple[Side, str]:
    return ("hub", it.hub_id) if it.hub_id else ("app", it.app_id or "")


async def _submit_wait(h: ObjectSyncHandle, keys: list[tuple[Side, str]]) -> None:
    try:
        await h.resync(keys)
    except SyncFailed as exc:
        raise OperationError("failed", f"the sync failed: {exc} (the connection restarts; "
                                       "see the log)") from exc


async def resync(daemon: Daemon, connection: str, obj: str = "", failed: bool = False,
                 record: str = "", side: str = "") -> ResyncView:
    """Sync records again now and wait for it: one record, every failed record, or (neither)
    every record of the object sync (a reconciliation: both sides re-read in full)."""
    if failed and record:
        raise OperationError("invalid", "give either --failed or --record, not both")
    if record and not obj:
        raise OperationError("invalid", "--record needs the OBJECT")
    syncs = _syncs(daemon, connection, obj)
    store = _store(daemon)
    out = []
    for s in syncs:
        sid = sync_id_of(connection, s.hub_object)
        if record:
            it = await _find(daemon, s, record, side)

            async def one(h: ObjectSyncHandle, it: Item = it) -> int:
                await _submit_wait(h, [_key(it)])
                return 1

            n = await _while_running(daemon, connection, s, one)
            after = await store.read(store_items.get_item, it.item_id)
            views = [record_view(after, connection, s.hub_object)] if after else []
            mode = "record"
        elif failed:
            async def all_failed(h: ObjectSyncHandle, sid: str = sid) -> int:
                n, after = 0, 0
                while True:
                    page = await store.read(store_items.list_items, sid, "failed", None, STEP,
                                            after)
                    if not page:
                        return n
                    after = page[-1].item_id
                    await _submit_wait(h, [_key(it) for it in page])
                    n += len(page)

            n = await _while_running(daemon, connection, s, all_failed)
            views, mode = [], "failed"
        else:
            n = await _while_running(daemon, connection, s, lambda h: h.reconcile())
            views, mode = [], "all"
        counts = await store.read(store_items.counts, sid)
        message = (f"reconciled: {n} records read on both sides and synced again"
                   if mode == "all" else f"{n} record(s) synced again")
        dupes = await store.read(store_items.count_of, sid, "failed", "duplicate")
        if dupes:
            # A resync re-runs duplicate detection; it cannot resolve a duplicate itself.
            message += (f"; {dupes} still failed as duplicate(s): change or remove their key, "
                        "or merge them into the record holding it (see `crmsync ctl records "
                        f"{connection} {s.hub_object} --state failed`)")
        out.append(ResyncResultView(hub_object=s.hub_object, mode=mode, submitted=n,
                                    counts=counts, records=views, message=message))
    return ResyncView(connection=connection, objects=out)


# --- restore-deleted ----------------------------------------------------------------------------


def _restore_row(c: RestoreCandidate, r: RestoreResult | None = None) -> RestoreRowView:
    it = c.item
    return RestoreRowView(
        item_id=it.item_id, hub_id=it.hub_id, app_id=it.app_id, match_key=it.match_key,
        restorable=c.restorable, reason=c.reason, source_id=c.source_id, values=c.values,
        outcome=r.outcome if r else "", new_id=r.new_id if r else None,
        state=r.state if r else "", detail=r.detail if r else "")


async def restore_deleted(daemon: Daemon, connection: str, obj: str, to: str,
                          record: str = "", side: str = "", yes: bool = False,
                          limit: int = 100) -> RestoreView:
    """Records deleted on `to` and what restoring them would write (without `yes`); with
    `yes`, re-create each on `to` from the snapshot and the other side's current values and
    relink it (see runtime/restore.py). `limit` bounds the rows listed, not the work done."""
    if to not in ("hub", "app"):
        raise OperationError("invalid", f"--to must be hub or app, not {to!r}")
    side_to: Side = "hub" if to == "hub" else "app"
    sync = _sync(daemon, connection, obj)
    sid = sync_id_of(connection, sync.hub_object)
    store = _store(daemon)
    limit = max(0, min(limit, MAX_PAGE))
    single: Item | None = await _find(daemon, sync, record, side) if record else None

    async def work(h: ObjectSyncHandle) -> RestoreView:
        rows: list[RestoreRowView] = []
        seen = restorable = restored = failed = 0
        after: int | None = 0
        while after is not None:
            if single is not None:
                batch, after = [single], None
            else:
                batch, after = await store.read(reports.deleted_on, sid, to, after, STEP)
            if not batch:
                continue
            plan = await h.plan_restore(side_to, batch)
            seen += len(plan)
            restorable += sum(c.restorable for c in plan)
            results: list[RestoreResult | None] = [None] * len(plan)
            if yes and any(c.restorable for c in plan):
                done = await h.apply_restore(plan)
                results = list(done)
                restored += sum(r.outcome in ("restored", "relinked") for r in done)
                failed += sum(r.outcome == "failed" for r in done)
            for c, r in zip(plan, results, strict=True):
                if yes and r is None:
                    r = RestoreResult(item_id=c.item.item_id, outcome="skipped",
                                      detail=c.reason)
                if len(rows) < limit:
                    rows.append(_restore_row(c, r))
        return RestoreView(connection=connection, hub_object=sync.hub_object, to=to,
                           applied=yes, candidates=seen, restorable=restorable,
                           restored=restored, failed=failed, records=rows,
                           truncated=seen > len(rows))

    return await _while_running(daemon, connection, sync, work)


# --- parked deletes -----------------------------------------------------------------------------


def _writable(sync: ObjectSync, side: str) -> bool:
    return sync.direction in ("both", f"to_{side}")


async def deletes(daemon: Daemon, connection: str, obj: str, limit: int = 100) -> DeletesView:
    """Deletes parked for review (`on_delete = "review"`), oldest first."""
    sync = _sync(daemon, connection, obj)
    sid = sync_id_of(connection, sync.hub_object)

    def read(conn: sqlite3.Connection) -> tuple[list[reports.ParkedDelete], int]:
        return (reports.parked(conn, sid, limit=max(0, min(limit, MAX_PAGE))),
                reports.parked_count(conn, sid))

    parked, total = await _store(daemon).read(read)
    return DeletesView(
        connection=connection, hub_object=sync.hub_object, app_object=sync.app_object,
        on_delete=sync.on_delete, total=total,
        parked=[ParkedView(item_id=p.item.item_id, deleted_side=p.deleted_side,
                           hub_id=p.item.hub_id, app_id=p.item.app_id,
                           match_key=p.item.match_key, other_id=p.other_id,
                           parked_at=p.parked_at,
                           can_delete_other=_writable(sync, "app" if p.deleted_side == "hub"
                                                      else "hub"))
                for p in parked])


async def resolve_deletes(daemon: Daemon, connection: str, obj: str, action: str,
                          record: str = "", side: str = "", every: bool = False) -> ReviewView:
    """Approve (delete the other side's record too, where the direction allows) or ignore
    (keep it) parked deletes: one (`record`) or all of them (`every`)."""
    if action not in ("approve", "ignore"):
        raise OperationError("invalid", f"action must be approve or ignore, not {action!r}")
    if bool(record) == bool(every):
        raise OperationError("invalid", "give either --record ID or --all")
    sync = _sync(daemon, connection, obj)
    sid = sync_id_of(connection, sync.hub_object)
    store = _store(daemon)
    ids: list[int] | None = None
    if record:
        ids = [(await _find(daemon, sync, record, side)).item_id]

    async def work(h: ObjectSyncHandle) -> ReviewView:
        rows: list[ReviewRowView] = []
        handled: set[int] = set()
        while True:
            # Refused and failed ones stay parked: go on past them.
            parked = [p for p in await store.read(reports.parked, sid, ids)
                      if p.item.item_id not in handled][:STEP]
            if not parked:
                break
            results = await h.resolve_parked(parked, action == "approve")
            by_id = {p.item.item_id: p.item for p in parked}
            handled.update(by_id)
            rows.extend(ReviewRowView(item_id=r.item_id, hub_id=by_id[r.item_id].hub_id,
                                      app_id=by_id[r.item_id].app_id, outcome=r.outcome,
                                      detail=r.detail) for r in results)
        if ids is not None and not rows:
            raise OperationError("not_found", f"record {record!r} has no parked delete")
        return ReviewView(connection=connection, hub_object=sync.hub_object, action=action,
                          results=rows)

    return await _while_running(daemon, connection, sync, work)


# --- connections --------------------------------------------------------------------------------


async def _stop_gently(daemon: Daemon, connection: str) -> None:
    """Stop handing out work, let running syncs finish (bounded), then cancel the
    connection's tasks."""
    rt = daemon.connections.get(connection)
    if rt is None:
        return
    if rt.handle is not None:
        with trio.move_on_after(min(daemon.cfg.daemon.shutdown_grace_seconds, 10.0)):
            await rt.handle.drain()
    daemon.stop_connection(connection)


async def _restart(daemon: Daemon, connection: str) -> None:
    await _stop_gently(daemon, connection)
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
    _check_connection(daemon, connection)
    store = _store(daemon)
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
    _check_connection(daemon, connection)
    store = _store(daemon)
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
    _check_connection(daemon, connection)
    store = _store(daemon)
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
    daemon_log().warning("object syncs deleted", connection=connection,
                         syncs=[f.sync_id for f in before],
                         items=sum(f.rows.get("items", 0) for f in before))
    return DeleteSyncView(connection=connection, deleted=True, syncs=before,
                          message="deleted; the connection stays disabled")


def daemon_log() -> Any:
    import structlog

    return structlog.get_logger("crmsync.control")


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


async def webhooks(daemon: Daemon, connection: str, action: str = "list") -> WebhooksView:
    """The webhooks crmsync keeps in the app for this connection, through the app's API:
    list them, register them (one per object, pointing at this daemon, replacing ones that
    point elsewhere) or remove them. Only for connectors that manage webhooks (Pipedrive)."""
    _check_connection(daemon, connection)
    if action not in ("list", "register", "remove"):
        raise OperationError("invalid", f"webhooks action must be list, register or remove, "
                                        f"not {action!r}")
    rt = daemon.connections.get(connection)
    app = rt.app if rt is not None else None
    if app is None:
        state = rt.status.state if rt is not None else "stopped"
        raise OperationError("not_running", f"connection {connection!r} is not connected "
                                            f"({state}); its webhooks cannot be reached now")
    calls = {"list": getattr(app, "list_webhooks", None),
             "register": getattr(app, "register_webhooks", None),
             "remove": getattr(app, "remove_webhooks", None)}
    call = calls[action]
    if call is None:
        kind = rt.status.connector if rt is not None else "?"
        raise OperationError("invalid", f"connection {connection!r} ({kind}) does not "
                                        "register webhooks through an API")
    try:
        hooks = await call()
    except ConnectorError as exc:
        raise OperationError("failed", f"{action} webhooks of {connection!r}: "
                                       f"{exc.message}") from exc
    entries = [WebhookEntry(id=h.id, entity=h.entity, url=h.url, user=h.user, active=h.active)
               for h in hooks]
    done = {"list": "registered", "register": "registered now", "remove": "removed"}[action]
    return WebhooksView(connection=connection, action=action, webhooks=entries,
                        message=f"{len(entries)} webhook(s) {done}")


async def poll_now(daemon: Daemon, connection: str, obj: str = "") -> PollNowView:
    """Ask the pollers of one object sync (or all of the connection) to poll at once, and
    return without waiting for them. The reply says what those polls cannot see yet: HubSpot's
    search index lags behind its writes, so a hub poll reads changes up to
    `search_index_lag_seconds` ago and leaves younger ones to the first poll after that."""
    syncs = _syncs(daemon, connection, obj)
    polled: list[str] = []
    lag = 0.0
    intervals: list[float] = []
    for s in syncs:
        h = _ready_handle(daemon, connection, s)
        if not h.is_running:
            phase = h.statistics().status.phase
            raise OperationError("not_running", f"{connection}/{s.hub_object} is in its "
                                                f"initial sync (phase {phase}); try again "
                                                "once it is complete")
        h.poll_now()
        polled.append(s.hub_object)
        stats = h.statistics()
        lag = max(lag, stats.hub_index_lag)
        if stats.hub_poller is not None:
            intervals.append(stats.hub_poller.interval)
    interval = max(intervals) if intervals else None
    message = f"polling {', '.join(polled)} now"
    if daemon.journal is not None:
        daemon.journal.read_now()
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
