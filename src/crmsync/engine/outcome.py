"""What one sync of one record ends with: its state, ids, match-key claims and history.

The runtime syncs a record (decides, writes, reads what it wrote) and asks `settle` what to
record; the store writes it. The rules:

* a delete decided already (marked, parked, or reviewed by an operator) is not decided again:
  a later sync of the surviving record records nothing, so it neither parks the delete for
  review again nor undoes the operator's choice;
* a record never linked that is gone from its side leaves the index as deleted;
* a write that failed fails the record (`failed`, the write's category), keeping what did
  land: a record created links, and the sync's intent stays so that writes that landed are
  recognised as ours next time;
* a `fail` decision fails the record, with one history entry per new failure (not one per
  retry that fails the same way); an `exclude` excludes it;
* a parked delete waits for review, a marked (or propagated) delete is recorded as deleted;
  a pair a sync cut short had paired (no snapshot stored yet) keeps the decision's snapshot,
  so a later sync of the record left decides the deletion again;
* a create marker stays until the create is settled: sent again, or its record known;
* a decision without a snapshot leaves the record `pending`; otherwise it is `syncing`, with
  a history entry when something was written or linked;
* match keys: a duplicate holds none (the record holding the key first keeps it); a record
  never linked holds the keys it has now, not those it had; a record created holds the keys
  of its source; a deleted record lets go of its keys; a linked record whose key changed
  claims its keys anew, so a stale claim never makes a later record a duplicate.

Pure: `settle` reads the sync through the `Synced` protocol and returns a `RecordOutcome`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import msgspec
from msgspec import UNSET, UnsetType

from crmsync.engine.decide import KeyProblem, match_keys
from crmsync.engine.pairing import IndexedItem
from crmsync.engine.rules import SyncRules
from crmsync.engine.types import (
    Action,
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

# (side, key, record id): a match key a record of the item holds now.
Claim = tuple[str, str, str]
# (side, record id, its keys now): claims it no longer has are let go.
Rekey = tuple[str, str, tuple[str, ...]]


class KnownItem(IndexedItem, Protocol):
    """An item of the index as `settle` reads it."""

    @property
    def detail(self) -> str: ...

    @property
    def deleted_side(self) -> str: ...

    @property
    def creating(self) -> str: ...

    @property
    def match_key(self) -> str: ...


class Synced(Protocol):
    """One record's sync as it ended: its item (None: first seen), both sides' records as
    last read or written, the records it created, the errors of its writes, its decision, and
    the match keys of a record not linked yet."""

    @property
    def item(self) -> KnownItem | None: ...

    @property
    def hub(self) -> Record | None: ...

    @property
    def app(self) -> Record | None: ...

    @property
    def hub_id(self) -> str | None: ...

    @property
    def app_id(self) -> str | None: ...

    @property
    def created(self) -> Mapping[str, str]: ...  # side -> id of the record created there

    @property
    def errors(self) -> Sequence[tuple[str, str]]: ...  # (category, detail) of failed writes

    @property
    def decision(self) -> Decision | None: ...

    @property
    def keys(self) -> tuple[str, ...]: ...  # match keys of a record not linked yet

    @property
    def key_side(self) -> Side | None: ...  # the side of the record those keys are of

    # The item's only record was never linked and `keys` are its keys read now (or none,
    # for a duplicate): its claims follow them.
    @property
    def rekey_own(self) -> bool: ...

    # Keys of the other side's record merged into this sync (both first seen in one batch).
    @property
    def paired_keys(self) -> tuple[str, ...]: ...

    # What the runtime keeps of this sync's update of the hub record, once it landed
    # (opaque here: recorded with the outcome).
    @property
    def hub_write(self) -> object | None: ...

    def record_id(self, side: Side) -> str | None: ...

    def record(self, side: Side) -> Record | None: ...


class History(msgspec.Struct, frozen=True):
    """One entry of a record's decision history."""

    action: str
    changes: list[FieldChange] = []
    detail: str = ""
    # The item's record ids when the decision was applied.
    hub_id: str | None = None
    app_id: str | None = None


class RecordOutcome(msgspec.Struct, frozen=True, kw_only=True):
    """What to record for one item; `UNSET` leaves a column as it is. `item_id=None` makes
    the item (a record first seen by this sync)."""

    item_id: int | None = None
    state: str
    category: str = ""
    detail: str = ""
    hub_id: str | UnsetType | None = UNSET
    app_id: str | UnsetType | None = UNSET
    snapshot: Snapshot | UnsetType | None = UNSET
    hub_version: str | UnsetType = UNSET
    app_version: str | UnsetType = UNSET
    app_incarnation: str | UnsetType | None = UNSET
    deleted_side: str = ""
    # "" clears the create marker; UNSET keeps it (a create of an earlier attempt may have
    # landed and this sync did not settle it).
    creating: str | UnsetType = ""
    match_key: str | UnsetType = UNSET
    claim: tuple[Claim, ...] = ()
    rekey: tuple[Rekey, ...] = ()
    history: History | None = None
    count_attempt: bool = False
    # Keep the sync's intent (some of its writes may have landed) instead of clearing it.
    keep_intent: bool = False
    # The sync's `hub_write`, recorded as it is.
    hub_write: object = UNSET


def delete_decided(d: Decision, deleted_side: str) -> bool:
    """Does `d` only repeat the delete an item already records (`deleted_side`)?"""
    gone = next((a.side for a in d.actions if isinstance(a, MarkDeleted | ParkDelete)), None)
    return gone is not None and deleted_side in (gone, "both")


def record_keys(rules: SyncRules, side: Side, rec: Record | None) -> tuple[str, ...]:
    """The match keys `rec` holds (none for a record without a usable key)."""
    if rec is None:
        return ()
    try:
        return match_keys(rules, side, rec.properties)
    except KeyProblem:
        return ()


def settle(rules: SyncRules, s: Synced) -> RecordOutcome | None:
    """What to record for the sync `s` (see the module's rules); None: nothing to record."""
    d = s.decision
    assert d is not None
    item = s.item
    if item is not None and item.state == "deleted" and not s.errors \
            and delete_decided(d, item.deleted_side):
        return None
    if s.hub is None and s.app is None and not s.created:
        if item is None:
            return None  # never seen and already gone: nothing to record
        if item.snapshot is None and item.state == "deleted":
            return None  # already recorded as deleted: nothing new
        if item.snapshot is None:
            side = "hub" if item.hub_id else "app"
            return RecordOutcome(item_id=item.item_id, state="deleted", deleted_side=side,
                                 detail=f"deleted on {side} before it was linked")
    base: dict[str, Any] = {f"{side}_id": rid for side, rid in s.created.items()}
    hub_id = s.created.get("hub", s.hub_id)
    app_id = s.created.get("app", s.app_id)
    if item is None:
        base.setdefault("hub_id", s.hub_id)
        base.setdefault("app_id", s.app_id)
    else:
        # A pairing found in this batch gives the item the partner's id.
        if s.hub_id and item.hub_id != s.hub_id:
            base.setdefault("hub_id", s.hub_id)
        if s.app_id and item.app_id != s.app_id:
            base.setdefault("app_id", s.app_id)
    claim: list[Claim] = []
    own = s.record_id(s.key_side) if s.key_side is not None else None
    duplicate = (s.errors[0][0] == "duplicate" if s.errors
                 else any(isinstance(a, Fail) and a.category == "duplicate" for a in d.actions))
    own_rekey: tuple[Rekey, ...] = ()
    if own and s.key_side is not None and (duplicate or s.rekey_own):
        own_rekey = ((s.key_side, own, () if duplicate else s.keys),)
    if s.keys and s.key_side is not None and own and not duplicate:
        claim.extend((s.key_side, k, own) for k in s.keys)
    if s.paired_keys and s.key_side is not None:
        partner_side = other(s.key_side)
        pid = s.record_id(partner_side)
        if pid:
            claim.extend((partner_side, k, pid) for k in s.paired_keys)
    for side, rid in s.created.items():
        src = other(side)  # type: ignore[arg-type]
        claim.extend((side, k, rid) for k in record_keys(rules, src, s.record(src)))
    if s.hub is not None:
        base["hub_version"] = str(s.hub.updated_at)
    if s.app is not None:
        base["app_version"] = str(s.app.updated_at)
        base["app_incarnation"] = s.app.incarnation
    base.update(item_id=item.item_id if item is not None else None, claim=tuple(claim),
                rekey=own_rekey)
    if s.hub_write is not None:
        base["hub_write"] = s.hub_write
    # Settled: the create was sent again, or its record is known (linked, healed, or read on
    # its side after a sync cut short paired it).
    settled = (any(isinstance(a, Create) for a in d.actions) or bool(s.created)
               or (s.hub is not None and s.app is not None)
               or (item is not None and item.creating in ("hub", "app")
                   and s.record(item.creating) is not None))  # type: ignore[arg-type]
    if item is not None and item.creating and not settled:
        base["creating"] = UNSET
    if (item is None or s.rekey_own) and s.keys:
        base["match_key"] = s.keys[0]
    kinds = [a for a in d.actions if not isinstance(a, Noop)]
    # Field-level warnings (an owner the other side does not know) are the detail.
    warned = "; ".join(f"warning: {w}" for w in d.warnings)
    history = History(d.summary, list(d.changes), warned, hub_id, app_id)

    if s.errors:
        cat, detail = s.errors[0]
        if s.created and d.snapshot is not None:
            base["snapshot"] = d.snapshot
        return RecordOutcome(state="failed", category=cat, detail=detail, count_attempt=True,
                             history=History("fail", list(d.changes), detail, hub_id, app_id),
                             keep_intent=True, **base)
    first = kinds[0] if kinds else None
    if isinstance(first, Fail):
        # Recorded once per new failure, not again on every retry that fails the same way.
        again = (item is not None and item.state == "failed"
                 and (item.category, item.detail) == (first.category, first.detail))
        return RecordOutcome(state="failed", category=first.category, detail=first.detail,
                             count_attempt=True,
                             history=None if again else History("fail", [], first.detail,
                                                                hub_id, app_id), **base)
    if isinstance(first, Exclude):
        return RecordOutcome(state="excluded", category=first.reason, detail=first.detail,
                             **base)
    base["rekey"] = _rekey(rules, s, d, kinds) or own_rekey
    if any(isinstance(a, MarkDeleted | ParkDelete) for a in kinds) and item is not None \
            and item.snapshot is None and d.snapshot is not None:
        # Paired by a sync cut short (its intent): the pair is remembered as linked, so a
        # later sync of the record left decides this deletion again, rather than taking
        # that record for a new one.
        base["snapshot"] = d.snapshot
    if any(isinstance(a, ParkDelete) for a in kinds):
        side = next(a.side for a in kinds if isinstance(a, ParkDelete))
        return RecordOutcome(state="deleted", category="pending_review",
                             detail=f"deleted on {side}; waiting for `crmsync ctl deletes`",
                             deleted_side=side, history=history, **base)
    if any(isinstance(a, MarkDeleted) for a in kinds):
        gone = next(a.side for a in kinds if isinstance(a, MarkDeleted))
        propagated = any(isinstance(a, Delete) for a in kinds)
        detail = f"deleted on {gone}" + ("; deleted on the other side too" if propagated else "")
        return RecordOutcome(state="deleted", category="propagated" if propagated else "",
                             detail=detail, deleted_side="both" if propagated else gone,
                             history=history, **base)
    if d.snapshot is None:
        return RecordOutcome(state="pending", **base)
    write = any(isinstance(a, Create | Update | Link) for a in kinds)
    return RecordOutcome(state="syncing", snapshot=d.snapshot,
                         history=history if write or d.changes or d.warnings else None,
                         **base)


def _rekey(rules: SyncRules, s: Synced, d: Decision,
           kinds: Sequence[Action]) -> tuple[Rekey, ...]:
    """Claims to update: a deleted record releases its keys; a linked record whose match
    key changed (a key field moved, or its key is not the one recorded) claims its keys
    anew, so a stale claim never makes a later record a duplicate."""
    out: list[Rekey] = []
    gone = next((a.side for a in kinds if isinstance(a, MarkDeleted)), None)
    if gone is not None:
        sides: tuple[Side, ...] = ("hub", "app") if gone == "both" else (gone,)
        for side in sides:
            rid = s.record_id(side)
            if rid:
                out.append((side, rid, ()))
        return tuple(out)
    item = s.item
    if item is None or s.hub is None or s.app is None:
        return ()
    key_fields = set(rules.hub_key_props)
    moved = any(c.field in key_fields for c in d.changes)
    both: tuple[Side, Side] = ("hub", "app")
    for side in both:
        # The keys the record holds once this sync's update of it is written.
        rec = s.record(side)
        written = {k: v for a in kinds if isinstance(a, Update) and a.side == side
                   for k, v in a.changes.items()}
        if rec is not None and written:
            rec = msgspec.structs.replace(rec, properties={**rec.properties, **written})
        keys = record_keys(rules, side, rec)
        if moved or (keys[:1] != (item.match_key,) and (keys or item.match_key)):
            out.append((side, s.record_id(side) or "", keys))
    return tuple(o for o in out if o[1])
