"""Reading one side's current records by id, in the API's read batches."""

from __future__ import annotations

from collections.abc import Sequence

from crmsync.records import Record, Side
from crmsync.runtime.context import ObjectSyncContext


async def read_records(ctx: ObjectSyncContext, side: Side,
                       ids: Sequence[str]) -> dict[str, Record]:
    """Current records of `side` by id (absent: deleted or unknown), read in API batches."""
    ids = list(dict.fromkeys(i for i in ids if i))
    if not ids:
        return {}
    conn = ctx.connector(side)
    size = max(1, conn.capabilities.read_batch_size)
    out: dict[str, Record] = {}
    for start in range(0, len(ids), size):
        out.update(await conn.read(ctx.object_name(side), ids[start:start + size],
                                   ctx.properties(side)))
    return {k: v for k, v in out.items() if not v.archived}
