"""The state database: SQLite on one worker thread, one transaction per call.

Modules hold the synchronous units of work (`fn(conn, ...)`) by table: `items` (index, links,
snapshots, states, history), `initial` (checkpoints, preview plan), `cursors`, `inbox`,
`deletes`, `tokens`, `events`, `connections`, `journal` (the webhooks journal's offset),
`reconciles` (reconciliations asked for), `restores` (catch-up marks). Run them with
`await store.call(fn, ...)`. `backup` (a consistent copy of a running state, the checks of a
state file) and `restores.restore_state` work on files, outside the store's thread.
"""

from crmsync.store.db import Store, StoreError, connect, transaction

__all__ = ["Store", "StoreError", "connect", "transaction"]
