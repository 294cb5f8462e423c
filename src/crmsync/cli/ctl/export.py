"""`crmsync ctl export`: an object sync's records in one state, with their mapped values, to a
csv, xlsx or jsonl file. The records come page by page over one connection and each page is
written as it arrives, so memory stays bounded whatever the number of records; the file
appears (renamed into place) only once complete."""

from __future__ import annotations

import argparse
import csv
import os
from pathlib import Path
from typing import Any, TextIO

import msgspec

from crmsync.cli.ctl.exits import EXIT_FAILED, EXIT_OK
from crmsync.cli.ctl.parsing import UsageError
from crmsync.cli.ctl.render import iso, print_error
from crmsync.control import protocol as p
from crmsync.control.client import ControlClient
from crmsync.control.views import MAX_PAGE, RecordView

XLSX_MAX_ROWS = 1_048_576  # per worksheet, the header included
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
