"""engine.restore and the create rules of engine.matching, as properties.

These rules lived in runtime/restore.py (`plan_restore`, `restore_values`, `_find_existing`,
the outcomes of `_restore_held` and `resolve_parked`) and runtime/processor.py (`_heal`,
`_find_partner`, the 409 handling of `_write`); the differential test that checked the
engine and the shared write plan against the old runtime/restore.py on generated worlds is in
the commit that added `engine/restore.py`.
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st
from msgspec import UNSET

from crmsync.config.model import FieldMapping, ObjectSync
from crmsync.engine import compile_rules
from crmsync.engine.matching import (
    Holder,
    create_keys,
    existing_unreadable,
    may_take_found,
    pairable,
    refuse_existing,
    search_key,
)
from crmsync.engine.outcome import record_keys
from crmsync.engine.restore import (
    delete_approved,
    delete_kept,
    plan_restore,
    restore_failed,
    restored,
)
from crmsync.engine.types import Record, Side, Snapshot

DIRECTIONS = ["both", "to_hub", "to_app"]
RULES = [compile_rules(ObjectSync(connection="c", hub_object="contacts",
                                  app_object="customers", direction=d)) for d in DIRECTIONS]
# A field that flows one way only: restored on the hub from the snapshot, not the app record.
RULES.append(compile_rules(ObjectSync(
    connection="c", hub_object="contacts", app_object="customers", use_default_mappings=False,
    mappings=[FieldMapping(hub="email", app="email"),
              FieldMapping(hub="firstname", app="first_name", direction="to_app")])))
EMAILS = ["ann@example.com", "bob@example.com", ""]


@dataclass(frozen=True)
class It:
    item_id: int = 1
    hub_id: str | None = "H1"
    app_id: str | None = "A1"
    state: str = "deleted"
    category: str = ""
    detail: str = ""
    snapshot: bytes | None = None
    deleted_side: str = "hub"
    creating: str = ""
    match_key: str = ""
    app_incarnation: str | None = None

    def record_id(self, side: str) -> str | None:
        return self.hub_id if side == "hub" else self.app_id


def _other(side: Side) -> Side:
    return "app" if side == "hub" else "hub"


def _record(side: Side, rid: str, email: str, name: str, incarnation: str = "") -> Record:
    props = ({"email": email, "firstname": name} if side == "hub"
             else {"email": email, "first_name": name})
    return Record(rid, {k: v for k, v in props.items() if v}, 5, incarnation=incarnation)


@st.composite
def cases(draw):
    to: Side = draw(st.sampled_from(["hub", "app"]))
    src = _other(to)
    rules = draw(st.sampled_from(RULES))
    sid = draw(st.sampled_from([None] + [f"{src[0].upper()}1"] * 3))
    item = It(hub_id=sid if src == "hub" else "H1", app_id=sid if src == "app" else "A1",
              # (mostly the restorable shape, so that each condition is met alone too)
              state=draw(st.sampled_from(["deleted"] * 4 + ["syncing", "failed"])),
              deleted_side=draw(st.sampled_from([to] * 4 + ["hub", "app", "both", ""])),
              snapshot=draw(st.sampled_from([None, b"{}"])),
              app_incarnation=draw(st.sampled_from([None, "i1", "i2"])))
    survivor = None
    if sid is not None and draw(st.integers(0, 3)):
        survivor = _record(src, sid, draw(st.sampled_from(EMAILS)),
                           draw(st.sampled_from(["", "Ann"])),
                           draw(st.sampled_from(["", "i1", "i2"])))
    held = draw(st.sampled_from([None, {}, {"email": "old@example.com", "firstname": "Old"}]))
    snapshot = None if held is None else Snapshot(hub=held if to == "hub" else {},
                                                  app=held if to == "app" else {})
    return rules, item, to, survivor, snapshot


@settings(max_examples=500)
@given(cases())
def test_restorable_only_a_record_deleted_on_its_side_from_its_own_survivor(case) -> None:
    rules, item, to, survivor, snapshot = case
    src = _other(to)
    plan = plan_restore(rules, item, to, survivor, snapshot)
    writes_to = rules.can_write_hub if to == "hub" else rules.can_write_app
    # The id of a deleted app record may name a new one (connectors/base.py): only the
    # incarnation last synced is restored from.
    same_record = survivor is not None and (
        src == "hub" or item.app_incarnation in (None, survivor.incarnation))
    may = (item.state == "deleted" and item.deleted_side == to and writes_to
           and item.record_id(src) is not None and same_record)
    assert plan.restorable == (may and bool(plan.values))
    assert plan.restorable or plan.reason  # a refusal says why
    if not plan.restorable:
        assert plan.values == {} and plan.changes == []


@settings(max_examples=500)
@given(cases())
def test_restored_values_come_from_the_survivor_where_they_flow_else_the_snapshot(case) -> None:
    rules, item, to, survivor, snapshot = case
    plan = plan_restore(rules, item, to, survivor, snapshot)
    if not plan.restorable:
        return
    assert survivor is not None
    held = (snapshot.hub if to == "hub" else snapshot.app) if snapshot is not None else {}
    by_field = {c.field: c for c in plan.changes}
    for r in rules.fields:
        flows = r.to_hub if to == "hub" else r.to_app
        from_survivor = (r.read_hub if to == "app" else r.read_app)(survivor.properties)
        c = by_field.get(r.name)
        if flows and from_survivor is not None:
            assert c is not None and c.new == from_survivor and c.winner == _other(to)
        elif held.get(r.name) is not None:
            assert c is not None and c.new == held[r.name] and c.winner == to
        else:
            assert c is None
    assert all(c.side == to and c.old is None and c.reason == "new_record"
               for c in plan.changes)


@given(cases(), st.booleans(), st.sampled_from(EMAILS[:2]))
def test_a_restore_puts_the_new_record_in_the_deleted_ones_place(case, existing, email) -> None:
    rules, item, to, _, _ = case
    rec = _record(to, "N9", email, "Ann")
    o = restored(rules, item, to, rec, dict(rec.properties), existing, [])
    assert (o.hub_id, o.app_id) == (("N9", UNSET) if to == "hub" else (UNSET, "N9"))
    assert o.state == "pending" and o.item_id == item.item_id
    assert o.claim == tuple((to, k, "N9") for k in record_keys(rules, to, rec))
    old = item.record_id(to)
    assert o.rekey == (((to, old, ()),) if old else ())  # the deleted record's keys go
    assert o.history is not None and o.history.action == "restore"
    assert (o.history.hub_id, o.history.app_id) == (
        ("N9", item.app_id) if to == "hub" else (item.hub_id, "N9"))


@given(cases(), st.text(min_size=1, max_size=8), st.text(max_size=8))
def test_a_failed_restore_leaves_the_item_as_it_was(case, category, message) -> None:
    _, item, to, _, _ = case
    o = restore_failed(item, to, category, message)
    assert (o.state, o.category, o.detail, o.deleted_side) == (
        item.state, item.category, item.detail, item.deleted_side)
    assert o.hub_id is UNSET and o.app_id is UNSET and o.claim == () and o.rekey == ()
    assert o.history is not None and o.history.action == "fail"
    assert category in o.history.detail


@given(cases())
def test_a_reviewed_delete_is_kept_restorable_or_deleted_on_both_sides(case) -> None:
    _, item, to, _, _ = case
    kept = delete_kept(item, _other(to), to)
    assert (kept.state, kept.deleted_side) == ("deleted", _other(to))
    assert kept.history is not None and kept.history.action == "ignore_delete"
    gone = delete_approved(item, _other(to), to)
    assert (gone.state, gone.deleted_side, gone.category) == ("deleted", "both", "propagated")
    assert gone.history is not None and gone.history.action == "delete"


# --- which record a create may take ------------------------------------------------------

holders = st.one_of(st.none(), st.builds(
    Holder, record_id=st.just("X1"), partner_id=st.sampled_from([None, "P1", "O1"]),
    state=st.sampled_from(["", "syncing", "deleted", "failed"]),
    category=st.sampled_from(["", "duplicate", "invalid_value"])))


@given(holders)
def test_a_found_record_is_taken_only_when_nothing_else_holds_it(h) -> None:
    # A record crmsync has no item for is always free.
    assert may_take_found("restore", None) and may_take_found("sync", None)
    if h is None:
        return
    # A restore relinks the deleted record's pair: it takes only a record linked to nothing.
    assert may_take_found("restore", h) == (h.partner_id is None)
    # A sync's record is new: one linked elsewhere, a failed duplicate or a record deleted
    # before it was paired is not its partner (the matching rule).
    assert may_take_found("sync", h) == pairable(h, None)
    if may_take_found("sync", h):
        assert h.partner_id is None and not h.failed_duplicate


@given(st.sampled_from(["hub", "app"]), holders, st.sampled_from([None, "P1", "S1"]),
       st.booleans())
def test_a_refused_create_takes_the_existing_record_unless_another_link_holds_it(
        side, h, own_id, own_item) -> None:
    for creator in ("sync", "restore"):
        got = refuse_existing(creator, side, "X1", own_id, h, own_item and h is not None)
        if h is None:
            assert got is None  # crmsync has no item for it: take it
            continue
        if creator == "restore":
            assert (got is None) == (h.partner_id is None)
        elif own_item:
            assert got is None  # the creating item's own record (an earlier attempt's)
        else:
            linked_elsewhere = h.partner_id is not None and h.partner_id != own_id
            assert (got is None) == (not h.failed_duplicate and not linked_elsewhere)
        if got is not None:
            assert got[0] == "duplicate" and "X1" in got[1]


@given(st.sampled_from(["hub", "app"]), st.text(max_size=5), st.text(max_size=5))
def test_an_existing_record_gone_before_it_is_read(side, category, message) -> None:
    # A sync fails with the create's own refusal, a restore as a duplicate.
    assert existing_unreadable("sync", side, "X1", (category, message)) == (category, message)
    cat, detail = existing_unreadable("restore", side, "X1", (category, message))
    assert cat == "duplicate" and "X1" in detail


COMPANIES = compile_rules(ObjectSync(connection="c", hub_object="companies",
                                     app_object="accounts"))
company_values = st.fixed_dictionaries({}, optional={
    "name": st.sampled_from(["", "Acme", "Acme Inc."]),
    "domain": st.sampled_from(["", "acme.com"]),
    "phone": st.just("1")})


@given(st.sampled_from(["hub", "app"]), company_values)
def test_a_create_is_looked_for_by_its_strongest_key_sent(side, values) -> None:
    sent = create_keys(COMPANIES, side, values)
    # Only match-key fields holding a value are kept, as sent.
    assert set(sent) <= {"name", "domain"} and all(sent.values())
    key = search_key(COMPANIES, side, values)
    if not sent:
        assert key is None
        return
    # A company's domain before its name (the stronger key); looked for by what was sent.
    assert key == (("domain", sent["domain"]) if "domain" in sent else ("name", sent["name"]))
    assert key == search_key(COMPANIES, side, sent)
