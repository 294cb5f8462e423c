"""The state database: SQLite on one worker thread, one transaction per call.

Modules hold the synchronous units of work (`fn(conn, ...)`) by table: `items` (index, links,
snapshots, states, history), `initial` (checkpoints, preview plan), `cursors`, `inbox`,
`deletes`, `tokens`, `events`, `connections`, `journal` (the webhooks journal's offset),
`reconciles` (reconciliations asked for). Run them with `await store.call(fn, ...)`.
"""

from crmsync.store.db import Store, StoreError, connect, transaction

__all__ = ["Store", "StoreError", "connect", "transaction"]
