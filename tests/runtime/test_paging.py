"""runtime.paging: the one loop over a connector's pages, with its bounds."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import aclosing

import trio

from crmsync.connectors.base import Changes, Page, Record
from crmsync.runtime.paging import Bounds, change_pages, scan_pages


class PagedApp:
    """Records 0..n-1, `size` a page; every call takes a second (of virtual time)."""

    def __init__(self, n: int, size: int) -> None:
        self.n, self.size = n, size
        self.calls: list[str | None] = []

    def _page(self, cursor: str | None) -> tuple[list[Record], str | None]:
        self.calls.append(cursor)
        start = int(cursor or 0)
        end = min(self.n, start + self.size)
        return [Record(str(i), {}) for i in range(start, end)], (
            str(end) if end < self.n else None)

    async def scan(self, object_name: str, cursor: str | None,
                   properties: Sequence[str]) -> Page:
        await trio.sleep(1)
        records, nxt = self._page(cursor)
        return Page(records, nxt)

    async def changes_since(self, object_name: str, cursor: str | None,
                            properties: Sequence[str]) -> Changes:
        await trio.sleep(1)
        records, nxt = self._page(cursor)
        return Changes(records, nxt or str(self.n), more=nxt is not None)


async def ids_of(pages) -> list[list[str]]:  # type: ignore[no-untyped-def]
    out = []
    async with aclosing(pages):
        async for page in pages:
            out.append([r.id for r in page.records])
    return out


async def test_scan_pages_reads_every_page_once_in_order(autojump_clock):
    app = PagedApp(7, 3)
    got = await ids_of(scan_pages(app, "things", []))  # type: ignore[arg-type]
    assert got == [["0", "1", "2"], ["3", "4", "5"], ["6"]]
    assert app.calls == [None, "3", "6"]


async def test_scan_pages_from_a_cursor(autojump_clock):
    app = PagedApp(7, 3)
    got = await ids_of(scan_pages(app, "things", [], cursor="3"))  # type: ignore[arg-type]
    assert got == [["3", "4", "5"], ["6"]]


async def test_scan_pages_stop_at_the_page_and_record_bounds(autojump_clock):
    app = PagedApp(100, 10)
    got = await ids_of(scan_pages(app, "things", [],  # type: ignore[arg-type]
                                  bounds=Bounds(max_pages=2)))
    assert len(got) == 2 and app.calls == [None, "10"]
    app = PagedApp(100, 10)
    # A page asked for is read whole: 25 records take three pages.
    got = await ids_of(scan_pages(app, "things", [],  # type: ignore[arg-type]
                                  bounds=Bounds(max_records=25)))
    assert sum(map(len, got)) == 30 and len(app.calls) == 3


async def test_scan_pages_stop_once_the_deadline_has_passed(autojump_clock):
    app = PagedApp(100, 10)
    deadline = trio.current_time() + 2.5
    got = await ids_of(scan_pages(app, "things", [],  # type: ignore[arg-type]
                                  bounds=Bounds(deadline=deadline)))
    # Pages end at 1, 2 and 3 s: the third page was asked for before the deadline.
    assert len(got) == 3


async def test_change_pages_call_again_while_more(autojump_clock):
    app = PagedApp(5, 2)
    seen: list[tuple[list[str], str, bool]] = []
    pages = change_pages(app, "things", None, [])  # type: ignore[arg-type]
    async with aclosing(pages):
        async for found in pages:
            seen.append(([r.id for r in found.records], found.cursor, found.more))
    assert seen == [(["0", "1"], "2", True), (["2", "3"], "4", True), (["4"], "5", False)]
    # Each call starts from the cursor the page before handed out.
    assert app.calls == [None, "2", "4"]


async def test_change_pages_bounded(autojump_clock):
    app = PagedApp(50, 5)
    pages = change_pages(app, "things", None, [],  # type: ignore[arg-type]
                         bounds=Bounds(max_records=12))
    got = await ids_of(pages)
    assert len(got) == 3


async def test_leaving_early_asks_for_no_further_page(autojump_clock):
    app = PagedApp(50, 5)
    pages = scan_pages(app, "things", [])  # type: ignore[arg-type]
    async with aclosing(pages):
        async for _ in pages:
            break
    assert app.calls == [None]
