"""Differential test, kept only while the old code exists: engine.outcome.settle (through the
processor's store conversion) records what Processor._outcome recorded, on generated syncs."""

from __future__ import annotations

from types import SimpleNamespace

from hypothesis import given, settings
from hypothesis import strategies as st

from crmsync.config.model import ObjectSync
from crmsync.engine import compile_rules
from crmsync.engine.types import (
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
    Snapshot,
    Update,
)
from crmsync.runtime.overwritten import HubWrite
from crmsync.runtime.processor import Processor, Work
from crmsync.store.items import Item

RULES = compile_rules(ObjectSync(connection="c", hub_object="companies", app_object="accounts"))
SIDES = st.sampled_from(("hub", "app"))
NAMES = st.sampled_from(["acme", "beta", ""])
DOMAINS = st.sampled_from(["acme.com", "beta.io", ""])
IDS = {"hub": ["H1", "H2"], "app": ["A1", "A2"]}


def records(side):
    return st.builds(lambda rid, n, d, at, inc: Record(rid, {"name": n, "domain": d}, at,
                                                       incarnation=inc),
                     st.sampled_from(IDS[side]), NAMES, DOMAINS, st.integers(0, 5),
                     st.sampled_from(["", "i1"]))


changes = st.lists(st.builds(FieldChange, st.sampled_from(["name", "domain", "phone"]), SIDES,
                             st.none(), st.sampled_from([None, "x"]), SIDES,
                             st.sampled_from(["one_sided_change", "first_pairing"])),
                   max_size=2)
actions = st.one_of(
    st.builds(Create, SIDES, st.fixed_dictionaries({"name": NAMES, "domain": DOMAINS})),
    st.builds(Update, SIDES, st.just("H1"), st.fixed_dictionaries({"name": NAMES})),
    st.builds(Link, st.just("H1"), st.just("A1")),
    st.builds(Noop),
    st.builds(Fail, st.sampled_from(["duplicate", "invalid_value"]), st.sampled_from(["d", "e"])),
    st.builds(Exclude, st.sampled_from(["filter", "no_unique_id"]), st.just("x")),
    st.builds(Delete, SIDES, st.just("A1")),
    st.builds(MarkDeleted, st.sampled_from(["hub", "app", "both"])),
    st.builds(ParkDelete, SIDES),
)
decisions = st.builds(Decision, st.lists(actions, min_size=1, max_size=3), changes,
                      st.one_of(st.none(), st.just(Snapshot({"name": "a"}, {"name": "a"}))))
items = st.builds(
    lambda iid, h, a, state, cat, det, mk, snap, ds, cr: Item(
        iid, "c/companies", h, a, state, cat, det, mk, snap, "", "", ds, cr, 0, 0.0),
    st.integers(1, 3), st.sampled_from([None, "H1", "H2"]), st.sampled_from([None, "A1", "A2"]),
    st.sampled_from(["pending", "syncing", "failed", "excluded", "queued", "deleted"]),
    st.sampled_from(["", "duplicate", "d", "pending_review"]), st.sampled_from(["", "d", "e"]),
    st.sampled_from(["", "name:acme", "domain:acme.com"]), st.sampled_from([None, b"{}"]),
    st.sampled_from(["", "hub", "app", "both"]), st.sampled_from(["", "hub", "app"]))


@st.composite
def works(draw):
    w = Work(item=draw(st.one_of(st.none(), items)), hub=draw(st.one_of(st.none(), records("hub"))),
             app=draw(st.one_of(st.none(), records("app"))),
             hub_id=draw(st.sampled_from([None, "H1", "H2"])),
             app_id=draw(st.sampled_from([None, "A1", "A2"])))
    w.decision = draw(decisions)
    w.created = draw(st.dictionaries(SIDES, st.sampled_from(["N1", "N2"]), max_size=2))
    w.errors = draw(st.lists(st.tuples(st.sampled_from(["duplicate", "conflict", "not_found"]),
                                       st.just("why")), max_size=2))
    w.keys = tuple(draw(st.lists(st.sampled_from(["name:acme", "domain:acme.com", "name:beta"]),
                                 unique=True, max_size=2)))
    w.key_side = draw(st.sampled_from([None, "hub", "app"]))
    w.rekey_own = draw(st.booleans())
    w.paired_keys = tuple(draw(st.lists(st.sampled_from(["name:acme", "name:beta"]),
                                        unique=True, max_size=2)))
    if draw(st.booleans()):
        w.hub_write = HubWrite({"name": "x"}, 1, 2)
    return w


PROC = Processor(SimpleNamespace(rules=RULES))  # type: ignore[arg-type]


@settings(max_examples=3000, deadline=None)
@given(works())
def test_settle_records_what_the_processor_recorded(w) -> None:
    assert PROC._outcome(w, 0.0) == PROC._outcome_before(w, 0.0)
