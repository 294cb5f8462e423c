"""Webhook intake: reads this object sync's events from the durable inbox and sends them as
change events (record keys) to the lock queue. Each event's inbox id rides along with its key
and is marked done in the transaction that records the record's sync."""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from typing import Any

import msgspec
import trio

from crmsync.records import Side
from crmsync.runtime.context import ObjectSyncContext, sync_id_of
from crmsync.runtime.lock_queue import ChangeSender, Ticket
from crmsync.runtime.overwritten import echoes
from crmsync.runtime.requests import RequestReceiver, wait_asked
from crmsync.store import inbox as store_inbox
from crmsync.store import scanned as store_scanned

# How often the inbox is looked at when not woken: the webhook server wakes the intake on
# every stored delivery, so this only covers events stored by another process.
IDLE_POLL_SECONDS = 30.0

# Turns an inbox payload into the record keys it concerns (empty: not for this sync).
Parser = Callable[[bytes], list[tuple[Side, str]]]
# When the change an inbox payload reports happened (epoch ms, the source's clock), which
# property it changed (None: not a property change) and the digest of the value it set
# (`overwritten.value_digest`; None: unknown).
Describe = Callable[[bytes], tuple[int, str | None, str | None]]


class Reported(msgspec.Struct, frozen=True):
    """What an event says changed, where an echo of our own write can be told from it:
    `kind` creation, propertyChange (`property`, the digest of its new `value`,
    overwritten.value_digest) or associationChange (with
    the `partner_object`'s `partner_id`, `removed`); any other kind is never an echo."""

    kind: str
    record_id: str
    property: str | None = None
    value: str | None = None
    partner_object: str | None = None
    partner_id: str | None = None
    removed: bool = False


# Turns an inbox payload into what it reports (None: nothing an echo can be told from).
Report = Callable[[bytes], Reported | None]


class SeenChange(msgspec.Struct, frozen=True):
    """What an event says about its record's change; rides with the record's key to the
    worker (in place of the bare inbox id) so that a hub edit overwritten by our own write
    can be seen (processor.py)."""

    inbox_id: int
    occurred_at: int
    property: str | None = None
    value: str | None = None  # digest of the value set (overwritten.value_digest)
    # What it says changed, where an echo of our own write can be told (worker.py).
    reported: Reported | None = None


# What rides with a record key through the lock queue: an inbox id, or one with its event's
# change.
Mark = int | SeenChange


def inbox_id_of(payload: Any) -> int | None:
    """The inbox id a lock-queue payload carries, if any."""
    if isinstance(payload, SeenChange):
        return payload.inbox_id
    return payload if isinstance(payload, int) else None


# A multi-record event waits for its records' syncs before it is marked done; this many such
# events may wait at once before the intake reads no further.
ACK_BUFFER = 64


class Intake:
    """One inbox source of an object sync: reads its pending events (oldest first), turns
    them into change events for the lock queue and sends them — waiting while the queue's
    changes lane is full, so a burst stays in the inbox, not in memory. It looks at the
    inbox when woken (a message on its wake channel: the webhook server stored an event for
    this source) or every IDLE_POLL_SECONDS (events stored by another process)."""

    def __init__(self, ctx: ObjectSyncContext, source: str, parse: Parser,
                 describe: Describe | None = None, report: Report | None = None) -> None:
        self.ctx = ctx
        self.source = source
        self.parse = parse
        self.describe = describe
        self.report = report
        self.events = 0

    async def run(self, changes: ChangeSender, wake: RequestReceiver, *,
                  task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Until cancelled, or until the wake channel's senders are all closed."""
        acks_tx, acks_rx = trio.open_memory_channel[tuple[Ticket, int]](ACK_BUFFER)
        async with changes, wake, trio.open_nursery() as nursery:
            nursery.start_soon(self._acknowledge, acks_rx)
            async with acks_tx:
                task_status.started()
                await self._loop(changes, wake, acks_tx)
            nursery.cancel_scope.cancel()

    async def _loop(self, changes: ChangeSender, wake: RequestReceiver,
                    acks: trio.MemorySendChannel[tuple[Ticket, int]]) -> None:
        after = 0
        while True:
            rows = await self.ctx.store.read(store_inbox.pending_events, self.source, after, 500)
            if not rows:
                if not await wait_asked(wake, IDLE_POLL_SECONDS):
                    return
                continue
            payloads: dict[Hashable, list[Mark]] = {}
            useless: list[int] = []
            for inbox_id, payload in rows:
                after = max(after, inbox_id)
                try:
                    found = self.parse(payload)
                except Exception as exc:
                    # Stored by an older version or by hand (the webhook server validates what
                    # it stores): it names no record that can be synced. One such event must
                    # not stop the intake, nor stay to be read again at every start.
                    self.ctx.log.warning("webhook event dropped: it names no record",
                                         source=self.source, inbox_id=inbox_id,
                                         error=f"{type(exc).__name__}: {exc}"[:300])
                    useless.append(inbox_id)
                    continue
                mark: Mark = inbox_id
                if self.describe is not None and found:
                    try:
                        mark = SeenChange(inbox_id, *self.describe(payload),
                                          reported=self._report(payload))
                    except Exception:
                        mark = inbox_id  # its time is not needed to sync its record
                if not found:
                    useless.append(inbox_id)
                elif len(found) > 1:
                    # An event about several records (a merge) is done when all of them
                    # were synced, not when the first one was.
                    ticket = await changes.submit(found)
                    await acks.send((ticket, inbox_id))
                else:
                    # Several events of one record: one sync marks them all done.
                    payloads.setdefault(found[0], []).append(mark)
            for key in [k for k, marks in payloads.items() if self._echo(k, marks)]:
                # The change our own last write made (its value, in its window): nothing to
                # sync, and no read of the record to find that out (issue 16).
                useless.extend(i for m in payloads.pop(key) if (i := inbox_id_of(m)) is not None)
            if useless:
                await self.ctx.store.call(store_inbox.mark_done, useless)
            await self._outdate_scans([m.reported for marks in payloads.values() for m in marks
                                       if isinstance(m, SeenChange) and m.reported is not None])
            if payloads:
                await changes.submit(list(payloads), payloads)
            self.events += len(rows)
            self.ctx.status.last_webhook = time.time()

    async def _outdate_scans(self, reported: list[Reported]) -> None:
        """An association changed in HubSpot: what an initial sync's hub scan kept of it, at
        either end (store/scanned.py), is out of date, and an initial sync still running
        must read it again rather than write the scan's view to the app. The event may be
        judged an echo from this end (it never saw the partner, which was not linked) while
        the other end's kept row still shows the association."""
        ctx = self.ctx
        changed = [(r.record_id, r.partner_object, r.partner_id) for r in reported
                   if r.kind == "associationChange" and r.partner_object and r.partner_id]
        if not changed:
            return

        def drop(conn: Any) -> None:
            for rid, obj, partner in changed:
                store_scanned.drop_associations(conn, ctx.sync_id, obj, [rid])
                store_scanned.drop_associations(conn, sync_id_of(ctx.connection, obj),
                                                ctx.hub_object, [partner])

        await ctx.store.call(drop)

    def _report(self, payload: bytes) -> Reported | None:
        if self.report is None:
            return None
        try:
            return self.report(payload)
        except Exception:
            return None  # then it is synced like any event

    def _echo(self, key: Hashable, marks: list[Mark]) -> bool:
        if not (isinstance(key, tuple) and key[0] == "hub"):
            return False
        write = self.ctx.hub_writes.get(str(key[1]))
        return write is not None and echoes(write, marks)

    async def _acknowledge(self, acks: trio.MemoryReceiveChannel[tuple[Ticket, int]]) -> None:
        async with acks:
            async for ticket, inbox_id in acks:
                await ticket.wait()  # a failed sync raises: the event stays for the next start
                await self.ctx.store.call(store_inbox.mark_done, [inbox_id])
