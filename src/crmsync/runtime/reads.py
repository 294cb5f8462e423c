"""Reading one side's current records by id, in the API's read batches."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from crmsync.connectors.base import SupportsIndexedRead
from crmsync.engine import unchanged_since
from crmsync.engine.types import Snapshot
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


def reads_hub_from_index(ctx: ObjectSyncContext) -> bool:
    """Whether linked hub records that no hub event names may be read from HubSpot's search
    index (`hub_unchanged`): only where the hub's property-change events reach the sync."""
    return ctx.hub_events and not ctx.preview and ctx.restore is None \
        and isinstance(ctx.hub, SupportsIndexedRead)


async def hub_unchanged(ctx: ObjectSyncContext,
                        snapshots: Mapping[str, Snapshot]) -> dict[str, Record]:
    """Of the linked hub records `snapshots` names (hub id -> the link's snapshot), those the
    search index shows holding, in every mapped field, what the snapshot says the hub held:
    read 200 a request where a batch read takes 100 (issue 16). The caller reads the others
    with `read_records`.

    Why an indexed answer may be decided on: the index lags, so it may miss a hub edit of
    the last seconds, never show one that did not happen. An answer that differs from the
    snapshot may be an older version than the one the snapshot was made from (the edit's
    own sync read it at once): only a consistent read tells, so it is not returned. An
    answer that holds the snapshot's values may miss an edit made since; that edit's event
    comes after this sync: an edit of a field this sync does not write is then synced
    from it as usual, and one of a field it writes over is the hub edit our write
    overwrote unseen, decided by the conflict rule when its event comes
    (runtime/overwritten.py: the version this sync read is the indexed one, older than the
    edit). Only with `reads_hub_from_index`: a poll does not say what changed when."""
    hub = ctx.hub
    if not snapshots or not isinstance(hub, SupportsIndexedRead):
        return {}
    got = await hub.read_indexed(ctx.hub_object, list(snapshots), ctx.hub_properties)
    return {i: r for i, r in got.items()
            if i in snapshots and not r.archived
            and unchanged_since(ctx.rules, "hub", r, snapshots[i])}
