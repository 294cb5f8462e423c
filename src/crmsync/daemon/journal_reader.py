"""The journal reader: HubSpot's changes through the webhooks journal, for a daemon that only
makes outgoing calls (`[hub] changes = "journal"`, hubspot-onboarding.md §6).

It gives the same guarantees as the webhook server, writing into the same durable inbox (the
webhook intake of each object sync reads it):

- **Ready** (`task_status.started()`) once its client-credentials token works and the journal
  subscriptions for the synced hub object types exist (created where missing).
- **Each entry applied once.** Entries are read by offset; an entry's events go into the inbox
  (deduplicated by event key) in the same transaction that moves the stored offset past it
  (store/journal.py). A crash between fetching an entry and that commit reads it again; a
  crash after it finds its events already stored.
- **Gaps are healed.** The journal keeps entries 3 days. An offset it no longer knows (404), a
  journal not read for longer than that (the daemon stopped), an entry whose file is gone or
  unreadable, or a subscription that had to be created again: whatever changed meanwhile may
  be lost to the journal. The reader moves past the gap and asks the affected object syncs for
  a reconciliation in one transaction (store/reconciles.py), logs it, and shows it in
  `crmsync ctl status`.
- The token is renewed before it expires (connectors/hubspot/client_credentials.py).

`JournalIntake` supervises the reader: it restarts it with backoff after a failure, pauses it
on a configuration error (a refused client id or secret, missing scopes), and keeps the
statistics `ctl status` shows.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field

import msgspec
import structlog
import trio

from crmsync.connectors.base import ConnectorError
from crmsync.connectors.hubspot.client_credentials import ClientCredentialsAuth
from crmsync.connectors.hubspot.journal import (
    RETENTION_SECONDS,
    EntryGone,
    EntryRef,
    JournalClient,
    OffsetGone,
    UnreadableEntry,
)
from crmsync.connectors.hubspot.webhooks import WebhookEvent
from crmsync.daemon.webhook_server import hub_inbox_items
from crmsync.runtime.supervisor import PAUSED_RETRY, backoff, first_leaf
from crmsync.store import Store
from crmsync.store import journal as store_journal
from crmsync.store import reconciles as store_reconciles

log = structlog.get_logger("crmsync.journal")

# Re-check that the subscriptions still exist this often (somebody may delete them).
SUBSCRIPTION_CHECK_SECONDS = 3600.0
# When the journal had nothing new, its read time is stored at most this often.
MARK_READ_EVERY = 60.0


@dataclass
class JournalRoutes:
    """What the journal feeds: per hub object, the inbox sources and the object syncs (ids);
    the hub objects whose association changes matter."""

    sources: dict[str, list[str]] = field(default_factory=dict)
    syncs: dict[str, list[str]] = field(default_factory=dict)
    associations: set[str] = field(default_factory=set)

    def sync_ids(self, objects: set[str] | None = None) -> list[str]:
        return sorted({sid for obj, sids in self.syncs.items()
                       if objects is None or obj in objects for sid in sids})


@dataclass
class JournalStats:
    state: str = "starting"
    reason: str = ""
    restarts: int = 0
    portal_id: int = 0
    offset: str | None = None
    last_read: float | None = None
    entries: int = 0
    events: int = 0
    duplicates: int = 0
    skipped: int = 0
    foreign: int = 0
    gaps: int = 0
    last_gap: float | None = None
    last_gap_reason: str = ""
    subscriptions: list[str] = field(default_factory=list)


class JournalStatistics(msgspec.Struct, frozen=True, kw_only=True):
    """The journal reader's figures at one moment (what `ctl status` shows of it)."""

    state: str  # starting | running | paused | error
    reason: str
    restarts: int
    portal_id: int
    offset: str | None
    last_read: float | None  # epoch seconds of the last read to the end or of an entry
    entries: int
    events: int  # events stored (new ones)
    duplicates: int  # events already in the inbox
    skipped: int  # unreadable events left out
    foreign: int  # events of another account, left out
    gaps: int
    last_gap: float | None
    last_gap_reason: str
    subscriptions: list[str]
    token_expires_in: float | None  # seconds until the client-credentials token expires
    token_grants: int  # client-credentials tokens obtained


class JournalReader:
    """Reads the journal into the inbox. See the module docstring.

    `routes()` is called on every read (a reload may change it). `on_stored(sources)` rings the
    intakes of the sources that got events; `on_gap(sync_ids)` wakes the reconciliation of those
    object syncs (their requests are already committed). `wall_clock` gives epoch seconds (the
    journal's retention is wall-clock time).
    """

    def __init__(self, journal: JournalClient, store: Store, routes: Callable[[], JournalRoutes],
                 *, poll_interval: float = 10.0, batch_size: int = 10,
                 on_stored: Callable[[list[str]], None] = lambda sources: None,
                 on_gap: Callable[[list[str]], None] = lambda sync_ids: None,
                 wall_clock: Callable[[], float] = time.time,
                 retention: float = RETENTION_SECONDS, stats: JournalStats | None = None) -> None:
        self.journal = journal
        self.store = store
        self.routes = routes
        self.poll_interval = poll_interval
        self.batch_size = batch_size
        self.on_stored = on_stored
        self.on_gap = on_gap
        self.wall_clock = wall_clock
        self.retention = retention
        self.stats = stats if stats is not None else JournalStats()
        self.account = store_journal.key(journal.portal_id)
        self.offset: str | None = None
        self.wake = trio.Event()
        self._subscribed: set[str] = set()
        self._checked_at = 0.0
        self._marked_at = 0.0

    def read_now(self) -> None:
        """Read the journal now instead of at the end of the poll interval."""
        self.wake.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        self.stats.portal_id = self.journal.portal_id
        position = await self.store.read(store_journal.position, self.account)
        self.offset = self.stats.offset = position.offset
        self.stats.last_read = position.read_at
        created = await self._subscribe()
        if created and position.offset is not None:
            # Changes made while a subscription was missing were never journaled.
            await self._reconcile(self._objects_of(created),
                                  f"journal subscription missing ({', '.join(created)})")
        now = self.wall_clock()
        if position.offset is not None and position.read_at is not None \
                and now - position.read_at > self.retention:
            days = (now - position.read_at) / 86400
            await self._skip_gap(f"journal not read for {days:.1f} days, longer than its "
                                 f"{self.retention / 86400:g}-day retention")
        log.info("journal reader ready", portal_id=self.journal.portal_id,
                 offset=self.offset, subscriptions=sorted(self._subscribed))
        task_status.started()
        while True:
            if trio.current_time() - self._checked_at >= SUBSCRIPTION_CHECK_SECONDS or \
                    not set(self.routes().sources) <= self._subscribed:
                created = await self._subscribe()
                if created:
                    await self._reconcile(self._objects_of(created),
                                          f"journal subscription missing ({', '.join(created)})")
            if await self.read_once():
                continue  # more may be waiting
            with trio.move_on_after(self.poll_interval):
                await self.wake.wait()
            self.wake = trio.Event()

    # --- subscriptions ---------------------------------------------------------------------------

    async def _subscribe(self) -> list[str]:
        routes = self.routes()
        objects = set(routes.sources)
        created = await self.journal.ensure_subscriptions(objects, routes.associations & objects)
        self._subscribed = objects
        self._checked_at = trio.current_time()
        self.stats.subscriptions = sorted(
            [f"object:{o}" for o in objects]
            + [f"association:{o}" for o in routes.associations & objects])
        return created

    @staticmethod
    def _objects_of(created: list[str]) -> set[str]:
        return {c.partition(":")[2] for c in created}

    # --- reading ---------------------------------------------------------------------------------

    async def read_once(self) -> int:
        """One read: up to `batch_size` entries after the stored offset, each committed with
        its events. Returns how many entries were read or skipped (0: nothing new)."""
        try:
            refs = await self.journal.entries_after(self.offset, self.batch_size)
        except OffsetGone as exc:
            await self._skip_gap(f"journal offset aged out or unknown (404): {exc.message}")
            return 1
        if not refs:
            now = self.wall_clock()
            self.stats.last_read = now
            if now - self._marked_at >= MARK_READ_EVERY:
                await self.store.call(store_journal.mark_read, self.account, now)
                self._marked_at = now
            return 0
        done = 0
        for ref in refs:
            try:
                entry = await self.journal.fetch(ref)
            except EntryGone as exc:
                if exc.expired:
                    break  # its url expired while earlier entries were applied: ask again
                await self._skip_entry(ref, exc.message)
            except UnreadableEntry as exc:
                await self._skip_entry(ref, exc.message)
            else:
                await self._apply(ref, entry.events, entry.skipped)
            done += 1
        return done

    async def _apply(self, ref: EntryRef, events: list[WebhookEvent], skipped: list[str]) -> None:
        portal = self.journal.portal_id
        ours = [e for e in events if e.portal_id is None or e.portal_id == portal]
        foreign = len(events) - len(ours)
        routes = self.routes()
        per_source = hub_inbox_items(ours, routes.sources)
        stored = sum(len(v) for v in per_source.values())
        now = self.wall_clock()
        new = await self.store.call(store_journal.commit_entry, self.account, ref.offset,
                                    per_source, now)
        self.offset = self.stats.offset = ref.offset
        self.stats.last_read = now
        self._marked_at = now
        self.stats.entries += 1
        self.stats.events += new
        self.stats.duplicates += stored - new
        self.stats.skipped += len(skipped)
        self.stats.foreign += foreign
        for reason in skipped[:5]:
            log.warning("journal event skipped", offset=ref.offset, reason=reason)
        log.debug("journal entry", offset=ref.offset, events=len(events), new=new,
                  skipped=len(skipped), foreign=foreign)
        if per_source:
            self.on_stored(list(per_source))

    # --- gaps ------------------------------------------------------------------------------------

    async def _skip_gap(self, reason: str) -> None:
        """Everything between the stored offset and now may be lost: continue after the newest
        entry, and reconcile every object sync the journal feeds."""
        latest = await self.journal.latest()
        offset = latest.offset if latest is not None else None
        sync_ids = self.routes().sync_ids()
        now = self.wall_clock()
        await self.store.call(store_journal.skip_gap, self.account, offset, sync_ids,
                              f"journal gap: {reason}", now)
        self.offset = self.stats.offset = offset
        self._noted_gap(reason, sync_ids, now)

    async def _skip_entry(self, ref: EntryRef, reason: str) -> None:
        """One entry cannot be read: move past it, reconciling every object sync it may have
        concerned."""
        sync_ids = self.routes().sync_ids()
        now = self.wall_clock()
        await self.store.call(store_journal.skip_gap, self.account, ref.offset, sync_ids,
                              f"journal gap: {reason}", now)
        self.offset = self.stats.offset = ref.offset
        self._noted_gap(reason, sync_ids, now)

    async def _reconcile(self, objects: set[str], reason: str) -> None:
        sync_ids = self.routes().sync_ids(objects)
        now = self.wall_clock()
        await self.store.call(store_reconciles.request, sync_ids, f"journal gap: {reason}", now)
        self._noted_gap(reason, sync_ids, now)

    def _noted_gap(self, reason: str, sync_ids: list[str], now: float) -> None:
        self.stats.gaps += 1
        self.stats.last_gap = now
        self.stats.last_gap_reason = reason
        log.warning("journal gap: reconciling", reason=reason, syncs=sync_ids,
                    offset=self.offset)
        if sync_ids:
            self.on_gap(sync_ids)


class JournalIntake:
    """Runs a `JournalReader` and restarts it: with backoff after a failure, after
    `PAUSED_RETRY` (or `retry_now()`) after a configuration error. `open_reader(stats)` opens
    a reader for one attempt (and closes what it opened when the attempt ends)."""

    def __init__(self, open_reader: Callable[[JournalStats],
                                             AbstractAsyncContextManager[JournalReader]], *,
                 auth: ClientCredentialsAuth | None = None) -> None:
        self.open_reader = open_reader
        self.auth = auth
        self.stats = JournalStats()
        self.reader: JournalReader | None = None
        self._wake = trio.Event()

    def retry_now(self) -> None:
        self._wake.set()

    def read_now(self) -> None:
        if self.reader is not None:
            self.reader.read_now()

    def statistics(self) -> JournalStatistics:
        s = self.stats
        token = self.auth.statistics() if self.auth is not None else None
        return JournalStatistics(
            state=s.state, reason=s.reason, restarts=s.restarts, portal_id=s.portal_id,
            offset=s.offset, last_read=s.last_read, entries=s.entries, events=s.events,
            duplicates=s.duplicates, skipped=s.skipped, foreign=s.foreign, gaps=s.gaps,
            last_gap=s.last_gap, last_gap_reason=s.last_gap_reason,
            subscriptions=list(s.subscriptions),
            token_expires_in=(round(token.expires_in, 1) if token and token.expires_in is not None
                              else None),
            token_grants=token.grants if token else 0)

    async def _sleep(self, seconds: float) -> None:
        with trio.move_on_after(seconds):
            await self._wake.wait()
        self._wake = trio.Event()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        """Started (for the daemon to go on) once the reader is ready or its first attempt
        failed; the failure shows in `ctl status` and the log, and is retried."""
        attempt = 0
        announced = False
        while True:
            started_at = trio.current_time()
            try:
                async with self.open_reader(self.stats) as reader, \
                        trio.open_nursery() as nursery:
                    self.reader = reader
                    await nursery.start(reader.run)
                    self.stats.state, self.stats.reason = "running", ""
                    if not announced:
                        announced = True
                        task_status.started()
                return  # the reader ended by itself (not expected)
            except Exception as exc:
                leaf = first_leaf(exc)
                self.reader = None
                if not announced:
                    announced = True
                    task_status.started()
                if isinstance(leaf, ConnectorError) and leaf.kind == "config":
                    self.stats.state, self.stats.reason = "paused", leaf.message
                    log.error("journal reader paused", reason=leaf.message)
                    await self._sleep(PAUSED_RETRY)
                    continue
                reason = (f"{leaf.category}: {leaf.message}" if isinstance(leaf, ConnectorError)
                          else f"{type(leaf).__name__}: {leaf}")
                if trio.current_time() - started_at > 600:
                    attempt = 0
                attempt += 1
                self.stats.restarts += 1
                delay = backoff(attempt)
                self.stats.state = "error"
                self.stats.reason = f"{reason} (retry in {delay:.0f} s)"
                log.error("journal reader failed", reason=reason, delay_s=round(delay, 1),
                          exc_info=exc)
                await self._sleep(delay)
