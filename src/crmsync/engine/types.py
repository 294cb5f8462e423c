"""Values the engine takes and returns: records, snapshots, actions and decisions.

All are msgspec Structs so the runtime can persist them (the snapshot) and log them as they are.
Persisted structs follow schema evolution: new fields get defaults, types never change.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from crmsync.records import Record, Side, other

__all__ = ["Canon", "Record", "Side", "other"]

# Canonical value of a mapped field: a string, or None for "empty". Comparisons happen here,
# so "10" and "10.0", or "2024-01-02" and 1704153600000, are the same value.
Canon = str | None


class Snapshot(msgspec.Struct, frozen=True):
    """The canonical mapped values each side held after the last successful sync, by field."""

    hub: dict[str, Canon]
    app: dict[str, Canon]


# --- actions ------------------------------------------------------------------------------


class Create(msgspec.Struct, frozen=True, tag="create"):
    side: Side
    values: dict[str, Any]


class Update(msgspec.Struct, frozen=True, tag="update"):
    side: Side
    id: str
    changes: dict[str, Any]


class Link(msgspec.Struct, frozen=True, tag="link"):
    hub_id: str | None
    app_id: str | None


class Noop(msgspec.Struct, frozen=True, tag="noop"):
    pass


class Fail(msgspec.Struct, frozen=True, tag="fail"):
    category: str
    detail: str


class Exclude(msgspec.Struct, frozen=True, tag="exclude"):
    reason: str
    detail: str = ""


class Delete(msgspec.Struct, frozen=True, tag="delete"):
    side: Side
    id: str


class MarkDeleted(msgspec.Struct, frozen=True, tag="mark_deleted"):
    # The side the record was deleted on ("both" when gone from both).
    side: Literal["hub", "app", "both"]


class ParkDelete(msgspec.Struct, frozen=True, tag="park_delete"):
    side: Side


Action = Create | Update | Link | Noop | Fail | Exclude | Delete | MarkDeleted | ParkDelete

Reason = Literal[
    "one_sided_change",  # changed on one side only since the snapshot
    "conflict_winner",  # changed on both sides; the conflict winner's value
    "empty_winner",  # changed on both sides; the winner's value is empty, the other kept
    "first_pairing",  # no snapshot, values differ: the winner's value
    "first_pairing_empty",  # no snapshot, empty on one side: the other side's value
    "new_record",  # the record is created on the other side
    # A field that syncs one way only (the object sync's or the mapping's direction): its
    # source's value is copied, whatever the conflict winner says.
    "first_pairing_one_way",  # no snapshot, values differ
    "conflict_one_way",  # changed on both sides
]


class FieldChange(msgspec.Struct, frozen=True):
    """One value that moves: kept in the decision history."""

    field: str
    side: Side  # the side written
    old: Canon
    new: Canon
    winner: Side  # whose value this is
    reason: Reason


class FieldWarning(msgspec.Struct, frozen=True):
    """A field that did not move although the record synced (a record owner the other side
    does not know): kept in the decision history."""

    field: str
    side: Side  # the side it was not written to
    message: str

    def __str__(self) -> str:
        return f"{self.field} not written to the {self.side}: {self.message}"


class Decision(msgspec.Struct, frozen=True):
    actions: list[Action]
    changes: list[FieldChange] = []
    # The snapshot to store once every write action succeeded (None: keep no link data).
    snapshot: Snapshot | None = None
    warnings: list[FieldWarning] = []

    @property
    def is_noop(self) -> bool:
        return all(isinstance(a, Noop) for a in self.actions)

    @property
    def summary(self) -> str:
        """The decision's main action, for logs and history."""
        kinds = [a.__struct_config__.tag for a in self.actions if not isinstance(a, Noop)]
        return "+".join(str(k) for k in kinds) or "noop"
