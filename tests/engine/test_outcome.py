"""engine.outcome.settle: what one record's sync records, as properties.

These rules lived in runtime/processor.py (`Processor._outcome`, `_rekey`, `_delete_decided`);
the differential test that checked `settle` against them on generated syncs is in the commit
that added `engine/outcome.py`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from hypothesis import assume, given, settings
from hypothesis import strategies as st
from msgspec import UNSET

from crmsync.config.model import ObjectSync
from crmsync.engine import compile_rules, decide
from crmsync.engine.outcome import RecordOutcome, delete_decided, settle
from crmsync.engine.types import (
    Create,
    Decision,
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
)

RULES = compile_rules(ObjectSync(connection="c", hub_object="contacts", app_object="customers"))


@dataclass(frozen=True)
class It:
    item_id: int = 1
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


@dataclass
class Sync:
    item: It | None
    hub: Record | None = None
    app: Record | None = None
    hub_id: str | None = None
    app_id: str | None = None
    decision: Decision | None = None
    created: dict[str, str] = field(default_factory=dict)
    errors: list[tuple[str, str]] = field(default_factory=list)
    keys: tuple[str, ...] = ()
    key_side: Side | None = None
    rekey_own: bool = False
    paired_keys: tuple[str, ...] = ()
    hub_write: object | None = None

    def __post_init__(self) -> None:
        if self.item is not None:
            self.hub_id = self.hub_id or self.item.hub_id
            self.app_id = self.app_id or self.item.app_id
        if self.hub is not None:
            self.hub_id = self.hub.id
        if self.app is not None:
            self.app_id = self.app.id

    def record_id(self, side: Side) -> str | None:
        return self.hub_id if side == "hub" else self.app_id

    def record(self, side: Side) -> Record | None:
        return self.hub if side == "hub" else self.app


EMAILS = st.sampled_from(["ann@example.com", "bob@example.com", "Ann@Example.com"])
NAMES = st.sampled_from(["", "Ann", "Bob", "Cy"])


@st.composite
def hub_records(draw, rid: str = "H1") -> Record:
    return Record(rid, {"email": draw(EMAILS), "firstname": draw(NAMES),
                        "lastname": draw(NAMES), "phone": draw(st.sampled_from(["", "1"]))},
                  draw(st.integers(1, 9)))


@st.composite
def app_records(draw, rid: str = "A1") -> Record:
    return Record(rid, {"email": draw(EMAILS), "first_name": draw(NAMES),
                        "last_name": draw(NAMES), "phone": draw(st.sampled_from(["", "1"]))},
                  draw(st.integers(1, 9)))


SNAP = Snapshot({"email": "ann@example.com"}, {"email": "ann@example.com"})
any_action = st.one_of(
    st.builds(Create, st.sampled_from(["hub", "app"]), st.just({"email": "ann@example.com"})),
    st.builds(Update, st.sampled_from(["hub", "app"]), st.just("H1"),
              st.just({"firstname": "Z"})),
    st.just(Link("H1", "A1")), st.just(Noop()), st.just(Fail("invalid_value", "bad")),
    st.builds(MarkDeleted, st.sampled_from(["hub", "app", "both"])),
    st.builds(ParkDelete, st.sampled_from(["hub", "app"])))


@settings(max_examples=500, deadline=None)
@given(st.sampled_from(["hub", "app", "both"]), st.lists(any_action, min_size=1, max_size=3),
       st.one_of(st.none(), hub_records()), st.one_of(st.none(), app_records()),
       st.sampled_from([None, SNAP]))
def test_a_delete_already_decided_is_not_decided_again(deleted_side, actions, hub, app,
                                                       snap) -> None:
    d = Decision(actions, [], snap)
    item = It(state="deleted", deleted_side=deleted_side, app_id="A1", snapshot=b"{}")
    got = settle(RULES, Sync(item, hub, app, decision=d))
    if delete_decided(d, deleted_side):
        assert got is None
    # An operator's choice (kept on one side) is never turned into a new review.
    if got is not None and got.category == "pending_review":
        assert not delete_decided(d, deleted_side)


@settings(max_examples=500, deadline=None)
@given(hub_records(), st.one_of(st.none(), app_records()), st.booleans(),
       st.sampled_from(["pending", "failed", "queued"]),
       st.sampled_from(["decided", "refused"]), st.sampled_from(["hub", "app"]))
def test_a_failed_duplicate_never_becomes_linked(hub, app, new, state, how, side) -> None:
    """Whether the engine decided it (a later record with a key another holds) or the other
    side refused its create (the record exists there, linked to another): the record fails as
    a duplicate, holds no link, no snapshot and none of its keys."""
    own = hub if side == "hub" else app
    assume(own is not None)
    assert own is not None
    keys = (f"email:{own.properties['email'].lower()}",)
    item = None if new else It(hub_id=hub.id if side == "hub" else None,
                               app_id=own.id if side == "app" else None, state=state)
    if how == "decided":
        d = decide(RULES, hub if side == "hub" else None, app if side == "app" else None, None,
                   "hub record H9")
        errors: list[tuple[str, str]] = []
    else:
        d = decide(RULES, hub if side == "hub" else None, app if side == "app" else None, None)
        errors = [("duplicate", "same match key as app record A9, already linked")]
    s = Sync(item, hub if side == "hub" else None, app if side == "app" else None,
             decision=d, errors=errors, keys=keys, key_side=side, rekey_own=not new)
    got = settle(RULES, s)
    assert got is not None
    assert (got.state, got.category) == ("failed", "duplicate")
    assert got.snapshot is UNSET
    assert got.hub_id in (UNSET, None, hub.id if side == "hub" else None)
    assert not [c for c in got.claim if c[2] == own.id]
    if item is not None:
        assert (side, own.id, ()) in got.rekey


def _apply(hub: Record, app: Record | None, d: Decision) -> tuple[Record, Record]:
    """The writes of `d`, as the sides hold them afterwards."""
    for a in d.actions:
        if isinstance(a, Create):
            assert a.side == "app"
            app = Record("A7", dict(a.values), 50)
        elif isinstance(a, Update):
            if a.side == "hub":
                hub = Record(hub.id, {**hub.properties, **a.changes}, 60)
            else:
                assert app is not None
                app = Record(app.id, {**app.properties, **a.changes}, 60)
    assert app is not None
    return hub, app


def _store(item: It | None, o: RecordOutcome, created: str | None) -> It:
    """The item as the store holds it after `o`."""
    base = item or It(hub_id=None)
    return replace(base, state=o.state, category=o.category, detail=o.detail,
                   hub_id=base.hub_id if o.hub_id is UNSET else o.hub_id,
                   app_id=created or (base.app_id if o.app_id is UNSET else o.app_id),
                   snapshot=base.snapshot if o.snapshot is UNSET else o.snapshot,
                   match_key=base.match_key if o.match_key is UNSET else o.match_key)


@settings(max_examples=500, deadline=None)
@given(hub_records(), st.one_of(st.none(), app_records()))
def test_deciding_a_pair_twice_records_the_same_state_and_nothing_new(hub, app) -> None:
    """A first pairing (or a create) recorded, then the same pair decided again on what the
    sides hold afterwards: the same state, no history entry, no key claimed or let go."""
    item = It(hub_id="H1", app_id=app.id if app is not None else None,
              match_key=f"email:{hub.properties['email'].lower()}")
    d1 = decide(RULES, hub, app, None)
    assume(not any(isinstance(a, Fail) for a in d1.actions))
    created = {"app": "A7"} if any(isinstance(a, Create) for a in d1.actions) else {}
    hub2, app2 = _apply(hub, app, d1)
    first = settle(RULES, Sync(item, hub2 if not created else hub,
                               app2 if created else app, decision=d1, created=created))
    assert first is not None and first.state == "syncing"
    stored = _store(item, first, created.get("app"))
    d2 = decide(RULES, hub2, app2, stored.snapshot)  # type: ignore[arg-type]
    assert d2.is_noop
    again = settle(RULES, Sync(stored, hub2, app2, decision=d2))
    assert again is not None
    assert again.state == first.state == "syncing"
    assert again.history is None
    assert again.claim == () and again.rekey == ()
    assert again.snapshot == first.snapshot


@settings(max_examples=300, deadline=None)
@given(hub_records(), app_records(), st.sampled_from(["conflict", "not_found", "invalid_value"]),
       st.booleans())
def test_a_failed_write_keeps_the_intent_and_what_landed(hub, app, category, made) -> None:
    d = decide(RULES, hub, None, None)
    created = {"app": "A7"} if made else {}
    got = settle(RULES, Sync(It(), hub, app if made else None, decision=d, created=created,
                             errors=[(category, "why")]))
    assert got is not None
    assert (got.state, got.category, got.count_attempt, got.keep_intent) == \
        ("failed", category, True, True)
    assert got.history is not None and got.history.action == "fail"
    if made:
        # The record created stays linked, with the snapshot of the decision.
        assert got.app_id == "A7" and got.snapshot == d.snapshot
    else:
        assert got.snapshot is UNSET


def test_a_repeated_failure_is_recorded_once_in_the_history() -> None:
    d = Decision([Fail("invalid_value", "bad phone")])
    first = settle(RULES, Sync(It(), decision=d, hub=Record("H1", {"email": "a@b.co"})))
    again = settle(RULES, Sync(It(state="failed", category="invalid_value", detail="bad phone"),
                               decision=d, hub=Record("H1", {"email": "a@b.co"})))
    assert first is not None and first.history is not None
    assert again is not None and again.history is None and again.count_attempt


def test_a_record_never_linked_and_gone_leaves_the_index_as_deleted() -> None:
    d = Decision([Noop()])
    got = settle(RULES, Sync(It(hub_id="H1"), decision=d))
    assert got == RecordOutcome(item_id=1, state="deleted", deleted_side="hub",
                                detail="deleted on hub before it was linked")
    assert settle(RULES, Sync(It(hub_id="H1", state="deleted"), decision=d)) is None
    assert settle(RULES, Sync(None, decision=d)) is None


def test_a_linked_record_whose_key_moved_claims_its_keys_anew() -> None:
    hub = Record("H1", {"email": "new@example.com"})
    app = Record("A1", {"email": "old@example.com"})
    snap = Snapshot({"email": "old@example.com"}, {"email": "old@example.com"})
    d = decide(RULES, hub, app, snap)
    got = settle(RULES, Sync(It(app_id="A1", state="syncing", snapshot=b"{}",
                                match_key="email:old@example.com"), hub, app, decision=d))
    assert got is not None
    assert ("hub", "H1", ("email:new@example.com",)) in got.rekey
    assert ("app", "A1", ("email:new@example.com",)) in got.rekey
    assert [c.field for c in d.changes] == ["email"]
    assert FieldChange("email", "app", "old@example.com", "new@example.com", "hub",
                       "one_sided_change") in d.changes


def test_a_pair_a_cut_short_create_made_is_remembered_when_its_source_is_deleted() -> None:
    # A create to the hub was cut short (the item holds A1, `creating` hub, no snapshot), A1
    # was deleted, and heal found the record the create made (H9): the engine decides the
    # deletion of a linked pair, with the snapshot the interrupted sync's intent gives.
    item = It(hub_id=None, app_id="A1", creating="hub")
    hub = Record("H9", {"email": "ann@example.com"})
    d = Decision([MarkDeleted("app")], snapshot=SNAP)
    got = settle(RULES, Sync(item, hub, None, decision=d))
    assert got is not None and got.state == "deleted" and got.deleted_side == "app"
    # Remembered as linked: a later sync of H9 decides this deletion again, never takes
    # H9 for a new record to copy back to the app.
    assert got.snapshot == SNAP
    assert got.hub_id == "H9"
    # The create is settled (the record it made is known): its marker is cleared, so a later
    # sync does not look for that record again.
    assert got.creating == ""
