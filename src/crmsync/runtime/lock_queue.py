"""The record lock queue: at most one sync of a record at a time, as an actor on channels.

```
intake, pollers, reconcile, retry sweeper, operators ─▶ [changes lane] ─┐
initial-sync indexer ─────────────────────────────────▶ [pages lane] ───┼─▶ lock table ─▶ [batches] ─▶ workers
workers (done), holds, association re-syncs ──────────────────────────┘      │            [jobs] ─▶ page workers
                                                                             └──────────────────────────┘
```

Producers send *change events* (record keys, with what rides along: webhook inbox ids) over
bounded lanes, each producer through its own clone (`ChangeSender`). The table admits a lane's
event only while it has room — at most `MAX_WAITING` records waiting on the changes lane, one
page on the pages lane — so a full table stops reading a lane, the lane fills, and its senders
wait: the backlog stays where it is durable (the webhook inbox, the sources' cursors).

A key sent while a sync of it runs waits (the record is `queued`) and runs once more after it;
several events for one waiting key collapse into that one run, because the worker always
re-reads the whole record. Free keys go to the workers in batches of up to `batch_size` (a
partial batch after `linger`), never more batches out than there are workers, so keys wait in
the table, where they collapse, rather than in a channel. An initial-sync page is a *job*: its
keys are locked together and the job goes, in order, to the page workers.

Every input reaches the table's one task through one channel (its inbox), so the table's
state has one owner and nothing wakes it but a message. That channel carries the workers'
`done`, which closes a cycle (table → workers → table): the table never waits to send (it
holds back batches instead: the batch and job channels have a slot per worker), so it always
drains its inbox and a worker never waits long to report.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Hashable,
    Iterable,
    Mapping,
    Sequence,
)
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal

import msgspec
import trio

# Records waiting (free or behind a running sync of themselves) beyond which the changes lane
# is not read: its senders wait.
MAX_WAITING = 2000
# Change events a lane buffers before its senders wait.
LANE_BUFFER = 4
# Messages the table's inbox buffers (it is always being drained).
INBOX_BUFFER = 64

Lane = Literal["changes", "pages", "priority"]
Job = Callable[[], Awaitable[None]]


class SyncFailed(Exception):
    """The sync a ticket waited for failed (the worker's error is the cause)."""


class QueueStopped(RuntimeError):
    """The lock queue is not running (its object sync stopped): nothing was sent."""


@dataclass(eq=False)
class _Run:
    """One future sync of a key; everyone waiting for that key's next sync shares it."""

    done: trio.Event = field(default_factory=trio.Event)
    payload: list[Any] = field(default_factory=list)
    error: BaseException | None = None
    # Sent at least once without payloads (a poll, a resync, a partner's request): asked for
    # as such, whatever its payloads say.
    asked: bool = False

    def finish(self, error: BaseException | None) -> None:
        self.error = error
        self.done.set()


class Ticket:
    """The reply to a change event: complete once every key it named was synced once after
    it (or, for a page, once the page ran)."""

    def __init__(self) -> None:
        self._admitted = trio.Event()
        self._runs: list[_Run] = []

    async def wait(self) -> None:
        """Wait until every key was synced; raises SyncFailed if a sync of one failed."""
        await self._admitted.wait()
        for run in self._runs:
            await run.done.wait()
        for run in self._runs:
            if run.error is not None:
                raise SyncFailed(str(run.error)) from run.error

    @property
    def done(self) -> bool:
        return self._admitted.is_set() and all(r.done.is_set() for r in self._runs)

    def _admit(self, runs: list[_Run]) -> None:
        self._runs = runs
        self._admitted.set()


@dataclass(eq=False)
class Change:
    """A change event: records to sync (with what rides along with each), or a page job."""

    keys: list[Hashable]
    payloads: Mapping[Hashable, Sequence[Any]] | None = None
    job: Job | None = None
    ticket: Ticket = field(default_factory=Ticket)
    # Only the keys with no sync running or waiting its turn already (a sweep of records
    # left `queued`: one with a sync under way or due is queued for that one, whose commit
    # leaves that state, and is not asked again).
    absent_only: bool = False


@dataclass(eq=False)
class Batch:
    """Records handed to a worker: each key with the payloads that rode along with it."""

    units: list[tuple[Hashable, list[Any]]]
    # The keys also sent without payloads (see _Run.asked).
    asked: set[Hashable] = field(default_factory=set)

    @property
    def keys(self) -> list[Hashable]:
        return [k for k, _ in self.units]


@dataclass(eq=False)
class PageJob:
    """An initial-sync page handed to a page worker, its keys locked while it runs."""

    keys: list[Hashable]
    run: Job
    _done: _Run


# --- messages into the table's inbox ---------------------------------------------------------


@dataclass(eq=False)
class _Admit:
    lane: Lane
    change: Change


@dataclass(eq=False)
class _LaneEnded:
    lane: Lane


@dataclass(eq=False)
class _Done:
    work: Batch | PageJob | _Hold
    error: BaseException | None = None


@dataclass(eq=False)
class _Hold:
    keys: list[Hashable]
    granted: trio.Event = field(default_factory=trio.Event)


@dataclass(eq=False)
class _Pause:
    idle: trio.Event = field(default_factory=trio.Event)


@dataclass(eq=False)
class _Resume:
    pass


@dataclass(eq=False)
class _Drain:
    idle: trio.Event = field(default_factory=trio.Event)


_Message = _Admit | _LaneEnded | _Done | _Hold | _Pause | _Resume | _Drain


class LockQueueStatistics(msgspec.Struct, frozen=True):
    ready: int  # free keys waiting for a worker
    running: int  # keys being synced (by workers, pages or an operator's hold)
    queued: int  # keys waiting for a running sync of themselves
    submitted: int
    collapsed: int  # submissions merged into an already waiting run
    pages_waiting: int = 0
    batches_out: int = 0
    paused: bool = False


class ChangeSender:
    """One producer's end of a lane of the lock queue (a clone of it): close it with
    `async with` (or `aclose`); the lane ends when every sender is closed."""

    def __init__(self, send: trio.MemorySendChannel[Change]) -> None:
        self._send = send

    async def submit(self, keys: Iterable[Hashable],
                     payloads: Mapping[Hashable, Sequence[Any]] | None = None, *,
                     absent_only: bool = False) -> Ticket:
        """Send a change event for `keys` (waits while the lane is full); returns its Ticket.
        `payloads` ride along with a key to its next sync (webhook inbox ids, marked done in
        the transaction that records it). With `absent_only`, keys with a sync already
        running or waiting its turn are left out. Raises QueueStopped if the queue is gone."""
        change = Change(list(keys), payloads, absent_only=absent_only)
        await self._send_change(change)
        return change.ticket

    async def sync(self, keys: Iterable[Hashable],
                   payloads: Mapping[Hashable, Sequence[Any]] | None = None) -> None:
        """Submit and wait until each key was synced once after now (SyncFailed if not)."""
        ticket = await self.submit(keys, payloads)
        await ticket.wait()

    async def run_job(self, keys: Iterable[Hashable], job: Job) -> Ticket:
        """Send a page job (pages lane): `job()` runs on a page worker with `keys` locked,
        after the jobs sent before it started; the Ticket completes when it returned."""
        change = Change(list(keys), job=job)
        await self._send_change(change)
        return change.ticket

    async def _send_change(self, change: Change) -> None:
        try:
            await self._send.send(change)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            raise QueueStopped("the record lock queue is not running") from None

    def clone(self) -> ChangeSender:
        return ChangeSender(self._send.clone())

    async def aclose(self) -> None:
        await self._send.aclose()

    async def __aenter__(self) -> ChangeSender:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.aclose()


class Operator:
    """What operators (restore, association re-syncs) send straight to the table, past the
    lanes' admission: a hold of records, or keys that must never wait for room (a worker
    sends them, and waiting on its own queue's room could wait for ever)."""

    def __init__(self, inbox: trio.MemorySendChannel[_Message]) -> None:
        self._inbox = inbox

    async def _send(self, msg: _Message) -> None:
        try:
            await self._inbox.send(msg)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            raise QueueStopped("the record lock queue is not running") from None

    async def submit(self, keys: Iterable[Hashable],
                     payloads: Mapping[Hashable, Sequence[Any]] | None = None) -> Ticket:
        change = Change(list(keys), payloads)
        await self._send(_Admit("priority", change))
        return change.ticket

    @asynccontextmanager
    async def hold(self, keys: Iterable[Hashable]) -> AsyncIterator[None]:
        """Keep workers off `keys` while an operator's repair writes their records (restore):
        waits for their running syncs to end; syncs asked for meanwhile (or already waiting
        their turn) run after the hold, the records showing as queued."""
        hold = _Hold(list(dict.fromkeys(keys)))
        await self._send(hold)
        try:
            await hold.granted.wait()
            yield
        finally:
            # Released even when cancelled: the table drains its inbox, so this is short.
            with trio.CancelScope(shield=True):
                try:
                    await self._inbox.send(_Done(hold))
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    pass  # the queue is gone, and its holds with it

    def clone(self) -> Operator:
        return Operator(self._inbox.clone())

    async def aclose(self) -> None:
        await self._inbox.aclose()

    async def __aenter__(self) -> Operator:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.aclose()


class WorkerEnds:
    """A worker's ends of the queue: batches (or page jobs) to receive, `done` to report.
    Iterating ends when the queue closes its side (it ran out of producers and work)."""

    def __init__(self, receive: trio.MemoryReceiveChannel[Any],
                 inbox: trio.MemorySendChannel[_Message]) -> None:
        self._receive = receive
        self._inbox = inbox

    def __aiter__(self) -> WorkerEnds:
        return self

    async def __anext__(self) -> Any:
        try:
            return await self._receive.receive()
        except trio.EndOfChannel:
            raise StopAsyncIteration from None

    async def done(self, work: Batch | PageJob, error: BaseException | None = None) -> None:
        """Report `work` finished (or failed with `error`: its waiters get SyncFailed)."""
        try:
            await self._inbox.send(_Done(work, error))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the queue stopped: nobody waits for this any more

    async def aclose(self) -> None:
        await self._receive.aclose()
        await self._inbox.aclose()

    async def __aenter__(self) -> WorkerEnds:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.aclose()


class RecordLockQueue:
    """Per-record mutual exclusion with collapsing, as an actor.

    Run with `await nursery.start(queue.run)`; its ends are handed out as clones:
    `changes()` / `pages()` (producers), `operator()` (holds), `worker_ends()` /
    `page_worker_ends()`. After `close()` no new producer end is handed out, and the lanes
    end once the producers' clones are closed; the queue then finishes the work it holds and
    ends the workers' iteration.

    `on_queued(keys)` is awaited when keys start waiting behind a running sync of themselves
    (not behind an initial-sync page), so the store can show them as `queued`.
    """

    def __init__(self, *, workers: int, page_workers: int = 0, batch_size: int = 100,
                 linger: float = 0.0,
                 on_queued: Callable[[list[Hashable]], Awaitable[None]] | None = None,
                 max_waiting: int = MAX_WAITING) -> None:
        self.workers = workers
        self.page_worker_count = page_workers
        self.batch_size = batch_size
        self.linger = linger
        self.max_waiting = max_waiting
        self._on_queued = on_queued
        self._changes_tx, self._changes_rx = trio.open_memory_channel[Change](LANE_BUFFER)
        # A page waits to be admitted on its own: scanning stays at most a page ahead.
        self._pages_tx, self._pages_rx = trio.open_memory_channel[Change](0)
        self._inbox_tx, self._inbox_rx = trio.open_memory_channel[_Message](INBOX_BUFFER)
        self._control_tx = self._inbox_tx.clone()  # pause, resume, drain
        # A slot per worker: the table sends only to a worker that has none (send_nowait
        # never fails), so it never waits and keys wait here, where they collapse.
        self._batches_tx, self._batches_rx = trio.open_memory_channel[Batch](max(1, workers))
        self._jobs_tx, self._jobs_rx = trio.open_memory_channel[PageJob](max(1, page_workers))
        self._ready: dict[Hashable, _Run] = {}  # insertion-ordered: FIFO
        self._running: dict[Hashable, object] = {}  # key -> its run, page job or hold
        self._again: dict[Hashable, _Run] = {}
        self._jobs: deque[tuple[Change, _Run]] = deque()
        self._holds: list[_Hold] = []
        self._parked: dict[Lane, Change] = {}
        self._lanes_open = 2
        self._batches_out = 0
        self._jobs_out = 0
        self._paused = False
        self._draining = False
        self._pause_waiters: list[trio.Event] = []
        self._drain_waiters: list[trio.Event] = []
        self._linger_deadline: float | None = None
        self._submitted = 0
        self._collapsed = 0

    # --- the ends -------------------------------------------------------------------------

    def changes(self) -> ChangeSender:
        """A producer's end of the changes lane (its own clone)."""
        return ChangeSender(self._changes_tx.clone())

    def pages(self) -> ChangeSender:
        """The initial-sync indexer's end of the pages lane."""
        return ChangeSender(self._pages_tx.clone())

    def operator(self) -> Operator:
        return Operator(self._inbox_tx.clone())

    def worker_ends(self) -> WorkerEnds:
        return WorkerEnds(self._batches_rx.clone(), self._inbox_tx.clone())

    def page_worker_ends(self) -> WorkerEnds:
        return WorkerEnds(self._jobs_rx.clone(), self._inbox_tx.clone())

    # --- the actor ------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        """Serve until both lanes ended (see `close`) and no work is left, then close the
        workers' side (their iteration ends)."""
        async with (self._inbox_rx, self._batches_tx, self._jobs_tx, self._batches_rx,
                    self._jobs_rx, self._inbox_tx, self._control_tx, self._changes_tx,
                    self._pages_tx, trio.open_nursery() as nursery):
            await nursery.start(self._forward, self._changes_rx, "changes")
            await nursery.start(self._forward, self._pages_rx, "pages")
            task_status.started()
            await self._serve()
            nursery.cancel_scope.cancel()

    async def _forward(self, lane_rx: trio.MemoryReceiveChannel[Change], lane: Lane, *,
                       task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """A lane's admission: one event at a time into the table, the next one read only
        once the table took it in (it waits while the table has no room)."""
        async with lane_rx, self._inbox_tx.clone() as inbox:
            task_status.started()
            async for change in lane_rx:
                await inbox.send(_Admit(lane, change))
                await change.ticket._admitted.wait()
            await inbox.send(_LaneEnded(lane))

    async def _serve(self) -> None:
        while not self._finished():
            await self._settle()
            deadline = self._linger_deadline if self._linger_deadline is not None else math.inf
            with trio.move_on_at(deadline) as waited:
                try:
                    msg = await self._inbox_rx.receive()
                except trio.EndOfChannel:
                    return
            if waited.cancelled_caught:
                self._dispatch(linger_over=True)
                continue
            await self._handle(msg)

    def _finished(self) -> bool:
        return (self._lanes_open == 0 and not self._ready and not self._again
                and not self._running and not self._jobs and not self._holds
                and not self._parked)

    async def _handle(self, msg: _Message) -> None:
        match msg:
            case _Admit(lane, change):
                if self._room(lane):
                    await self._admit(lane, change)
                else:
                    self._parked[lane] = change
            case _Done(work, error):
                self._release(work, error)
            case _Hold():
                self._holds.append(msg)
            case _Pause(idle):
                self._paused = True
                self._pause_waiters.append(idle)
            case _Resume():
                self._paused = False
            case _Drain(idle):
                self._draining = True
                self._drain_waiters.append(idle)
            case _LaneEnded():
                self._lanes_open -= 1

    async def _settle(self) -> None:
        """Grant holds, hand out work, and take in what waited for the room that freed."""
        while True:
            self._grant_holds()
            self._dispatch()
            parked = [(lane, c) for lane, c in self._parked.items() if self._room(lane)]
            if not parked:
                break
            for lane, change in parked:
                del self._parked[lane]
                await self._admit(lane, change)
        if not self._batches_out:
            for ev in self._pause_waiters:
                ev.set()
            self._pause_waiters.clear()
            if not self._jobs_out:
                for ev in self._drain_waiters:
                    ev.set()
                self._drain_waiters.clear()

    def _room(self, lane: Lane) -> bool:
        if lane == "priority":
            return True
        if lane == "pages":
            return not self._jobs
        return len(self._ready) + len(self._again) < self.max_waiting

    async def _admit(self, lane: Lane, change: Change) -> None:
        if change.job is not None:
            run = _Run()
            self._jobs.append((change, run))
            change.ticket._admit([run])
            return
        runs: list[_Run] = []
        newly_queued: list[Hashable] = []
        payloads = change.payloads or {}
        for key in dict.fromkeys(change.keys):
            self._submitted += 1
            holder = self._running.get(key)
            # Behind a running sync of the key, or waiting its turn.
            waiting = self._again if holder is not None else self._ready
            found = waiting.get(key)
            if change.absent_only and (found is not None or holder is not None):
                continue
            if found is None:
                run = waiting[key] = _Run()
                if holder is not None and not isinstance(holder, PageJob):
                    newly_queued.append(key)
            else:
                run = found
                self._collapsed += 1
            got = payloads.get(key, ())
            run.payload.extend(got)
            run.asked = run.asked or not got
            runs.append(run)
        change.ticket._admit(runs)
        if newly_queued and self._on_queued is not None:
            await self._on_queued(newly_queued)

    def _release(self, work: Batch | PageJob | _Hold, error: BaseException | None) -> None:
        if isinstance(work, Batch):
            self._batches_out -= 1
            keys = work.keys
        elif isinstance(work, PageJob):
            self._jobs_out -= 1
            keys = work.keys
            work._done.finish(error)
        else:
            keys = work.keys
        for key in keys:
            run = self._running.pop(key, None)
            if isinstance(run, _Run):
                run.finish(error)
            again = self._again.pop(key, None)
            if again is not None:
                self._ready[key] = again

    def _claim(self, keys: Iterable[Hashable], holder: object) -> None:
        """Mark `keys` running under `holder`; a run waiting its turn goes behind it."""
        for key in keys:
            ready = self._ready.pop(key, None)
            if ready is not None:
                self._again[key] = ready
            self._running[key] = holder

    def _grant_holds(self) -> None:
        for hold in list(self._holds):
            if not any(k in self._running for k in hold.keys):
                self._holds.remove(hold)
                self._claim(hold.keys, hold)
                hold.granted.set()

    def _dispatch(self, linger_over: bool = False) -> None:
        """Hand out what can go now (never waits: a worker has a free slot)."""
        if self._draining:
            self._linger_deadline = None
            return
        # Pages in order: the first one waits for its keys, and the others behind it.
        while self._jobs and self._jobs_out < self.page_worker_count:
            change, run = self._jobs[0]
            if any(k in self._running for k in change.keys):
                break
            self._jobs.popleft()
            assert change.job is not None
            job = PageJob(list(dict.fromkeys(change.keys)), change.job, run)
            self._claim(job.keys, job)
            self._jobs_out += 1
            self._jobs_tx.send_nowait(job)
        if self._paused:
            self._linger_deadline = None
            return
        while self._ready and self._batches_out < self.workers:
            if len(self._ready) < self.batch_size and self.linger > 0 and not linger_over:
                if self._linger_deadline is None:
                    self._linger_deadline = trio.current_time() + self.linger
                return
            units: list[tuple[Hashable, list[Any]]] = []
            asked: set[Hashable] = set()
            while self._ready and len(units) < self.batch_size:
                key = next(iter(self._ready))
                run = self._ready.pop(key)
                self._running[key] = run
                units.append((key, run.payload))
                if run.asked:
                    asked.add(key)
            self._batches_out += 1
            self._batches_tx.send_nowait(Batch(units, asked))
        self._linger_deadline = None

    # --- control --------------------------------------------------------------------------

    def close(self) -> None:
        """No new producers: the lanes end when the producer ends handed out are closed."""
        self._changes_tx.close()
        self._pages_tx.close()

    async def pause(self) -> None:
        """Hand out no batches until `resume` (pages still run); returns once the batches
        already out are done. Keys sent meanwhile wait their turn."""
        msg = _Pause()
        await self._control(msg)
        await msg.idle.wait()

    async def resume(self) -> None:
        await self._control(_Resume())

    async def drain(self) -> None:
        """Hand out nothing more (shutdown); returns once the batches and pages out are done."""
        msg = _Drain()
        await self._control(msg)
        await msg.idle.wait()

    async def _control(self, msg: _Message) -> None:
        try:
            await self._control_tx.send(msg)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            raise QueueStopped("the record lock queue is not running") from None

    def statistics(self) -> LockQueueStatistics:
        return LockQueueStatistics(
            ready=len(self._ready), running=len(self._running), queued=len(self._again),
            submitted=self._submitted, collapsed=self._collapsed,
            pages_waiting=len(self._jobs), batches_out=self._batches_out, paused=self._paused)
