"""export: failed, excluded and syncing records in csv, xlsx and jsonl, read back (openpyxl
for xlsx); fetched in pages over the socket, so memory stays flat however many records."""

import csv
import datetime as dt
import io
import json
import shutil
import tempfile
import tracemalloc
from pathlib import Path

import openpyxl
import pytest
import trio

from crmsync.control import protocol as p
from crmsync.control.server import ControlServer
from crmsync.control.views import RecordView

from ..daemon.harness import contacts_sync
from .ctl_env import CUSTOMERS, HUB, ctl_daemon, run_ctl

DUPS = [{"email": "c0@example.com", "first_name": "Dup0"},
        {"email": "C1@example.com", "first_name": "Dup1"}]
BAD = [{"email": "nope", "first_name": "Bad"}, {"email": None, "first_name": "NoMail"},
       {"email": "also@bad", "first_name": "Bad2"}]


def read_back(path: Path, fmt: str) -> list[dict]:
    if fmt == "csv":
        with path.open(newline="") as f:
            return list(csv.DictReader(f))
    if fmt == "jsonl":
        return [json.loads(line) for line in path.read_text().splitlines()]
    book = openpyxl.load_workbook(path, read_only=True)
    rows = []
    for sheet in book.worksheets:
        it = sheet.iter_rows(values_only=True)
        header = next(it)
        rows += [dict(zip(header, r, strict=True)) for r in it]
    book.close()
    return rows


async def test_export_every_format_and_state(tmp_path):
    with trio.fail_after(40):
        async with ctl_daemon(tmp_path, customers=[*CUSTOMERS, *DUPS, *BAD],
                              hub_contacts=HUB) as c:
            env = c.env
            await env.wait_ready()
            expected = {s: {it.item_id: it for it in await env.items(state=s)}
                        for s in ("failed", "excluded", "syncing")}
            assert [len(v) for v in expected.values()] == [2, 3, 5]
            for state, items in expected.items():
                for fmt in ("csv", "xlsx", "jsonl"):
                    out = tmp_path / f"{state}.{fmt}"
                    # Pages of 2: several requests on one connection.
                    code, stdout, err = await run_ctl(
                        c.socket, "export", "shop", "contacts", "--state", state, "--format",
                        fmt, "--out", str(out), "--page", "2", "--json")
                    assert code == 0, err
                    assert json.loads(stdout) == {
                        "op": "export", "connection": "shop", "object": "contacts",
                        "state": state, "format": fmt, "out": str(out), "rows": len(items)}
                    rows = read_back(out, fmt)
                    assert len(rows) == len(items)
                    by_id = {int(r["item_id"]): r for r in rows}
                    assert set(by_id) == set(items)
                    for item_id, it in items.items():
                        r = by_id[item_id]
                        assert r["state"] == state
                        assert (r["hub_id"] or None) == it.hub_id
                        assert str(r["app_id"] or "") == (it.app_id or "")
                        assert (r["category"] or "") == it.category
                        if state != "syncing":
                            assert r["hint"] and r["detail"]
                    assert not list(tmp_path.glob(".*.part"))  # no leftovers
            cats = {r["category"] for r in read_back(tmp_path / "excluded.csv", "csv")}
            assert cats == {"invalid_email", "no_email"}
            code, stdout, _ = await run_ctl(c.socket, "export", "shop", "customers", "--state",
                                            "failed", "--format", "jsonl", "--out", "-")
            assert code == 0 and len(stdout.splitlines()) == 2
            code, out, _ = await run_ctl(c.socket, "export", "shop", "contacts", "--state",
                                         "failed", "--format", "csv", "--out",
                                         str(tmp_path / "f.csv"))
            assert code == 0 and "2 failed records written" in out
            code, _, err = await run_ctl(c.socket, "export", "shop", "nope", "--state",
                                         "failed", "--format", "csv", "--out",
                                         str(tmp_path / "x.csv"))
            assert code == 1 and not (tmp_path / "x.csv").exists()


def fake_pages(total: int):
    """A dispatch serving `total` synthetic failed records, page by page."""
    async def dispatch(req):
        assert isinstance(req, p.Records)
        start = req.after + 1
        end = min(total, req.after + req.limit)
        rows = [RecordView(item_id=i, hub_id=str(100_000 + i), app_id=str(i),
                           match_key=f"email:person{i}@example.com", state="failed",
                           category="invalid_value",
                           hint="A value does not fit the target field.",
                           detail=f"field 'phone': {i:012d} is not a phone number",
                           attempts=1, updated_at=1_700_000_000.0 + i)
                for i in range(start, end + 1)]
        return p.RecordsReply(connection="shop", hub_object="contacts", app_object="customers",
                              state="failed", total=total, records=rows,
                              next_after=end if end < total else None)
    return dispatch


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
async def test_export_memory_does_not_grow_with_the_number_of_records(tmp_path, fmt):
    sock_dir = Path(tempfile.mkdtemp(prefix="crmsync-exp-", dir="/tmp"))
    path = sock_dir / "c.sock"

    async def peak_for(total: int) -> int:
        server = ControlServer(fake_pages(total), read_timeout=30)
        async with trio.open_nursery() as n:
            await n.start(lambda task_status: server.serve_path(path, task_status=task_status))
            out = tmp_path / f"big-{total}.{fmt}"
            tracemalloc.start()
            try:
                code, _, err = await run_ctl(path, "export", "shop", "contacts", "--state",
                                             "failed", "--format", fmt, "--out", str(out))
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
            assert code == 0, err
            n.cancel_scope.cancel()
        rows = read_back(out, fmt) if fmt == "csv" else None
        if rows is not None:
            assert len(rows) == total and rows[-1]["item_id"] == str(total)
        return peak

    try:
        with trio.fail_after(60):
            small = await peak_for(1_500)
            large = await peak_for(9_000)
    finally:
        shutil.rmtree(sock_dir, ignore_errors=True)
    # Six times the records, about the same peak: one page at a time (a page of 1000 rows is
    # ~1 MB decoded); all rows at once would be ~6x.
    assert large < small * 1.6 + 512 * 1024, (small, large)


def _cells(rows: list[dict]) -> list[dict]:
    """Rows as text, an empty cell and null alike: how csv, xlsx and jsonl can be compared."""
    return [{k: None if v in (None, "") else str(v) for k, v in r.items()} for r in rows]


async def test_export_rows_name_the_record_and_every_format_writes_the_same_rows(tmp_path):
    # An operator fixing failed or excluded records needs to know who they are: the match key
    # and the mapped values (email, names), not only ids; and a script reading jsonl must see
    # what a spreadsheet shows (the same columns, times written the same way).
    with trio.fail_after(40):
        async with ctl_daemon(tmp_path, customers=[*CUSTOMERS, *DUPS, *BAD],
                              hub_contacts=HUB) as c:
            await c.env.wait_ready()
            got: dict[str, dict[str, list[dict]]] = {}
            for state in ("failed", "excluded", "syncing"):
                items = {it.item_id: it for it in await c.env.items(state=state)}
                got[state] = {}
                for fmt in ("csv", "xlsx", "jsonl"):
                    out = tmp_path / f"{state}.{fmt}"
                    code, _, err = await run_ctl(c.socket, "export", "shop", "contacts",
                                                 "--state", state, "--format", fmt, "--out",
                                                 str(out), "--page", "2")
                    assert code == 0 and err == "", err
                    got[state][fmt] = read_back(out, fmt)
                rows = got[state]
                assert _cells(rows["csv"]) == _cells(rows["xlsx"]) == _cells(rows["jsonl"])
                for r in rows["jsonl"]:  # ISO 8601 UTC, to the second
                    at = dt.datetime.fromisoformat(r["updated_at"])
                    assert at.utcoffset() == dt.timedelta(0)
                    assert abs(at.timestamp() - items[r["item_id"]].updated_at) < 1
            by_name = {r["values.firstname"]: r for s in got.values() for r in s["jsonl"]}
            dup = by_name["Dup0"]
            assert (dup["state"], dup["match_key"], dup["values.email"], dup["values_side"]) \
                == ("failed", "email:c0@example.com", "c0@example.com", "app")
            bad = by_name["Bad"]  # no valid key: its values say who it is
            assert (bad["state"], bad["match_key"], bad["values.email"]) == ("excluded", "",
                                                                             "nope")
            assert by_name["NoMail"]["values.email"] is None
            c1 = by_name["C1"]
            assert (c1["state"], c1["match_key"], c1["values.email"], c1["values.lastname"]) \
                == ("syncing", "email:c1@example.com", "c1@example.com", "App")
            header = next(csv.reader((tmp_path / "syncing.csv").open()))
            assert header[:4] == ["item_id", "hub_id", "app_id", "match_key"]
            assert {"values.email", "values.firstname", "values.lastname"} <= set(header)


async def test_export_reads_a_hub_only_record_from_the_hub_and_survives_a_stopped_sync(
        tmp_path):
    hub = [*HUB, {"email": "hub-only@example.com", "firstname": "Hubert"}]
    with trio.fail_after(40):
        async with ctl_daemon(tmp_path, syncs=contacts_sync(direction="to_hub"),
                              customers=[*CUSTOMERS, *DUPS], hub_contacts=hub) as c:
            await c.env.wait_ready()
            code, out, err = await run_ctl(c.socket, "export", "shop", "contacts", "--state",
                                           "excluded", "--format", "jsonl", "--out", "-")
            assert code == 0, err
            (row,) = [json.loads(line) for line in out.splitlines()]
            assert row["category"] == "one_way" and row["values_side"] == "hub"
            assert (row["values.email"], row["values.firstname"]) == ("hub-only@example.com",
                                                                     "Hubert")
            # A disabled connection has no connectors running: the rows still come, and
            # the export says why their values are missing.
            assert (await run_ctl(c.socket, "disable", "shop"))[0] == 0
            code, out, err = await run_ctl(c.socket, "export", "shop", "contacts", "--state",
                                           "failed", "--format", "csv", "--out", "-")
            assert code == 0
            rows = list(csv.DictReader(io.StringIO(out)))
            assert len(rows) == 2 and all(r["match_key"] for r in rows)
            assert "values not read" in err and "disabled" in err
