"""`crmsync ctl backup`: a consistent copy of the running daemon's state database.

The copy is made by store/backup.py on a connection of its own in a worker thread (not the
store's): the daemon's writer keeps committing meanwhile, and the copy is the state as of one
instant. The daemon writes the file itself, so the path must be writable by the service (under
systemd: inside its state directory, or a directory named in `ReadWritePaths=`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import structlog
import trio

from crmsync import __version__
from crmsync.control.ops.lookup import OperationError
from crmsync.control.views import BackupView
from crmsync.store.backup import BackupError, write_backup

if TYPE_CHECKING:  # types only: the control server passes the daemon in
    from crmsync.daemon.main import Daemon

log = structlog.get_logger("crmsync.backup")


async def backup(daemon: Daemon, out: str) -> BackupView:
    """Write a backup of the state to the absolute path `out` (atomically, mode 0600).
    `not_running` before the store is open, `invalid` for a relative path, `failed` when the
    file cannot be written (the message says why; nothing is left behind)."""
    if daemon.store is None:
        raise OperationError("not_running", "the state database is not open yet")
    if not out.startswith("/"):
        raise OperationError("invalid", f"{out!r}: the backup path must be absolute")
    source = daemon.store.path
    try:
        info = await trio.to_thread.run_sync(
            lambda: write_backup(source, out, crmsync_version=__version__))
    except BackupError as exc:
        log.error("backup failed", path=out, error=str(exc))
        raise OperationError("failed", str(exc)) from None
    log.info("backup written", path=info.path, bytes=info.bytes,
             schema_version=info.schema_version, taken_at=info.taken_at, items=info.items,
             duration_ms=info.duration_ms)
    return BackupView(path=info.path, bytes=info.bytes, schema_version=info.schema_version,
                      taken_at=info.taken_at, duration_ms=info.duration_ms, items=info.items)
