"""Keeps an object sync's `OwnerDirectory` (engine/owners.py) filled for its owner mappings.

HubSpot's owners come from the hub connector (`SupportsOwners`: cached there, shared by every
object sync); the app's users, for a mapping through an owners table, from scanning that app
object. Before a batch is decided, its records' owner values are looked up: one the directory
cannot resolve makes both sides be read again (each at most every 30 s, so that an owner
nobody has does not cost a listing per batch), so a new owner is soon known, and one that is still unknown after that syncs without its owner (the engine's
field-level warning).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

import trio

from crmsync.connectors.base import Connector, SupportsOwners
from crmsync.engine.owners import OwnerDirectory
from crmsync.engine.rules import SyncRules
from crmsync.runtime.paging import Bounds, scan_pages

APP_REFRESH_SECONDS = 30.0
# A bound on an owners table: more rows than this are not the app's users.
MAX_APP_USERS = 100_000


@dataclass(frozen=True)
class OwnerField:
    hub_prop: str
    app_field: str
    to_hub: bool
    to_app: bool
    through_table: bool
    owner_object: str
    email_field: str


class OwnerSync:
    """See the module docstring. `prepare(works)` before deciding a batch."""

    def __init__(self, directory: OwnerDirectory, fields: Sequence[OwnerField], hub: Connector,
                 app: Connector) -> None:
        self.directory = directory
        self.fields = list(fields)
        self.hub = hub
        self.app = app
        self._loaded = False
        self._app_read_at: float | None = None
        self.refreshes = 0

    @classmethod
    def for_rules(cls, rules: SyncRules, directory: OwnerDirectory, mappings: Sequence[Any],
                  hub: Connector, app: Connector) -> OwnerSync | None:
        """The OwnerSync of an object sync with owner mappings (None without any)."""
        by_hub = {m.hub: m for m in mappings if m.enabled}
        fields = [OwnerField(r.hub_prop, r.app_field, r.to_hub, r.to_app,
                             bool(by_hub[r.name].owner_object), by_hub[r.name].owner_object,
                             by_hub[r.name].owner_email_field)
                  for r in rules.fields if r.kind == "owner" and r.name in by_hub]
        return cls(directory, fields, hub, app) if fields else None

    async def prepare(self, works: Sequence[Any]) -> None:
        """Read the owners when the batch names one the directory cannot resolve (or they
        were never read). `works` carry `.hub` / `.app` records (or None)."""
        if self._loaded and all(self._resolved(w) for w in works):
            return
        await self._read(refresh=self._loaded)
        self._loaded = True

    def _resolved(self, w: Any) -> bool:
        d = self.directory
        for f in self.fields:
            if w.hub is not None and f.to_app and not d.resolves(
                    "hub", w.hub.properties.get(f.hub_prop), through_table=f.through_table,
                    towards="app"):
                return False
            if w.app is not None and f.to_hub and not d.resolves(
                    "app", w.app.properties.get(f.app_field), through_table=f.through_table,
                    towards="hub"):
                return False
        return True

    async def _read(self, *, refresh: bool) -> None:
        if isinstance(self.hub, SupportsOwners):
            self.directory.set_hub(await self.hub.owners(refresh=refresh))
        tables = {(f.owner_object, f.email_field) for f in self.fields if f.through_table}
        now = trio.current_time()
        if tables and (self._app_read_at is None
                       or now - self._app_read_at >= APP_REFRESH_SECONDS):
            users: list[tuple[Any, Any]] = []
            for obj, email_field in sorted(tables):
                users.extend(await self._app_users(obj, email_field))
            self.directory.set_app(users)
            self._app_read_at = now
        self.refreshes += 1

    async def _app_users(self, obj: str, email_field: str) -> list[tuple[Any, Any]]:
        out: list[tuple[Any, Any]] = []
        pages = scan_pages(self.app, obj, [email_field], bounds=Bounds(max_records=MAX_APP_USERS))
        async with aclosing(pages):
            async for page in pages:
                out.extend((r.id, r.properties.get(email_field)) for r in page.records)
        return out
