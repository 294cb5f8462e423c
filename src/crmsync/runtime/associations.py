"""Keeping associations (contact ↔ company, deal ↔ contact, deal ↔ company, invoice ↔ contact,
line item ↔ invoice) on both sides, as far as the directions allow.

After a batch of records of object A is synced, their associations with object B are read on
both sides and compared with what each side showed last time (a per-side snapshot of pairs,
like the field snapshots): an association added or removed on one side is added or removed
between the partners on the other. A side that can hold only one partner (an app's foreign
key) is re-read after writing, so what it really holds becomes its snapshot and a replaced
partner is not mistaken for a removal.

The writes a sync is about to send are recorded first (an intent, like an item's): after a
crash before the sync committed what it saw, the next sync of those records counts the writes
that landed as seen on both sides, so they are not taken for changes made on the side written.

When the partner on the other side is not linked yet, the association waits (pending) and is
not counted as seen; once the partner is linked, the record is synced again and the
association applied. No association is lost because of order.

Both ends of an association type sync it (a contact's sync reads its companies, a company's
sync its contacts) and share its snapshot rows, so one sync of the type at a time runs per
connection (`AssociationLocks`): from its reads to the commit of what it saw, another one's
reads, writes and commit must not fall in between, or one end stores what it read before the
other end's write over what that end stored after it (a removal then looks like an addition,
and the other way round).
"""

from __future__ import annotations

import sqlite3
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Collection,
    Mapping,
    Sequence,
)
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import trio

from crmsync.config.defaults import associable
from crmsync.config.model import Config, ObjectSync
from crmsync.connectors.base import AssociationChange, SupportsAssociations, WriteResult
from crmsync.records import Side
from crmsync.runtime.context import ObjectSyncContext, sync_id_of
from crmsync.store import associations as store_assoc
from crmsync.store import initial as store_initial
from crmsync.store import items as store_items
from crmsync.store import scanned as store_scanned
from crmsync.store.items import Item


@dataclass(frozen=True)
class AssociationPair:
    """One association type kept for object sync A: with B (hub object names), the app
    object names, and which ways it may move."""

    hub_a: str
    hub_b: str
    app_a: str
    app_b: str
    b_sync_id: str
    to_app: bool
    to_hub: bool
    # An app record of app_a holds one partner of app_b (a foreign key on it): adding one
    # replaces the one it held.
    app_holds_one: bool = False


def association_pairs(cfg: Config, sync: ObjectSync, app_pairs: set[tuple[str, str]],
                      directed: bool = False,
                      app_keys: Collection[tuple[str, str]] = ()) -> list[AssociationPair]:
    """The association types object sync `sync` keeps: with every object sync B of the same
    connection that either side lists in `associations`, allowed for the pair, and stored by
    the app (`app_pairs`: the app's associations as (from object, to object), kept from
    either side; with `directed`, only by the object sync of the `from` object — where the
    app reads an association cheaply only from the record holding it, as Pipedrive's foreign
    keys). `app_keys`: the app's associations (from object, to object) whose `from` record
    holds one partner (a foreign key)."""
    out = []
    for other in cfg.syncs:
        if other is sync or other.connection != sync.connection or not other.enabled:
            continue
        if sync.hub_object not in other.associations and other.hub_object not in sync.associations:
            continue
        if not associable(sync.hub_object, other.hub_object):
            continue
        if (sync.app_object, other.app_object) not in app_pairs and (
                directed or (other.app_object, sync.app_object) not in app_pairs):
            continue
        to_app = sync.direction in ("both", "to_app") and other.direction in ("both", "to_app")
        to_hub = sync.direction in ("both", "to_hub") and other.direction in ("both", "to_hub")
        out.append(AssociationPair(sync.hub_object, other.hub_object, sync.app_object,
                                   other.app_object,
                                   sync_id_of(sync.connection, other.hub_object), to_app, to_hub,
                                   (sync.app_object, other.app_object) in app_keys))
    return out


# Submits a record of another object sync of the connection for a sync: (hub object, key).
Resubmit = Callable[[str, tuple[Side, str]], Awaitable[None]]


class _AssociationWait:
    """Rides along with a record key sent again because an association of it waited for a
    partner (`Resubmit`): the worker syncs the record only if such a wait is still there
    when its turn comes (`AssociationSyncer.answerable`). Both ends of an association often
    wait for each other while their object syncs link them at once; whichever is synced
    first decides the association on both sides and answers the other's wait, which then
    needs no sync: a read of its record on both sides and of its associations, for nothing
    (issue 16)."""

    def __repr__(self) -> str:
        return "ASSOCIATION_WAIT"


ASSOCIATION_WAIT = _AssociationWait()


@dataclass
class AssociationLocks:
    """One lock per association type of a connection, shared by the object syncs of its two
    ends (see the module docstring): give every `AssociationSyncer` of a connection the same
    instance."""

    _locks: dict[frozenset[str], trio.Lock] = field(default_factory=dict)

    def of(self, pair: AssociationPair) -> trio.Lock:
        return self._locks.setdefault(frozenset((pair.hub_a, pair.hub_b)), trio.Lock())

    def all_of(self, pairs: Sequence[AssociationPair]) -> list[trio.Lock]:
        """The locks of these association types, in one order (by type) for every caller."""
        types = sorted({tuple(sorted((p.hub_a, p.hub_b))) for p in pairs})
        return [self._locks.setdefault(frozenset(t), trio.Lock()) for t in types]


@dataclass
class AssociationSyncer:
    ctx: ObjectSyncContext
    pairs: list[AssociationPair]
    resubmit: Resubmit | None = None
    locks: AssociationLocks = field(default_factory=AssociationLocks)

    @property
    def connection(self) -> str:
        return self.ctx.connection

    async def sync_links(self, linked: Sequence[tuple[str, str]],
                         incarnations: Mapping[str, str] | None = None,
                         created_in_hub: Collection[str] = (),
                         only: Collection[str] | None = None) -> dict[str, str]:
        """Sync the associations of these linked records, (hub id, app id) each, before the
        outcome of their sync is committed (so an association change is never acknowledged
        before it is written). `incarnations`: of the app records as their sync read them,
        by app id (the app refuses an association write to another record given that id
        since). `created_in_hub`: hub ids this sync just created, whose associations are not
        read: the create wrote none, and no other sync knows the id before this one's
        commit. `only`: the partner objects whose associations to sync (default: all).
        Returns the failures by hub id (association_failed)."""
        failed: dict[str, str] = {}
        if linked and self.pairs:
            for pair in self.pairs:
                if only is not None and pair.hub_b not in only:
                    continue
                async with self.locks.of(pair):
                    failed.update(await self._sync_pair(pair, list(linked),
                                                        incarnations or {},
                                                        set(created_in_hub)))
        return failed

    async def release_pending(self, changed: Sequence[tuple[str | None, str | None]]) -> None:
        """After the commit that linked, changed or deleted these records ((hub id, app id)
        each): sync again the records whose associations wait for them (a partner not linked
        yet, or an association write that failed). Their waiting rows stay until that sync
        ran."""
        if not changed or self.resubmit is None:
            return
        obj = self.ctx.hub_object
        hub_ids = [h for h, _ in changed if h]
        app_ids = [a for _, a in changed if a]

        def peek(conn: sqlite3.Connection) -> list[tuple[str, str, str]]:
            return (store_assoc.waiting_for(conn, self.connection, obj, "hub", hub_ids)
                    + store_assoc.waiting_for(conn, self.connection, obj, "app", app_ids))

        for from_object, from_side, from_id in await self.ctx.store.read(peek):
            await self.resubmit(from_object, (from_side, from_id))  # type: ignore[arg-type]

    async def as_seen(self, side: Side, ids: Sequence[str]) -> set[str]:
        """The records among `ids` (of `side`) whose associations there, of every type kept,
        are the ones the last association sync saw (nothing for an association sync to do
        from that side)."""
        same = set(ids)
        for pair in self.pairs:
            if not same:
                break
            todo = sorted(same)
            now = await self._read(side, pair, todo)

            def known(conn: sqlite3.Connection, pair: AssociationPair = pair,
                      todo: list[str] = todo) -> dict[str, set[str]]:
                seen = store_assoc.seen_pairs(conn, self.connection, side, pair.hub_a,
                                              pair.hub_b, todo)
                # Partners it waits for (not linked: its sync would only wait again) are
                # known as well: a record with a partner that never links (an excluded
                # contact's company) was otherwise synced at every poll that reported it.
                for rid, b in store_assoc.waiting_partners(conn, self.connection, pair.hub_a,
                                                           pair.hub_b, side, todo):
                    seen[rid].add(b)
                return seen

            seen = await self.ctx.store.read(known)
            same = {i for i in todo if now[i] == seen[i]}
        return same

    async def drop_before_delete(self, side: Side, ids: Sequence[str]) -> None:
        """Before these records are deleted on `side` (a delete propagated there): remove
        their associations on that side, as HubSpot does when it archives a record, so that a
        foreign key pointing at one neither refuses the delete, nor deletes its partners (ON
        DELETE CASCADE), nor is left pointing at nothing. HubSpot drops them itself. A removal
        that fails leaves the delete to fail as it would have, with its category."""
        if side != "app" or not ids:
            return
        for pair in self.pairs:
            held = await self._read(side, pair, list(ids))
            changes = [AssociationChange(rid, b, removed=True)
                       for rid in ids for b in sorted(held.get(rid, ()))]
            await self._write(side, pair, changes)

    def forget_ended(self, conn: sqlite3.Connection,
                     records: Sequence[tuple[str | None, str | None]]) -> None:
        """In the commit that ends these records' links ((hub id, app id) each, deleted on a
        side): what their associations wait for is moot, since no sync reads a record's
        associations once its link ended (restore-deleted links it anew and syncs them from
        scratch). Their waiting rows go; rows of records waiting for them stay (they wait
        for a restore)."""
        hub_ids = [h for h, _ in records if h]
        app_ids = [a for _, a in records if a]
        if not hub_ids and not app_ids:
            return
        for pair in self.pairs:
            store_assoc.clear_waiting(conn, self.connection, pair.hub_a, pair.hub_b, hub_ids,
                                      app_ids)

    @asynccontextmanager
    async def held(self) -> AsyncIterator[None]:
        """Hold every association type of this object (its `AssociationLocks`) while the
        body runs: a commit that forgets what was seen of associations (`forget_app_records`)
        must not fall between another association sync's reads and its commit, which would
        store again, over the forgetting, what it read of the records before. Locks are
        taken in one order, and an association sync holds one at a time: no deadlock."""
        async with AsyncExitStack() as stack:
            for lock in self.locks.all_of(self.pairs):
                await stack.enter_async_context(lock)
            yield

    def forget_app_records(self, conn: sqlite3.Connection, app_ids: Sequence[str]) -> None:
        """In the commit that records these app records as gone (deleted, or their id given
        to another record): forget what was seen of their associations. An app may give a
        deleted record's id to a new one, whose associations are its own, none seen yet.
        Run that commit inside `held()`."""
        if not app_ids:
            return
        for pair in self.pairs:
            store_assoc.forget_records(conn, self.connection, pair.hub_a, pair.hub_b, (),
                                       app_ids)

    async def waiting(self) -> list[tuple[Side, str]]:
        """On start: the records of this object whose associations wait for a partner
        linked now, to sync again. A crash may have come between the commit that linked
        their partner and their new sync (`release_pending` hands them to the lock queue,
        which a kill empties); nothing else brings them, since their fields and their
        associations as seen may be unchanged. Those waiting for a partner not linked yet
        are left to its link's commit: syncing them now would read them on both sides to
        decide that they wait (at the end of an initial sync, every record of this object
        whose partners' object syncs are still in theirs; issue 16)."""
        rows = await self.ctx.store.read(store_assoc.waiting_answerable, self.connection,
                                         self.ctx.hub_object)
        return list(dict.fromkeys((side, rid) for side, rid, _ in rows))  # type: ignore[misc]

    async def answerable(self, keys: Collection[tuple[Side, str]]
                         ) -> dict[tuple[Side, str], set[str]]:
        """The records among `keys` with an association waiting for a partner linked now,
        with the partners' objects."""
        rows = await self.ctx.store.read(store_assoc.waiting_answerable, self.connection,
                                         self.ctx.hub_object, sorted(keys))
        out: dict[tuple[Side, str], set[str]] = {}
        for side, rid, obj in rows:
            out.setdefault((side, rid), set()).add(obj)  # type: ignore[arg-type]
        return out

    async def _read(self, side: Side, pair: AssociationPair,
                    ids: list[str]) -> dict[str, set[str]]:
        conn = self.ctx.connector(side)
        if not isinstance(conn, SupportsAssociations) or not ids:
            return {i: set() for i in ids}
        a, b = (pair.hub_a, pair.hub_b) if side == "hub" else (pair.app_a, pair.app_b)
        kept: dict[str, list[str]] = {}
        if side == "hub":
            # As the initial sync's hub scan listed them, where it did (store/scanned.py).
            kept = await self.ctx.store.read(store_scanned.get_associations, self.ctx.sync_id,
                                             pair.hub_b, ids)
        rest = [i for i in ids if i not in kept]
        got = await conn.read_associations(a, b, rest) if rest else {}
        return {i: set(kept[i] if i in kept else got.get(i, [])) for i in ids}

    async def _write(self, side: Side, pair: AssociationPair,
                     changes: list[AssociationChange]) -> list[WriteResult]:
        conn = self.ctx.connector(side)
        if not changes or not isinstance(conn, SupportsAssociations):
            return []
        a, b = (pair.hub_a, pair.hub_b) if side == "hub" else (pair.app_a, pair.app_b)
        if side == "hub":
            # Before the write: no association sync may take what the scan kept of either end
            # for what HubSpot holds once this write started.
            def drop(conn: sqlite3.Connection) -> None:
                store_scanned.drop_associations(conn, self.ctx.sync_id, pair.hub_b,
                                                [c.from_id for c in changes])
                store_scanned.drop_associations(conn, pair.b_sync_id, pair.hub_a,
                                                [c.to_id for c in changes])

            await self.ctx.store.call(drop)
        return await conn.write_associations(a, b, changes)

    async def _sync_pair(self, pair: AssociationPair, linked: list[tuple[str, str]],
                         incarnations: Mapping[str, str],
                         created_in_hub: set[str]) -> dict[str, str]:
        ctx = self.ctx
        hub_ids = [h for h, _ in linked]
        app_ids = [a for _, a in linked]
        hub_now: dict[str, set[str]] = {h: set() for h in hub_ids if h in created_in_hub}
        hub_now.update(await self._read("hub", pair,
                                        [h for h in hub_ids if h not in created_in_hub]))
        app_now = await self._read("app", pair, app_ids)
        def lookup(conn: sqlite3.Connection) -> tuple[Any, ...]:
            hub_seen = store_assoc.seen_pairs(conn, self.connection, "hub", pair.hub_a,
                                              pair.hub_b, hub_ids)
            app_seen = store_assoc.seen_pairs(conn, self.connection, "app", pair.hub_a,
                                              pair.hub_b, app_ids)
            # Writes of a sync of these records that was cut short before its commit: those
            # that landed are ours, not changes made on that side.
            intents = (store_assoc.intents_of(conn, self.connection, pair.hub_a, pair.hub_b,
                                              "hub", hub_ids)
                       + store_assoc.intents_of(conn, self.connection, pair.hub_a,
                                                pair.hub_b, "app", app_ids))
            seen_landed(intents, {"hub": hub_now, "app": app_now},
                        {"hub": hub_seen, "app": app_seen})
            # Partners now and partners seen before (a removed one must be found too).
            b_hub = sorted({b for d in (hub_now, hub_seen) for v in d.values() for b in v})
            b_app = sorted({b for d in (app_now, app_seen) for v in d.values() for b in v})
            return (store_items.find_items(conn, pair.b_sync_id, "hub", b_hub),
                    store_items.find_items(conn, pair.b_sync_id, "app", b_app),
                    hub_seen, app_seen)

        b_by_hub, b_by_app, hub_seen, app_seen = await ctx.store.read(lookup)

        def partner(item: Item | None, side: Side, adding: bool = False) -> str | None:
            if item is None or item.snapshot is None:
                return None
            if adding and item.state == "deleted" and item.deleted_side in (side, "both"):
                # Its record there is gone: the association waits until the partner is
                # linked again (restore-deleted), never written to a deleted record.
                return None
            return item.record_id(side)

        def incarnation(item: Item | None, side: Side) -> str:
            # The partner's item was read before this write, and its object sync may end
            # its link meanwhile (the app deleted the record and gave its id to another):
            # the write names the record it means, and the app refuses it for another one.
            if side != "app" or item is None or item.app_incarnation is None:
                return ""
            return item.app_incarnation

        def settled(item: Item | None) -> bool:
            # A partner in sync otherwise, or with a sync of its own to come (queued): one
            # that failed (association_failed) still needs its own sync to be decided again
            # and leave that state. Not answering a queued partner's wait brought it once
            # more after its coming sync, for nothing (issue 16: a company whose contacts
            # linked one page after another stayed queued and was read again and again).
            return item is not None and item.state in ("syncing", "queued")

        # A write to make: (item id, the change on the target side, where it came from).
        Write = tuple[str, AssociationChange, Side, str, str]
        writes: dict[Side, list[Write]] = {"hub": [], "app": []}
        pending: list[tuple[str, str, str, str, str]] = []
        # Those of them waiting for a partner not linked when looked up: (side, id, partner).
        unlinked: list[tuple[Side, str, str]] = []
        # Partners' waiting rows this sync answers: (side, partner id, this record's id).
        answered: list[tuple[Side, str, str]] = []
        # Associations not to count as seen, so they are tried again next time.
        unseen: dict[Side, set[tuple[str, str]]] = {"hub": set(), "app": set()}
        directions: list[tuple[Side, Side, bool, dict[str, Item]]] = [
            ("hub", "app", pair.to_app, b_by_hub), ("app", "hub", pair.to_hub, b_by_app)]
        for hid, aid in linked:
            item_id = hid  # failures are recorded against the record's hub id
            ids = {"hub": hid, "app": aid}
            now = {"hub": hub_now[hid], "app": app_now[aid]}
            seen = {"hub": hub_seen[hid], "app": app_seen[aid]}
            mine = {"hub": "", "app": incarnations.get(aid, "")}
            for src, dst, allowed, by_src in directions:
                if not allowed:
                    continue
                for b in now[src] - seen[src]:  # added on src
                    other_b = partner(by_src.get(b), dst, adding=True)
                    if other_b is None:
                        pending.append((pair.hub_a, src, ids[src], pair.hub_b, b))
                        unlinked.append((src, ids[src], b))
                        unseen[src].add((ids[src], b))
                    elif other_b not in now[dst]:
                        writes[dst].append((item_id, AssociationChange(
                            ids[dst], other_b, from_incarnation=mine[dst],
                            to_incarnation=incarnation(by_src.get(b), dst)),
                            src, ids[src], b))
                    elif settled(by_src.get(b)):
                        answered.append((src, b, ids[src]))
                for b in seen[src] - now[src]:  # removed on src
                    other_b = partner(by_src.get(b), dst)
                    if other_b is not None and other_b in now[dst]:
                        writes[dst].append((item_id, AssociationChange(
                            ids[dst], other_b, removed=True, from_incarnation=mine[dst],
                            to_incarnation=incarnation(by_src.get(b), dst)),
                            src, ids[src], b))
        failed: dict[str, str] = {}
        # A failed write leaves the association as it was seen before, so the next sync of
        # this record decides it again from both sides' current state; and it waits for its
        # partner, so a change of the partner (deleted, linked again) brings that sync too.
        kept: dict[Side, set[tuple[str, str]]] = {"hub": set(), "app": set()}
        wrote: dict[Side, set[str]] = {"hub": set(), "app": set()}
        done: dict[Side, list[AssociationChange]] = {"hub": [], "app": []}  # writes that landed
        sides: tuple[Side, Side] = ("hub", "app")
        if writes["hub"] or writes["app"]:
            # Committed before the writes are sent: after a crash before the commit below,
            # the next sync of these records tells a write that landed from a change there.
            recorded: list[store_assoc.Intent] = [
                (dst, change.from_id, change.to_id, change.removed, src_id, b)
                for dst in sides for _, change, _, src_id, b in writes[dst]]
            await ctx.store.call(store_assoc.add_intents, self.connection, pair.hub_a,
                                 pair.hub_b, recorded)
        for side in sides:
            todo = writes[side]
            if not todo:
                continue
            ctx.log.debug("association writes", pair=f"{pair.hub_a}-{pair.hub_b}", side=side,
                          changes=[(c.from_id, c.to_id, "remove" if c.removed else "add")
                                   for _, c, *_ in todo])
            results = await self._write(side, pair, [w[1] for w in todo])
            for (item_id, change, src, src_id, b), res in zip(todo, results, strict=True):
                wrote[side].add(change.from_id)
                if res.ok:
                    done[side].append(change)
                    # The partner's item as found by its id on the side the change came from.
                    src_items = b_by_hub if src == "hub" else b_by_app
                    if not change.removed and settled(src_items.get(b)):
                        answered.append((src, b, src_id))
                else:
                    why = res.error.message if res.error else "association write failed"
                    failed[item_id] = f"{pair.hub_a} ↔ {pair.hub_b} on the {side}: {why}"
                    if change.removed:
                        kept[src].add((src_id, b))
                    else:
                        unseen[src].add((src_id, b))
                    pending.append((pair.hub_a, src, src_id, pair.hub_b, b))
        # What each side holds now, as far as our writes explain it: a change made there
        # meanwhile is not seen yet. The app is re-read where we wrote (a foreign key holds
        # one partner: adding replaced it); HubSpot holds many on each end (fact sheet §5),
        # where what our writes explain is what it held with them applied, so it is not read
        # again (after_writes answers that whatever a re-read shows).
        for side, held in (("hub", hub_now), ("app", app_now)):
            if wrote[side]:
                again = (await self._read(side, pair, sorted(wrote[side])) if side == "app"
                         else {rid: held.get(rid, set()) for rid in wrote[side]})
                held.update(after_writes(held, again, done[side],
                                         holds_one=side == "app" and pair.app_holds_one))
        for side, held in (("hub", hub_now), ("app", app_now)):
            for rid, b in unseen[side]:
                held.get(rid, set()).discard(b)
            for rid, b in kept[side]:
                held.setdefault(rid, set()).add(b)

        def commit(conn: sqlite3.Connection) -> set[tuple[Side, str]]:
            store_assoc.replace_pairs(conn, self.connection, "hub", pair.hub_a, pair.hub_b,
                                      hub_now)
            store_assoc.replace_pairs(conn, self.connection, "app", pair.hub_a, pair.hub_b,
                                      app_now)
            # What waited for these records was looked at again just now: it waits anew
            # below if its partner is still not linked.
            store_assoc.clear_waiting(conn, self.connection, pair.hub_a, pair.hub_b,
                                      hub_ids, app_ids)
            store_assoc.clear_intents(conn, self.connection, pair.hub_a, pair.hub_b,
                                      hub_ids, app_ids)
            if pending:
                store_assoc.add_pending(conn, self.connection, pending)
            # A partner that waited for one of these records (it was not linked when the
            # partner's association sync saw the association) needs no sync of its own for
            # it any more: this sync saw the same association with both ends linked, and it
            # now holds on both sides (kept in the same pair rows, store/associations.py).
            # Without this, the partner was synced again after this commit: a read of its
            # record on both sides and of its associations, to decide nothing (issue 16).
            store_assoc.clear_answered(conn, self.connection, pair.hub_b, pair.hub_a,
                                       answered)
            state = store_initial.get_initial(conn, ctx.sync_id)
            if state is not None and state.phase != "complete":
                # What a record this initial sync just created holds in HubSpot: what this
                # sync wrote to it (nobody else knows its id before the outcome commit, which
                # comes after this one). Its sync again, when a partner links, reads nothing.
                store_scanned.keep_associations(conn, ctx.sync_id, {
                    h: {pair.hub_b: sorted(hub_now[h])} for h in created_in_hub
                    if h in hub_now})
            # A partner linked since the lookup above: its sync's `release_pending` looked
            # for waiting rows after its link commit, before this commit added them, and
            # found none. These records are synced again instead (returned).
            resync: set[tuple[Side, str]] = set()
            for side in sides:
                waiting = [(rid, b) for s, rid, b in unlinked if s == side]
                now_items = store_items.find_items(conn, pair.b_sync_id, side,
                                                   sorted({b for _, b in waiting}))
                dst: Side = "app" if side == "hub" else "hub"
                resync.update((side, rid) for rid, b in waiting
                              if partner(now_items.get(b), dst, adding=True) is not None)
            return resync

        resync = await ctx.store.call(commit)
        if resync and self.resubmit is not None:
            for key in sorted(resync):
                await self.resubmit(ctx.hub_object, key)
        n = sum(len(v) for v in writes.values())
        if n or pending or failed:
            ctx.log.info("associations synced", pair=f"{pair.hub_a}-{pair.hub_b}",
                         written=n - len(failed), waiting=len(pending), failed=len(failed))
        return failed


def seen_landed(intents: Sequence[store_assoc.Intent], now: Mapping[str, Mapping[str, set[str]]],
                seen: Mapping[str, dict[str, set[str]]]) -> None:
    """Count as seen, on both sides, the association writes of an interrupted sync that
    landed (the side written holds what was written): the association it carried from the
    other side and the one it wrote. A write that did not land changes nothing: the change
    it carried is still a change, decided again from current state."""
    for side, own, partner, removed, src_own, src_partner in intents:
        held = now[side].get(own)
        if held is None or (partner in held) == removed:
            continue
        src = "app" if side == "hub" else "hub"
        for s, rid, b in ((side, own, partner), (src, src_own, src_partner)):
            if rid in seen[s]:
                if removed:
                    seen[s][rid].discard(b)
                else:
                    seen[s][rid].add(b)


def after_writes(before: Mapping[str, set[str]], again: Mapping[str, set[str]],
                 done: Sequence[AssociationChange], holds_one: bool) -> dict[str, set[str]]:
    """What to count as seen on a side we wrote to, per record re-read there (`again`): what
    it held when the sync read it (`before`) with our writes that landed (`done`) applied,
    where the re-read agrees. A partner that is there although we did not add it was added
    meanwhile, and one that is gone although we did not remove it was removed meanwhile,
    unless we added a partner to a record that holds one (`holds_one`: a foreign key, where
    adding replaced it): those changes are not seen yet, so the next sync of the record
    carries them over."""
    added: dict[str, set[str]] = {}
    removed: dict[str, set[str]] = {}
    for c in done:
        (removed if c.removed else added).setdefault(c.from_id, set()).add(c.to_id)
    out: dict[str, set[str]] = {}
    for rid, now in again.items():
        was = before.get(rid, set())
        expected = (was | added.get(rid, set())) - removed.get(rid, set())
        seen = now & expected
        if not (holds_one and added.get(rid)):
            seen |= expected - now  # removed meanwhile: still to be carried over
        out[rid] = seen
    return out
