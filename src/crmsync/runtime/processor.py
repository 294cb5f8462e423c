"""Syncing a batch of items: decide, write to the sides, commit what happened.

Used by the initial sync's passes and by the incremental workers alike. The steps:

1. decide every item with the engine;
2. heal: an item whose earlier create may have landed (`creating` is set) looks for its
   partner by match key on that side before anything is created again;
3. commit create intents (`creating = side`) before sending creates, so that a crash between a
   create and the commit of its link is healed by matching, never by a second create;
4. write through the batch writers (creates, updates, deletes; 207-style per-record results);
   a create refused because the record exists (HubSpot's 409 with the existing id) pairs with
   that record and is decided once more;
5. commit every outcome (state, ids, snapshot, keys, history) in one store call, together
   with whatever the caller must commit atomically with it (inbox ids, a checkpoint).

A failure of a whole API call propagates (nothing of this batch is committed; the caller's
inbox events and checkpoints stay where they were) so the supervisor retries later.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec
import trio

from crmsync.connectors.base import SupportsPropertyHistory, SupportsWriteEvidence, WriteResult
from crmsync.engine import decide, decide_overwritten, effective_snapshot
from crmsync.engine.matching import Duplicate, Holder, create_keys, match
from crmsync.engine.outcome import record_keys, settle
from crmsync.engine.preview import PlanEntry, preview
from crmsync.engine.restored import CATEGORY as RESTORE_CONFLICT
from crmsync.engine.restored import hold_ambiguous
from crmsync.engine.types import (
    Create,
    Decision,
    Delete,
    Exclude,
    Fail,
    FieldChange,
    Link,
    MarkDeleted,
    Noop,
    ParkDelete,
    Record,
    Side,
    Snapshot,
    Update,
    other,
)
from crmsync.runtime import encoding, write_plan
from crmsync.runtime.context import ObjectSyncContext
from crmsync.runtime.encoding import decode_intent, decode_snapshot, store_outcome
from crmsync.runtime.intake import SeenChange
from crmsync.runtime.overwritten import (
    HubWrite,
    decode_hub_write,
    following,
    overwritten,
    suspects,
)
from crmsync.runtime.reads import read_records
from crmsync.runtime.write_plan import PlannedCreate
from crmsync.store import deletes as store_deletes
from crmsync.store import initial as store_initial
from crmsync.store import items as store_items
from crmsync.store.items import KEEP, Item, Outcome

# Failure categories that clear up by themselves: the item is retried after a backoff.
TRANSIENT_CATEGORIES = frozenset({"rate_limited", "api_unavailable"})
# Times a record whose conditional update was refused as stale is read and decided again in
# one sync.
STALE_ROUNDS = 3


def wall_clock() -> float:
    """Epoch seconds for intents (they outlive the process). Tests that run the daemon on
    Trio's virtual clock replace it, so that the wait for HubSpot's index lag, which is slept
    on that clock, is measured on it too."""
    return time.time()


def encode_intent(d: Decision, create_keys: dict[str, str] | None = None,
                  app_position: str = "", base: Snapshot | None = None) -> bytes | None:
    """The intent of `d`, about to be written now (`wall_clock`); see `encoding.Intent`
    for `app_position` and `base`."""
    return encoding.encode_intent(d, wall_clock(), create_keys, app_position, base)


def held_after_restore(item: Item | None) -> bool:
    """Is the item held by engine/restored.py? Its category says so whatever its state: a
    held record that another change queues shows as `queued` meanwhile."""
    return item is not None and item.category == RESTORE_CONFLICT


@dataclass(eq=False)
class Work:
    """One item to sync, with both sides' current records as read for this batch."""

    item: Item | None
    hub: Record | None = None
    app: Record | None = None
    hub_id: str | None = None
    app_id: str | None = None
    duplicate_of: str | None = None
    excluded: tuple[str, str] | None = None  # (reason, detail) decided before the engine
    keys: tuple[str, ...] = ()  # match keys of a record first seen in this batch
    key_side: Side | None = None
    payload: list[Any] = field(default_factory=list)  # e.g. inbox ids to mark done
    decision: Decision | None = None
    outcome: Outcome | None = None
    created: dict[str, str] = field(default_factory=dict)  # side -> new record id
    # Keys of the other side's record merged into this work (both first seen in one batch).
    paired_keys: tuple[str, ...] = ()
    # The item's only record was never linked and `keys` are its match keys read now (or
    # none, for a duplicate): its claims in the index follow them.
    rekey_own: bool = False
    errors: list[tuple[str, str]] = field(default_factory=list)  # (category, detail)
    redo: bool = False
    # Set when a commit of this work broke a unique constraint (another sync gave one of
    # its records to another item meanwhile): nothing of it was committed, and the caller
    # syncs the record again from what the store holds now.
    conflict: str = ""
    # The side whose conditional update was refused: the record changed there since it was
    # read (decided again before the commit).
    stale: Side | None = None
    # Hub property -> a value a hub user set that our last write overwrote unseen.
    lost: dict[str, str] = field(default_factory=dict)
    # This sync's update of the hub record, once it landed.
    hub_write: HubWrite | None = None
    # Sides where an interrupted sync's update is known to have landed although the record
    # changed again since (engine effective_snapshot).
    landed: tuple[Side, ...] = ()
    # The snapshot the last decision was made with (recorded in its intent).
    base: Snapshot | None = None

    def __post_init__(self) -> None:
        if self.item is not None:
            self.hub_id = self.hub_id or self.item.hub_id
            self.app_id = self.app_id or self.item.app_id
        if self.hub is not None:
            self.hub_id = self.hub.id
        if self.app is not None:
            self.app_id = self.app.id

    @property
    def snapshot(self) -> Snapshot | None:
        return decode_snapshot(self.item.snapshot) if self.item is not None else None

    def record(self, side: Side) -> Record | None:
        return self.hub if side == "hub" else self.app

    def set_record(self, side: Side, rec: Record | None) -> None:
        if side == "hub":
            self.hub = rec
            if rec is not None:
                self.hub_id = rec.id
        else:
            self.app = rec
            if rec is not None:
                self.app_id = rec.id

    def record_id(self, side: Side) -> str | None:
        return self.hub_id if side == "hub" else self.app_id

    def key(self) -> tuple[str, str] | None:
        """A key to sync this work's record (or pair) again by: a record key, or for an item
        no record id names (its app id let go of before a hub id was known), its item key
        (loader.ITEM)."""
        if self.hub_id:
            return ("hub", self.hub_id)
        if self.app_id:
            return ("app", self.app_id)
        return ("item", str(self.item.item_id)) if self.item is not None else None


ExtraCommit = Callable[[sqlite3.Connection], None]


class Processor:
    def __init__(self, ctx: ObjectSyncContext) -> None:
        self.ctx = ctx

    # --- 1. decide --------------------------------------------------------------------------

    def _decide(self, w: Work) -> None:
        if w.excluded is not None:
            w.decision = Decision(actions=[Exclude(*w.excluded)])
            return
        snap = w.snapshot
        if w.item is not None and w.item.intent is not None:
            # An earlier sync of this item was cut short after sending its writes.
            intent = decode_intent(w.item.intent)
            old = intent.base if intent.base is not None else snap
            snap = effective_snapshot(self.ctx.rules, old, intent.snapshot, intent.written,
                                      w.hub, w.app, w.landed, w.item.creating)
        w.base = snap
        if w.lost:
            w.decision = decide_overwritten(self.ctx.rules, w.hub, w.app, snap, w.lost)
        else:
            w.decision = decide(self.ctx.rules, w.hub, w.app, snap, w.duplicate_of)
        since = self.ctx.restored_since_ms
        held = held_after_restore(w.item)
        if since is not None or held:
            w.decision = hold_ambiguous(w.decision, w.hub, w.app, since, held)

    async def _see_overwritten(self, works: list[Work]) -> None:
        """Linked records whose hub events say a property our last write to the hub wrote
        changed while that write was in flight: read those properties' history and keep the
        values our write overwrote unseen (runtime/overwritten.py)."""
        hub = self.ctx.hub
        if not isinstance(hub, SupportsPropertyHistory):
            return
        asks: dict[str, tuple[Work, HubWrite, list[str]]] = {}
        for w in works:
            it = w.item
            if it is None or it.hub_write is None or it.snapshot is None or w.hub is None:
                continue
            seen = [p for p in w.payload if isinstance(p, SeenChange)]
            write = decode_hub_write(it.hub_write)
            props = suspects(write, seen)
            if props:
                asks[w.hub.id] = (w, write, props)
        if not asks:
            return
        history = await hub.read_history(
            self.ctx.hub_object, list(asks), sorted({p for _, _, ps in asks.values() for p in ps}))
        for hub_id, (w, write, props) in asks.items():
            w.lost = overwritten(write, history.get(hub_id, {}), props)
            if w.lost:
                self.ctx.log.info("hub edit overwritten by our write: decided as a conflict",
                                  hub_id=hub_id, app_id=w.app_id, fields=sorted(w.lost))

    async def _see_landed(self, works: list[Work]) -> None:
        """Items whose last sync was cut short after sending app updates: ask the app's
        change log whether those updates landed before the record changed again (then the
        value it holds is a newer edit, not one made without seeing ours)."""
        app = self.ctx.app
        if not isinstance(app, SupportsWriteEvidence):
            return
        asks: dict[str, list[Work]] = {}
        for w in works:
            it = w.item
            if it is None or it.intent is None or w.app is None:
                continue
            intent = decode_intent(it.intent)
            if intent.app_position:
                asks.setdefault(intent.app_position, []).append(w)
        for position, ws in asks.items():
            found = await app.written_then_changed(self.ctx.app_object,
                                                   [w.app.id for w in ws if w.app], position)
            for w in ws:
                if w.app is not None and w.app.id in found:
                    w.landed = ("app",)

    # --- 2. heal ---------------------------------------------------------------------------

    async def _heal(self, works: list[Work]) -> None:
        """A create an earlier attempt of this item sent (its intent says so) is healed by
        matching: the record it made is taken, and the item decided again with it
        (runtime/write_plan.py)."""
        plans: list[tuple[Work, PlannedCreate]] = []
        for w in works:
            creates = [a for a in w.decision.actions if isinstance(a, Create)]  # type: ignore[union-attr]
            it = w.item
            if it is None or not it.creating:
                continue
            side: Side = "hub" if it.creating == "hub" else "app"
            if creates:
                if creates[0].side != side:
                    continue
                values = creates[0].values
            elif w.record(side) is None and w.record(other(side)) is None \
                    and it.intent is not None:
                # The record the create was made from is gone: if the create landed, the
                # record it made is found by the key it was sent with (no create now to give
                # another), and the two are a linked pair one of whose records was deleted
                # (decided by on_delete), not a new record to copy back where its source
                # was deleted.
                values = {}
            else:
                continue
            plans.append((w, PlannedCreate(side, values, item=it)))
        # (Looked up when called: tests on Trio's virtual clock replace `wall_clock`.)
        await write_plan.heal(self.ctx, "sync", [p for _, p in plans], lambda: wall_clock())
        for w, p in plans:
            if p.record is not None:
                self.ctx.log.info("create healed by matching", side=p.side,
                                  record_id=p.record.id, hub_id=w.hub_id, app_id=w.app_id)
                w.set_record(p.side, p.record)
                self._decide(w)

    async def _look_before_create(self, works: list[Work]) -> None:
        """A record created on the other side at about the same moment as ours — not seen by
        crmsync yet, so not in the index that matching reads — is paired with instead of
        duplicated. Only where `find` is a local query: on HubSpot a contact create answers
        409 with the existing id, and a search per create would spend the API budget. While
        catching up after a restore, on every side: crmsync may have created the record
        itself after the backup."""
        restore = self.ctx.restore
        for w in works:
            creates = [a for a in w.decision.actions if isinstance(a, Create)]  # type: ignore[union-attr]
            if not creates:
                continue
            side = creates[0].side
            if w.item is not None and w.item.creating == side:
                continue  # an earlier attempt's create: healed above
            if w.item is not None and w.item.category == "duplicate":
                await self._match_former_duplicate(w, side)
                continue
            if restore is not None:
                # Records the stopped daemon created are found once the side's search index
                # has caught up with the moment it was stopped (before the restore).
                lag = float(getattr(self.ctx.connector(side), "index_lag", 0.0) or 0.0)
                wait = restore.restored_at + lag + 1.0 - wall_clock() if lag > 0 else 0.0
                if wait > 0:
                    await trio.sleep(wait)
            elif not self.ctx.connector(side).capabilities.local_find:
                continue
            # A record crmsync has indexed is matched (or excluded, or a duplicate) by the
            # rules already: only one it has not seen yet is looked for.
            found = await write_plan.find_created(self.ctx, side, creates[0].values,
                                                  lambda h: h is None)
            if found is not None:
                self.ctx.log.info("create avoided: paired with a record made meanwhile",
                                  side=side, record_id=found.id, hub_id=w.hub_id,
                                  app_id=w.app_id)
                w.set_record(side, found)
                self._decide(w)

    async def _match_former_duplicate(self, w: Work, side: Side) -> None:
        """A record failed as a duplicate that the index now lets through (its key changed,
        or the record holding it went) is matched against `side` itself before it is created
        there: a record crmsync has not seen yet pairs with it, one linked to another record
        keeps it a duplicate. Costs a search per key field, spent only on these records.
        HubSpot's search shows a record only some time after it was written (its index lag):
        every record crmsync wrote or saw is in the index, checked first, so only one made
        there by someone else within that lag can be missed; it then arrives by its webhook
        or the next poll and fails as a duplicate of this one, never copied."""
        own_side = other(side)
        own = w.record(own_side)
        if own is None:
            return
        keys = set(record_keys(self.ctx.rules, own_side, own))
        assert w.decision is not None
        values = next(a.values for a in w.decision.actions if isinstance(a, Create))
        found: dict[str, Record] = {}
        for name, v in create_keys(self.ctx.rules, side, values).items():
            for rec in await self.ctx.connector(side).find(
                    self.ctx.object_name(side), name, v, self.ctx.properties(side)):
                if keys & set(record_keys(self.ctx.rules, side, rec)):
                    found[rec.id] = rec
        if not found:
            return
        items = await self.ctx.store.read(store_items.find_items, self.ctx.sync_id, side,
                                          list(found))
        holders = [Holder(rid, it.record_id(own_side), it.state, it.category)
                   if (it := items.get(rid)) is not None else Holder(rid) for rid in found]
        m = match(own_side, own.id, [], holders)
        if isinstance(m, Duplicate):
            w.duplicate_of = m.of
        elif m is not None:
            w.set_record(side, found[m.holder.record_id])
            self.ctx.log.info("former duplicate paired with a record found on the other side",
                              side=side, record_id=m.holder.record_id, hub_id=w.hub_id,
                              app_id=w.app_id)
        else:
            return
        self._decide(w)

    # --- 3./4. write -----------------------------------------------------------------------

    async def _commit_intents(self, works: list[Work]) -> None:
        """Before any write is sent: record, per item, the snapshot it will store and the
        fields it writes (and, for a create, the side it creates on). After a crash in
        between, a write that landed is then recognised as ours (effective_snapshot) and a
        create that landed is healed by matching."""
        inserts: list[Outcome] = []
        inserted: list[Work] = []
        updates: list[tuple[int, bytes | None, str]] = []
        position = ""
        app = self.ctx.app
        if isinstance(app, SupportsWriteEvidence) and any(
                isinstance(a, Update) and a.side == "app"
                for w in works if w.decision is not None for a in w.decision.actions):
            position = await app.log_position()
        for w in works:
            d = w.decision
            assert d is not None
            writes = [a for a in d.actions if isinstance(a, Create | Update)]
            if not writes:
                continue
            create = next((a for a in writes if isinstance(a, Create)), None)
            blob = encode_intent(d, create_keys(self.ctx.rules, create.side, create.values)
                                 if create is not None else None, position, w.base)
            if w.item is None:
                if create is None:
                    continue
                source = other(create.side)
                src_id = w.record_id(source)
                inserts.append(Outcome(
                    state="pending", creating=create.side, intent=blob,
                    hub_id=src_id if source == "hub" else None,
                    app_id=src_id if source == "app" else None,
                    app_incarnation=(w.app.incarnation if source == "app" and w.app is not None
                                     else KEEP),
                    match_key=w.keys[0] if w.keys else "",
                    claim=tuple((source, k, src_id) for k in w.keys) if src_id else ()))
                inserted.append(w)
            elif create is not None and w.item.creating == create.side:
                continue  # the intent of the earlier attempt stands (healed above)
            else:
                updates.append((w.item.item_id, blob,
                                create.side if create is not None else w.item.creating))
                # The app's change log spoke of the writes of the intent this one replaces:
                # a write of this sync refused as stale must not pass for one that landed
                # when the record is decided again (issue 17, random e2e defect (a)).
                w.landed = ()
        if not inserts and not updates:
            return

        def reread(conn: sqlite3.Connection) -> dict[tuple[str, str], Item]:
            out: dict[tuple[str, str], Item] = {}
            sides: tuple[Side, Side] = ("hub", "app")
            for side in sides:
                ids = [rid for w in works if (rid := w.record_id(side)) is not None]
                for rid, it in store_items.find_items(conn, self.ctx.sync_id, side,
                                                      ids).items():
                    out[(side, rid)] = it
            return out

        refused, found = await write_plan.commit_intents(self.ctx, inserts, updates, reread)
        for i, why in refused.items():
            inserted[i].conflict = why  # its record has an item now: nothing is sent
        assert found is not None
        sides: tuple[Side, Side] = ("hub", "app")
        for w in works:
            if w.conflict:
                continue
            for side in sides:
                rid = w.record_id(side)
                if rid is not None and (side, rid) in found:
                    w.item = found[(side, rid)]
                    break

    async def _write(self, works: list[Work]) -> list[Work]:
        """Send every write; returns the works to decide once more (409 existing record)."""
        redo: list[Work] = []
        for side in ("hub", "app"):
            creates = [(w, a) for w in works for a in w.decision.actions  # type: ignore[union-attr]
                       if isinstance(a, Create) and a.side == side]
            # A create refused because the record exists there (HubSpot's 409 with its id)
            # pairs with it and is decided again, once (runtime/write_plan.py).
            plans = [PlannedCreate(side, a.values, item=w.item, own_id=w.record_id(other(side)),
                                   take_existing=not w.redo) for w, a in creates]
            await write_plan.send_creates(self.ctx, "sync", side, plans)
            for (w, _), p in zip(creates, plans, strict=True):
                if p.error is not None:
                    w.errors.append(p.error)
                elif p.taken:
                    w.set_record(side, p.record)
                    w.redo = True
                    redo.append(w)
                elif p.record is not None:
                    w.created[side] = p.record.id
                    w.set_record(side, p.record)
            updates = [(w, a) for w in works for a in w.decision.actions  # type: ignore[union-attr]
                       if isinstance(a, Update) and a.side == side and w not in redo]
            if updates:
                # Where the side can refuse a stale write, each update holds only while the
                # record still has the values this decision read.
                expected = ([w.record(side) for w, _ in updates]
                            if self.ctx.connector(side).capabilities.conditional_update
                            else None)
                results = await self.ctx.writer(side).update([(a.id, a.changes)
                                                              for _, a in updates], expected)
                for (w, a), res in zip(updates, results, strict=True):
                    if res.ok:
                        read = w.record(side)
                        if side == "hub" and res.record is not None and read is not None:
                            # The last write (this sync's earlier round's, or the item's),
                            # if this decision read no newer version than it made, keeps its
                            # window open (overwritten.following).
                            stored = w.item.hub_write if w.item is not None else None
                            last = w.hub_write or (decode_hub_write(stored)
                                                   if stored is not None else None)
                            w.hub_write = following(
                                last,
                                {k: "" if v is None else str(v) for k, v in a.changes.items()},
                                read_at=read.updated_at, written_at=res.record.updated_at)
                            if self.ctx.hub_events:
                                self.ctx.note_hub_write(a.id, w.hub_write)
                        continue
                    if res.error is not None and res.error.stale:
                        w.stale = side
                    else:
                        w.errors.append(_error(res))
            archives = [(w, a) for w in works for a in w.decision.actions  # type: ignore[union-attr]
                        if isinstance(a, Delete) and a.side == side]
            if archives and self.ctx.associations is not None:
                await self.ctx.associations.drop_before_delete(side, [a.id for _, a in archives])
            if archives:
                results = await self.ctx.writer(side).archive([a.id for _, a in archives])
                for (w, _), res in zip(archives, results, strict=True):
                    if not res.ok and (res.error is None or res.error.category != "not_found"):
                        w.errors.append(_error(res))
        return redo

    async def _redo_stale(self, works: list[Work]) -> None:
        """Updates refused because the record changed on that side since it was read: read
        both sides again and decide again (with this sync's intent, so its writes that landed
        count as ours), then write; a few rounds, after which the record fails as `conflict`
        until its next change brings it back."""
        for _ in range(STALE_ROUNDS):
            stale = [w for w in works if w.stale is not None]
            if not stale:
                return
            landed: dict[int, list[FieldChange]] = {}
            for w in stale:
                assert w.decision is not None
                landed[id(w)] = [c for c in w.decision.changes if c.side != w.stale]
                w.stale = None
            await self._reread(stale)
            for w in stale:
                self._decide(w)
                d = w.decision
                assert d is not None
                # The history keeps what the first round wrote to the other side.
                w.decision = msgspec.structs.replace(d, changes=landed[id(w)] + d.changes)
            self.ctx.log.info("stale writes decided again", records=len(stale))
            await self._commit_intents(stale)
            for w in await self._write(stale):
                w.errors.append(("conflict", "the record exists on the other side but could "
                                             "not be paired with it"))
        for w in works:
            if w.stale is not None:
                w.errors.append(("conflict", f"the {w.stale} record kept changing while it was "
                                             "written; it is synced again on its next change"))
                w.stale = None

    async def _reread(self, works: list[Work]) -> None:
        sides: tuple[Side, Side] = ("hub", "app")
        for side in sides:
            got = await read_records(self.ctx, side, [w.record_id(side) or "" for w in works])
            for w in works:
                rid = w.record_id(side)
                if rid:
                    rec = got.get(rid)
                    was = w.record(side)
                    if rec is not None and was is not None and rec.incarnation != was.incarnation:
                        # Deleted meanwhile and its id given to a new record: that one is
                        # not this item's (the loader detaches it when its change comes).
                        rec = None
                    w.set_record(side, rec)

    # --- 5. outcomes ---------------------------------------------------------------------------

    def _log(self, w: Work, elapsed_ms: float) -> None:
        d = w.decision
        if d is None:
            return
        action = "fail" if w.errors else d.summary
        fields = sorted({c.field for c in d.changes})
        level = "info" if action != "noop" else "debug"
        extra: dict[str, Any] = {}
        if w.errors:
            extra["category"], extra["detail"] = w.errors[0]
        else:
            for a in d.actions:
                if isinstance(a, Fail):
                    extra["category"], extra["detail"] = a.category, a.detail
                elif isinstance(a, Exclude):
                    extra["reason"], extra["detail"] = a.reason, a.detail
        if d.warnings:
            level = "warning"
            extra["warnings"] = [str(x) for x in d.warnings]
        getattr(self.ctx.log, level)(
            "sync decision", hub_id=w.created.get("hub", w.hub_id),
            app_id=w.created.get("app", w.app_id), action=action, fields=fields,
            duration_ms=round(elapsed_ms, 1), **extra)

    # --- the whole batch -----------------------------------------------------------------------

    async def run(self, works: Sequence[Work], extra: ExtraCommit | None = None,
                  before_commit: Callable[[], Awaitable[None]] | None = None,
                  look_before_create: bool = False, preview: bool = False) -> list[Work]:
        """Sync `works` and commit their outcomes (plus `extra`, in the same transaction).

        `before_commit` is awaited right before the final commit: pipelined callers use it to
        keep their commits (and checkpoints) in order. `look_before_create` (incremental
        syncs) pairs a create with a record of the same key made meanwhile on that side; the
        initial sync has just indexed both sides and does not need it. With `preview` (an
        initial sync in preview) nothing is written: the plan is recorded.
        """
        started = time.perf_counter()
        todo = list(works)
        if not self.ctx.preview:
            await self._see_overwritten(todo)
            await self._see_landed(todo)
        if self.ctx.owners is not None:
            await self.ctx.owners.prepare(todo)
        for w in todo:
            self._decide(w)
        if preview:
            if before_commit is not None:
                await before_commit()
            await self._commit_plan(todo, extra)
            return todo
        await self._heal(todo)
        if look_before_create or self.ctx.restore is not None:
            await self._look_before_create(todo)
        await self._commit_intents(todo)
        todo = [w for w in todo if not w.conflict]
        redo = await self._write(todo)
        if redo:
            for w in redo:
                self._decide(w)
                if any(isinstance(a, Create) for a in w.decision.actions):  # type: ignore[union-attr]
                    w.errors.append(("conflict", "the record exists on the other side but "
                                                 "could not be paired with it"))
                    w.decision = Decision(actions=[Noop()], snapshot=None)
            await self._write([w for w in redo if not w.errors])
        await self._redo_stale(todo)
        elapsed_ms = (time.perf_counter() - started) * 1000
        for w in todo:
            # The engine chooses what to record (engine/outcome.py); the store writes it.
            got = settle(self.ctx.rules, w)
            w.outcome = store_outcome(got) if got is not None else None
        newly: list[tuple[str | None, str | None]] = []
        if self.ctx.associations is not None:
            # Before the commit that acknowledges these syncs (inbox ids, a checkpoint): an
            # association change is written before it is acknowledged.
            newly = await self._associations(todo)
        outcomes: list[Outcome] = []
        outcome_works: list[Work] = []
        for w in todo:
            if w.outcome is not None:
                outcomes.append(w.outcome)
                outcome_works.append(w)
                self._log(w, elapsed_ms)
        parked = [(w.outcome.item_id, w.outcome.deleted_side, w.record_id(
            "hub" if w.outcome.deleted_side == "app" else "app")) for w in todo
            if w.outcome is not None and w.outcome.category == "pending_review"
            and w.outcome.item_id is not None]

        def commit(conn: sqlite3.Connection) -> None:
            refused = store_items.apply_outcomes_apart(conn, self.ctx.sync_id, outcomes)
            for i, why in refused.items():
                outcome_works[i].conflict = why
            refused_items = {outcomes[i].item_id for i in refused}
            if self.ctx.associations is not None:
                self.ctx.associations.forget_ended(conn, [
                    (w.hub_id, w.app_id) for i, w in enumerate(outcome_works)
                    if i not in refused and outcomes[i].state == "deleted"])
                self.ctx.associations.forget_app_records(conn, [
                    w.app_id for i, w in enumerate(outcome_works)
                    if i not in refused and outcomes[i].state == "deleted" and w.app_id
                    and outcomes[i].deleted_side in ("app", "both")])
            for item_id, side, rid in parked:
                if item_id in refused_items:
                    continue
                store_deletes.park(conn, self.ctx.sync_id, item_id, side, rid or "")
            if extra is not None:
                extra(conn)

        if before_commit is not None:
            await before_commit()
        if self.ctx.associations is not None and any(
                o.state == "deleted" and o.deleted_side in ("app", "both") for o in outcomes):
            # It forgets what was seen of those app records' associations (held()).
            async with self.ctx.associations.held():
                await self.ctx.store.call(commit)
        else:
            await self.ctx.store.call(commit)
        for w in works:
            if w.conflict:
                self.ctx.log.warning("sync to be run again: another sync committed this "
                                     "record meanwhile", hub_id=w.hub_id, app_id=w.app_id,
                                     detail=w.conflict)
        if self.ctx.associations is not None:
            # A partner linked, changed or deleted: associations waiting for it (or failed
            # against it) are decided again from current state.
            changed = newly + [(w.created.get("hub", w.hub_id), w.created.get("app", w.app_id))
                               for w in todo if w.outcome is not None and not w.conflict
                               and _changes_records(w)]
            await self.ctx.associations.release_pending(list(dict.fromkeys(changed)))
        return list(works)

    async def _associations(self, works: list[Work]) -> list[tuple[str | None, str | None]]:
        """Sync the associations of the records linked by this batch; a failure turns the
        record's outcome into association_failed. Returns the records newly linked."""
        linked: list[tuple[str, str]] = []
        incarnations: dict[str, str] = {}
        newly: list[tuple[str | None, str | None]] = []
        created: set[str] = set()
        by_hub: dict[str, Work] = {}
        for w in works:
            o = w.outcome
            if o is None or o.state != "syncing":
                continue
            hub_id = w.created.get("hub", w.hub_id)
            app_id = w.created.get("app", w.app_id)
            if not hub_id or not app_id:
                continue
            linked.append((hub_id, app_id))
            if w.app is not None and w.app.id == app_id:
                incarnations[app_id] = w.app.incarnation
            by_hub[hub_id] = w
            if "hub" in w.created:
                created.add(hub_id)
            if w.item is None or w.item.snapshot is None or w.created:
                newly.append((hub_id, app_id))
        failed = await self.ctx.associations.sync_links(linked, incarnations,
                                                        created_in_hub=created)
        for hub_id, detail in failed.items():
            w = by_hub[hub_id]
            assert w.outcome is not None
            w.outcome = msgspec.structs.replace(w.outcome, state="failed",
                                                category="association_failed", detail=detail,
                                                count_attempt=True)
        return newly

    async def _commit_plan(self, works: list[Work], extra: ExtraCommit | None) -> None:
        """Preview: record what would happen, write nothing to either side (what is recorded
        is the engine's rule, engine/preview.py)."""
        entries: list[PlanEntry] = []
        outcomes: list[Outcome] = []
        for w in works:
            p = preview(w)
            entries.extend(p.entries)
            if p.outcome is not None:
                outcomes.append(store_outcome(p.outcome))

        def commit(conn: sqlite3.Connection) -> None:
            store_items.apply_outcomes(conn, self.ctx.sync_id, outcomes)
            store_initial.add_plan(conn, self.ctx.sync_id, entries)
            if extra is not None:
                extra(conn)

        await self.ctx.store.call(commit)


def _changes_records(w: Work) -> bool:
    """The sync wrote, linked or deleted a record (not a no-op, not a refusal)."""
    d = w.decision
    return d is not None and not w.errors and any(
        isinstance(a, Create | Update | Link | Delete | MarkDeleted | ParkDelete)
        for a in d.actions)


def _error(res: WriteResult) -> tuple[str, str]:
    if res.error is None:
        return ("internal", "the write failed without an error")
    return (res.error.category, res.error.message)
