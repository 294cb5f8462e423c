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
from pathlib import Path
from typing import Any, TextIO

import msgspec

from crmsync.cli.ctl.exits import EXIT_FAILED, EXIT_OK, EXIT_UNREACHABLE, EXIT_USAGE
from crmsync.cli.ctl.parsing import (
    UsageError,
    add_parser,
    build_request,
    find_socket,
    reply_timeout,
)
from crmsync.cli.ctl.render import (
    WATCH_HEADERS,
    budget_line,
    console_for,
    duration,
    iso,
    partly_failed,
    print_error,
    print_json,
    render,
    shown_states,
    table,
)
from crmsync.control import protocol as p
from crmsync.control.client import ControlClient, ControlUnavailable
from crmsync.control.views import MAX_PAGE, RecordView, StatusView

XLSX_MAX_ROWS = 1_048_576  # per worksheet, the header included


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
        "updated_at": iso(r.updated_at) or None, "values_side": r.values_side}
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
                print_error(reply, err, args)
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
        f"[bold]crmsync {st.version}[/bold]  up {duration(st.uptime_seconds)}  "
        f"webhooks {st.webhooks.accepted}  {budget_line(st)}  "
        f"[dim]{iso(st.now)}[/dim]")]
    for c in st.connections:
        t = table(f"{c.name}: {c.state}" + (f" — {c.reason}" if c.reason else ""),
                   collapse_padding=narrow, pad_edge=not narrow)
        t.add_column("object", no_wrap=True, max_width=24 if narrow else None)
        t.add_column("initial sync", width=8 if narrow else 12)
        t.add_column("", no_wrap=True)
        states = shown_states(c.objects)
        for s in states:
            t.add_column(WATCH_HEADERS[s], justify="right", no_wrap=True, min_width=5)
        for o in c.objects:
            done = o.running or o.phase == "complete"
            total = max(o.total, o.done, 1)
            bar = ProgressBar(total=total, completed=total if done else o.done,
                              width=8 if narrow else 12)
            eta = duration(o.eta_seconds) if o.eta_seconds is not None else ""
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
    timeout = reply_timeout(args)

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

    console = console_for(out)
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
        with ControlClient(path, reply_timeout(args)) as client:
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
        print_json(reply, out)
    elif not isinstance(reply, p.ErrorReply):
        render(reply, console_for(out))
    if isinstance(reply, p.ErrorReply):
        print_error(reply, err, args)
        # A configuration the daemon refused (reload) exits as check-config does.
        return EXIT_USAGE if reply.code == "config" else EXIT_FAILED
    return EXIT_FAILED if partly_failed(reply) else EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """`python -m crmsync.cli.ctl ...` (until `crmsync ctl` is wired into the main parser)."""
    parser = argparse.ArgumentParser(prog="crmsync")
    sub = parser.add_subparsers(dest="command")
    add_parser(sub)
    args = parser.parse_args(["ctl", *(sys.argv[1:] if argv is None else argv)])
    return run(args)


if __name__ == "__main__":
    sys.exit(main())

__all__ = ["add_parser", "run"]
