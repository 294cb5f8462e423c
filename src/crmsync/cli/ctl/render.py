"""What `crmsync ctl` prints for people: one rendering per reply (rich tables), the JSON of
`--json`, the error line, and the time and duration formats they share."""

from __future__ import annotations

import argparse
import os
import time
from datetime import UTC, datetime
from typing import Any, TextIO

import msgspec

from crmsync.control import protocol as p
from crmsync.control.views import BudgetView, StatusView

COUNT_STATES = ["syncing", "failed", "excluded", "queued", "pending", "deleted"]
# Count columns' headers where space is short.
WATCH_HEADERS = {"syncing": "sync", "failed": "fail", "excluded": "excl", "queued": "queue",
                 "pending": "pend", "deleted": "del"}


def console_for(out: TextIO) -> Any:
    from rich.console import Console

    # A pipe or a file gets 120 columns (rich would use 80), a terminal its own width.
    tty = hasattr(out, "isatty") and out.isatty()
    width = None if tty else int(os.environ.get("COLUMNS", "") or 120)
    return Console(file=out, highlight=False, soft_wrap=False, width=width)


def _when(ts: float | None, now: float | None = None) -> str:
    if not ts:
        return "-"
    ago = (now or time.time()) - ts
    if ago < 0:
        return "now"
    return f"{duration(ago)} ago"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s"
    if s < 86400:
        return f"{s // 3600} h {s % 3600 // 60} min"
    return f"{s // 86400} d {s % 86400 // 3600} h"


def size(n: int) -> str:
    """A byte count for people: bytes below 1 KiB, else KiB, MiB, ... with one decimal."""
    value, units = float(n), ["bytes", "KiB", "MiB", "GiB", "TiB"]
    while value >= 1024 and len(units) > 1:
        value /= 1024
        units.pop(0)
    return f"{n:,} bytes" if n < 1024 else f"{value:,.1f} {units[0]}"


def iso(ts: float | None) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds") if ts else ""


def print_json(reply: Any, out: TextIO) -> None:
    out.write(msgspec.json.format(msgspec.json.encode(reply), indent=2).decode() + "\n")


def table(title: str | None = None, **kw: Any) -> Any:
    from rich import box
    from rich.table import Table

    return Table(title=title, box=box.SIMPLE_HEAD, title_justify="left", **kw)


def _budget_text(b: BudgetView, now: float | None = None) -> str:
    window = f"{b.window_used}/{b.window_limit or '∞'} per {b.window_seconds:g} s"
    daily = f"{b.daily_used:,}/{b.daily_limit:,}" if b.daily_limit else f"{b.daily_used:,}"
    unit = "" if b.unit == "requests" else f" {b.unit}"
    extra = f", blocked for {b.blocked_for:.1f} s" if b.blocked_for else ""
    if b.resets_at:
        left = b.resets_at - (now or time.time())
        extra += (f", resets {datetime.fromtimestamp(b.resets_at, UTC):%H:%M} UTC "
                  f"(in {duration(left)})")
    return f"{window}, today {daily}{unit}{extra}"


def budget_line(st: StatusView) -> str:
    b = st.rate_budget
    if b is None:
        return ""
    return f"HubSpot rate budget: {_budget_text(b, st.now)}"


def _journal_line(st: StatusView) -> str:
    """How HubSpot's changes arrive, when not by webhooks; the journal reader's state."""
    if st.changes == "poll":
        return "HubSpot changes: polling only"
    j = st.journal
    if j is None:
        return "" if st.changes == "webhooks" else f"HubSpot changes: {st.changes}"
    colour = {"running": "green", "paused": "yellow", "error": "red"}.get(j.state, "cyan")
    line = (f"HubSpot changes: journal [{colour}]{j.state}[/{colour}]"
            + (f": {j.reason}" if j.reason else "")
            + f", read {_when(j.last_read, st.now)}, {j.entries:,} entries, {j.events:,} events")
    if j.skipped:
        line += f", [yellow]{j.skipped:,} unreadable events skipped[/yellow]"
    if j.gaps:
        line += (f", [yellow]{j.gaps} gap(s), last {_when(j.last_gap, st.now)}: "
                 f"{j.last_gap_reason}[/yellow]")
    return line


def shown_states(objects: list[Any]) -> list[str]:
    """The count columns worth a column: syncing and failed always, the others when some
    object sync has records in that state (--json has them all)."""
    return [s for s in COUNT_STATES
            if s in ("syncing", "failed") or any(o.counts.get(s, 0) for o in objects)]


def _progress(o: Any) -> str:
    if o.running or o.phase == "complete":
        return "in sync"
    if o.percent is None:
        return o.phase
    eta = f", {duration(o.eta_seconds)} left" if o.eta_seconds is not None else ""
    return f"{o.phase} {o.percent:.0f}%{eta}"


def render_status(st: StatusView, console: Any) -> None:
    now = st.now
    wh = st.webhooks
    hook = (f"webhooks {wh.accepted} accepted, last {_when(wh.last_delivery, now)}"
            if wh.enabled or wh.accepted else "webhooks off")
    console.print(f"[bold]crmsync {st.version}[/bold]  pid {st.pid}  up "
                  f"{duration(st.uptime_seconds)}  {hook}")
    budget = budget_line(st)
    if budget:
        console.print(budget)
    journal = _journal_line(st)
    if journal:
        console.print(journal)
    if st.control_path:
        console.print(f"control socket {st.control_path}")
    for c in st.connections:
        colour = {"running": "green", "disabled": "yellow", "paused": "yellow",
                  "error": "red"}.get(c.state, "cyan")
        reason = f": {c.reason}" if c.reason else ""
        restarts = f" ({c.restarts} restarts)" if c.restarts else ""
        t = table(f"connection [bold]{c.name}[/bold] ({c.connector}): "
                   f"[{colour}]{c.state}[/{colour}]{reason}{restarts}")
        narrow = console.width < 110
        states = shown_states(c.objects)
        t.add_column("object", no_wrap=True, max_width=30 if narrow else None)
        t.add_column("initial sync", min_width=12)
        for s in states:
            head = WATCH_HEADERS[s] if narrow else s
            t.add_column(head, justify="right", no_wrap=True, min_width=len(head))
        notes = []
        for o in c.objects:
            t.add_row(f"{o.hub_object} ⇄ {o.app_object}", _progress(o),
                      *(f"{o.counts.get(s, 0):,}" for s in states))
            extra = [f"last hub poll {_when(o.last_poll, now)}",
                     f"app poll {_when(o.last_app_poll, now)}",
                     f"webhook {_when(o.last_webhook, now)}"]
            if o.reconcile_pending:
                extra.append(f"[yellow]reconciliation due ({o.reconcile_pending})[/yellow]")
            elif o.last_reconcile and o.last_reconcile_reason not in ("", "periodic"):
                extra.append(f"reconciled {_when(o.last_reconcile, now)} "
                             f"({o.last_reconcile_reason})")
            if o.preview:
                extra.append("[yellow]in preview[/yellow]")
            if o.parked_deletes:
                extra.append(f"[yellow]{o.parked_deletes} delete(s) to review[/yellow]")
            if o.webhook_backlog:
                extra.append(f"[yellow]{o.webhook_backlog:,} webhook event(s) waiting[/yellow]")
            if o.error:
                extra.append(f"[red]{o.error}[/red]")
            notes.append(f"  {o.hub_object}: " + ", ".join(extra))
        console.print(t)
        if c.budget is not None:
            console.print(f"  rate budget: {_budget_text(c.budget, now)}")
        for n in notes:
            console.print(n)


def render_records(r: p.RecordsReply, console: Any) -> None:
    t = table(f"{r.connection} {r.hub_object} ⇄ {r.app_object}: {r.state}"
               + (f" ({r.category})" if r.category else "")
               + f" — {len(r.records)} of {r.total:,}")
    for col in ("hub id", "app id", "match key", "category", "detail"):
        t.add_column(col, overflow="fold")
    hints: dict[str, str] = {}
    for x in r.records:
        t.add_row(x.hub_id or "-", x.app_id or "-", x.match_key or "-",
                  x.category or x.deleted_side or "-", x.detail or "-")
        if x.hint:
            hints.setdefault(x.hint, x.category or x.state)
    console.print(t)
    for hint, what in list(hints.items())[:5]:
        console.print(f"[bold]{what}[/bold]: {hint}")
    if len(hints) > 5:
        console.print("(each record's hint is in --json)")
    if r.next_after is not None:
        console.print(f"more: --after {r.next_after}")


def render_history(r: p.HistoryReply, console: Any) -> None:
    rec = r.record
    console.print(f"[bold]{r.connection} {r.hub_object}[/bold] hub {rec.hub_id or '-'} ⇄ app "
                  f"{rec.app_id or '-'}: {rec.state}"
                  + (f" ({rec.category})" if rec.category else ""))
    if not r.entries:
        console.print("no decisions recorded")
    for e in r.entries:
        console.print(f"\n{iso(e.at)}  [bold]{e.action}[/bold]"
                      + (f"  {e.detail}" if e.detail else ""))
        if e.changes:
            t = table()
            for col in ("field", "written to", "old", "new", "winner", "why"):
                t.add_column(col, overflow="fold")
            for ch in e.changes:
                t.add_row(ch.field, ch.side, "∅" if ch.old is None else ch.old,
                          "∅" if ch.new is None else ch.new, ch.winner, ch.why)
            console.print(t)


PLAN_KINDS = {"match": "pairs matched", "create_hub": "creates in the hub",
              "create_app": "creates in the app", "update_hub": "updates in the hub",
              "update_app": "updates in the app", "duplicate": "duplicates",
              "conflict": "conflicting fields", "exclude": "excluded", "fail": "would fail"}


def render_preview(r: p.PreviewReply, console: Any) -> None:
    for o in r.objects:
        state = ("ready: approve with `crmsync ctl approve "
                 f"{r.connection} {o.hub_object}`" if o.ready
                 else f"phase {o.phase}" + (f" ({o.done:,}/{o.total:,})" if o.total else ""))
        console.print(f"[bold]{r.connection} {o.hub_object} ⇄ {o.app_object}[/bold]: "
                      f"{'preview, ' if o.preview else ''}{state}")
        if not o.summary:
            console.print("  no plan recorded" + ("" if o.preview else
                                                   " (the object sync did not start in "
                                                   "preview)"))
            continue
        t = table()
        t.add_column("what")
        t.add_column("count", justify="right")
        for k, n in sorted(o.summary.items()):
            t.add_row(PLAN_KINDS.get(k, k), f"{n:,}")
        console.print(t)
        if o.entries:
            t = table("first entries")
            for col in ("kind", "hub id", "app id", "detail"):
                t.add_column(col, overflow="fold")
            for e in o.entries:
                t.add_row(e.kind, e.hub_id or "-", e.app_id or "-", e.detail or "-")
            console.print(t)


def render_simple_rows(title: str, columns: list[str], rows: list[list[str]],
                       console: Any) -> None:
    t = table(title)
    for col in columns:
        t.add_column(col, overflow="fold")
    for row in rows:
        t.add_row(*row)
    console.print(t)


def render_restore(r: p.RestoreReply, console: Any) -> None:
    head = (f"{r.connection} {r.hub_object}: {r.candidates} deleted on {r.to}, "
            f"{r.restorable} restorable")
    if r.applied:
        head += f", {r.restored} restored, {r.failed} failed"
    rows = []
    for x in r.records:
        values = ", ".join(f"{k}={v!r}" for k, v in x.values.items())
        what = (x.outcome + (f" → {x.new_id}" if x.new_id else "") + (
            f" ({x.state})" if x.state else "")) if r.applied else (
            "would re-create" if x.restorable else "skipped")
        rows.append([x.hub_id or "-", x.app_id or "-", x.match_key or "-", what,
                     values if x.restorable else x.reason, x.detail if r.applied else ""])
    render_simple_rows(head, ["hub id", "app id", "match key", "action", "values / why not",
                              "detail"], rows, console)
    if r.truncated:
        console.print(f"(showing {len(r.records)} of {r.candidates})")
    if not r.applied and r.restorable:
        console.print("Nothing written yet: add --yes to re-create these records.")


def render_deletes(r: p.DeletesReply, console: Any) -> None:
    rows = [[x.hub_id or "-", x.app_id or "-", x.match_key or "-", x.deleted_side,
             f"{'delete' if x.can_delete_other else 'keep (direction)'} "
             f"{'app' if x.deleted_side == 'hub' else 'hub'} {x.other_id}",
             iso(x.parked_at)] for x in r.parked]
    render_simple_rows(f"{r.connection} {r.hub_object}: {r.total} delete(s) waiting for review "
                       f"(on_delete = {r.on_delete})",
                       ["hub id", "app id", "match key", "deleted on", "approve would",
                        "parked at"], rows, console)
    if r.parked:
        console.print(f"Resolve with `crmsync ctl deletes approve|ignore {r.connection} "
                      f"{r.hub_object} --record ID` (or --all).")


def render(reply: Any, console: Any) -> None:
    match reply:
        case p.PingReply():
            console.print(f"crmsync {reply.version} (pid {reply.pid}, protocol "
                          f"{reply.protocol}) answers")
        case p.StatusReply():
            render_status(reply, console)
        case p.RecordsReply():
            render_records(reply, console)
        case p.HistoryReply():
            render_history(reply, console)
        case p.PreviewReply():
            render_preview(reply, console)
        case p.ApproveReply():
            for a in reply.objects:
                console.print(f"{reply.connection} {a.hub_object}: {a.message}")
        case p.ResyncReply():
            for o in reply.objects:
                counts = ", ".join(f"{s} {o.counts.get(s, 0):,}" for s in COUNT_STATES)
                console.print(f"{reply.connection} {o.hub_object}: {o.message}; now {counts}")
                for x in o.records:
                    console.print(f"  hub {x.hub_id or '-'} ⇄ app {x.app_id or '-'}: {x.state}"
                                  + (f" ({x.category}: {x.detail})" if x.category else ""))
        case p.RestoreReply():
            render_restore(reply, console)
        case p.DeletesReply():
            render_deletes(reply, console)
        case p.ResolveDeletesReply():
            render_simple_rows(
                f"{reply.connection} {reply.hub_object}: {reply.action}",
                ["hub id", "app id", "outcome", "detail"],
                [[x.hub_id or "-", x.app_id or "-", x.outcome, x.detail]
                 for x in reply.results], console)
        case p.DisableReply() | p.EnableReply():
            console.print(f"{reply.connection}: {reply.message} (state {reply.state}"
                          + (f": {reply.reason}" if reply.reason else "") + ")")
        case p.DeleteSyncReply():
            render_simple_rows(
                f"{reply.connection}: crmsync's records" + (" (deleted)" if reply.deleted
                                                            else ""),
                ["object sync", "records", "history", "other rows"],
                [[f.sync_id, f"{f.rows.get('items', 0):,}", f"{f.rows.get('history', 0):,}",
                  f"{sum(n for k, n in f.rows.items() if k not in ('items', 'history')):,}"]
                 for f in reply.syncs], console)
            console.print(reply.message + ("" if reply.deleted else
                                           " (neither side's data is ever touched)"))
        case p.ReloadReply():
            console.print("configuration reloaded: " + ("; ".join(reply.changes)
                                                        or "nothing changed"))
        case p.WebhooksReply():
            render_simple_rows(f"{reply.connection}: {reply.message}",
                               ["id", "object", "url", "user", "active"],
                               [[w.id, w.entity, w.url, w.user or "-",
                                 "yes" if w.active else "no"] for w in reply.webhooks],
                               console)
        case p.BackupReply():
            # One line whatever the width (a path is not to be broken).
            console.print(f"backup written to {reply.path}: {size(reply.bytes)}, schema "
                          f"version {reply.schema_version}, {reply.items:,} records indexed, "
                          f"state as of {iso(reply.taken_at)} ({reply.duration_ms:,.0f} ms)",
                          soft_wrap=True)
        case p.PollNowReply():
            # An older daemon sends no message.
            console.print(f"{reply.connection}: "
                          + (reply.message or f"polling {', '.join(reply.objects)} now"))
        case _:
            print_json(reply, console.file)


def partly_failed(reply: Any) -> bool:
    """Did part of an accepted request fail (for the exit status)?"""
    if isinstance(reply, p.RestoreReply):
        return reply.failed > 0
    if isinstance(reply, p.ResolveDeletesReply):
        return any(x.outcome in ("refused", "failed") for x in reply.results)
    return False


def print_error(reply: p.ErrorReply, err: TextIO, args: argparse.Namespace) -> None:
    if getattr(args, "json", False):
        return
    err.write(f"crmsync ctl: {reply.message} ({reply.code})\n")
