"""The views of the control protocol: what each operator request gets back.

Each is a frozen msgspec Struct the daemon's operations (control/ops/) build and the control
protocol sends as it is, as the reply's body; `crmsync ctl` renders them. This module imports
nothing of the daemon, the runtime, the store or the connectors, so the CLI (and anything else
that only speaks the protocol) can use it without loading the daemon.

Views follow schema evolution (msgspec): fields added later get defaults, types never change.
"""

from __future__ import annotations

from typing import Any

import msgspec

# Largest page of records one request may ask for.
MAX_PAGE = 1000


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


# --- backup -----------------------------------------------------------------------------------


class BackupView(_View, frozen=True, kw_only=True):
    path: str  # the backup file (absolute)
    bytes: int
    schema_version: int
    taken_at: float  # the instant the copy shows (epoch seconds)
    duration_ms: float
    items: int = 0  # records indexed, over every object sync
