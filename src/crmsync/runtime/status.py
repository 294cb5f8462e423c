"""Live status the actors keep up to date and the control server reads.

Plain mutable objects owned by the daemon; readers take `snapshot()`s (frozen structs), so the
control protocol never sees a half-updated value.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import msgspec


class ObjectStatusView(msgspec.Struct, frozen=True):
    hub_object: str
    app_object: str
    direction: str
    phase: str
    done: int
    total: int
    started_at: float | None
    completed_at: float | None
    last_poll: float | None
    last_app_poll: float | None
    last_webhook: float | None
    last_reconcile: float | None
    preview: bool
    error: str


@dataclass
class ObjectStatus:
    hub_object: str
    app_object: str
    direction: str
    phase: str = "starting"
    done: int = 0
    total: int = 0
    started_at: float | None = None
    completed_at: float | None = None
    last_poll: float | None = None
    last_app_poll: float | None = None
    last_webhook: float | None = None
    last_reconcile: float | None = None
    preview: bool = False
    error: str = ""
    last_reconcile_reason: str = ""  # "periodic", or why one was asked for (a journal gap)

    def snapshot(self) -> ObjectStatusView:
        return ObjectStatusView(
            self.hub_object, self.app_object, self.direction, self.phase, self.done, self.total,
            self.started_at, self.completed_at, self.last_poll, self.last_app_poll,
            self.last_webhook, self.last_reconcile, self.preview, self.error)


class ConnectionStatusView(msgspec.Struct, frozen=True):
    name: str
    connector: str
    state: str  # starting | running | paused | disabled | error
    reason: str
    restarts: int
    objects: list[ObjectStatusView]


@dataclass
class ConnectionStatus:
    name: str
    connector: str
    state: str = "starting"
    reason: str = ""
    restarts: int = 0
    objects: dict[str, ObjectStatus] = field(default_factory=dict)
    since: float = field(default_factory=time.time)

    def set(self, state: str, reason: str = "") -> None:
        self.state = state
        self.reason = reason
        self.since = time.time()

    def snapshot(self) -> ConnectionStatusView:
        return ConnectionStatusView(self.name, self.connector, self.state, self.reason,
                                    self.restarts, [o.snapshot() for o in self.objects.values()])
