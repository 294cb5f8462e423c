"""Failure isolation: whatever fails while syncing one record fails that record, never the
object sync or its connection (DESIGN.md, "Failure isolation").

Records are synced in batches (one load, one decision pass, batched writes, one commit). When
a batch raises, the error either concerns the connection — the API or the app database is
unreachable or refuses us, the state database fails, the task is cancelled
(`concerns_connection`) — and propagates, so that the supervisor pauses or restarts the
connection; or it concerns something inside the batch. Then the batch is split in halves and
each half synced on its own, down to single records (`isolate`): a record that still fails
alone is recorded as `failed` with a category and the error as detail, its webhook events
are done, and every other record of the batch syncs. The failure is logged with its
traceback; the record is synced again on its next change (or `crmsync ctl resync`).

Running a part again is safe: every sync re-reads both sides and decisions are idempotent,
and a create that landed before the error is healed by matching through its intent.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from crmsync.connectors.base import ConnectorError
from crmsync.records import Side, other
from crmsync.runtime.batch_writer import WriterStopped
from crmsync.runtime.context import ObjectSyncContext
from crmsync.runtime.loader import keys_of
from crmsync.runtime.reads import read_records
from crmsync.store import StoreError
from crmsync.store import inbox as store_inbox
from crmsync.store import items as store_items
from crmsync.store.items import KEEP, HistoryEntry, Outcome

U = TypeVar("U")

# ConnectorError kinds that say nothing about one record (base.py's table).
CONNECTION_KINDS = frozenset({"config", "transient", "rate_limited"})
DETAIL_LIMIT = 300


def concerns_connection(exc: BaseException) -> bool:
    """Does this error stop the whole object sync (rather than concern records of a batch)?
    Cancellation, a connection-wide connector error, the state database failing, a batch
    writer that stopped (its object sync is shutting down)."""
    if isinstance(exc, BaseExceptionGroup):
        return any(concerns_connection(e) for e in exc.exceptions)
    if not isinstance(exc, Exception):
        return True
    if isinstance(exc, ConnectorError):
        return exc.kind in CONNECTION_KINDS
    return isinstance(exc, StoreError | WriterStopped)


def record_failure(exc: BaseException) -> tuple[str, str]:
    """(category, detail) for a record whose sync raised `exc`: a connector's record error
    keeps its category; anything else is `internal` (a defect to report), with its type."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    if isinstance(exc, ConnectorError):
        category, detail = exc.category, exc.message
    else:
        category, detail = "internal", f"{type(exc).__name__}: {exc}"
    if len(detail) > DETAIL_LIMIT:
        detail = detail[:DETAIL_LIMIT - 1] + "…"
    return category, detail


async def isolate(units: Sequence[U], run: Callable[[Sequence[U]], Awaitable[None]],
                  fail: Callable[[U, Exception], Awaitable[None]]) -> None:
    """`await run(units)`; if it raises an error that does not concern the connection, run
    each half on its own, down to single units, and hand a unit that fails alone to
    `fail(unit, error)`. Errors that concern the connection propagate at once."""
    if not units:
        return
    try:
        await run(units)
        return
    except Exception as exc:
        if concerns_connection(exc):
            raise
        if len(units) == 1:
            await fail(units[0], exc)
            return
    mid = len(units) // 2
    await isolate(units[:mid], run, fail)
    await isolate(units[mid:], run, fail)


RecordKey = tuple[Side, str]


async def _match_keys_of(ctx: ObjectSyncContext, side: Side, rid: str) -> tuple[str, ...]:
    """The record's match keys if it can still be read (reading may be what failed)."""
    try:
        rec = (await read_records(ctx, side, [rid])).get(rid)
    except Exception as exc:
        if concerns_connection(exc):
            raise
        return ()
    return keys_of(ctx, side, rec) if rec is not None else ()


async def fail_record(ctx: ObjectSyncContext, key: RecordKey, inbox_ids: Sequence[int],
                      exc: Exception) -> None:
    """Record `key`'s record as failed by `exc` and its inbox events as done, in one
    transaction. An item that may have writes in flight keeps its intent and create marker,
    so what landed is recognised as ours on the next sync. A record crmsync had not indexed
    yet is indexed the way its sync would have done it (its match keys claimed, paired with
    an unlinked record of the other side holding one of them), so that its next sync, or its
    partner's, pairs the two instead of creating either again."""
    side, rid = key
    category, detail = record_failure(exc)
    ctx.log.error("record failed: its sync raised an error", side=side, record_id=rid,
                  category=category, detail=detail, exc_info=exc)
    # An item key (loader.ITEM) names an item no record id names: no record to read.
    by_item = side == "item"
    keys = () if by_item else await _match_keys_of(ctx, side, rid)

    def commit(conn: sqlite3.Connection) -> None:
        if by_item:
            got = store_items.get_item(conn, int(rid))
            it = got if got is not None and got.sync_id == ctx.sync_id else None
            if it is None:
                if inbox_ids:
                    store_inbox.mark_done(conn, list(inbox_ids))
                return
        else:
            it = store_items.find_item(conn, ctx.sync_id, side, rid)
        claim = tuple((side, k, rid) for k in keys) if it is None else ()
        if it is None and keys:
            partner = store_items.key_holder(conn, ctx.sync_id, other(side), list(keys))
            if (partner is not None and partner.record_id(side) is None
                    and partner.state != "deleted"):
                it = partner
        again = (it is not None and it.state == "failed"
                 and (it.category, it.detail) == (category, detail))
        hub_id = rid if side == "hub" else (it.hub_id if it is not None else None)
        app_id = rid if side == "app" else (it.app_id if it is not None else None)
        history = None if again else HistoryEntry("fail", b"[]", detail, hub_id, app_id)
        outcome = Outcome(
            item_id=it.item_id if it is not None else None, state="failed",
            category=category, detail=detail, count_attempt=True, history=history,
            claim=claim, hub_id=hub_id if hub_id is not None else KEEP,
            app_id=app_id if app_id is not None else KEEP,
            # An item that may have writes in flight keeps what marks them as ours.
            intent=KEEP, creating=KEEP,
            match_key=(keys[0] if keys else "") if it is None else KEEP)
        store_items.apply_outcomes(conn, ctx.sync_id, [outcome])
        if inbox_ids:
            store_inbox.mark_done(conn, list(inbox_ids))

    await ctx.store.call(commit)
