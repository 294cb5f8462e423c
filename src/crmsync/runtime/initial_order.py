"""The order of one connection's initial syncs, where their objects keep associations.

Run side by side, two object syncs that keep an association type (contacts ↔ companies) each
reach the other's records before those are linked: each association waits on both ends, and
every link commit sends the other end's waiting records again, to read their associations
(and, before issue 16, their records) on both sides once more. Run one after the other, the
second finds every partner linked and writes each association once, in the same pass that
links its own records, and answers the first one's waits: no record is synced twice.

So an object sync's app pass (the phase that links records) waits until the initial syncs
of the objects it keeps associations with that come earlier in `RANK` no longer link
records: complete, or not running for real (waiting in preview, paused until its mappings
fit, stopped). The hub index runs meanwhile. The wait is a saving, never a condition: it is
bounded (`MAX_WAIT_SECONDS`), and a preview never waits (it writes nothing). HubSpot's
budget is shared by the connection's object syncs, so running them in turn costs little
time against the real API.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import trio

# Objects referred to come first: a contact holds its company, a deal its contacts and
# company, an invoice its contact, a line item its invoice (the usual foreign keys), so the
# record holding the reference links after its partner and writes the association at once.
RANK = {"companies": 0, "contacts": 1, "deals": 2, "invoices": 3, "line_items": 4}

# An initial sync waits for earlier ones at most this long, then runs beside them.
MAX_WAIT_SECONDS = 3600.0

State = Literal["pending", "running", "idle", "done", "failed"]


def earlier(hub_object: str, partners: Sequence[tuple[str, str]]) -> list[str]:
    """Of `partners` ((hub object, sync id) each: the object syncs this one keeps
    associations with), the sync ids whose initial sync comes first."""
    mine = RANK.get(hub_object)
    if mine is None:
        return []
    return sorted({sid for obj, sid in partners if RANK.get(obj, mine) < mine})


@dataclass
class InitialOrder:
    """What each object sync of a connection is doing about its initial sync: `pending`
    (registered, not started yet), `running` (a pass that links records), `idle` (in
    preview, waiting for approval or for its mappings to fit), `done` (complete, or
    stopped) or `failed` (it ended with an error: it holds nobody back any more, restarted
    or not, so that one failing again and again does not stop the others). Give every
    object sync of a connection the same instance, kept across the connection's restarts."""

    _states: dict[str, State] = field(default_factory=dict)
    _changed: trio.Event = field(default_factory=trio.Event)
    # Seconds each object sync has waited so far, across restarts (the bound is a total).
    _waited: dict[str, float] = field(default_factory=dict)

    def expect(self, sync_id: str) -> None:
        """Registered before any object sync of the connection (re)starts, so that a later
        one never finds an earlier one unknown, or done from its last run."""
        if self._states.get(sync_id) != "failed":
            self.set(sync_id, "pending")

    def set(self, sync_id: str, state: State) -> None:
        if self._states.get(sync_id) == "failed" and state != "done":
            return  # see the class doc; `done` (complete) clears it
        if self._states.get(sync_id) != state:
            self._states[sync_id] = state
            self._changed.set()
            self._changed = trio.Event()

    def blocking(self, sync_ids: Sequence[str]) -> list[str]:
        """Those among `sync_ids` still linking records, or about to."""
        return [s for s in sync_ids if self._states.get(s) in ("pending", "running")]

    async def wait_for(self, sync_ids: Sequence[str], waiter: str = "",
                       limit: float = MAX_WAIT_SECONDS) -> bool:
        """Until none of `sync_ids` is blocking, or `waiter` has waited `limit` seconds in
        all (across restarts); True if it waited out the limit."""
        started = trio.current_time()
        try:
            with trio.move_on_after(max(0.0, limit - self._waited.get(waiter, 0.0))):
                while self.blocking(sync_ids):
                    await self._changed.wait()
                return False
            return True
        finally:
            self._waited[waiter] = (self._waited.get(waiter, 0.0)
                                    + trio.current_time() - started)
