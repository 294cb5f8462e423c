"""The handle of one connection: its status, and the handles of the object syncs its supervisor
runs now (they change when it restarts them). Operations and the daemon reach a connection's
object syncs through it, never through their internals."""

from __future__ import annotations

from collections.abc import Iterable

import msgspec
import trio

from crmsync.runtime.object_sync import ObjectSyncHandle, ObjectSyncStatistics
from crmsync.runtime.status import ConnectionStatus


class ConnectionStatistics(msgspec.Struct, frozen=True):
    name: str
    connector: str
    state: str  # starting | running | paused | disabled | error
    reason: str
    restarts: int
    since: float
    # The object syncs running now, by hub object.
    objects: dict[str, ObjectSyncStatistics]


class ConnectionHandle:
    def __init__(self, status: ConnectionStatus) -> None:
        self.status = status
        self._objects: dict[str, ObjectSyncHandle] = {}

    @property
    def name(self) -> str:
        return self.status.name

    def object_sync(self, hub_object: str) -> ObjectSyncHandle | None:
        """The handle of the object sync running now for `hub_object`, if it runs."""
        return self._objects.get(hub_object)

    def object_syncs(self) -> list[ObjectSyncHandle]:
        return list(self._objects.values())

    def add(self, handle: ObjectSyncHandle) -> None:
        """An object sync started (by the supervisor's current attempt)."""
        self._objects[handle.hub_object] = handle

    def clear(self) -> None:
        """The supervisor's attempt ended: its object syncs are gone."""
        self._objects.clear()

    def statistics(self) -> ConnectionStatistics:
        st = self.status
        return ConnectionStatistics(st.name, st.connector, st.state, st.reason, st.restarts,
                                    st.since, {k: h.statistics()
                                               for k, h in self._objects.items()})

    def wake_intakes(self, sources: Iterable[str]) -> None:
        """Events of these inbox sources were stored: the intakes reading them read now."""
        for source in sources:
            for h in self._objects.values():
                h.wake_intake(source)

    def app_changed(self, what: str, name: str) -> None:
        """The app announced a committed change (`what`: "record" of object `name`, "event",
        or "any"): the object syncs it concerns poll the app now."""
        for h in self._objects.values():
            if what == "any" or (what == "record" and name == h.app_object):
                h.poll_now(sides=("app",), events=False)
            if what in ("any", "event"):
                h.poll_now(sides=(), events=True)

    async def drain(self) -> None:
        """Every object sync hands out no more work; returns once their work out is done."""
        async with trio.open_nursery() as nursery:
            for h in self.object_syncs():
                nursery.start_soon(h.drain)
