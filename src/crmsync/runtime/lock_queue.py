"""The record lock queue: at most one sync of a record at a time.

Producers (pollers, webhook intake, operators) `submit` record keys and may wait for them to
be synced. Workers `take` batches of keys that are free. A key submitted while a sync of it
runs waits (the record is `queued`) and runs once more after it; several submissions of one
waiting key collapse into that one run, because the worker always re-reads the whole record.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Hashable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import msgspec
import trio


@dataclass(eq=False)
class _Run:
    """One future sync of a key; everyone waiting for that key's next sync shares it."""

    done: trio.Event = field(default_factory=trio.Event)
    payload: list[Any] = field(default_factory=list)
    error: BaseException | None = None


class SyncFailed(Exception):
    """The sync a ticket waited for failed (the worker's error is the cause)."""


class Ticket:
    """Completion of a submission: every key it named has been synced once after it."""

    def __init__(self, runs: list[_Run]) -> None:
        self._runs = runs

    async def wait(self) -> None:
        """Wait until every key was synced; raises SyncFailed if a sync of one failed."""
        for run in self._runs:
            await run.done.wait()
        for run in self._runs:
            if run.error is not None:
                raise SyncFailed(str(run.error)) from run.error

    @property
    def done(self) -> bool:
        return all(r.done.is_set() for r in self._runs)


class LockQueueStatistics(msgspec.Struct, frozen=True):
    ready: int  # free keys waiting for a worker
    running: int  # keys being synced
    queued: int  # keys waiting for a running sync of themselves
    submitted: int
    collapsed: int  # submissions merged into an already waiting run


class RecordLockQueue:
    """Per-record mutual exclusion with collapsing, as a work queue.

    `on_queued(keys)` is awaited when keys start waiting behind a running sync of themselves,
    so the store can show them as `queued`.
    """

    def __init__(self, on_queued: Callable[[list[Hashable]], Awaitable[None]] | None = None
                 ) -> None:
        self._ready: dict[Hashable, _Run] = {}  # insertion-ordered: FIFO
        self._running: dict[Hashable, _Run] = {}
        self._again: dict[Hashable, _Run] = {}
        self._wakeup = trio.Event()
        self._on_queued = on_queued
        self._submitted = 0
        self._collapsed = 0
        self._closed = False
        self._paused = False
        self._idle = trio.Event()

    async def submit(self, keys: Iterable[Hashable],
                     payloads: dict[Hashable, Any] | None = None) -> Ticket:
        """Ask for a sync of each key; returns at once with a Ticket to wait on.

        `payloads` attaches data to a key's next run (e.g. webhook inbox ids to mark done in
        the transaction that records the sync).
        """
        runs: list[_Run] = []
        newly_queued: list[Hashable] = []
        for key in dict.fromkeys(keys):
            self._submitted += 1
            if key in self._running:
                run = self._again.get(key)
                if run is None:
                    run = self._again[key] = _Run()
                    newly_queued.append(key)
                else:
                    self._collapsed += 1
            else:
                run = self._ready.get(key)
                if run is None:
                    run = self._ready[key] = _Run()
                else:
                    self._collapsed += 1
            if payloads and key in payloads:
                run.payload.append(payloads[key])
            runs.append(run)
        if self._ready:
            self._notify()
        if newly_queued and self._on_queued is not None:
            await self._on_queued(newly_queued)
        return Ticket(runs)

    async def take(self, max_keys: int, linger: float = 0.0) -> list[tuple[Hashable, list[Any]]]:
        """Wait for free keys and claim up to `max_keys` of them (with their payloads).

        With `linger`, wait that long after the first key for the batch to fill up (batching
        across producers); it never delays a full batch.
        """
        while not self._ready or self._closed or self._paused:
            await self._wakeup.wait()
        if linger > 0 and len(self._ready) < max_keys:
            with trio.move_on_after(linger):
                while len(self._ready) < max_keys:
                    await self._wakeup.wait()
        out: list[tuple[Hashable, list[Any]]] = []
        while self._ready and len(out) < max_keys:
            key = next(iter(self._ready))
            run = self._ready.pop(key)
            self._running[key] = run
            out.append((key, run.payload))
        return out

    def done(self, keys: Iterable[Hashable], error: BaseException | None = None) -> None:
        """A worker finished syncing `keys` (or failed with `error`): wake their waiters and
        release the runs waiting behind them."""
        for key in keys:
            run = self._running.pop(key, None)
            if run is None:
                continue
            run.error = error
            run.done.set()
            again = self._again.pop(key, None)
            if again is not None:
                self._ready[key] = again
        if self._ready:
            self._notify()
        if not self._running:
            self._idle.set()

    @asynccontextmanager
    async def hold(self, keys: Iterable[Hashable]) -> AsyncIterator[None]:
        """Keep workers off `keys` while an operator's repair writes their records (restore):
        waits for their running syncs to end; syncs asked for meanwhile (or already waiting
        their turn) run after the hold, the records showing as queued."""
        wanted = list(dict.fromkeys(keys))
        while busy := [self._running[k] for k in wanted if k in self._running]:
            await busy[0].done.wait()
        # No checkpoint from here to the claims: nothing can take a key in between.
        for key in wanted:
            ready = self._ready.pop(key, None)
            if ready is not None:
                self._again[key] = ready
            self._running[key] = _Run()
        try:
            yield
        finally:
            self.done(wanted)

    def close(self) -> None:
        """Hand out no more work (shutdown); syncs already running finish."""
        self._closed = True
        if not self._running:
            self._idle.set()

    def pause(self) -> None:
        """Hand out no work until `resume` (syncs already running finish; keys submitted
        meanwhile wait their turn)."""
        self._paused = True

    def resume(self) -> None:
        self._paused = False
        if self._ready:
            self._notify()

    async def wait_idle(self) -> None:
        """Wait until no sync is running (after `close`, until the last one finished)."""
        while self._running:
            self._idle = trio.Event()
            await self._idle.wait()

    def _notify(self) -> None:
        # Wake every waiter of this generation; later waiters wait on a fresh event.
        self._wakeup.set()
        self._wakeup = trio.Event()

    def statistics(self) -> LockQueueStatistics:
        return LockQueueStatistics(
            ready=len(self._ready), running=len(self._running), queued=len(self._again),
            submitted=self._submitted, collapsed=self._collapsed)
