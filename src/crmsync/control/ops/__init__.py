"""Operator actions on a running daemon: what `crmsync ctl` asks for through the control socket.

Each action takes the `Daemon` and plain arguments and returns a frozen view
(control/views.py), or raises `OperationError` with a code and a message for the operator.
Reads come from the store and the actors' live status; actions go through the object syncs'
handles (`ObjectSyncHandle`: statistics, poll_now, resync, repairs, running()) and the
supervisor, so they follow the same rules as the daemon's own work.

    lookup       OperationError; the connection, object sync or record an operator names
    running      every way an action reaches a running object sync (its handle)
    status       status
    records      records, history (and the record view with its hints)
    preview      preview, approve
    repair       resync, restore-deleted, parked deletes (list, approve, ignore)
    connections  disable, enable, delete-sync, reload, poll-now
    webhooks     the webhooks crmsync keeps in an app (list, register, remove)
    backup       a consistent copy of the state database, written while the daemon runs
"""

from crmsync.control.ops.lookup import OperationError

__all__ = ["OperationError"]
