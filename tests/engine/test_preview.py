"""engine.preview: what an initial sync in preview records for one record, as properties.

These rules lived in runtime/processor.py (`Processor._commit_plan`)."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given
from hypothesis import strategies as st
from msgspec import UNSET

from crmsync.engine.preview import preview, short
from crmsync.engine.types import (
    Create,
    Decision,
    Exclude,
    Fail,
    FieldChange,
    Link,
    Noop,
    Side,
    Snapshot,
    Update,
)


@dataclass(frozen=True)
class It:
    item_id: int = 7
    hub_id: str | None = "H1"
    app_id: str | None = None
    state: str = "pending"
    category: str = ""
    detail: str = ""
    snapshot: object = None
    deleted_side: str = ""
    creating: str = ""
    match_key: str = ""

    def record_id(self, side: str) -> str | None:
        return self.hub_id if side == "hub" else self.app_id


@dataclass(frozen=True)
class Sync:
    item: It | None
    decision: Decision
    hub_id: str | None = "H1"
    app_id: str | None = None
    keys: tuple[str, ...] = ()
    key_side: Side | None = None

    def record_id(self, side: Side) -> str | None:
        return self.hub_id if side == "hub" else self.app_id


actions = st.one_of(
    st.builds(Create, st.sampled_from(["hub", "app"]), st.just({"email": "ann@example.com"})),
    st.builds(Update, st.sampled_from(["hub", "app"]), st.just("H1"),
              st.just({"firstname": "Z"})),
    st.just(Link("H1", "A1")), st.just(Noop()),
    st.builds(Fail, st.sampled_from(["duplicate", "invalid_value"]), st.just("why")),
    st.builds(Exclude, st.sampled_from(["filtered"]), st.just("why")))
changes = st.builds(FieldChange, st.sampled_from(["email", "firstname"]),
                    st.sampled_from(["hub", "app"]), st.just("a"), st.just("b"),
                    st.sampled_from(["hub", "app"]),
                    st.sampled_from(["first_pairing", "first_pairing_one_way", "changed"]))
items = st.one_of(st.none(), st.builds(
    It, app_id=st.sampled_from([None, "A1"]),
    snapshot=st.sampled_from([None, Snapshot({}, {})])))


@st.composite
def syncs(draw) -> Sync:
    d = Decision(draw(st.lists(actions, max_size=3)), draw(st.lists(changes, max_size=3)),
                 None)
    return Sync(draw(items), d, app_id=draw(st.sampled_from([None, "A1", "A2"])),
                keys=draw(st.sampled_from([(), ("email:ann@example.com",)])),
                key_side=draw(st.sampled_from([None, "hub"])))


@given(syncs())
def test_the_plan_lists_each_action_and_the_first_pairing_conflicts(s: Sync) -> None:
    p = preview(s)
    listed = [a for a in s.decision.actions if isinstance(a, Link | Create | Update | Fail
                                                             | Exclude)]
    conflicts = [c for c in s.decision.changes
                 if c.reason in ("first_pairing", "first_pairing_one_way")]
    assert len(p.entries) == len(listed) + (1 if conflicts else 0)
    kinds = [e.kind for e in p.entries]
    for a, kind in zip(listed, kinds, strict=False):
        if isinstance(a, Create | Update):
            assert kind == f"{'create' if isinstance(a, Create) else 'update'}_{a.side}"
        elif isinstance(a, Fail):
            assert kind == ("duplicate" if a.category == "duplicate" else "fail")
    assert ("conflict" in kinds) == bool(conflicts)


@given(syncs())
def test_the_index_learns_the_state_the_data_alone_decides(s: Sync) -> None:
    o = preview(s).outcome
    it = s.item
    if it is not None and it.snapshot is not None:
        assert o is None  # a linked item is left as it is
        return
    assert o is not None
    first = next((a for a in s.decision.actions if isinstance(a, Fail | Exclude)), None)
    assert o.state == ("failed" if isinstance(first, Fail) else
                       "excluded" if isinstance(first, Exclude) else "pending")
    if it is None:
        assert o.item_id is None and (o.hub_id, o.app_id) == (s.hub_id, s.app_id)
        # A failed record (a duplicate) holds none of its keys.
        own = s.record_id(s.key_side) if s.key_side else None
        assert o.claim == (tuple((s.key_side, k, own) for k in s.keys)
                           if s.key_side and own and o.state != "failed" else ())
    else:
        assert o.item_id == it.item_id
        # An item never linked takes the app record it would pair with, and its keys.
        new_app = s.app_id if s.app_id is not None and s.app_id != it.app_id else None
        assert o.app_id == (new_app or UNSET)
        assert o.claim == (tuple(("app", k, new_app) for k in s.keys) if new_app else ())


@given(st.dictionaries(st.text(max_size=5), st.text(max_size=300), max_size=5))
def test_a_plan_line_is_bounded(values) -> None:
    assert len(short(values)) <= 200
