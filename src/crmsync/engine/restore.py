"""Operator repairs of deleted records, as rules: what `restore-deleted` may restore and with
which values, and what a restore or the review of a parked delete records.

Pure: the runtime reads the items and the surviving records, writes what these functions
choose (runtime/restore.py says how a restore runs).
"""

from __future__ import annotations

from typing import Any, Protocol

import msgspec
from msgspec import UNSET

from crmsync.engine.outcome import History, KnownItem, RecordOutcome, record_keys
from crmsync.engine.rules import SyncRules
from crmsync.engine.stages import StageProblem
from crmsync.engine.transforms import InvalidValue
from crmsync.engine.types import FieldChange, Record, Side, Snapshot, other


class DeletedItem(KnownItem, Protocol):
    """An item of the index as restore reads it."""

    # The incarnation of the app record when it was last synced (None: unknown).
    @property
    def app_incarnation(self) -> str | None: ...


class RestorePlan(msgspec.Struct, frozen=True, kw_only=True):
    """Whether an item can be restored on `to`, and with what."""

    restorable: bool
    reason: str = ""  # why not, when not restorable
    values: dict[str, Any] = {}  # what would be written on `to`
    changes: list[FieldChange] = []


def can_write(rules: SyncRules, side: str) -> bool:
    return rules.can_write_hub if side == "hub" else rules.can_write_app


def restore_values(rules: SyncRules, to: Side, source: Record | None,
                   snapshot: Snapshot | None) -> tuple[dict[str, Any], list[FieldChange]]:
    """The properties to create on `to`: per mapped field, the surviving record's value where
    the field may flow to `to`, else (or when it is empty) the value the deleted record held
    according to the snapshot."""
    src = other(to)
    held = (snapshot.hub if to == "hub" else snapshot.app) if snapshot is not None else {}
    values: dict[str, Any] = {}
    changes: list[FieldChange] = []
    for r in rules.fields:
        flows = r.to_hub if to == "hub" else r.to_app
        value = None
        winner: Side = to
        if flows and source is not None:
            try:
                value = (r.read_hub if src == "hub" else r.read_app)(source.properties)
                winner = src
            except (InvalidValue, StageProblem):
                value = None
        if value is None:
            value = held.get(r.name)
            winner = to
        if value is None:
            continue
        try:
            values.update(r.write_hub(value) if to == "hub" else r.write_app(value))
        except (InvalidValue, StageProblem):
            continue
        changes.append(FieldChange(r.name, to, None, value, winner, "new_record"))
    return values, changes


def plan_restore(rules: SyncRules, item: DeletedItem, to: Side, survivor: Record | None,
                 snapshot: Snapshot | None) -> RestorePlan:
    """Can `item` be restored on `to` from `survivor` (its record of the other side as read
    now; None: gone or never there), and with which values. Only a record deleted on `to`
    alone, where the direction writes, from a surviving record that is still the one linked
    (an app that reuses ids may have given its id to another record), with some mapped
    value to restore."""
    src = other(to)
    sid = item.record_id(src)

    def no(reason: str) -> RestorePlan:
        return RestorePlan(restorable=False, reason=reason)

    if item.state != "deleted":
        return no(f"not deleted (state {item.state})")
    if item.deleted_side == "both":
        return no("deleted on both sides: no record left to restore from")
    if item.deleted_side != to:
        return no(f"deleted on {item.deleted_side or 'an unknown side'}, not on {to}")
    if not can_write(rules, to):
        return no(f"the object sync's direction ({rules.direction}) never writes to {to}")
    if sid is None and item.snapshot is not None:
        # A linked app record deleted too, its id since given to another record.
        return no(f"the {src} record is gone too")
    if sid is None:
        return no(f"it never had a {src} record to restore from")
    if survivor is None:
        return no(f"the {src} record {sid} is gone too")
    if src == "app" and item.app_incarnation not in (None, survivor.incarnation):
        # The app gave the id of a deleted record to a new one (connectors/base.py).
        return no(f"the {src} record {sid} was deleted; its id names another record")
    values, changes = restore_values(rules, to, survivor, snapshot)
    if not values:
        return no("no mapped value to restore")
    return RestorePlan(restorable=True, values=values, changes=changes)


def restored(rules: SyncRules, item: KnownItem, to: Side, rec: Record, values: dict[str, Any],
             existing: bool, changes: list[FieldChange]) -> RecordOutcome:
    """A restore made `rec` on `to` (or, `existing`, found the record an earlier attempt made
    or the one a create was refused for): it takes the deleted record's place in the link,
    the link and its snapshot stay, so the pair goes on as a linked pair (filters, which only
    decide a record's first inclusion, do not apply again). The deleted record's keys are let
    go, the new record claims its own (those of the values sent when the record as read holds
none). `pending` until the pair's ordinary sync."""
    keys = (record_keys(rules, to, rec)
            or record_keys(rules, to, Record(rec.id, dict(values))))
    how = "linked to the existing" if existing else "re-created as"
    detail = f"restored on {to}: {how} {to} record {rec.id}"
    old_id = item.record_id(to)
    hub_id = rec.id if to == "hub" else item.hub_id
    app_id = rec.id if to == "app" else item.app_id
    return RecordOutcome(
        item_id=item.item_id, state="pending", detail=detail,
        hub_id=rec.id if to == "hub" else UNSET, app_id=rec.id if to == "app" else UNSET,
        claim=tuple((to, k, rec.id) for k in keys),
        rekey=((to, old_id, ()),) if old_id else (),
        history=History("restore", changes, detail, hub_id, app_id))


def restore_failed(item: KnownItem, to: Side, category: str, message: str) -> RecordOutcome:
    """A restore whose create failed: the item stays as it was, the failure is in its
    history."""
    return RecordOutcome(
        item_id=item.item_id, state=item.state, category=item.category, detail=item.detail,
        deleted_side=item.deleted_side,
        history=History("fail", [], f"restore on {to} failed: {category}: {message}",
                        item.hub_id, item.app_id))


def delete_kept(item: KnownItem, deleted_side: str, kept_on: Side) -> RecordOutcome:
    """A parked delete ignored by an operator: the other side's record is left alone; the
    item stays deleted on its side, restorable."""
    detail = f"deleted on {deleted_side}; kept on {kept_on} after review"
    return RecordOutcome(item_id=item.item_id, state="deleted", detail=detail,
                         deleted_side=deleted_side,
                         history=History("ignore_delete", [], detail, item.hub_id, item.app_id))


def delete_approved(item: KnownItem, deleted_side: str, gone_side: Side) -> RecordOutcome:
    """A parked delete approved by an operator and carried out on the other side."""
    detail = f"deleted on {deleted_side}; deleted on {gone_side} too after review"
    return RecordOutcome(item_id=item.item_id, state="deleted", category="propagated",
                         detail=detail, deleted_side="both",
                         history=History("delete", [], detail, item.hub_id, item.app_id))
