"""One supervisor per connection: opens the app connector, starts its object syncs, and
restarts them with capped, jittered exponential backoff when they fail, showing why in the
status. A configuration error (401/403, a missing table) pauses the connection until it is
fixed (a reload) or a slow retry succeeds."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field

import structlog
import trio

from crmsync.connectors.base import Connector, ConnectorError
from crmsync.runtime.connection import ConnectionHandle
from crmsync.runtime.status import ConnectionStatus

log = structlog.get_logger("crmsync.supervisor")

BACKOFF_BASE = 1.0
BACKOFF_CAP = 300.0
PAUSED_RETRY = 600.0
# A rate limit that blocks the API for longer than this (a daily budget spent) pauses the
# connection until it lifts, instead of counting as a failure with backoff.
PAUSE_FOR_RATE_LIMIT_AFTER = 60.0
# A child that ran this long without failing resets the backoff.
STABLE_AFTER = 600.0


def backoff(attempt: int, rnd: random.Random | None = None) -> float:
    """Capped exponential backoff with full jitter (attempt 1 -> up to 1 s)."""
    r = rnd or random
    return r.uniform(0.5, 1.0) * min(BACKOFF_CAP, BACKOFF_BASE * 2 ** (attempt - 1))


def first_leaf(exc: BaseException) -> BaseException:
    """The first real error inside (nested) exception groups: what the status should name."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


# Starts the connection's children (its object syncs) in the nursery, with `nursery.start`,
# and returns once every one of them started.
RunChildren = Callable[[Connector, trio.Nursery], Awaitable[None]]
OpenApp = Callable[[], AbstractAsyncContextManager[Connector]]


@dataclass
class Supervisor:
    """Run with `await nursery.start(supervisor.run)`: it reports started, with its
    ConnectionHandle, once the app connector is open and checked and every object sync has
    started — or once a connection-wide error (the app refuses us, an outage) has paused the
    connection or scheduled a restart, which its status then says. Any other error while
    starting (a defect) comes out of `start`, at the caller; once started, a failure
    restarts the children with backoff."""

    name: str
    status: ConnectionStatus
    open_app: OpenApp
    run_children: RunChildren
    handle: ConnectionHandle = field(init=False)

    def __post_init__(self) -> None:
        self.handle = ConnectionHandle(self.status)

    async def _attempt(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                       ) -> None:
        try:
            async with self.open_app() as app, trio.open_nursery() as nursery:
                await self.run_children(app, nursery)
                self.status.set("running")
                task_status.started()
        finally:
            self.handle.clear()

    async def run(self, *, task_status: trio.TaskStatus[ConnectionHandle]
                  = trio.TASK_STATUS_IGNORED) -> None:
        attempt = 0
        first = True

        def report_started() -> None:
            nonlocal first
            if first:
                first = False
                task_status.started(self.handle)

        with structlog.contextvars.bound_contextvars(connection=self.name):
            while True:
                started = trio.current_time()
                try:
                    async with trio.open_nursery() as nursery:
                        await nursery.start(self._attempt)
                        report_started()
                    return  # children finished by themselves (not expected for a daemon)
                except Exception as exc:  # a child crashed: restart them all
                    leaf = first_leaf(exc)
                    if first and not isinstance(leaf, ConnectorError):
                        raise  # a defect while starting: loud, at the caller
                    if isinstance(leaf, ConnectorError) and leaf.kind == "config":
                        self.status.set("paused", leaf.message)
                        log.error("connection paused", reason=leaf.message,
                                  category=leaf.category)
                        report_started()
                        await trio.sleep(PAUSED_RETRY)
                        continue
                    if (isinstance(leaf, ConnectorError) and leaf.kind == "rate_limited"
                            and (leaf.pause
                                 or (leaf.retry_after or 0.0) >= PAUSE_FOR_RATE_LIMIT_AFTER)):
                        # Nothing is lost: every sync resumes from what it committed.
                        wait = float(leaf.retry_after or 0.0)
                        self.status.set("paused", leaf.message)
                        log.warning("connection paused", reason=leaf.message,
                                    category=leaf.category, resumes_in_s=round(wait))
                        report_started()
                        await trio.sleep(wait)
                        attempt = 0
                        continue
                    if isinstance(leaf, ConnectorError):
                        reason = f"{leaf.category}: {leaf.message}"
                    else:
                        reason = f"{type(leaf).__name__}: {leaf}"
                    log.error("object sync failed", reason=reason, exc_info=exc)
                if trio.current_time() - started > STABLE_AFTER:
                    attempt = 0
                attempt += 1
                self.status.restarts += 1
                delay = backoff(attempt)
                self.status.set("error", f"{reason} (restart {self.status.restarts} in "
                                         f"{delay:.0f} s)")
                log.warning("restarting connection", reason=reason, delay_s=round(delay, 1),
                            restarts=self.status.restarts)
                report_started()
                await trio.sleep(delay)
