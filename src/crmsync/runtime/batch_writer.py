"""Batch writers: one per (side, object). They gather writes from every worker into the API's
batch size, or flush after a short delay, and hand each caller its own per-record results."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec
import trio

from crmsync.connectors.base import Connector, WriteResult
from crmsync.records import Record

Kind = Literal["create", "update", "archive"]


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


class BatchWriterStatistics(msgspec.Struct, frozen=True):
    calls: int
    records: int
    pending: int
    largest_batch: int


class BatchWriter:
    """Run with `await nursery.start(writer.run)`; then `await writer.create(...)` etc.

    A failure of a whole API call (ConnectorError) is raised in every caller whose inputs
    were in that call; per-record failures come back as WriteResults.
    """

    def __init__(self, connector: Connector, object_name: str, batch_size: int = 100,
                 linger: float = 0.05, concurrency: int = 4) -> None:
        self.connector = connector
        self.object_name = object_name
        self.batch_size = batch_size
        self.linger = linger
        self._pending: dict[Kind, list[_Request]] = {"create": [], "update": [], "archive": []}
        self._wakeup = trio.Event()
        self._limiter = trio.CapacityLimiter(concurrency)
        self._running = False
        self._calls = 0
        self._records = 0
        self._largest = 0

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
        if not self._running:
            raise WriterStopped("BatchWriter.run is not running")
        if expected is not None and len(expected) != len(inputs):
            raise ValueError("one expected record per update input")
        req = _Request(kind, inputs, expected)
        self._pending[kind].append(req)
        self._wakeup.set()
        await req.done.wait()
        if req.error is not None:
            raise req.error
        return req.results

    def _size(self, kind: Kind) -> int:
        return sum(len(r.inputs) for r in self._pending[kind])

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self._running = True
        try:
            async with trio.open_nursery() as nursery:
                task_status.started()
                while True:
                    await self._wakeup.wait()
                    self._wakeup = trio.Event()
                    full = any(self._size(k) >= self.batch_size for k in self._pending)
                    if not full and self.linger > 0:
                        with trio.move_on_after(self.linger):
                            while not any(self._size(k) >= self.batch_size
                                          for k in self._pending):
                                await self._wakeup.wait()
                                self._wakeup = trio.Event()
                    for kind in ("create", "update", "archive"):
                        while self._pending[kind]:
                            batch = self._take(kind)
                            # The flush task releases it: borrow on behalf of the batch.
                            token = object()
                            await self._limiter.acquire_on_behalf_of(token)
                            nursery.start_soon(self._flush, kind, batch, token)
        finally:
            self._running = False
            for reqs in self._pending.values():
                for r in reqs:
                    r.error = WriterStopped("the batch writer stopped")
                    r.done.set()

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

    async def _flush(self, kind: Kind, batch: list[_Request], token: object) -> None:
        try:
            inputs = [x for r in batch for x in r.inputs]
            self._calls += 1
            self._records += len(inputs)
            self._largest = max(self._largest, len(inputs))
            try:
                if kind == "create":
                    results = await self.connector.create(self.object_name, inputs)
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
                    r.error = exc
                    r.done.set()
                return
            if len(results) != len(inputs):
                err = RuntimeError(f"{type(self.connector).__name__}.{kind} returned "
                                   f"{len(results)} results for {len(inputs)} inputs")
                for r in batch:
                    r.error = err
                    r.done.set()
                return
            at = 0
            for r in batch:
                r.results = list(results[at:at + len(r.inputs)])
                at += len(r.inputs)
                r.done.set()
        finally:
            self._limiter.release_on_behalf_of(token)

    def statistics(self) -> BatchWriterStatistics:
        return BatchWriterStatistics(self._calls, self._records,
                                     sum(self._size(k) for k in self._pending), self._largest)
