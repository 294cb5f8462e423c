"""What an initial sync in preview records for one record: nothing is written to either side;
the plan lists what would happen, and the index learns the record with the state that
depends on its data alone.

* plan entries: one per link (`match`), create, update, failure (`duplicate` for a
  duplicate) and exclusion the decision holds, and one `conflict` entry listing the fields
  where a first pairing had to choose a winner;
* the record is indexed: a record first seen gets an item `pending`, or `failed` / `excluded`
  when the decision says so; it claims its match keys unless it failed (a duplicate holds
  none: the record holding the key first keeps it); an item never linked takes the app
  record it would pair with, which claims its keys; a linked item records nothing.

Pure: the runtime records what `preview` returns (runtime/processor.py).
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol

import msgspec
from msgspec import UNSET

from crmsync.engine.outcome import KnownItem, RecordOutcome
from crmsync.engine.types import (
    Create,
    Decision,
    Exclude,
    Fail,
    FieldChange,
    Link,
    Side,
    Update,
)


class Previewed(Protocol):
    """One record's sync as decided in preview: its item (None: first seen), its decision,
    and the match keys of a record not linked yet."""

    @property
    def item(self) -> KnownItem | None: ...

    @property
    def decision(self) -> Decision | None: ...

    @property
    def keys(self) -> tuple[str, ...]: ...

    @property
    def key_side(self) -> Side | None: ...

    def record_id(self, side: Side) -> str | None: ...


class PlanEntry(NamedTuple):
    """One line of the preview plan."""

    kind: str  # match, create_<side>, update_<side>, duplicate, fail, exclude, conflict
    hub_id: str | None
    app_id: str | None
    detail: str


class Preview(msgspec.Struct, frozen=True):
    entries: list[PlanEntry]
    outcome: RecordOutcome | None  # None: nothing to index


def preview(s: Previewed) -> Preview:
    """The plan entries and the index entry of `s` (see the module's rules)."""
    d = s.decision
    assert d is not None
    hub_id, app_id = s.record_id("hub"), s.record_id("app")
    entries: list[PlanEntry] = []
    for a in d.actions:
        if isinstance(a, Link):
            entries.append(PlanEntry("match", a.hub_id, a.app_id, ""))
        elif isinstance(a, Create):
            entries.append(PlanEntry(f"create_{a.side}", hub_id, app_id, short(a.values)))
        elif isinstance(a, Update):
            entries.append(PlanEntry(f"update_{a.side}", hub_id, app_id, short(a.changes)))
        elif isinstance(a, Fail):
            entries.append(PlanEntry("duplicate" if a.category == "duplicate" else "fail",
                                     hub_id, app_id, f"{a.category}: {a.detail}"))
        elif isinstance(a, Exclude):
            entries.append(PlanEntry("exclude", hub_id, app_id, f"{a.reason}: {a.detail}"))
    conflicts = [c for c in d.changes if c.reason in ("first_pairing", "first_pairing_one_way")]
    if conflicts:
        entries.append(PlanEntry("conflict", hub_id, app_id, _conflicts(conflicts)))
    first = next((a for a in d.actions if isinstance(a, Fail | Exclude)), None)
    state, category, detail = "pending", "", ""
    if isinstance(first, Fail):
        state, category, detail = "failed", first.category, first.detail
    elif isinstance(first, Exclude):
        state, category, detail = "excluded", first.reason, first.detail
    it = s.item
    outcome: RecordOutcome | None = None
    if it is None:
        side = s.key_side
        own = s.record_id(side) if side else None
        outcome = RecordOutcome(
            state=state, category=category, detail=detail, hub_id=hub_id, app_id=app_id,
            match_key=s.keys[0] if s.keys else "",
            claim=tuple((side, k, own) for k in s.keys)
            if side and own and state != "failed" else ())
    elif it.snapshot is None:
        new_app = app_id if app_id is not None and it.app_id != app_id else None
        outcome = RecordOutcome(
            item_id=it.item_id, state=state, category=category, detail=detail,
            app_id=new_app if new_app else UNSET,
            claim=tuple(("app", k, new_app) for k in s.keys) if new_app else ())
    return Preview(entries, outcome)


def short(values: dict[str, Any], limit: int = 200) -> str:
    """`values` as one line of at most `limit` characters."""
    text = ", ".join(f"{k}={v!r}" for k, v in values.items())
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _conflicts(changes: list[FieldChange]) -> str:
    return "; ".join(f"{c.field}: {c.old!r} -> {c.new!r} ({c.winner} wins)" for c in changes)
