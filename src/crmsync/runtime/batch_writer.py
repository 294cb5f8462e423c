"""Batch writers: one actor per (side, object). Write requests come over a bounded channel from
every worker; the writer gathers them into the API's batch size, or flushes what it has after
a short delay, and answers each request with its own per-record results.

A request carries its reply (an event and the results). At most `concurrency` API calls run
at once; while they all run the writer reads no more requests, so its channel fills and the
workers wait (backpressure) rather than requests piling up in memory.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec
import structlog
import trio

from crmsync.connectors.base import Connector, WriteResult
from crmsync.records import Record
from crmsync.runtime.create_healing import create_healed

Kind = Literal["create", "update", "archive"]
KINDS: tuple[Kind, ...] = ("create", "update", "archive")
# Requests the channel buffers before a caller waits.
REQUEST_BUFFER = 16


class WriterStopped(RuntimeError):
    """The batch writer is not running (its object sync is stopping): no write was sent."""


@dataclass(eq=False)
class _Request:
    kind: Kind
    inputs: list[Any]
    # Updates: the records as read, one per input, when the update is conditional on them.
    expected: list[Record | None] | None = None
    done: trio.Event = field(default_factory=trio.Event)
    results: list[WriteResult] = field(default_factory=list)
    error: BaseException | None = None

    def answer(self, results: list[WriteResult] | None = None,
               error: BaseException | None = None) -> None:
        if self.done.is_set():
            return
        self.results = results or []
        self.error = error
        self.done.set()


class BatchWriterStatistics(msgspec.Struct, frozen=True):
    calls: int
    records: int
    pending: int
    largest_batch: int


class BatchWriter:
    """Run with `await nursery.start(writer.run)`; then `await writer.create(...)` etc. from
    any task. `aclose()` (or the end of `run`'s caller) closes the request channel: `run`
    sends what it holds and returns.

    A failure of a whole API call (ConnectorError) is raised in every caller whose inputs
    were in that call; per-record failures come back as WriteResults.
    """

    def __init__(self, connector: Connector, object_name: str, batch_size: int = 100,
                 linger: float = 0.05, concurrency: int = 4, *, side: str = "") -> None:
        self.connector = connector
        self.object_name = object_name
        self.batch_size = batch_size
        self.linger = linger
        self.concurrency = concurrency
        self.side = side
        self._send, self._receive = trio.open_memory_channel[_Request](REQUEST_BUFFER)
        self._pending: dict[Kind, list[_Request]] = {k: [] for k in KINDS}
        self._calls = 0
        self._records = 0
        self._largest = 0

    # --- the callers' side ----------------------------------------------------------------

    async def create(self, inputs: Sequence[Mapping[str, Any]]) -> list[WriteResult]:
        return await self._submit("create", list(inputs))

    async def update(self, inputs: Sequence[tuple[str, Mapping[str, Any]]],
                     expected: Sequence[Record | None] | None = None) -> list[WriteResult]:
        """Updates; `expected` (one record as read per input) makes each conditional on
        those values, for a connector with `conditional_update` (see `Connector.update`)."""
        return await self._submit("update", list(inputs),
                                  list(expected) if expected is not None else None)

    async def archive(self, ids: Sequence[str]) -> list[WriteResult]:
        return await self._submit("archive", list(ids))

    async def _submit(self, kind: Kind, inputs: list[Any],
                      expected: list[Record | None] | None = None) -> list[WriteResult]:
        if not inputs:
            return []
        if expected is not None and len(expected) != len(inputs):
            raise ValueError("one expected record per update input")
        req = _Request(kind, inputs, expected)
        try:
            await self._send.send(req)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            raise WriterStopped("the batch writer is not running") from None
        await req.done.wait()
        if req.error is not None:
            raise req.error
        return req.results

    async def aclose(self) -> None:
        """No more requests: `run` sends what it holds and returns."""
        await self._send.aclose()

    async def __aenter__(self) -> BatchWriter:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # --- the actor ------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        limiter = trio.CapacityLimiter(self.concurrency)
        context = {"object": self.object_name, "side": self.side} if self.side else {}
        with structlog.contextvars.bound_contextvars(**context):
            try:
                async with self._receive, trio.open_nursery() as nursery:
                    task_status.started()
                    while await self._gather():
                        await self._flush_all(nursery, limiter)
                    await self._flush_all(nursery, limiter)
            finally:
                stopped = WriterStopped("the batch writer stopped")
                for req in self._drop_pending():
                    req.answer(error=stopped)

    async def _gather(self) -> bool:
        """Wait for a request, then take what else is there: more while a batch fills, up to
        `linger` after the first. False once every sender closed."""
        try:
            self._add(await self._receive.receive())
        except trio.EndOfChannel:
            return False
        deadline = trio.current_time() + self.linger if self.linger > 0 else -math.inf
        while not self._full():
            try:
                self._add(self._receive.receive_nowait())
                continue
            except trio.WouldBlock:
                pass
            except trio.EndOfChannel:
                return False
            if trio.current_time() >= deadline:
                break
            with trio.move_on_at(deadline):
                try:
                    self._add(await self._receive.receive())
                except trio.EndOfChannel:
                    return False
        return True

    def _add(self, req: _Request) -> None:
        self._pending[req.kind].append(req)

    def _full(self) -> bool:
        return any(sum(len(r.inputs) for r in reqs) >= self.batch_size
                   for reqs in self._pending.values())

    async def _flush_all(self, nursery: trio.Nursery, limiter: trio.CapacityLimiter) -> None:
        for kind in KINDS:
            while self._pending[kind]:
                batch = self._take(kind)
                # The flush task releases it: borrowed on behalf of the batch. While every
                # slot is taken the writer waits here and reads no more requests.
                token = object()
                await limiter.acquire_on_behalf_of(token)
                nursery.start_soon(self._flush, kind, batch, limiter, token)

    def _drop_pending(self) -> list[_Request]:
        out = [r for reqs in self._pending.values() for r in reqs]
        for reqs in self._pending.values():
            reqs.clear()
        while True:
            try:
                out.append(self._receive.receive_nowait())
            except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                return out

    def _take(self, kind: Kind) -> list[_Request]:
        """Whole requests up to the batch size (a request larger than it goes alone)."""
        reqs = self._pending[kind]
        batch: list[_Request] = []
        size = 0
        while reqs and (not batch or size + len(reqs[0].inputs) <= self.batch_size):
            r = reqs.pop(0)
            batch.append(r)
            size += len(r.inputs)
        return batch

    async def _flush(self, kind: Kind, batch: list[_Request], limiter: trio.CapacityLimiter,
                     token: object) -> None:
        try:
            inputs = [x for r in batch for x in r.inputs]
            self._calls += 1
            self._records += len(inputs)
            self._largest = max(self._largest, len(inputs))
            try:
                if kind == "create":
                    # Lost answers and whole-batch refusals are settled here, for every
                    # connector alike: no create is sent twice blindly.
                    results = await create_healed(self.connector, self.object_name, inputs)
                elif kind == "update":
                    if any(r.expected is not None for r in batch):
                        expected = [e for r in batch
                                    for e in (r.expected or [None] * len(r.inputs))]
                        results = await self.connector.update(self.object_name, inputs,
                                                              expected=expected)
                    else:
                        results = await self.connector.update(self.object_name, inputs)
                else:
                    results = await self.connector.archive(self.object_name, inputs)
            except Exception as exc:  # handed to each caller, who decides
                for r in batch:
                    r.answer(error=exc)
                return
            if len(results) != len(inputs):
                err = RuntimeError(f"{type(self.connector).__name__}.{kind} returned "
                                   f"{len(results)} results for {len(inputs)} inputs")
                for r in batch:
                    r.answer(error=err)
                return
            at = 0
            for r in batch:
                r.answer(list(results[at:at + len(r.inputs)]))
                at += len(r.inputs)
        finally:
            # Cancelled mid-call: the callers learn that nothing is known of it.
            for r in batch:
                r.answer(error=WriterStopped("the batch writer stopped"))
            limiter.release_on_behalf_of(token)

    def statistics(self) -> BatchWriterStatistics:
        waiting = self._receive.statistics().current_buffer_used
        return BatchWriterStatistics(
            self._calls, self._records,
            sum(len(r.inputs) for reqs in self._pending.values() for r in reqs) + waiting,
            self._largest)
