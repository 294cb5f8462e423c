"""An in-process object sync for runtime unit tests: a store, two in-memory sides and the
context the runtime's actors share."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import structlog

from crmsync.config.model import ObjectSync
from crmsync.connectors.base import Capabilities, RecordError, WriteResult
from crmsync.engine import compile_rules
from crmsync.records import Record
from crmsync.runtime.batch_writer import BatchWriter
from crmsync.runtime.context import ObjectSyncContext
from crmsync.runtime.status import ObjectStatus
from crmsync.store import Store


class MemorySide:
    """One side's records by id. `find` compares case-insensitively, like HubSpot's search;
    `fail_creates` makes creates of values holding a given value fail with that error."""

    def __init__(self, name: str, records: Sequence[Record] = (), *,
                 capabilities: Capabilities | None = None) -> None:
        self.name = name
        self.records: dict[str, Record] = {r.id: r for r in records}
        self.capabilities = capabilities or Capabilities(read_batch_size=3)
        self.calls: list[tuple[str, Any]] = []
        self.fail_creates: dict[str, RecordError] = {}
        self._next = 1000

    async def read(self, object_name: str, ids: Sequence[str],
                   properties: Sequence[str]) -> dict[str, Record]:
        self.calls.append(("read", list(ids)))
        return {i: self.records[i] for i in ids if i in self.records}

    async def find(self, object_name: str, field: str, value: str,
                   properties: Sequence[str]) -> list[Record]:
        self.calls.append(("find", (field, value)))
        want = str(value).strip().casefold()
        return [r for r in self.records.values()
                if str(r.properties.get(field) or "").strip().casefold() == want]

    async def create(self, object_name: str,
                     inputs: Sequence[Mapping[str, Any]]) -> list[WriteResult]:
        self.calls.append(("create", [dict(i) for i in inputs]))
        out = []
        for values in inputs:
            err = next((e for v, e in self.fail_creates.items() if v in values.values()), None)
            if err is not None:
                out.append(WriteResult(ok=False, error=err))
                continue
            self._next += 1
            rec = Record(f"{self.name[0].upper()}{self._next}", dict(values), self._next)
            self.records[rec.id] = rec
            out.append(WriteResult(ok=True, record=rec))
        return out

    async def update(self, object_name: str, inputs: Sequence[tuple[str, Mapping[str, Any]]],
                     expected: Sequence[Record | None] | None = None) -> list[WriteResult]:
        self.calls.append(("update", list(inputs)))
        out = []
        for rid, changes in inputs:
            rec = self.records.get(rid)
            if rec is None:
                out.append(WriteResult(ok=False, error=RecordError("not_found", rid)))
                continue
            self._next += 1
            rec = Record(rid, {**rec.properties, **changes}, self._next)
            self.records[rid] = rec
            out.append(WriteResult(ok=True, record=rec))
        return out

    async def archive(self, object_name: str, ids: Sequence[str]) -> list[WriteResult]:
        self.calls.append(("archive", list(ids)))
        for rid in ids:
            self.records.pop(rid, None)
        return [WriteResult(ok=True) for _ in ids]


def make_ctx(store: Store, sync: ObjectSync, hub: MemorySide, app: MemorySide,
             ) -> ObjectSyncContext:
    """The context of one object sync over `hub` and `app`; its batch writers are not
    running (start them with `nursery.start(ctx.hub_writer.run)` where writes are sent)."""
    status = ObjectStatus(sync.hub_object, sync.app_object, sync.direction)
    return ObjectSyncContext(
        connection=sync.connection, sync=sync, rules=compile_rules(sync), store=store,
        hub=hub, app=app,  # type: ignore[arg-type]
        hub_writer=BatchWriter(hub, sync.hub_object),  # type: ignore[arg-type]
        app_writer=BatchWriter(app, sync.app_object),  # type: ignore[arg-type]
        status=status, log=structlog.get_logger("test"))
