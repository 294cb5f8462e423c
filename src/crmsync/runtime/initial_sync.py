"""The initial sync of one object sync: hub index -> app pass -> hub pass, as the seed says.

The indexer scans a side a page at a time and sends each page as a job over the lock queue's
pages lane: the queue locks the page's records (no worker syncs one of them meanwhile) and
hands the pages, in order, to the page workers, which sync them concurrently and commit them
in order (CommitOrder). The lane admits one waiting page at a time, so scanning stays a page
or two ahead of the syncs.

1. Hub index: page through every hub record, store its id, match keys and version.
2. App pass: page through every app record. No match key or outside the filters: excluded.
   The first app record with a key is syncable; a later one with the same key fails as a
   duplicate. A key found in the hub index pairs the two records, which go through the engine
   together; otherwise the app record goes alone (created in the hub where allowed).
3. Hub pass: scan the hub again; records not linked go through the engine alone.
4. Complete: log it and send the configured notification.

Every page commits its outcomes and the checkpoint in one transaction, so a restart resumes
from the last committed page; re-running a page is harmless (pairings and decisions are
idempotent, creates are healed by matching). In preview the phases run without writing to
either side, record the plan and stop in `previewed` until approved.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import aclosing
from typing import Protocol

import msgspec
import trio

from crmsync.connectors.base import Changes
from crmsync.engine import KeyProblem, match_keys
from crmsync.engine.filters import first_mismatch
from crmsync.records import Record
from crmsync.runtime.app_pass import InFlight, Pairing, match_app_records
from crmsync.runtime.context import ObjectSyncContext
from crmsync.runtime.initial_order import InitialOrder, State
from crmsync.runtime.intake import inbox_id_of
from crmsync.runtime.isolation import concerns_connection, fail_record, isolate, record_failure
from crmsync.runtime.loader import RecordKey, detach_reused, load, pair_new
from crmsync.runtime.lock_queue import ChangeSender, Ticket
from crmsync.runtime.paging import Bounds, scan_pages
from crmsync.runtime.processor import Processor, Work
from crmsync.runtime.reads import read_records
from crmsync.runtime.requests import RequestReceiver, wait_asked
from crmsync.runtime.worker import ItemGate, Unit, sync_units
from crmsync.store import cursors as store_cursors
from crmsync.store import initial as store_initial
from crmsync.store import items as store_items
from crmsync.store import scanned as store_scanned
from crmsync.store.initial import InitialSync
from crmsync.store.items import IndexRow, Item

Notify = Callable[[ObjectSyncContext, dict[str, int]], Awaitable[None]]

# How often a sync waiting in preview checks whether it was approved.
APPROVAL_POLL_SECONDS = 2.0


def config_hash(ctx: ObjectSyncContext) -> str:
    """Changes when the object sync's settings change: its initial sync then restarts."""
    import hashlib

    blob = msgspec.json.encode(ctx.sync)
    return hashlib.sha256(blob).hexdigest()[:16]


def match_hash(ctx: ObjectSyncContext) -> str:
    """Changes when what decides which records match changes: the match keys, the filters
    (and a deals sync's stage map, which includes or excludes deals like one), the direction.
    A save that changes it starts the initial sync in preview again, when configured."""
    import hashlib

    s = ctx.sync
    blob = msgspec.json.encode([
        s.hub_object, s.app_object, s.direction, s.filters, s.unique_property,
        s.sync_contacts_without_email, s.stage_map, s.auto_map_stages, ctx.rules.match,
        list(ctx.rules.hub_key_props), list(ctx.rules.app_key_fields)])
    return hashlib.sha256(blob).hexdigest()[:16]


def index_row(ctx: ObjectSyncContext, side: str, rec: Record) -> IndexRow:
    version = str(rec.updated_at)
    try:
        keys = match_keys(ctx.rules, side, rec.properties)  # type: ignore[arg-type]
    except KeyProblem as exc:
        if side == "hub":
            return IndexRow(rec.id, (), version)  # decided in the hub pass
        return IndexRow(rec.id, (), version, exc.reason, f"app record {rec.id}: {exc.detail}")
    if side == "app":
        miss = first_mismatch(ctx.rules.filters, "app", rec.properties)
        if miss is not None:
            return IndexRow(rec.id, keys, version, "filter",
                            f"app record {rec.id} does not match {miss.describe()}")
    return IndexRow(rec.id, keys, version)


# Pages synced at once (page workers): their I/O overlaps, their commits (and checkpoints)
# stay in order.
PIPELINE_DEPTH = 3
# Records per processed page (API pages are gathered up to this).
PAGE_RECORDS = 500

Turn = Callable[[], Awaitable[None]]


class Feeds(Protocol):
    """The object sync's workers and change feeds, as the initial sync steers them: running
    while a preview waits (linked records keep syncing; the workers leave the others to the
    approved initial sync), paused while an initial sync runs for real."""

    async def resume(self) -> None: ...

    async def pause(self) -> None: ...


class CommitOrder:
    """Pages run concurrently on the page workers, each waiting for its turn to commit: page
    k commits only after page k-1 did, so a checkpoint never gets ahead of a page that has not
    been committed. A failed page never gives the turn on (its error ends the object sync)."""

    def __init__(self) -> None:
        self._last = trio.Event()
        self._last.set()

    def page(self, fn: Callable[[Turn], Awaitable[None]]) -> Callable[[], Awaitable[None]]:
        """The job of the next page: `fn(turn)`, where `await turn()` waits for the pages
        before it to commit."""
        prev, mine = self._last, trio.Event()
        self._last = mine

        async def turn() -> None:
            await prev.wait()

        async def job() -> None:
            await fn(turn)
            await prev.wait()  # a page that never committed still keeps the order
            mine.set()

        return job


class InitialSyncActor:
    """Runs the three phases as page jobs sent to the lock queue's pages lane (their records
    locked while they run, in order, on the page workers), and reports its progress in the
    object sync's status. `approvals` is a request channel: a message says an operator
    approved a preview."""

    def __init__(self, ctx: ObjectSyncContext, processor: Processor, pages: ChangeSender,
                 notify: Notify | None = None, page_size: int = 100,
                 feeds: Feeds | None = None, approvals: RequestReceiver | None = None,
                 order: InitialOrder | None = None, earlier: Sequence[str] = ()) -> None:
        self.ctx = ctx
        # The connection's initial syncs in turn (runtime/initial_order.py): `earlier` are
        # the object syncs whose initial sync this one's app pass waits for.
        self.order = order
        self.earlier = list(earlier)
        self.processor = processor
        self.pages = pages
        self.notify = notify
        self.page_size = page_size
        self.feeds = feeds
        self.approvals = approvals
        # For pages synced again in parts (pages run concurrently, see CommitOrder).
        self.gate = ItemGate()

    async def ensure_started(self) -> InitialSync:
        """The stored initial-sync state, (re)started when the settings changed."""
        ctx = self.ctx
        h, mh = config_hash(ctx), match_hash(ctx)
        state = await ctx.store.read(store_initial.get_initial, ctx.sync_id)
        if state is not None and state.config_hash == h:
            return state
        # A preview is for a first initial sync (or one whose preview was never approved) and
        # for a save that changes what matches; any other save re-runs it for real at once.
        preview = ctx.sync.start_in_preview and (
            state is None or (state.preview and not state.approved) or state.match_hash != mh)
        if state is not None:
            ctx.log.info("object sync settings changed: initial sync restarts",
                         preview=preview, matching_changed=state.match_hash != mh)
        # Changes made while the initial sync runs are picked up by the pollers afterwards:
        # their cursors start now.
        hub_start = await ctx.hub.changes_since(ctx.hub_object, None, ctx.hub_properties)
        app_start = await ctx.app.changes_since(ctx.app_object, None, ctx.app_properties)

        def start(conn: sqlite3.Connection) -> InitialSync:
            got = store_initial.start_initial(conn, ctx.sync_id, h, preview, mh)
            store_cursors.set_cursor(conn, ctx.sync_id, "hub", hub_start.cursor)
            store_cursors.set_cursor(conn, ctx.sync_id, "app", app_start.cursor)
            return got

        return await ctx.store.call(start)

    async def run(self) -> InitialSync:
        """Run (or resume) the initial sync until it is complete."""
        ctx = self.ctx
        state = await self.ensure_started()
        ctx.status.started_at = state.started_at
        ctx.status.done, ctx.status.total = state.done, state.total
        while True:
            current = await ctx.store.read(store_initial.get_initial, ctx.sync_id)
            assert current is not None
            state = current
            preview = state.preview and not state.approved
            self._tell_order("done" if state.phase == "complete"
                             else "idle" if preview or state.phase == "previewed"
                             else "running")
            if self.feeds is not None and state.phase != "complete":
                if preview:
                    ctx.preview = True  # before the workers run: linked records only
                    await self.feeds.resume()
                else:
                    await self.feeds.pause()
            ctx.preview = preview
            ctx.status.preview = ctx.preview
            ctx.status.phase = state.phase
            if state.phase == "complete":
                ctx.status.completed_at = state.completed_at
                return state
            if state.phase == "previewed":
                await self._wait_for_approval()
                continue
            started = time.perf_counter()
            if state.phase == "hub_index":
                await self._hub_index(state)
            elif state.phase == "app_pass":
                await self._wait_for_earlier()
                await self._app_pass(state)
            elif state.phase == "hub_pass":
                await self._hub_pass(state)
                await self._finish()
            ctx.log.info("initial sync phase done", phase=state.phase,
                         duration_ms=round((time.perf_counter() - started) * 1000))

    def _tell_order(self, state: State) -> None:
        if self.order is not None:
            self.order.set(self.ctx.sync_id, state)

    async def _wait_for_earlier(self) -> None:
        """Before a real app pass: until the earlier object syncs' initial syncs no longer
        link records (runtime/initial_order.py)."""
        if self.order is None or self.ctx.preview:
            return
        blocking = self.order.blocking(self.earlier)
        if not blocking:
            return
        ctx = self.ctx
        if await ctx.store.read(store_items.any_linked, ctx.sync_id):
            # Not a first initial sync (a saved change restarted it, or it resumes): its
            # records' associations were decided before, and its feeds, paused while it
            # runs, must not wait for other object syncs.
            return
        ctx.log.info("initial sync waits for the object syncs it keeps associations with",
                     waiting_for=blocking)
        # What `crmsync ctl status` shows meanwhile.
        ctx.status.phase = f"app_pass, waiting for {', '.join(blocking)}"
        started = time.perf_counter()
        gave_up = await self.order.wait_for(self.earlier, ctx.sync_id)
        ctx.status.phase = "app_pass"
        ctx.log.info("initial sync goes on", waited_ms=round(
            (time.perf_counter() - started) * 1000), waited_out=gave_up)

    async def _wait_for_approval(self) -> None:
        ctx = self.ctx
        while True:
            state = await ctx.store.read(store_initial.get_initial, ctx.sync_id)
            if state is None or state.phase != "previewed":
                return
            if self.approvals is None:
                await trio.sleep(APPROVAL_POLL_SECONDS)
            else:
                await wait_asked(self.approvals, APPROVAL_POLL_SECONDS)

    async def _scan(self, side: str, cursor: str | None,
                    associations: dict[str, dict[str, list[str]]] | None = None,
                    ) -> tuple[list[Record], str | None]:
        """Records from `cursor` on, several API pages at once (HubSpot lists 100 at a time):
        every processed page costs fixed commits, so a page of ~500 records costs a fifth.
        With `associations` (a dict to fill), where the side can: each record's
        associations with the objects the association syncs keep, in the same requests."""
        records: list[Record] = []
        nxt = cursor
        to_objects = sorted({p.hub_b for p in getattr(self.ctx.associations, "pairs", ())})
        pages = scan_pages(self.ctx.connector(side), self.ctx.object_name(side),
                           self.ctx.properties(side), cursor=cursor,
                           bounds=Bounds(max_records=PAGE_RECORDS),
                           associations=to_objects if associations is not None else ())
        async with aclosing(pages):
            async for page in pages:
                records.extend(page.records)
                nxt = page.next_cursor
                if associations is not None:
                    associations.update(page.associations or {})
        return records, nxt

    def _checkpoint(self, phase: str, cursor: str | None, done: int,
                    total: int | None = None) -> Callable[[sqlite3.Connection], None]:
        next_phase = {"hub_index": "app_pass", "app_pass": "hub_pass",
                      "hub_pass": "hub_pass"}[phase]

        def commit(conn: sqlite3.Connection) -> None:
            if cursor is None:
                store_initial.checkpoint(conn, self.ctx.sync_id, next_phase, "",
                                         done, total)
            else:
                store_initial.checkpoint(conn, self.ctx.sync_id, phase, cursor, done, total)

        return commit

    async def _hub_index(self, state: InitialSync) -> None:
        ctx = self.ctx
        cursor: str | None = state.cursor or None
        done = state.done
        order = CommitOrder()
        last: Ticket | None = None
        while True:
            associations: dict[str, dict[str, list[str]]] = {}
            records, nxt = await self._scan("hub", cursor, associations)
            rows = [index_row(ctx, "hub", r) for r in records]
            done += len(rows)
            # Estimated work: every hub record twice (index, hub pass) plus the app's.
            total = max(state.total, 2 * done)
            checkpoint = self._checkpoint("hub_index", nxt, done, total)

            async def page(turn: Turn, rows: list[IndexRow] = rows,
                           records: list[Record] = records,
                           checkpoint: Callable[[sqlite3.Connection], None] = checkpoint,
                           done: int = done, total: int = total,
                           associations: dict[str, dict[str, list[str]]] = associations,
                           ) -> None:
                def commit(conn: sqlite3.Connection) -> None:
                    store_items.index_records(conn, ctx.sync_id, "hub", rows)
                    # What the app pass and the hub pass decide on, unread again.
                    store_scanned.keep(conn, ctx.sync_id, "hub", records)
                    store_scanned.keep_associations(conn, ctx.sync_id, associations)
                    checkpoint(conn)

                await turn()
                await ctx.store.call(commit)
                ctx.status.done, ctx.status.total = done, total

            # Indexing syncs no record: the page locks none.
            last = await self.pages.run_job([], order.page(page))
            if nxt is None:
                break
            cursor = nxt
        await last.wait()

    async def _app_pass(self, state: InitialSync) -> None:
        ctx = self.ctx
        cursor: str | None = state.cursor or None
        done = state.done
        total = state.total
        in_flight = InFlight()
        order = CommitOrder()
        last: Ticket | None = None
        while True:
            records, nxt = await self._scan("app", cursor)
            # Ids reused since they were linked name new records: matched as such.
            gone = await self._detach_reused(records)
            rows = [index_row(ctx, "app", r) for r in records]
            # Looked up in page order (duplicates depend on it), with the claims of the
            # pages still being written.
            pairings = await ctx.store.read(match_app_records, ctx.sync_id,
                                            rows, in_flight)
            # The app's size is learnt while scanning it: each page adds to done and total.
            done += len(records)
            total += len(records)
            keys: list[RecordKey] = [("app", r.id) for r in records]
            keys += [("hub", it.hub_id) for it in gone if it.hub_id]

            async def page(turn: Turn, records: list[Record] = records,
                           pairings: list[Pairing] = pairings,
                           nxt: str | None = nxt, done: int = done,
                           total: int = total, gone: list[Item] = gone,
                           keys: list[RecordKey] = keys) -> None:
                async def works() -> list[Work]:
                    out = await self._app_works(records, pairings)
                    if gone:
                        # Their app records were deleted: decided like any deletion.
                        hubs = await read_records(ctx, "hub", [it.hub_id for it in gone
                                                               if it.hub_id])
                        out += [Work(item=it, hub=hubs.get(it.hub_id or ""))
                                for it in gone]
                    return out

                await self._process_page(
                    keys, works, self._checkpoint("app_pass", nxt, done, total), turn)
                in_flight.forget(pairings)
                ctx.status.done, ctx.status.total = done, total

            last = await self.pages.run_job(keys, order.page(page))
            if nxt is None:
                break
            cursor = nxt
        await last.wait()

    async def _detach_reused(self, records: list[Record]) -> list[Item]:
        """The items whose app id one of `records` now holds as another record (see
        loader.detach_reused), without their app record."""
        ctx = self.ctx
        known = await ctx.store.read(store_items.find_items, ctx.sync_id, "app",
                                     [r.id for r in records])
        gone = await detach_reused(ctx, list(known.values()), {r.id: r for r in records})
        return [it for it in gone.values() if it is not None]

    async def _app_works(self, records: list[Record],
                         pairings: list[Pairing]) -> list[Work]:
        by_id = {r.id: r for r in records}
        hub_recs = await self._hub_records([p.item for p in pairings if p.item is not None])
        works: list[Work] = []
        for p in pairings:
            rec = by_id[p.row.record_id]
            if p.row.excluded and not (p.known and p.item is not None and p.item.linked):
                # Decided again on every run, a known record too: a restarted initial sync
                # set it back to pending (filters only ever apply before the first link).
                works.append(Work(item=p.item if p.known else None, app=rec,
                                  excluded=(p.row.excluded, p.row.detail)))
                continue
            if p.duplicate_of is not None:
                # Keys shown in reports, never claimed (no key_side): the holder keeps them.
                works.append(Work(item=p.item if p.known else None, app=rec,
                                  duplicate_of=p.duplicate_of, keys=p.row.keys))
                continue
            hub = (hub_recs.get(p.item.hub_id) if p.item is not None and p.item.hub_id
                   else None)
            if p.item is not None and p.item.linked and p.known:
                works.append(Work(item=p.item, app=rec, hub=hub))
                continue
            works.append(Work(item=p.item, app=rec, hub=hub,
                              keys=p.row.keys if not p.known else (), key_side="app"))
        return works

    async def _hub_pass(self, state: InitialSync) -> None:
        """Hub records the app pass did not link go through the engine alone. They are the
        hub index's unlinked items (every hub record was indexed in phase 1), read back in
        batches: the records linked or created by the app pass are not read again. A hub
        record created after the hub index is picked up by the hub poller, whose cursor
        starts when the initial sync did."""
        ctx = self.ctx
        after = int(state.cursor or 0)
        done = state.done
        order = CommitOrder()
        last: Ticket | None = None
        while True:
            items = await ctx.store.read(store_items.unlinked_hub_items, ctx.sync_id,
                                         after, PAGE_RECORDS)
            if not items:
                break
            after = items[-1].item_id
            done += len(items)
            total = max(state.total, done)
            keys: list[RecordKey] = [("hub", it.hub_id) for it in items if it.hub_id]

            async def page(turn: Turn, items: list[Item] = items, last: int = after,
                           done: int = done, total: int = total,
                           keys: list[RecordKey] = keys) -> None:
                async def works() -> list[Work]:
                    recs = await self._hub_records(items)
                    return await pair_new(ctx, [Work(item=it, hub=recs.get(it.hub_id or ""))
                                                for it in items])

                await self._process_page(
                    keys, works, self._checkpoint("hub_pass", str(last), done, total), turn)
                ctx.status.done, ctx.status.total = done, total

            last = await self.pages.run_job(keys, order.page(page))
        if last is not None:
            await last.wait()
        ctx.status.done = ctx.status.total = done

    async def _hub_records(self, items: Sequence[Item]) -> dict[str, Record]:
        """The hub records of `items` by hub id: as the hub index listed them for items never
        linked (store/scanned.py), read from HubSpot for the others and for any the index did
        not keep (an initial sync resumed after an upgrade)."""
        ctx = self.ctx
        fresh = [it.hub_id for it in items if it.hub_id and it.snapshot is None]
        kept = (await ctx.store.read(store_scanned.get, ctx.sync_id, "hub", fresh)
                if fresh else {})
        rest = [it.hub_id for it in items if it.hub_id and it.hub_id not in kept]
        got = {k: v for k, v in kept.items() if not v.archived}
        got.update(await read_records(ctx, "hub", rest))
        return got

    async def _process_page(self, keys: list[RecordKey],
                            works: Callable[[], Awaitable[list[Work]]],
                            checkpoint: Callable[[sqlite3.Connection], None],
                            turn: Turn) -> None:
        """Sync one page and commit its checkpoint with it. If the page fails for a reason
        that concerns its records (not the connection), its records are synced again in
        parts, in page order, down to single records: one that still fails is recorded as
        failed (isolation.py), and the checkpoint moves on past it. Otherwise a poisoned
        record would stop the initial sync at the same page on every restart."""
        try:
            done = await works()
            await self.processor.run(done, extra=checkpoint, before_commit=turn,
                                     preview=self.ctx.preview)
            await self._again(done)
            return
        except Exception as exc:
            if concerns_connection(exc):
                raise
            category, detail = record_failure(exc)
            self.ctx.log.warning("initial sync page failed: syncing its records in parts",
                                 records=len(keys), category=category, detail=detail)
        await turn()

        async def run(part: Sequence[Unit]) -> None:
            await sync_units(self.ctx, self.processor, self.gate, part,
                             plan_only=self.ctx.preview)

        async def fail(unit: Unit, exc: Exception) -> None:
            await fail_record(self.ctx, unit[0], [i for p in unit[1]
                                                  if (i := inbox_id_of(p)) is not None], exc)

        await isolate([(k, []) for k in keys], run, fail)
        await self.ctx.store.call(checkpoint)

    async def _again(self, works: list[Work]) -> None:
        """Records whose commit broke a unique index (a page committed beside this one gave
        one of their records to another item) are synced once more from what the store
        holds now; no worker runs beside the initial sync, so once is enough."""
        keys = [k for w in works if w.conflict and (k := w.key()) is not None]
        if keys:
            await self.processor.run(await load(self.ctx, keys), preview=self.ctx.preview)

    async def _finish(self) -> None:
        ctx = self.ctx

        def finish(conn: sqlite3.Connection) -> dict[str, int]:
            state = store_initial.get_initial(conn, ctx.sync_id)
            if state is not None and state.preview and not state.approved:
                store_initial.checkpoint(conn, ctx.sync_id, "previewed", "")
            else:
                store_initial.complete_initial(conn, ctx.sync_id)
            return store_items.counts(conn, ctx.sync_id)

        counts = await ctx.store.call(finish)
        if ctx.preview:
            plan = await ctx.store.read(store_initial.plan_summary, ctx.sync_id)
            ctx.log.info("initial sync preview ready", plan=plan,
                         hint="crmsync ctl preview / approve")
            return
        ctx.status.completed_at = time.time()
        ctx.log.info("initial sync complete", counts=counts)
        if self.notify is not None:
            await self.notify(ctx, counts)


__all__ = ["Changes", "InitialSyncActor", "config_hash", "index_row"]
