"""What every operator action starts from: the error it raises for the operator, the store, and
the connection, object sync or record the operator names (each unknown name is an error that
says what exists)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from crmsync.config.model import ObjectSync
from crmsync.runtime.context import sync_id_of
from crmsync.store import Store, reports
from crmsync.store.items import Item

if TYPE_CHECKING:  # types only: the control server passes the daemon in
    from crmsync.daemon.main import Daemon


class OperationError(Exception):
    """An operator request that cannot be done; `code` is machine-readable:
    not_found, not_running, invalid, ambiguous, config, failed."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def store_of(daemon: Daemon) -> Store:
    if daemon.store is None:
        raise OperationError("not_running", "the daemon is still starting")
    return daemon.store


def check_connection(daemon: Daemon, connection: str) -> None:
    if not any(c.name == connection for c in daemon.cfg.connections):
        known = ", ".join(sorted(c.name for c in daemon.cfg.connections)) or "none"
        raise OperationError("not_found", f"no connection {connection!r} (configured: {known})")


def object_sync(daemon: Daemon, connection: str, obj: str) -> ObjectSync:
    check_connection(daemon, connection)
    s = daemon.find_sync(connection, obj)
    if s is None:
        known = ", ".join(f"{x.hub_object} ({x.app_object})" for x in daemon.cfg.syncs
                          if x.connection == connection) or "none"
        raise OperationError("not_found", f"connection {connection!r} has no object sync "
                                          f"{obj!r} (configured: {known})")
    return s


def object_syncs(daemon: Daemon, connection: str, obj: str) -> list[ObjectSync]:
    """One object sync (by hub or app object name), or every one of the connection."""
    if obj:
        return [object_sync(daemon, connection, obj)]
    check_connection(daemon, connection)
    return [s for s in daemon.cfg.syncs if s.connection == connection]


def parse_record(record: str, side: str) -> tuple[str, str]:
    """`hub:123` / `app:123` name the side; a bare id is looked up on both sides."""
    if not side and record[:4] in ("hub:", "app:"):
        return record[4:], record[:3]
    if side not in ("", "hub", "app"):
        raise OperationError("invalid", f"side must be hub or app, not {side!r}")
    return record, side


async def find_record(daemon: Daemon, sync: ObjectSync, record: str, side: str = "") -> Item:
    rid, side = parse_record(record, side)
    sid = sync_id_of(sync.connection, sync.hub_object)
    found = await store_of(daemon).read(reports.find_record, sid, rid, side)
    if not found:
        where = f"{side} record" if side else "record"
        raise OperationError("not_found", f"no {where} {rid!r} in {sid}")
    if len(found) > 1:
        raise OperationError("ambiguous", f"{rid!r} is a hub id and an app id in {sid}: "
                                          f"write hub:{rid} or app:{rid}")
    return found[0]
