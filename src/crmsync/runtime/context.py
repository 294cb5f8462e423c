"""What every actor of one object sync shares: its identity, rules, connectors, writers, store."""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import structlog

from crmsync.config.model import ObjectSync
from crmsync.connectors.base import Connector
from crmsync.engine.rules import SyncRules
from crmsync.runtime.batch_writer import BatchWriter
from crmsync.runtime.status import ObjectStatus
from crmsync.store import Store
from crmsync.store.restores import RestoreMark

# Records changed up to this long before a backup's time count as changed after it: the clocks
# of the hub, the app and this host need not agree to the second.
RESTORE_CLOCK_MARGIN_SECONDS = 300.0
# Hub updates remembered for telling their webhook events apart (a few hundred bytes each;
# the events of older ones, if they come that late, cost a read of their record).
HUB_WRITES_KEPT = 20_000


def sync_id_of(connection: str, hub_object: str) -> str:
    return f"{connection}/{hub_object}"


@dataclass
class ObjectSyncContext:
    connection: str
    sync: ObjectSync
    rules: SyncRules
    store: Store
    hub: Connector
    app: Connector
    hub_writer: BatchWriter
    app_writer: BatchWriter
    status: ObjectStatus
    # Properties to read on each side: every mapped field plus what keys and filters need.
    hub_properties: list[str] = field(default_factory=list)
    app_properties: list[str] = field(default_factory=list)
    preview: bool = False
    log: Any = None
    # Keeps this object's associations (runtime/associations.py), when it has any to keep.
    associations: Any = None
    # Keeps the owner directory of owner mappings filled (runtime/owners.py), when it has any.
    owners: Any = None
    # Set while the object sync catches up after its state was restored from a backup
    # (store/restores.py): creates look first, ambiguous conflicts are held.
    restore: RestoreMark | None = None
    # HubSpot's property-change events (webhooks or the journal) reach this sync: a hub edit
    # that our write replaced unseen is caught when its event comes (runtime/overwritten.py),
    # so a linked record's hub side may be read from the search index (runtime/reads.py).
    hub_events: bool = False
    # The latest hub update of each record this process wrote, as soon as it landed (before
    # its commit), for the webhook intake to tell its events from others' (`note_hub_write`).
    hub_writes: OrderedDict[str, Any] = field(default_factory=OrderedDict)
    # When this object sync started in this process: an item shown `queued` since then is
    # queued by a request of this process, one queued before by a sync due when the daemon
    # stopped (runtime/association_waits.py, runtime/echoes.py).
    started_at: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        if self.log is None:
            self.log = structlog.get_logger("crmsync.sync").bind(
                connection=self.connection, object=self.sync.hub_object)
        if not self.hub_properties:
            props: dict[str, None] = {}
            for f in self.rules.fields:
                props.update(dict.fromkeys(f.hub_props))
            props.update(dict.fromkeys(self.rules.hub_key_props))
            props.update(dict.fromkeys(flt.property for flt in self.rules.filters
                                       if flt.side == "hub"))
            self.hub_properties = list(props)
        if not self.app_properties:
            fields: dict[str, None] = {}
            for f in self.rules.fields:
                fields.update(dict.fromkeys(f.app_fields))
            fields.update(dict.fromkeys(self.rules.app_key_fields))
            fields.update(dict.fromkeys(flt.property for flt in self.rules.filters
                                        if flt.side == "app"))
            self.app_properties = list(fields)

    @property
    def restored_since_ms(self) -> int | None:
        """While catching up after a restore: the time (epoch ms) after which a record's
        change may postdate the backup; None otherwise."""
        if self.restore is None:
            return None
        return int((self.restore.backup_taken_at - RESTORE_CLOCK_MARGIN_SECONDS) * 1000)

    @property
    def sync_id(self) -> str:
        return sync_id_of(self.connection, self.sync.hub_object)

    @property
    def hub_object(self) -> str:
        return self.sync.hub_object

    @property
    def app_object(self) -> str:
        return self.sync.app_object

    def note_hub_write(self, hub_id: str, write: Any) -> None:
        """Remember `write` (an overwritten.HubWrite) as `hub_id`'s latest hub update; the
        oldest are forgotten beyond HUB_WRITES_KEPT (their events then cost a read)."""
        self.hub_writes.pop(hub_id, None)
        self.hub_writes[hub_id] = write
        while len(self.hub_writes) > HUB_WRITES_KEPT:
            self.hub_writes.popitem(last=False)

    def connector(self, side: str) -> Connector:
        return self.hub if side == "hub" else self.app

    def writer(self, side: str) -> BatchWriter:
        return self.hub_writer if side == "hub" else self.app_writer

    def object_name(self, side: str) -> str:
        return self.hub_object if side == "hub" else self.app_object

    def properties(self, side: str) -> list[str]:
        return self.hub_properties if side == "hub" else self.app_properties
