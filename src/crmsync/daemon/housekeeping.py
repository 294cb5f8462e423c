"""Keeps the state database from growing for ever: once an hour, decision history older than
`daemon.history_retention_days` and webhook events synced more than 48 hours ago
(`store.inbox.KEEP_DONE_SECONDS`: HubSpot redelivers for up to 24 hours) are deleted. SQLite
reuses the freed pages; the file does not shrink, it stops growing."""

from __future__ import annotations

import time
from collections.abc import Callable

import structlog
import trio

from crmsync.store import inbox, pruning
from crmsync.store.db import Store

log = structlog.get_logger("crmsync.housekeeping")

INTERVAL_SECONDS = 3600.0
# Rows deleted per store transaction: the daemon's writes wait at most one chunk.
CHUNK_ROWS = 5000


async def prune_once(store: Store, retention_days: int) -> dict[str, int]:
    """One pass; returns the rows deleted per table. Cutoffs are wall-clock times, as the
    rows' stamps are."""
    now = time.time()
    cutoffs = {"history": now - retention_days * 86400.0,
               "inbox": now - inbox.KEEP_DONE_SECONDS}
    deleted: dict[str, int] = {}
    for table, cutoff in cutoffs.items():
        below = await store.read(pruning.first_kept, table, cutoff)
        total = 0
        while True:
            n = await store.call(pruning.delete_oldest, table, cutoff, below, CHUNK_ROWS)
            total += n
            if n < CHUNK_ROWS:
                break
        deleted[table] = total
    return deleted


async def run_housekeeping(store: Store, retention_days: Callable[[], int], *,
                           task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                           ) -> None:
    """Prune now and then every INTERVAL_SECONDS until cancelled; `retention_days` is read
    at each pass (a reload may change it). A failed pass (a full
    disk, a locked file) is logged and tried again at the next interval: pruning is never
    a reason to stop syncing."""
    task_status.started()
    while True:
        try:
            deleted = await prune_once(store, retention_days())
        except Exception as exc:
            log.warning("housekeeping failed; trying again later", error=str(exc),
                        retry_in_s=INTERVAL_SECONDS)
        else:
            if any(deleted.values()):
                log.info("housekeeping pruned the state database",
                         history_entries=deleted["history"], inbox_events=deleted["inbox"])
        await trio.sleep(INTERVAL_SECONDS)
