"""`crmsync ctl`: drive a running daemon through its control socket.

Every command prints tables for people and, with `--json`, the daemon's reply as JSON (the
protocol's reply object, see docs/control-protocol.md) for scripts. `export` writes a file
instead, fetched page by page so memory stays bounded whatever the number of records.

Exit status: 0 done; 1 the daemon refused or part of the work failed; 2 bad usage or
configuration; 3 the daemon cannot be reached.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import msgspec

from crmsync.control import protocol as p
from crmsync.control.client import ControlClient, ControlUnavailable
from crmsync.control.paths import DEFAULT_CONFIG, client_socket_paths
from crmsync.daemon.operations import MAX_PAGE, RecordView, StatusView

STATES = ["failed", "excluded", "syncing", "queued", "pending", "deleted"]
COUNT_STATES = ["syncing", "failed", "excluded", "queued", "pending", "deleted"]
# Count columns' headers where space is short.
WATCH_HEADERS = {"syncing": "sync", "failed": "fail", "excluded": "excl", "queued": "queue",
                 "pending": "pend", "deleted": "del"}
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3
# Commands that may take long (they wait for syncs or API writes): no reply timeout by default.
LONG = {"approve", "resync", "restore-deleted", "deletes", "disable", "enable", "delete-sync",
        "reload", "webhooks"}
XLSX_MAX_ROWS = 1_048_576  # per worksheet, the header included


class UsageError(Exception):
    pass


# --- the parser --------------------------------------------------------------------------------


def _common(parser: argparse.ArgumentParser, suppress: bool) -> None:
    d: Any = argparse.SUPPRESS if suppress else None
    parser.add_argument("--socket", metavar="PATH", default=d,
                        help="the control socket (default: from --config, else "
                             "/run/crmsync/control.sock)")
    parser.add_argument("--config", metavar="PATH", default=d,
                        help="the daemon's configuration file, to find its socket "
                             f"(default {DEFAULT_CONFIG} if readable)")
    parser.add_argument("--json", action="store_true", default=d if suppress else False,
                        help="print the reply as JSON")
    parser.add_argument("--timeout", type=float, metavar="SECONDS", default=d,
                        help="give up waiting for the daemon after this long (default 30 s; "
                             "none for commands that wait for syncs)")


def add_parser(sub: Any) -> None:
    ctl = sub.add_parser("ctl", help="control a running daemon (status, records, resync, ...)",
                         description="Talk to a running crmsync daemon through its control "
                                     "socket.")
    _common(ctl, suppress=False)
    common = argparse.ArgumentParser(add_help=False)
    _common(common, suppress=True)
    cmds = ctl.add_subparsers(dest="ctl_command", metavar="COMMAND")

    def cmd(name: str, help: str) -> argparse.ArgumentParser:
        return cmds.add_parser(name, parents=[common], help=help, description=help)

    def conn_obj(c: argparse.ArgumentParser, obj: str = "required") -> None:
        c.add_argument("connection", metavar="CONN", help="connection name")
        if obj == "required":
            c.add_argument("object", metavar="OBJECT", help="hub or app object name")
        else:
            c.add_argument("object", metavar="OBJECT", nargs="?", default="",
                           help="hub or app object name (default: every object sync)")

    def record(c: argparse.ArgumentParser, required: bool = False) -> None:
        c.add_argument("--record", metavar="ID", default="", required=required,
                       help="a hub or app record id (hub:ID / app:ID when both exist)")
        c.add_argument("--side", choices=["hub", "app"], default="",
                       help="the side the record id belongs to")

    c = cmd("ping", "check that the daemon answers")
    c = cmd("status", "daemon, connections and object syncs with their counts")
    c.add_argument("connection", metavar="CONN", nargs="?", default="")

    c = cmd("records", "records of an object sync in one state, with how to fix them")
    conn_obj(c)
    c.add_argument("--state", required=True, choices=STATES)
    c.add_argument("--category", default="", help="only this error category / reason")
    c.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    c.add_argument("--after", type=int, default=0, help="continue after this item id")

    c = cmd("history", "a record's sync decisions: per field old/new value, winner and why")
    conn_obj(c)
    record(c, required=True)
    c.add_argument("--limit", type=int, default=20)

    c = cmd("preview", "the initial-sync plan of object syncs started in preview")
    conn_obj(c, "optional")
    c.add_argument("--limit", type=int, default=10, help="entries shown per kind")

    c = cmd("approve", "let a previewed initial sync run for real")
    conn_obj(c, "optional")

    c = cmd("resync", "sync records again now: one, the failed ones, or all")
    conn_obj(c, "optional")
    g = c.add_mutually_exclusive_group()
    g.add_argument("--failed", action="store_true", help="every failed record")
    g.add_argument("--record", metavar="ID", default="", help="one record (needs OBJECT)")
    c.add_argument("--side", choices=["hub", "app"], default="")

    c = cmd("restore-deleted", "re-create records on the side they were deleted from, and "
                               "relink them")
    conn_obj(c)
    c.add_argument("--to", required=True, choices=["hub", "app"],
                   help="the side the records were deleted on")
    record(c)
    c.add_argument("--yes", action="store_true",
                   help="do it (without: list what would be re-created)")
    c.add_argument("--limit", type=int, default=100, help="rows listed (default 100)")

    c = cmd("deletes", "deletes parked for review (on_delete = \"review\"): list, approve "
                       "or ignore")
    c.add_argument("words", nargs="+", metavar="[approve|ignore] CONN OBJECT",
                   help="`deletes CONN OBJECT` lists; `deletes approve|ignore CONN OBJECT` "
                        "resolves")
    record(c)
    c.add_argument("--all", action="store_true", help="every parked delete")
    c.add_argument("--limit", type=int, default=100)

    c = cmd("disable", "stop a connection and keep it stopped (persisted)")
    c.add_argument("connection", metavar="CONN")
    c.add_argument("--reason", default="", help="shown in status")

    c = cmd("enable", "start a disabled connection again")
    c.add_argument("connection", metavar="CONN")

    c = cmd("delete-sync", "forget crmsync's index, links, states, history and unsynced "
                           "webhook events for a connection (never touches either side's data)")
    c.add_argument("connection", metavar="CONN")
    c.add_argument("--yes", action="store_true", help="do it (without: show what would go)")

    cmd("reload", "re-read the configuration file (as SIGHUP does)")

    c = cmd("poll-now", "poll both sides for changes now")
    conn_obj(c, "optional")

    c = cmd("webhooks", "the webhooks crmsync keeps in an app (Pipedrive): list, register "
                        "or remove them through the app's API")
    c.add_argument("action", choices=["list", "register", "remove"])
    c.add_argument("connection", metavar="CONN")

    c = cmd("export", "write an object sync's records in one state to a file")
    conn_obj(c)
    c.add_argument("--state", required=True, choices=STATES)
    c.add_argument("--category", default="")
    c.add_argument("--format", required=True, choices=["csv", "xlsx", "jsonl"])
    c.add_argument("--out", required=True, metavar="FILE", help="'-' writes csv/jsonl to stdout")
    c.add_argument("--page", type=int, default=MAX_PAGE, help=argparse.SUPPRESS)

    c = cmd("watch", "a live status view (progress of initial syncs, counts per state)")
    c.add_argument("connection", metavar="CONN", nargs="?", default="")
    c.add_argument("--interval", type=float, default=1.0, help="seconds between refreshes")
    c.add_argument("--count", type=int, default=0,
                   help="stop after this many refreshes (default: until Ctrl-C)")


# --- finding the daemon --------------------------------------------------------------------------


def find_socket(args: argparse.Namespace) -> Path:
    if getattr(args, "socket", None):
        return Path(args.socket)
    if os.environ.get("CRMSYNC_SOCKET"):
        return Path(os.environ["CRMSYNC_SOCKET"])
    from crmsync.config import ConfigError, parse_config

    config = getattr(args, "config", None)
    cfg = None
    path = Path(config) if config else DEFAULT_CONFIG
    if config or os.access(DEFAULT_CONFIG, os.R_OK):
        try:
            cfg, _ = parse_config(path.read_text(encoding="utf-8"), check_host=False,
                                  base_dir=path.resolve().parent)
        except OSError as exc:
            raise UsageError(f"{path}: {exc.strerror}") from None
        except ConfigError as exc:
            raise UsageError(f"{path}: the configuration is not valid: {exc}") from None
    candidates = client_socket_paths(cfg)
    return next((c for c in candidates if c.exists()), candidates[0])


# --- output helpers ------------------------------------------------------------------------------


def _console(out: TextIO) -> Any:
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
    return f"{_duration(ago)} ago"


def _duration(seconds: float | None) -> str:
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


def _iso(ts: float | None) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds") if ts else ""


def _json(reply: Any, out: TextIO) -> None:
    out.write(msgspec.json.format(msgspec.json.encode(reply), indent=2).decode() + "\n")


def _table(title: str | None = None, **kw: Any) -> Any:
    from rich import box
    from rich.table import Table

    return Table(title=title, box=box.SIMPLE_HEAD, title_justify="left", **kw)


# --- human output per reply --------------------------------------------------------------------


def _budget_text(b: Any, now: float | None = None) -> str:
    window = f"{b.window_used}/{b.window_limit or '∞'} per {b.window_seconds:g} s"
    daily = f"{b.daily_used:,}/{b.daily_limit:,}" if b.daily_limit else f"{b.daily_used:,}"
    unit = "" if b.unit == "requests" else f" {b.unit}"
    extra = f", blocked for {b.blocked_for:.1f} s" if b.blocked_for else ""
    if b.resets_at:
        left = b.resets_at - (now or time.time())
        extra += (f", resets {datetime.fromtimestamp(b.resets_at, UTC):%H:%M} UTC "
                  f"(in {_duration(left)})")
    return f"{window}, today {daily}{unit}{extra}"


def _budget_line(st: StatusView) -> str:
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


def _shown_states(objects: list[Any]) -> list[str]:
    """The count columns worth a column: syncing and failed always, the others when some
    object sync has records in that state (--json has them all)."""
    return [s for s in COUNT_STATES
            if s in ("syncing", "failed") or any(o.counts.get(s, 0) for o in objects)]


def _progress(o: Any) -> str:
    if o.running or o.phase == "complete":
        return "in sync"
    if o.percent is None:
        return o.phase
    eta = f", {_duration(o.eta_seconds)} left" if o.eta_seconds is not None else ""
    return f"{o.phase} {o.percent:.0f}%{eta}"


def render_status(st: StatusView, console: Any) -> None:
    now = st.now
    wh = st.webhooks
    hook = (f"webhooks {wh.accepted} accepted, last {_when(wh.last_delivery, now)}"
            if wh.enabled or wh.accepted else "webhooks off")
    console.print(f"[bold]crmsync {st.version}[/bold]  pid {st.pid}  up "
                  f"{_duration(st.uptime_seconds)}  {hook}")
    budget = _budget_line(st)
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
        t = _table(f"connection [bold]{c.name}[/bold] ({c.connector}): "
                   f"[{colour}]{c.state}[/{colour}]{reason}{restarts}")
        narrow = console.width < 110
        states = _shown_states(c.objects)
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
    t = _table(f"{r.connection} {r.hub_object} ⇄ {r.app_object}: {r.state}"
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
        console.print(f"\n{_iso(e.at)}  [bold]{e.action}[/bold]"
                      + (f"  {e.detail}" if e.detail else ""))
        if e.changes:
            t = _table()
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
        t = _table()
        t.add_column("what")
        t.add_column("count", justify="right")
        for k, n in sorted(o.summary.items()):
            t.add_row(PLAN_KINDS.get(k, k), f"{n:,}")
        console.print(t)
        if o.entries:
            t = _table("first entries")
            for col in ("kind", "hub id", "app id", "detail"):
                t.add_column(col, overflow="fold")
            for e in o.entries:
                t.add_row(e.kind, e.hub_id or "-", e.app_id or "-", e.detail or "-")
            console.print(t)


def render_simple_rows(title: str, columns: list[str], rows: list[list[str]],
                       console: Any) -> None:
    t = _table(title)
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
             _iso(x.parked_at)] for x in r.parked]
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
        case p.PollNowReply():
            # An older daemon sends no message.
            console.print(f"{reply.connection}: "
                          + (reply.message or f"polling {', '.join(reply.objects)} now"))
        case _:
            _json(reply, console.file)


def _failed(reply: Any) -> bool:
    """Did part of an accepted request fail (for the exit status)?"""
    if isinstance(reply, p.RestoreReply):
        return reply.failed > 0
    if isinstance(reply, p.ResolveDeletesReply):
        return any(x.outcome in ("refused", "failed") for x in reply.results)
    return False


# --- requests ------------------------------------------------------------------------------------


def build_request(args: argparse.Namespace) -> p.Request:
    c = args.ctl_command
    match c:
        case "ping":
            return p.Ping()
        case "status" | "watch":
            return p.Status(connection=args.connection)
        case "records":
            return p.Records(connection=args.connection, object=args.object, state=args.state,
                             category=args.category, limit=args.limit, after=args.after)
        case "history":
            return p.History(connection=args.connection, object=args.object,
                             record=args.record, side=args.side, limit=args.limit)
        case "preview":
            return p.Preview(connection=args.connection, object=args.object, limit=args.limit)
        case "approve":
            return p.Approve(connection=args.connection, object=args.object)
        case "resync":
            if args.record and not args.object:
                raise UsageError("resync --record needs the OBJECT")
            return p.Resync(connection=args.connection, object=args.object,
                            failed=args.failed, record=args.record, side=args.side)
        case "restore-deleted":
            return p.RestoreDeleted(connection=args.connection, object=args.object, to=args.to,
                                    record=args.record, side=args.side, yes=args.yes,
                                    limit=args.limit)
        case "deletes":
            words = list(args.words)
            action = words.pop(0) if words and words[0] in ("list", "approve", "ignore") \
                else "list"
            if len(words) != 2:
                raise UsageError("usage: crmsync ctl deletes [approve|ignore] CONN OBJECT "
                                 "[--record ID | --all]")
            conn, obj = words
            if action == "list":
                return p.Deletes(connection=conn, object=obj, limit=args.limit)
            if bool(args.record) == bool(args.all):
                raise UsageError(f"deletes {action} needs --record ID or --all")
            return p.ResolveDeletes(connection=conn, object=obj,
                                    action="approve" if action == "approve" else "ignore",
                                    record=args.record, side=args.side, all=args.all)
        case "disable":
            return p.Disable(connection=args.connection, reason=args.reason)
        case "enable":
            return p.Enable(connection=args.connection)
        case "delete-sync":
            return p.DeleteSync(connection=args.connection, yes=args.yes)
        case "reload":
            return p.Reload()
        case "poll-now":
            return p.PollNow(connection=args.connection, object=args.object)
        case "webhooks":
            return p.Webhooks(connection=args.connection, action=args.action)
    raise UsageError(f"unknown command {c!r}")


def _timeout(args: argparse.Namespace) -> float | None:
    t = getattr(args, "timeout", None)
    if t is not None:
        return t if t > 0 else None
    return None if args.ctl_command in LONG else 30.0


# --- export ---------------------------------------------------------------------------------------

EXPORT_COLUMNS = ["item_id", "hub_id", "app_id", "match_key", "state", "category", "hint",
                  "detail", "deleted_side", "attempts", "updated_at", "values_side"]
# Each mapped field's value is a column of its own, after these: `values.<field>` (the field
# named as in history, by its hub property), so no field can clash with the columns above.
VALUE_PREFIX = "values."


def export_columns(fields: list[str]) -> list[str]:
    return [*EXPORT_COLUMNS, *(VALUE_PREFIX + f for f in fields)]


def export_row(r: RecordView, fields: list[str]) -> dict[str, Any]:
    """One exported record, the same for every format: times as ISO 8601 UTC, a missing id
    or value as None (an empty cell in csv and xlsx, null in jsonl)."""
    row: dict[str, Any] = {
        "item_id": r.item_id, "hub_id": r.hub_id, "app_id": r.app_id,
        "match_key": r.match_key, "state": r.state, "category": r.category, "hint": r.hint,
        "detail": r.detail, "deleted_side": r.deleted_side, "attempts": r.attempts,
        "updated_at": _iso(r.updated_at) or None, "values_side": r.values_side}
    for f in fields:
        row[VALUE_PREFIX + f] = r.values.get(f)
    return row


class _Writer:
    """Writes rows of `export_row`; `start` gives the columns before the first rows."""

    columns: list[str] = []

    def start(self, columns: list[str]) -> None:
        self.columns = columns

    def write(self, rows: list[dict[str, Any]]) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class CsvWriter(_Writer):
    def __init__(self, f: TextIO) -> None:
        self.f = f
        self.w = csv.writer(f)

    def start(self, columns: list[str]) -> None:
        super().start(columns)
        self.w.writerow(columns)

    def write(self, rows: list[dict[str, Any]]) -> None:
        self.w.writerows([row.get(c) for c in self.columns] for row in rows)

    def close(self) -> None:
        self.f.flush()


class JsonlWriter(_Writer):
    def __init__(self, f: TextIO) -> None:
        self.f = f
        self.enc = msgspec.json.Encoder()

    def write(self, rows: list[dict[str, Any]]) -> None:
        for row in rows:
            self.f.write(self.enc.encode({c: row.get(c) for c in self.columns}).decode()
                         + "\n")

    def close(self) -> None:
        self.f.flush()


class XlsxWriter(_Writer):
    """xlsxwriter in constant_memory mode: each row goes to disk as it is written; a new
    worksheet starts when one is full."""

    def __init__(self, path: Path) -> None:
        import xlsxwriter

        self.book = xlsxwriter.Workbook(str(path), {"constant_memory": True,
                                                    "strings_to_numbers": False,
                                                    "strings_to_formulas": False,
                                                    "strings_to_urls": False})
        self.bold = self.book.add_format({"bold": True})
        self.sheets = 0

    def start(self, columns: list[str]) -> None:
        super().start(columns)
        self._new_sheet()

    def _new_sheet(self) -> None:
        self.sheets += 1
        self.sheet = self.book.add_worksheet("records" if self.sheets == 1
                                             else f"records {self.sheets}")
        self.sheet.write_row(0, 0, self.columns, self.bold)
        self.sheet.freeze_panes(1, 0)
        self.row = 1

    def write(self, rows: list[dict[str, Any]]) -> None:
        for row in rows:
            if self.row >= XLSX_MAX_ROWS:
                self._new_sheet()
            self.sheet.write_row(self.row, 0, [row.get(c) for c in self.columns])
            self.row += 1

    def close(self) -> None:
        if not self.sheets:  # no page came: still a valid workbook with its header
            self.start(self.columns or EXPORT_COLUMNS)
        self.book.close()


def export(args: argparse.Namespace, client: ControlClient, out: TextIO, err: TextIO) -> int:
    """Page through the records over one connection, writing each page as it arrives; the
    file appears (renamed into place) only once complete."""
    page = max(1, min(args.page, MAX_PAGE))
    to_stdout = args.out == "-"
    if to_stdout and args.format == "xlsx":
        raise UsageError("xlsx cannot be written to stdout: give --out FILE")
    target = Path(args.out)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.part")
    f: TextIO | None = None
    writer: _Writer
    if to_stdout:
        writer = CsvWriter(out) if args.format == "csv" else JsonlWriter(out)
    elif args.format == "xlsx":
        writer = XlsxWriter(tmp)
    else:
        f = tmp.open("w", encoding="utf-8", newline="")
        writer = CsvWriter(f) if args.format == "csv" else JsonlWriter(f)
    rows = 0
    ok = False
    try:
        after = 0
        fields: list[str] | None = None
        warned: set[str] = set()
        while True:
            reply = client.request(p.Records(connection=args.connection, object=args.object,
                                             state=args.state, category=args.category,
                                             limit=page, after=after, values=True))
            if isinstance(reply, p.ErrorReply):
                _error(reply, err, args)
                return EXIT_FAILED
            assert isinstance(reply, p.RecordsReply)
            if fields is None:  # the first page names the columns of every page
                fields = list(reply.fields)
                writer.start(export_columns(fields))
            if reply.values_error and reply.values_error not in warned:
                warned.add(reply.values_error)
                err.write(f"crmsync ctl: {reply.values_error}\n")
            writer.write([export_row(r, fields) for r in reply.records])
            rows += len(reply.records)
            if reply.next_after is None:
                break
            after = reply.next_after
        writer.close()
        ok = True
    finally:
        if f is not None:
            f.close()
        if not to_stdout:
            if ok:
                os.replace(tmp, target)
            else:
                tmp.unlink(missing_ok=True)
    summary = {"op": "export", "connection": args.connection, "object": args.object,
               "state": args.state, "format": args.format, "out": args.out, "rows": rows}
    if to_stdout:
        err.write(f"{rows} records exported\n")
    elif args.json:
        out.write(msgspec.json.encode(summary).decode() + "\n")
    else:
        out.write(f"{rows:,} {args.state} records written to {target}\n")
    return EXIT_OK


# --- watch -----------------------------------------------------------------------------------------


def watch_view(st: StatusView, width: int = 120) -> Any:
    """One frame of `watch`: the status with a progress bar per object sync (more compact
    below 110 columns)."""
    from rich.console import Group
    from rich.progress_bar import ProgressBar
    from rich.text import Text

    narrow = width < 110
    parts: list[Any] = [Text.from_markup(
        f"[bold]crmsync {st.version}[/bold]  up {_duration(st.uptime_seconds)}  "
        f"webhooks {st.webhooks.accepted}  {_budget_line(st)}  "
        f"[dim]{_iso(st.now)}[/dim]")]
    for c in st.connections:
        t = _table(f"{c.name}: {c.state}" + (f" — {c.reason}" if c.reason else ""),
                   collapse_padding=narrow, pad_edge=not narrow)
        t.add_column("object", no_wrap=True, max_width=24 if narrow else None)
        t.add_column("initial sync", width=8 if narrow else 12)
        t.add_column("", no_wrap=True)
        states = _shown_states(c.objects)
        for s in states:
            t.add_column(WATCH_HEADERS[s], justify="right", no_wrap=True, min_width=5)
        for o in c.objects:
            done = o.running or o.phase == "complete"
            total = max(o.total, o.done, 1)
            bar = ProgressBar(total=total, completed=total if done else o.done,
                              width=8 if narrow else 12)
            eta = _duration(o.eta_seconds) if o.eta_seconds is not None else ""
            if done:
                label = "in sync"
            elif narrow:
                label = f"{o.percent or 0:.0f}%" + (f" {eta}" if eta else "")
            else:
                label = f"{o.phase} {o.percent or 0:.0f}%" + (f" {eta} left" if eta else "")
            t.add_row(f"{o.hub_object} ⇄ {o.app_object}", bar, label,
                      *(f"{o.counts.get(s, 0):,}" for s in states))
        parts.append(t)
    return Group(*parts)


def watch(args: argparse.Namespace, path: Path, out: TextIO, err: TextIO,
          sleep: Callable[[float], None] = time.sleep) -> int:
    """Refresh the status every `--interval` seconds (a new connection each time, so a
    daemon restart is survived). With --json: one status object per line."""
    req = p.Status(connection=args.connection)
    timeout = _timeout(args)

    def frames() -> Iterator[Any]:
        n = 0
        while not args.count or n < args.count:
            if n:
                sleep(args.interval)
            n += 1
            try:
                with ControlClient(path, timeout) as c:
                    yield c.request(req)
            except ControlUnavailable as exc:
                yield exc

    if args.json:
        for frame in frames():
            if isinstance(frame, ControlUnavailable):
                err.write(f"crmsync ctl: {frame}\n")
                continue
            out.write(msgspec.json.encode(frame).decode() + "\n")
            out.flush()
        return EXIT_OK
    from rich.live import Live
    from rich.text import Text

    console = _console(out)
    with Live(Text("connecting…"), console=console, auto_refresh=False,
              transient=False) as live:
        try:
            for frame in frames():
                if isinstance(frame, ControlUnavailable):
                    live.update(Text(f"daemon unreachable ({frame.message}); retrying…",
                                     style="red"), refresh=True)
                elif isinstance(frame, p.ErrorReply):
                    live.update(Text(f"{frame.code}: {frame.message}", style="red"),
                                refresh=True)
                else:
                    live.update(watch_view(frame, console.width), refresh=True)
        except KeyboardInterrupt:
            pass
    return EXIT_OK


# --- entry point -----------------------------------------------------------------------------------


def _error(reply: p.ErrorReply, err: TextIO, args: argparse.Namespace) -> None:
    if getattr(args, "json", False):
        return
    err.write(f"crmsync ctl: {reply.message} ({reply.code})\n")


def run(args: argparse.Namespace, *, out: TextIO | None = None,
        err: TextIO | None = None) -> int:
    """Run one `crmsync ctl` command; returns the exit status."""
    out = out or sys.stdout
    err = err or sys.stderr
    if not getattr(args, "ctl_command", None):
        err.write("crmsync ctl: give a command (crmsync ctl --help)\n")
        return EXIT_USAGE
    try:
        path = find_socket(args)
        if args.ctl_command == "watch":
            return watch(args, path, out, err)
        with ControlClient(path, _timeout(args)) as client:
            if args.ctl_command == "export":
                return export(args, client, out, err)
            reply = client.request(build_request(args))
    except UsageError as exc:
        err.write(f"crmsync ctl: {exc}\n")
        return EXIT_USAGE
    except ControlUnavailable as exc:
        err.write(f"crmsync ctl: cannot reach the daemon at {exc}\n")
        return EXIT_UNREACHABLE
    except KeyboardInterrupt:
        return 130
    if args.json:
        _json(reply, out)
    elif not isinstance(reply, p.ErrorReply):
        render(reply, _console(out))
    if isinstance(reply, p.ErrorReply):
        _error(reply, err, args)
        # A configuration the daemon refused (reload) exits as check-config does.
        return EXIT_USAGE if reply.code == "config" else EXIT_FAILED
    return EXIT_FAILED if _failed(reply) else EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """`python -m crmsync.cli.ctl ...` (until `crmsync ctl` is wired into the main parser)."""
    parser = argparse.ArgumentParser(prog="crmsync")
    sub = parser.add_subparsers(dest="command")
    add_parser(sub)
    args = parser.parse_args(["ctl", *(sys.argv[1:] if argv is None else argv)])
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
