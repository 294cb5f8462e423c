"""Live status the actors keep up to date and the control operations read.

Plain mutable objects owned by the daemon. Actors and readers run on the one Trio thread, and
a reader (control/ops/status.py) reads them between two awaits, so it never sees a
half-updated value; it copies what it shows into the control protocol's views.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field


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
