"""Batch writers gather writes from many callers into the API's batch size, or flush after a
short delay, and hand each caller its own results."""

import pytest
import trio

from crmsync.connectors.base import ConnectorError, RecordError, WriteResult
from crmsync.records import Record
from crmsync.runtime.batch_writer import BatchWriter


class FakeConnector:
    def __init__(self, fail_values=(), raise_once=None):
        self.calls: list[tuple[str, int]] = []
        self.fail_values = set(fail_values)
        self.raise_once = raise_once
        self.next_id = 1

    async def create(self, obj, inputs):
        self.calls.append(("create", len(inputs)))
        if self.raise_once is not None:
            exc, self.raise_once = self.raise_once, None
            raise exc
        out = []
        for values in inputs:
            if values.get("v") in self.fail_values:
                out.append(WriteResult(ok=False, error=RecordError("invalid_value", "bad")))
            else:
                out.append(WriteResult(ok=True, record=Record(str(self.next_id), dict(values))))
                self.next_id += 1
        return out

    async def update(self, obj, inputs):
        self.calls.append(("update", len(inputs)))
        return [WriteResult(ok=True, record=Record(i, dict(v))) for i, v in inputs]

    async def archive(self, obj, ids):
        self.calls.append(("archive", len(ids)))
        return [WriteResult(ok=True) for _ in ids]


async def test_concurrent_callers_share_full_batches(autojump_clock):
    conn = FakeConnector()
    writer = BatchWriter(conn, "contacts", batch_size=100, linger=0.05)
    results: dict[int, list[WriteResult]] = {}

    async def caller(i):
        results[i] = await writer.create([{"v": f"{i}-{j}"} for j in range(10)])

    async with trio.open_nursery() as n:
        await n.start(writer.run)
        async with trio.open_nursery() as callers:
            for i in range(25):
                callers.start_soon(caller, i)
        n.cancel_scope.cancel()
    # 250 records from 25 callers: three API calls, none above the batch size.
    assert sum(k for _, k in conn.calls) == 250
    assert max(k for _, k in conn.calls) <= 100
    assert len(conn.calls) == 3
    for i, res in results.items():
        assert [r.record.properties["v"] for r in res] == [f"{i}-{j}" for j in range(10)]


async def test_a_lone_write_is_flushed_after_the_linger(autojump_clock):
    conn = FakeConnector()
    writer = BatchWriter(conn, "contacts", batch_size=100, linger=0.2)
    async with trio.open_nursery() as n:
        await n.start(writer.run)
        start = trio.current_time()
        res = await writer.update([("7", {"a": "b"})])
        assert trio.current_time() - start == pytest.approx(0.2)
        assert res[0].ok
        n.cancel_scope.cancel()


async def test_per_record_failures_stay_with_their_caller(autojump_clock):
    conn = FakeConnector(fail_values={"bad"})
    writer = BatchWriter(conn, "contacts", batch_size=100, linger=0.01)
    async with trio.open_nursery() as n:
        await n.start(writer.run)
        async with trio.open_nursery() as callers:
            out = {}

            async def call(name, values):
                out[name] = await writer.create(values)

            callers.start_soon(call, "a", [{"v": "ok1"}, {"v": "bad"}])
            callers.start_soon(call, "b", [{"v": "ok2"}])
        n.cancel_scope.cancel()
    assert [r.ok for r in out["a"]] == [True, False]
    assert out["a"][1].error.category == "invalid_value"
    assert [r.ok for r in out["b"]] == [True]


async def test_a_failed_call_raises_in_every_caller_of_that_batch(autojump_clock):
    conn = FakeConnector(raise_once=ConnectorError("transient", "api_unavailable", "503"))
    writer = BatchWriter(conn, "contacts", batch_size=100, linger=0.01)
    errors = []
    async with trio.open_nursery() as n:
        await n.start(writer.run)

        async def call():
            try:
                await writer.create([{"v": "x"}])
            except ConnectorError as exc:
                errors.append(exc)

        async with trio.open_nursery() as callers:
            callers.start_soon(call)
            callers.start_soon(call)
        n.cancel_scope.cancel()
    assert len(errors) == 2 and all(e.category == "api_unavailable" for e in errors)
