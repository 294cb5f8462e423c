"""What search sees of each object type, and sorted indexes of it by property value, so that a
search page costs what it returns rather than a read and sort of the whole table (issue 16).

Search sees a write only after the indexing delay (fact sheet §2): until then it keeps seeing the
record as it was (or not at all, for a new one). `view` holds, per live record search can see,
the properties it sees; each built index holds `(key, id)` for the records of the view that
have a value for its property, and is kept up to date from then on."""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from sortedcontainers import SortedList

from .objects import ObjectType
from .properties import PropertyDef
from .values import parse_instant_ms, parse_number

Key = tuple[int, Any]  # (0, typed value) or (1, text) for a value that does not parse as its type
_AFTER_ALL_IDS = float("inf")


def typed(prop: PropertyDef | None, value: str) -> Any:
    """A stored or filter value as the property's type compares it: numbers as numbers, dates
    as epoch ms, text case-insensitively; enumerations keep their case (fact sheet §2)."""
    kind = prop.type if prop else "string"
    if kind == "number":
        return parse_number(value)
    if kind in ("date", "datetime"):
        return parse_instant_ms(value)
    if kind == "enumeration":
        return value
    return value.lower()


def sort_key(prop: PropertyDef | None, value: str) -> Key:
    t = typed(prop, value)
    return (0, t) if t is not None else (1, value.lower())


@dataclass
class PropertyIndex:
    """`(key, id)` of every visible record with a value, in key then id order."""

    prop: PropertyDef | None
    entries: SortedList = field(default_factory=SortedList)
    keys: dict[int, Key] = field(default_factory=dict)

    def set(self, record_id: int, value: str | None) -> None:
        new = sort_key(self.prop, value) if value else None
        old = self.keys.get(record_id)
        if old == new:
            return
        if old is not None:
            self.entries.remove((old, record_id))
            del self.keys[record_id]
        if new is not None:
            self.entries.add((new, record_id))
            self.keys[record_id] = new

    def typed_range(self) -> tuple[int, int]:
        """Positions of the values that parse as the property's type (rank 0)."""
        return 0, self.entries.bisect_left(((1,),))

    def bounds(self, low: Key | None, low_inclusive: bool, high: Key | None,
               high_inclusive: bool) -> tuple[int, int]:
        """Positions [start, stop) of the keys between `low` and `high` among typed values."""
        start, stop = self.typed_range()
        if low is not None:
            start = max(start, self.entries.bisect_left((low,) if low_inclusive else (low, _AFTER_ALL_IDS)))
        if high is not None:
            stop = min(stop, self.entries.bisect_left((high, _AFTER_ALL_IDS) if high_inclusive else (high,)))
        return start, max(start, stop)

    def ids(self, start: int, stop: int, *, descending: bool, skip: int, take: int) -> list[int]:
        """Ids at positions [start, stop) in sort order, from the `skip`th on, at most `take`.
        Descending order keeps equal keys in ascending id order (search's tie-break)."""
        if take <= 0 or skip >= stop - start:
            return []
        if not descending:
            return [e[1] for e in self.entries.islice(start + skip, min(stop, start + skip + take))]
        out: list[int] = []
        pos = stop
        if skip:
            # Jump straight to the run of equal keys the skipped part ends in.
            key = self.entries[stop - 1 - skip][0]
            run_start = max(start, self.entries.bisect_left((key,)))
            run_stop = min(stop, self.entries.bisect_left((key, _AFTER_ALL_IDS)))
            within = skip - (stop - run_stop)
            out.extend(e[1] for e in self.entries.islice(run_start + within, run_stop))
            pos = run_start
        while len(out) < take and pos > start:
            key = self.entries[pos - 1][0]
            run_start = max(start, self.entries.bisect_left((key,)))
            out.extend(e[1] for e in self.entries.islice(run_start, pos))
            pos = run_start
        return out[:take]


@dataclass
class _Pending:
    due: float
    obj: ObjectType


class SearchIndex:
    def __init__(
        self,
        clock: Callable[[], float],
        delay: float,
        property_of: Callable[[ObjectType, str], PropertyDef | None],
        properties_of: Callable[[ObjectType, int], dict[str, str] | None],
    ) -> None:
        self.clock = clock
        self.delay = delay
        self._property_of = property_of
        self._current = properties_of  # a live record's properties now (None: archived)
        self.reset()

    def reset(self) -> None:
        self._view: dict[str, dict[int, dict[str, str]]] = {}
        self._indexes: dict[tuple[str, str], PropertyIndex] = {}
        self._pending: dict[tuple[str, int], _Pending] = {}
        self._due: list[tuple[float, str, int]] = []  # heap of (due, object name, id)
        self.versions: dict[str, int] = {}
        # (search signature, version, ordered ids) of the last search evaluated in full.
        self.cached_search: tuple[Any, int, list[int]] | None = None

    # --- writes ---

    def changed(self, obj: ObjectType, record_id: int, now: dict[str, str],
                before: dict[str, str] | None) -> None:
        """A record was created (`before` None) or changed; `now` is its live properties."""
        if self.delay <= 0:
            self._show(obj, record_id, now)
            return
        # Writes whose delay has passed are in the index now, whether or not a search looked
        # since: this write must pin the version indexed, not push an earlier one further off.
        self.settle()
        key = (obj.name, record_id)
        pending = self._pending.get(key)
        due = self.clock() + self.delay
        if pending is None:
            # Until indexed, search keeps seeing the record as it was: pin a copy of that.
            view = self._view.setdefault(obj.name, {})
            if before is not None:
                view[record_id] = before
            self._pending[key] = _Pending(due, obj)
        else:
            pending.due = due
        heapq.heappush(self._due, (due, obj.name, record_id))

    def removed(self, obj: ObjectType, record_id: int) -> None:
        """Archived: search never shows it again."""
        self._pending.pop((obj.name, record_id), None)
        self._view.get(obj.name, {}).pop(record_id, None)
        for (name, _prop), index in self._indexes.items():
            if name == obj.name:
                index.set(record_id, None)
        self._bump(obj)

    def _show(self, obj: ObjectType, record_id: int, props: dict[str, str]) -> None:
        self._view.setdefault(obj.name, {})[record_id] = props
        for (name, prop), index in self._indexes.items():
            if name == obj.name:
                index.set(record_id, props.get(prop))
        self._bump(obj)

    def _bump(self, obj: ObjectType) -> None:
        self.versions[obj.name] = self.versions.get(obj.name, 0) + 1

    def settle(self) -> None:
        """Makes writes whose indexing delay has passed visible."""
        now = self.clock()
        while self._due and self._due[0][0] <= now:
            _due, name, record_id = heapq.heappop(self._due)
            pending = self._pending.get((name, record_id))
            if pending is None or pending.due > now:
                continue  # archived since, or written again (a later heap entry settles it)
            del self._pending[(name, record_id)]
            props = self._current(pending.obj, record_id)
            if props is not None:
                self._show(pending.obj, record_id, props)

    # --- reads ---

    def view(self, obj: ObjectType) -> dict[int, dict[str, str]]:
        self.settle()
        return self._view.setdefault(obj.name, {})

    def version(self, obj: ObjectType) -> int:
        return self.versions.get(obj.name, 0)

    def index(self, obj: ObjectType, name: str) -> PropertyIndex:
        """The index of one property, built on first use and kept from then on."""
        prop = self._property_of(obj, name)
        index = self._indexes.get((obj.name, name))
        if index is None or index.prop != prop:
            index = PropertyIndex(prop)
            values = [
                (sort_key(prop, p[name]), i) for i, p in self.view(obj).items() if p.get(name)
            ]
            index.entries = SortedList(values)
            index.keys = {i: k for k, i in values}
            self._indexes[(obj.name, name)] = index
        return index

    def without(self, obj: ObjectType, index: PropertyIndex) -> Iterator[int]:
        """Visible records without a value for the index's property, in id order."""
        return iter(sorted(i for i in self.view(obj) if i not in index.keys))
