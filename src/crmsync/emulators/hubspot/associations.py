"""Associations between records (v4), with HubSpot's defined type ids (fact sheet §5)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .objects import ObjectType


@dataclass(frozen=True)
class AssociationType:
    type_id: int
    from_type: str  # singular object names
    to_type: str
    label: str | None  # None: the unlabelled type of the pair
    reverse_id: int

    @property
    def v3_name(self) -> str:
        """The `type` of an association on the v3 object read (`associations=` query)."""
        base = f"{self.from_type}_to_{self.to_type}"
        return base if self.label is not None or self.type_id in _ONLY_TYPE else f"{base}_unlabeled"


def _pair(
    from_type: str, to_type: str, type_id: int, reverse_id: int, label: str | None = None
) -> list[AssociationType]:
    return [
        AssociationType(type_id, from_type, to_type, label, reverse_id),
        AssociationType(reverse_id, to_type, from_type, label, type_id),
    ]


# HubSpot-defined type ids (fact sheet §5 table, from DOC-ASSOC).
_TYPES: list[AssociationType] = [
    *_pair("contact", "company", 279, 280),
    *_pair("contact", "company", 1, 2, "Primary"),
    *_pair("deal", "contact", 3, 4),
    *_pair("deal", "company", 341, 342),
    *_pair("deal", "company", 5, 6, "Primary"),
    *_pair("invoice", "contact", 177, 178),
    *_pair("invoice", "company", 179, 180),
    *_pair("invoice", "deal", 175, 176),
    *_pair("invoice", "line_item", 409, 410),
    *_pair("deal", "line_item", 19, 20),
]
TYPES_BY_ID: dict[int, AssociationType] = {t.type_id: t for t in _TYPES}
# Pairs with a single (unlabelled) type are named without the `_unlabeled` suffix on v3 reads.
_ONLY_TYPE = frozenset(
    t.type_id
    for t in _TYPES
    if sum(1 for u in _TYPES if (u.from_type, u.to_type) == (t.from_type, t.to_type)) == 1
)


def unlabelled(from_type: ObjectType, to_type: ObjectType) -> AssociationType | None:
    """The default (unlabelled) type between two object types; None if they cannot associate."""
    return next(
        (
            t
            for t in _TYPES
            if t.from_type == from_type.singular
            and t.to_type == to_type.singular
            and t.label is None
        ),
        None,
    )


def spec_json(t: AssociationType) -> dict[str, Any]:
    return {"category": "HUBSPOT_DEFINED", "typeId": t.type_id, "label": t.label}


Key = tuple[str, int, str]  # (from singular, from id, to singular)


@dataclass
class Associations:
    """Both directions of every association, as type-id sets per record pair."""

    _edges: dict[Key, dict[int, set[int]]] = field(default_factory=dict)

    def clear(self) -> None:
        self._edges.clear()

    def types_between(
        self, from_type: ObjectType, from_id: int, to_type: ObjectType, to_id: int
    ) -> set[int]:
        return set(
            self._edges.get((from_type.singular, from_id, to_type.singular), {}).get(to_id, ())
        )

    def targets(
        self, from_type: ObjectType, from_id: int, to_type: ObjectType
    ) -> dict[int, set[int]]:
        """to id → type ids, ordered by to id."""
        edges = self._edges.get((from_type.singular, from_id, to_type.singular), {})
        return {to_id: set(edges[to_id]) for to_id in sorted(edges)}

    def add(
        self,
        from_type: ObjectType,
        from_id: int,
        to_type: ObjectType,
        to_id: int,
        type_ids: set[int],
    ) -> bool:
        """Adds the types (and their reverses, and the pair's unlabelled type, which HubSpot
        always keeps alongside a label). True if anything changed."""
        default = unlabelled(from_type, to_type)
        wanted = set(type_ids) | ({default.type_id} if default else set())
        forward = self._edges.setdefault(
            (from_type.singular, from_id, to_type.singular), {}
        ).setdefault(to_id, set())
        backward = self._edges.setdefault(
            (to_type.singular, to_id, from_type.singular), {}
        ).setdefault(from_id, set())
        before = len(forward)
        forward |= wanted
        backward |= {TYPES_BY_ID[t].reverse_id for t in wanted}
        return len(forward) != before

    def remove(
        self,
        from_type: ObjectType,
        from_id: int,
        to_type: ObjectType,
        to_id: int,
        type_ids: set[int] | None = None,
    ) -> bool:
        """Removes the given types (None: all of them) in both directions. True if anything changed."""
        forward = self._edges.get((from_type.singular, from_id, to_type.singular), {})
        backward = self._edges.get((to_type.singular, to_id, from_type.singular), {})
        current = forward.get(to_id)
        if not current:
            return False
        gone = set(current) if type_ids is None else current & type_ids
        if not gone:
            return False
        current -= gone
        back = backward.get(from_id, set())
        back -= {TYPES_BY_ID[t].reverse_id for t in gone}
        # Only the unlabelled type left after removing labels keeps the pair associated; nothing
        # left removes it.
        if not current:
            forward.pop(to_id, None)
            backward.pop(from_id, None)
        return True

    def drop_record(self, obj: ObjectType, record_id: int) -> None:
        """Forgets every association of an archived record."""
        for key in [k for k in self._edges if k[0] == obj.singular and k[1] == record_id]:
            for to_id in list(self._edges[key]):
                back = self._edges.get((key[2], to_id, obj.singular))
                if back is not None:
                    back.pop(record_id, None)
            del self._edges[key]

    def dump(self) -> list[dict[str, Any]]:
        return [
            {
                "fromType": f,
                "fromId": str(fid),
                "toType": t,
                "toId": str(tid),
                "typeIds": sorted(types),
            }
            for (f, fid, t), targets in sorted(self._edges.items())
            for tid, types in sorted(targets.items())
            if types
        ]
