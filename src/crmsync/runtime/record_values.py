"""The mapped values of indexed records, read now from the side that holds them: what an
operator needs to recognise a record in a report (name, email), beyond its ids.

The index keeps ids, match keys and states, not values; a failed or excluded record has no
snapshot at all. So the values come from one side's current record: the app's where the item
has an app record (a failed or excluded record is usually an app record, and the app is where
it gets fixed), else the hub's. One batch read per side per call.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

from crmsync.engine.rules import FieldRule
from crmsync.records import Side
from crmsync.runtime.context import ObjectSyncContext
from crmsync.store.items import Item


class RecordValues(msgspec.Struct, frozen=True, kw_only=True):
    side: Side  # the side the values were read from
    values: dict[str, str | None]  # by mapped field (the hub property name, as in history)


def _side_of(it: Item) -> Side | None:
    if it.app_id is not None and it.deleted_side not in ("app", "both"):
        return "app"
    if it.hub_id is not None and it.deleted_side not in ("hub", "both"):
        return "hub"
    return None


def _value(rule: FieldRule, side: Side, props: Mapping[str, Any]) -> str | None:
    """The field's canonical value; the raw one where it does not convert (an invalid email
    is exactly what a report of excluded records must show)."""
    try:
        return rule.read_app(props) if side == "app" else rule.read_hub(props)
    except ValueError:  # InvalidValue, StageProblem
        names = rule.app_fields if side == "app" else rule.hub_props
        raw = props.get(names[0]) if names else None
        return None if raw is None else str(raw)


def field_names(ctx: ObjectSyncContext) -> list[str]:
    """The mapped fields, in mapping order: the columns of a report."""
    return [r.name for r in ctx.rules.fields]


async def read_values(ctx: ObjectSyncContext, items: Sequence[Item]) -> dict[int, RecordValues]:
    """Each item's mapped values by item id. Items whose record is gone from its side (or
    was deleted) have no entry. Raises ConnectorError as the connector's `read` does."""
    wanted: dict[Side, dict[str, int]] = {"app": {}, "hub": {}}
    for it in items:
        side = _side_of(it)
        rid = it.record_id(side) if side is not None else None
        if side is not None and rid is not None:
            wanted[side][rid] = it.item_id
    out: dict[int, RecordValues] = {}
    for side, ids in wanted.items():
        if not ids:
            continue
        found = await ctx.connector(side).read(ctx.object_name(side), list(ids),
                                               ctx.properties(side))
        for rid, item_id in ids.items():
            rec = found.get(rid)
            if rec is None or rec.archived:
                continue
            out[item_id] = RecordValues(side=side, values={
                r.name: _value(r, side, rec.properties) for r in ctx.rules.fields})
    return out
