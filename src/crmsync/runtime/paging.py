"""Paging: the one loop over a connector's pages, for every connector and every caller.

A connector answers one page per call (`Connector.scan`: a page and the cursor of the next;
`Connector.changes_since`: a page of changes, the cursor to commit once they are synced, and
`more` when another call has more at once). The runtime drives the calls here, bounded in
pages, in records and in time where the caller asks for it, and hands each page to the caller
as it comes, so nothing is held beyond one page and the caller commits what each page covers
(a checkpoint, a cursor) before the next is read.

Bounds are checked between pages: a page asked for is read whole, and iteration stops
before the next one once `max_pages` pages or `max_records` records were handed out or the
`deadline` (trio time) has passed. The caller learns where it stopped from the last page's
cursor. Iterate inside `async with contextlib.aclosing(...)`, so that a caller leaving early
(or cancelled) closes the generator at once.
"""

from __future__ import annotations

import math
from collections.abc import AsyncGenerator, Sequence

import msgspec
import trio

from crmsync.connectors.base import Changes, Connector, Page, SupportsScanAssociations


class Bounds(msgspec.Struct, frozen=True):
    """How far one iteration may go (None: no bound)."""

    max_pages: int | None = None
    max_records: int | None = None
    deadline: float | None = None  # trio time


UNBOUNDED = Bounds()


class _Limit:
    def __init__(self, bounds: Bounds) -> None:
        self.bounds = bounds
        self.pages = 0
        self.records = 0

    def count(self, records: int) -> None:
        self.pages += 1
        self.records += records

    def reached(self) -> bool:
        b = self.bounds
        return ((b.max_pages is not None and self.pages >= b.max_pages)
                or (b.max_records is not None and self.records >= b.max_records)
                or trio.current_time() >= (b.deadline if b.deadline is not None else math.inf))


async def scan_pages(connector: Connector, object_name: str, properties: Sequence[str], *,
                     cursor: str | None = None, bounds: Bounds = UNBOUNDED,
                     associations: Sequence[str] = ()) -> AsyncGenerator[Page, None]:
    """Every page of `connector.scan(object_name, …)` from `cursor` (None: the start) to the
    last page, or until `bounds` stop it; each page's `next_cursor` says where the next one
    starts (None after the last). With `associations`, where the connector can
    (`SupportsScanAssociations`): each page with its records' associations to those objects
    (`Page.associations`), read in the same requests."""
    limit = _Limit(bounds)
    with_assoc = bool(associations) and isinstance(connector, SupportsScanAssociations)
    while True:
        if with_assoc:
            page = await connector.scan_associated(  # type: ignore[attr-defined]
                object_name, cursor, properties, associations)
        else:
            page = await connector.scan(object_name, cursor, properties)
        limit.count(len(page.records))
        yield page
        if page.next_cursor is None or limit.reached():
            return
        cursor = page.next_cursor


async def change_pages(connector: Connector, object_name: str, cursor: str | None,
                       properties: Sequence[str], *,
                       bounds: Bounds = UNBOUNDED) -> AsyncGenerator[Changes, None]:
    """`connector.changes_since(object_name, cursor, …)` and its following calls while it
    says `more`, or until `bounds` stop it. The caller commits each page's `cursor` once it
    has synced its records; the next page is read from that cursor."""
    limit = _Limit(bounds)
    while True:
        found = await connector.changes_since(object_name, cursor, properties)
        limit.count(len(found.records))
        yield found
        if not found.more or limit.reached():
            return
        cursor = found.cursor
