"""decide() with plain values, rule by rule (DESIGN.md "The decision", issue 2 §3)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from crmsync.config.model import FieldMapping, Filter, ObjectSync
from crmsync.engine import (
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
    SyncRules,
    Update,
    compile_rules,
    decide,
)
from crmsync.engine.stages import StageMap, known_stages
from crmsync.records import PipelineInfo, StageInfo

# --- helpers --------------------------------------------------------------------------------


def contacts(**kw: Any) -> SyncRules:
    """hub contacts <-> app customers with the default mappings: email, firstname/first_name,
    lastname/last_name, phone, jobtitle/job_title, company/company_name."""
    return compile_rules(ObjectSync(connection="shop", hub_object="contacts",
                                    app_object="customers", **kw))


def lines(*mappings: FieldMapping, **kw: Any) -> SyncRules:
    return compile_rules(ObjectSync(connection="shop", hub_object="line_items",
                                    app_object="order_lines", use_default_mappings=False,
                                    mappings=list(mappings), **kw))


def hub(props: dict[str, Any], id: str = "h1", archived: bool = False) -> Record:
    return Record(id, props, archived=archived)


def app(props: dict[str, Any], id: str = "a1", archived: bool = False) -> Record:
    return Record(id, props, archived=archived)


ANN_H = {"email": "ann@example.com", "firstname": "Ann", "lastname": "Lee"}
ANN_A = {"email": "ann@example.com", "first_name": "Ann", "last_name": "Lee"}


def snap(**fields: Any) -> Snapshot:
    """A snapshot holding the same value on both sides for each field."""
    return Snapshot(hub=dict(fields), app=dict(fields))


def kinds(d: Decision) -> list[str]:
    return [str(a.__struct_config__.tag) for a in d.actions]


def updates(d: Decision, side: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for a in d.actions:
        if isinstance(a, Update) and a.side == side:
            out.update(a.changes)
    return out


def writes(d: Decision) -> list[Any]:
    return [a for a in d.actions if isinstance(a, Create | Update | Delete)]


def change(d: Decision, field: str) -> FieldChange:
    found = [c for c in d.changes if c.field == field]
    assert len(found) == 1, d.changes
    return found[0]


def only(d: Decision, kind: type) -> Any:
    found = [a for a in d.actions if isinstance(a, kind)]
    assert len(found) == 1, d.actions
    return found[0]


# --- linked and in sync ----------------------------------------------------------------------


def test_nothing_changed_is_a_noop() -> None:
    s = snap(email="ann@example.com", firstname="Ann", lastname="Lee", phone=None,
             jobtitle=None, company=None)
    d = decide(contacts(), hub(ANN_H), app(ANN_A), s)
    assert d.is_noop and d.changes == []
    assert d.snapshot == s


def test_equal_numbers_written_differently_are_not_a_change() -> None:
    rules = lines(FieldMapping(hub="quantity", app="qty", transform="number"),
                  FieldMapping(hub="hs_date", app="day", transform="date"))
    s = snap(quantity="10", hs_date="2024-01-02")
    d = decide(rules, hub({"quantity": "10.0", "hs_date": "1704153600000"}),
               app({"qty": 10, "day": dt.date(2024, 1, 2)}), s)
    assert d.is_noop, d


# --- first pairing ---------------------------------------------------------------------------


def test_first_pairing_links_and_fills_each_empty_side() -> None:
    h = hub({"email": "ann@example.com", "firstname": "Ann", "lastname": ""})
    a = app({"email": "ann@example.com", "first_name": None, "last_name": "Lee"})
    d = decide(contacts(), h, a, None)
    assert only(d, Link) == Link("h1", "a1")
    assert updates(d, "hub") == {"lastname": "Lee"}
    assert updates(d, "app") == {"first_name": "Ann"}
    assert change(d, "lastname") == FieldChange("lastname", "hub", None, "Lee", "app",
                                                "first_pairing_empty")
    assert change(d, "firstname") == FieldChange("firstname", "app", None, "Ann", "hub",
                                                 "first_pairing_empty")
    assert d.snapshot is not None
    assert d.snapshot.hub["firstname"] == d.snapshot.app["firstname"] == "Ann"
    assert d.snapshot.hub["lastname"] == d.snapshot.app["lastname"] == "Lee"


@pytest.mark.parametrize("winner", ["hub", "app"])
def test_first_pairing_differing_values_go_the_winners_way(winner: str) -> None:
    h = hub({**ANN_H, "jobtitle": "CEO"})
    a = app({**ANN_A, "job_title": "Founder"})
    d = decide(contacts(conflict_winner=winner), h, a, None)
    if winner == "hub":
        assert updates(d, "app") == {"job_title": "CEO"} and updates(d, "hub") == {}
        assert change(d, "jobtitle") == FieldChange("jobtitle", "app", "Founder", "CEO", "hub",
                                                    "first_pairing")
    else:
        assert updates(d, "hub") == {"jobtitle": "Founder"} and updates(d, "app") == {}
        assert change(d, "jobtitle") == FieldChange("jobtitle", "hub", "CEO", "Founder", "app",
                                                    "first_pairing")


def test_first_pairing_respects_the_direction() -> None:
    h = hub({**ANN_H, "jobtitle": "CEO", "phone": ""})
    a = app({**ANN_A, "job_title": "Founder", "phone": "+1 555 0100"})
    # to_hub: the app's values fill and win on the hub; nothing is written to the app
    d = decide(contacts(direction="to_hub", conflict_winner="hub"), h, a, None)
    assert updates(d, "app") == {}
    assert updates(d, "hub").get("phone") == "+1 555 0100"
    # to_app with the app as winner: the hub is never written
    d = decide(contacts(direction="to_app", conflict_winner="app"), h, a, None)
    assert updates(d, "hub") == {}


def test_lone_record_is_created_on_the_other_side() -> None:
    h = hub({**ANN_H, "phone": "+1 555 0100", "jobtitle": ""})
    d = decide(contacts(), h, None, None)
    create = only(d, Create)
    assert create.side == "app"
    assert create.values == {"email": "ann@example.com", "first_name": "Ann",
                             "last_name": "Lee", "phone": "+1 555 0100"}
    assert {c.field: (c.side, c.old, c.new, c.winner, c.reason) for c in d.changes} == {
        "email": ("app", None, "ann@example.com", "hub", "new_record"),
        "firstname": ("app", None, "Ann", "hub", "new_record"),
        "lastname": ("app", None, "Lee", "hub", "new_record"),
        "phone": ("app", None, "+1 555 0100", "hub", "new_record"),
    }
    assert d.snapshot is not None and d.snapshot.hub["firstname"] == d.snapshot.app[
        "firstname"] == "Ann"


def test_app_record_is_created_in_the_hub() -> None:
    d = decide(contacts(), None, app(ANN_A), None)
    create = only(d, Create)
    assert create.side == "hub"
    assert create.values == {"email": "ann@example.com", "firstname": "Ann", "lastname": "Lee"}


@pytest.mark.parametrize(("direction", "lone"), [("to_app", "app"), ("to_hub", "hub")])
def test_one_way_sync_does_not_create_on_the_source(direction: str, lone: str) -> None:
    h = hub(ANN_H) if lone == "hub" else None
    a = app(ANN_A) if lone == "app" else None
    d = decide(contacts(direction=direction), h, a, None)
    assert writes(d) == []


def test_one_field_direction_is_left_out_of_a_create() -> None:
    rules = contacts(mappings=[FieldMapping(hub="phone", app="phone", direction="to_hub")])
    d = decide(rules, hub({**ANN_H, "phone": "+1 555 0100"}), None, None)
    assert "phone" not in only(d, Create).values


# --- one-sided changes -----------------------------------------------------------------------

S_ANN = snap(email="ann@example.com", firstname="Ann", lastname="Lee", phone="+1 555 0100",
             jobtitle=None, company=None)


def test_a_hub_change_is_copied_to_the_app() -> None:
    d = decide(contacts(), hub({**ANN_H, "firstname": "Anne", "phone": "+1 555 0100"}),
               app({**ANN_A, "phone": "+1 555 0100"}), S_ANN)
    assert kinds(d) == ["update"]
    assert updates(d, "app") == {"first_name": "Anne"}
    assert change(d, "firstname") == FieldChange("firstname", "app", "Ann", "Anne", "hub",
                                                 "one_sided_change")
    assert d.snapshot is not None and d.snapshot.app["firstname"] == "Anne"


def test_an_app_change_is_copied_to_the_hub() -> None:
    d = decide(contacts(conflict_winner="hub"), hub({**ANN_H, "phone": "+1 555 0100"}),
               app({**ANN_A, "phone": "+1 555 0199"}), S_ANN)
    assert updates(d, "hub") == {"phone": "+1 555 0199"} and updates(d, "app") == {}
    assert change(d, "phone") == FieldChange("phone", "hub", "+1 555 0100", "+1 555 0199",
                                             "app", "one_sided_change")


def test_a_cleared_value_is_cleared_on_the_other_side() -> None:
    d = decide(contacts(), hub({**ANN_H, "phone": ""}), app({**ANN_A, "phone": "+1 555 0100"}),
               S_ANN)
    assert updates(d, "app") == {"phone": None}
    assert change(d, "phone").new is None


@pytest.mark.parametrize(("direction", "field_direction"), [
    ("to_app", "both"), ("both", "to_app"),
])
def test_a_change_is_not_copied_where_the_direction_forbids(direction: str,
                                                            field_direction: str) -> None:
    rules = contacts(direction=direction,
                     mappings=[FieldMapping(hub="phone", app="phone", direction=field_direction)])
    d = decide(rules, hub({**ANN_H, "phone": "+1 555 0100"}),
               app({**ANN_A, "phone": "+1 555 0199"}), S_ANN)
    assert writes(d) == [] and d.changes == []


def test_a_disabled_mapping_is_never_written() -> None:
    rules = contacts(mappings=[FieldMapping(hub="phone", app="phone", enabled=False)])
    d = decide(rules, hub({**ANN_H, "phone": "+1 555 0100"}),
               app({**ANN_A, "phone": "+1 555 0199"}), S_ANN)
    assert writes(d) == []


# --- conflicts -------------------------------------------------------------------------------


@pytest.mark.parametrize("winner", ["hub", "app"])
def test_a_conflict_goes_to_the_winner(winner: str) -> None:
    h = hub({**ANN_H, "firstname": "Anne", "phone": "+1 555 0100"})
    a = app({**ANN_A, "first_name": "Annie", "phone": "+1 555 0100"})
    d = decide(contacts(conflict_winner=winner), h, a, S_ANN)
    loser = "app" if winner == "hub" else "hub"
    value = "Anne" if winner == "hub" else "Annie"
    prop = "first_name" if loser == "app" else "firstname"
    assert updates(d, loser) == {prop: value} and updates(d, winner) == {}
    c = change(d, "firstname")
    assert (c.side, c.new, c.winner, c.reason) == (loser, value, winner, "conflict_winner")


@pytest.mark.parametrize("winner", ["hub", "app"])
def test_an_empty_winner_keeps_the_other_sides_value(winner: str) -> None:
    h = hub({**ANN_H, "phone": "" if winner == "hub" else "+1 555 0111"})
    a = app({**ANN_A, "phone": None if winner == "app" else "+1 555 0111"})
    d = decide(contacts(conflict_winner=winner), h, a, S_ANN)
    loser = "app" if winner == "hub" else "hub"
    assert "phone" not in updates(d, loser), "the empty winner cleared the other side"
    assert not writes(d) or updates(d, winner) == {"phone": "+1 555 0111"}
    for c in d.changes:
        assert (c.field, c.reason, c.winner) == ("phone", "empty_winner", loser)


@pytest.mark.parametrize(("direction", "source", "winner"),
                         [("to_hub", "app", "hub"), ("to_app", "hub", "app")])
def test_a_one_way_field_is_settled_by_the_direction_and_says_so(direction: str, source: str,
                                                                winner: str) -> None:
    # The configured winner is the side the sync never copies from: the direction decides,
    # and the history must name that rule, not "<source> wins conflicts" (issue 10, item 16).
    target = "app" if source == "hub" else "hub"
    rules = contacts(direction=direction, conflict_winner=winner)
    value = "Anne" if source == "hub" else "Annie"
    old = "Annie" if source == "hub" else "Anne"
    h = hub({**ANN_H, "firstname": "Anne", "phone": "+1 555 0100"})
    a = app({**ANN_A, "first_name": "Annie", "phone": "+1 555 0100"})
    first = decide(rules, h, a, None)
    assert change(first, "firstname") == FieldChange("firstname", target, old, value, source,
                                                     "first_pairing_one_way")
    both = decide(rules, h, a, S_ANN)  # changed on both sides since the snapshot
    assert change(both, "firstname") == FieldChange("firstname", target, old, value, source,
                                                    "conflict_one_way")
    # A one-way mapping inside a two-way sync: the same rule.
    one = contacts(conflict_winner="hub",
                   mappings=[FieldMapping(hub="firstname", app="first_name",
                                          direction="to_hub")])
    c = change(decide(one, h, a, None), "firstname")
    assert (c.side, c.new, c.winner, c.reason) == ("hub", "Annie", "app",
                                                   "first_pairing_one_way")
    # Two-way fields keep the conflict winner's reasons.
    assert change(decide(contacts(conflict_winner="hub"), h, a, None),
                  "firstname").reason == "first_pairing"


def test_both_changed_to_the_same_value_is_not_a_conflict() -> None:
    d = decide(contacts(), hub({**ANN_H, "firstname": "Anne", "phone": "+1 555 0100"}),
               app({**ANN_A, "first_name": "Anne", "phone": "+1 555 0100"}), S_ANN)
    assert writes(d) == [] and d.changes == []
    assert d.snapshot is not None and d.snapshot.hub["firstname"] == "Anne"


# --- required fields -------------------------------------------------------------------------

REQUIRED_SKU = FieldMapping(hub="hs_sku", app="sku", required=True)
NAME = FieldMapping(hub="name", app="name")


def test_required_field_empty_on_create_fails() -> None:
    d = decide(lines(REQUIRED_SKU, NAME), hub({"name": "Widget", "hs_sku": ""}), None, None)
    assert only(d, Fail).category == "missing_required_field"
    assert "hs_sku" in only(d, Fail).detail
    assert writes(d) == []


def test_required_field_empty_on_both_sides_fails() -> None:
    d = decide(lines(REQUIRED_SKU, NAME), hub({"name": "Widget"}), app({"name": "Widget"}), None)
    assert only(d, Fail).category == "missing_required_field"
    assert writes(d) == []


def test_clearing_a_required_field_fails_instead_of_clearing_the_other_side() -> None:
    s = snap(hs_sku="W-1", name="Widget")
    d = decide(lines(REQUIRED_SKU, NAME), hub({"name": "Widget", "hs_sku": ""}),
               app({"name": "Widget", "sku": "W-1"}), s)
    assert only(d, Fail).category == "missing_required_field"
    assert writes(d) == []


def test_required_field_filled_from_the_other_side_is_fine() -> None:
    d = decide(lines(REQUIRED_SKU, NAME), hub({"name": "Widget", "hs_sku": ""}),
               app({"name": "Widget", "sku": "W-1"}), None)
    assert updates(d, "hub") == {"hs_sku": "W-1"}


# --- exclusions ------------------------------------------------------------------------------


@pytest.mark.parametrize(("email", "reason"), [
    (None, "no_email"), ("", "no_email"), ("  ", "no_email"),
    ("ann(at)example.com", "invalid_email"), ("ann@example", "invalid_email"),
])
@pytest.mark.parametrize("side", ["hub", "app"])
def test_contacts_without_a_valid_email_are_excluded(email: Any, reason: str,
                                                     side: str) -> None:
    props = {"email": email, "firstname": "Ann", "first_name": "Ann"}
    h, a = (hub(props), None) if side == "hub" else (None, app(props))
    d = decide(contacts(), h, a, None)
    assert only(d, Exclude).reason == reason
    assert writes(d) == []


@pytest.mark.parametrize("email", [None, "", "ann(at)example.com", "ann@example"])
def test_contacts_without_a_valid_email_sync_when_allowed(email: Any) -> None:
    """DESIGN.md: contacts without a *valid* email are excluded unless
    sync_contacts_without_email = true - so with it, neither a missing nor an invalid email
    excludes the contact."""
    rules = contacts(sync_contacts_without_email=True)
    d = decide(rules, hub({"email": email, "firstname": "Ann"}), None, None)
    assert not [a for a in d.actions if isinstance(a, Exclude)], d
    assert only(d, Create).values.get("first_name") == "Ann"


HUB_CUSTOMERS = [Filter(side="hub", property="lifecyclestage", operator="EQ", value="customer")]
APP_ACTIVE = [Filter(side="app", property="status", operator="NEQ", value="archived")]


def test_filter_mismatch_excludes() -> None:
    rules = contacts(filters=HUB_CUSTOMERS + APP_ACTIVE)
    d = decide(rules, hub({**ANN_H, "lifecyclestage": "lead"}), None, None)
    assert only(d, Exclude).reason == "filter" and writes(d) == []
    d = decide(rules, None, app({**ANN_A, "status": "archived"}), None)
    assert only(d, Exclude).reason == "filter" and writes(d) == []
    d = decide(rules, hub({**ANN_H, "lifecyclestage": "customer"}),
               app({**ANN_A, "status": "archived"}), None)
    assert only(d, Exclude).reason == "filter" and writes(d) == []
    d = decide(rules, hub({**ANN_H, "lifecyclestage": "Customer"}), None, None)
    assert only(d, Create).side == "app"


def test_filters_do_not_apply_once_linked() -> None:
    rules = contacts(filters=HUB_CUSTOMERS + APP_ACTIVE)
    d = decide(rules, hub({**ANN_H, "firstname": "Anne", "lifecyclestage": "lead",
                           "phone": "+1 555 0100"}),
               app({**ANN_A, "status": "archived", "phone": "+1 555 0100"}), S_ANN)
    assert updates(d, "app") == {"first_name": "Anne"}


def test_a_linked_contact_keeps_syncing_without_email() -> None:
    d = decide(contacts(), hub({**ANN_H, "email": "", "phone": "+1 555 0100"}),
               app({**ANN_A, "phone": "+1 555 0100"}), S_ANN)
    assert not [a for a in d.actions if isinstance(a, Exclude)]
    assert updates(d, "app") == {"email": None}


def test_duplicate_fails() -> None:
    d = decide(contacts(), None, app(ANN_A, id="a2"), None, duplicate_of="a1")
    assert only(d, Fail).category == "duplicate"
    assert "a1" in only(d, Fail).detail
    assert writes(d) == []


# --- deletes ---------------------------------------------------------------------------------


@pytest.mark.parametrize("gone", ["hub", "app"])
@pytest.mark.parametrize("how", ["missing", "archived"])
def test_delete_is_marked_by_default(gone: str, how: str) -> None:
    h: Record | None = hub(ANN_H, archived=how == "archived")
    a: Record | None = app(ANN_A, archived=how == "archived")
    if gone == "hub":
        a = app(ANN_A)
        h = None if how == "missing" else h
    else:
        h = hub(ANN_H)
        a = None if how == "missing" else a
    d = decide(contacts(), h, a, S_ANN)
    assert d.actions == [MarkDeleted(gone)]  # type: ignore[arg-type]
    assert writes(d) == []


@pytest.mark.parametrize(("direction", "gone", "deleted_on"), [
    ("both", "hub", "app"), ("both", "app", "hub"),
    ("to_app", "hub", "app"), ("to_hub", "app", "hub"),
    ("to_hub", "hub", None), ("to_app", "app", None),  # the direction forbids the delete
])
def test_propagated_delete_only_where_the_direction_allows(direction: str, gone: str,
                                                           deleted_on: str | None) -> None:
    rules = contacts(direction=direction, on_delete="propagate")
    h = None if gone == "hub" else hub(ANN_H)
    a = None if gone == "app" else app(ANN_A)
    d = decide(rules, h, a, S_ANN)
    deletes = [x for x in d.actions if isinstance(x, Delete)]
    if deleted_on is None:
        assert deletes == []
    else:
        assert deletes == [Delete(deleted_on, "h1" if deleted_on == "hub" else "a1")]  # type: ignore[arg-type]
    assert MarkDeleted(gone) in d.actions  # type: ignore[arg-type]
    assert [x for x in d.actions if isinstance(x, Create | Update)] == []


def test_review_parks_the_delete() -> None:
    d = decide(contacts(on_delete="review"), None, app(ANN_A), S_ANN)
    assert d.actions == [ParkDelete("hub")]
    assert writes(d) == []


def test_gone_from_both_sides() -> None:
    d = decide(contacts(on_delete="propagate"), None, None, S_ANN)
    assert writes(d) == []
    assert MarkDeleted("both") in d.actions


def test_nothing_on_either_side_unlinked_is_a_noop() -> None:
    assert decide(contacts(), None, None, None).actions == [Noop()]


# --- invalid values --------------------------------------------------------------------------

AMOUNT = FieldMapping(hub="amount", app="amount", transform="number")
TIER = FieldMapping(hub="tier", app="tier", transform="enum",
                    options={"Gold": "gold", "Silver": "silver"})
ACTIVE = FieldMapping(hub="active", app="active", transform="bool")
START = FieldMapping(hub="start_date", app="start_date", transform="date")


@pytest.mark.parametrize(("h", "a"), [
    ({"amount": "abc"}, None),
    (None, {"amount": "n/a"}),
    ({"amount": "10"}, {"amount": "ten"}),
    (None, {"tier": "Platinum"}),  # not in the option map
    ({"tier": "platinum"}, None),  # a HubSpot option with no app value
    (None, {"active": "perhaps"}),
    ({"start_date": "2024-02-30"}, None),
])
def test_invalid_values_fail(h: dict[str, Any] | None, a: dict[str, Any] | None) -> None:
    rules = lines(AMOUNT, TIER, ACTIVE, START, NAME)
    d = decide(rules, None if h is None else hub({"name": "x", **h}),
               None if a is None else app({"name": "x", **a}), None)
    assert only(d, Fail).category == "invalid_value"
    assert writes(d) == []


@pytest.mark.parametrize("amount", ["1e30", "12345678901234567890123456789"])
def test_a_huge_number_does_not_crash_the_decision(amount: str) -> None:
    rules = lines(AMOUNT, NAME)
    d = decide(rules, hub({"name": "x", "amount": amount}), None, None)  # must not raise
    fails = [a for a in d.actions if isinstance(a, Fail)]
    assert fails == [] or [f.category for f in fails] == ["invalid_value"]


@pytest.mark.parametrize("day", [dt.date(1968, 5, 1), dt.date(1971, 5, 20)])
def test_a_hubspot_date_near_1970_is_copied_as_that_date(day: dt.date) -> None:
    """HubSpot sends date properties as epoch milliseconds of midnight UTC."""
    wire = str(int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp() * 1000))
    d = decide(lines(START, NAME), hub({"name": "x", "start_date": wire}), None, None)
    assert only(d, Create).values["start_date"] == day.isoformat()


def test_an_out_of_range_date_fails_as_invalid_value() -> None:
    d = decide(lines(START, NAME), hub({"name": "x", "start_date": "99999999999999999"}),
               None, None)  # must not raise
    assert only(d, Fail).category == "invalid_value"


# --- deals and stages ------------------------------------------------------------------------

HUB_PIPE = PipelineInfo("default", "Sales Pipeline", (
    StageInfo("qualifiedtobuy", "Qualified To Buy"), StageInfo("contractsent", "Contract Sent"),
    StageInfo("closedwon", "Closed Won"), StageInfo("closedlost", "Closed Lost")))
APP_PIPE = PipelineInfo("1", "Sales", (
    StageInfo("q", "Qualified"), StageInfo("won", "Won"), StageInfo("lost", "Lost"),
    StageInfo("hold", "On Hold")))
STAGES = StageMap(
    entries=[(("default", "qualifiedtobuy"), ("1", "q")), (("default", "closedwon"), ("1", "won")),
             (("default", "closedlost"), ("1", "lost"))],
    hub_stages=known_stages([HUB_PIPE]), app_stages=known_stages([APP_PIPE]))


def deals(**kw: Any) -> SyncRules:
    """Default deal mappings: dealname/name (required), amount, closedate/close_date,
    dealstage/stage (required, through the stage map)."""
    return compile_rules(ObjectSync(connection="shop", hub_object="deals", app_object="orders",
                                    **kw), stage_map=STAGES)


DEAL_H = {"dealname": "Big deal", "amount": "1000", "pipeline": "default",
          "dealstage": "closedwon"}
DEAL_A = {"name": "Big deal", "amount": 1000, "pipeline": "1", "stage": "won"}


def test_a_deal_in_a_mapped_stage_is_created_in_that_stage() -> None:
    d = decide(deals(), hub(DEAL_H), None, None)
    values = only(d, Create).values
    assert (values["pipeline"], values["stage"]) == ("1", "won")
    d = decide(deals(), None, app(DEAL_A), None)
    values = only(d, Create).values
    assert (values["pipeline"], values["dealstage"]) == ("default", "closedwon")


def test_a_deal_stage_change_moves_through_the_stage_map() -> None:
    s = Snapshot(hub={"dealname": "Big deal", "amount": "1000", "closedate": None,
                      "dealstage": "default/qualifiedtobuy"},
                 app={"dealname": "Big deal", "amount": "1000", "closedate": None,
                      "dealstage": "default/qualifiedtobuy"})
    d = decide(deals(), hub(DEAL_H), app({**DEAL_A, "stage": "q"}), s)
    assert updates(d, "app") == {"pipeline": "1", "stage": "won"}
    assert updates(d, "hub") == {}


@pytest.mark.parametrize(("h", "a"), [
    ({**DEAL_H, "dealstage": "contractsent"}, None),
    (None, {**DEAL_A, "stage": "hold"}),
    ({**DEAL_H, "dealstage": "contractsent"}, {**DEAL_A, "stage": "won"}),
])
def test_a_deal_in_an_unmapped_stage_is_excluded(h: dict[str, Any] | None,
                                                 a: dict[str, Any] | None) -> None:
    d = decide(deals(), None if h is None else hub(h), None if a is None else app(a), None)
    assert only(d, Exclude).reason == "stage_not_mapped"
    assert writes(d) == []


@pytest.mark.parametrize(("h", "a"), [
    ({**DEAL_H, "dealstage": "deleted-stage"}, None),
    (None, {**DEAL_A, "stage": "nope"}),
    (None, {**DEAL_A, "pipeline": "9"}),
])
def test_a_deal_in_an_unknown_stage_fails(h: dict[str, Any] | None,
                                          a: dict[str, Any] | None) -> None:
    d = decide(deals(), None if h is None else hub(h), None if a is None else app(a), None)
    assert only(d, Fail).category == "unmapped_stage"
    assert writes(d) == []


def test_a_linked_deal_moved_to_an_unmapped_stage_fails() -> None:
    s = Snapshot(hub={"dealname": "Big deal", "amount": "1000", "closedate": None,
                      "dealstage": "default/closedwon"},
                 app={"dealname": "Big deal", "amount": "1000", "closedate": None,
                      "dealstage": "default/closedwon"})
    d = decide(deals(), hub({**DEAL_H, "dealstage": "contractsent"}), app(DEAL_A), s)
    assert only(d, Fail).category == "unmapped_stage"
    assert writes(d) == []


# --- the outcome does not depend on the order of the mappings ------------------------------


def test_problem_on_create_does_not_depend_on_mapping_order() -> None:
    """A lone record with a required field empty *and* an invalid value: the decision must be
    the same whichever mapping comes first."""
    qty = FieldMapping(hub="quantity", app="qty", transform="number")
    record = hub({"name": "Widget", "quantity": "a dozen"})  # hs_sku (required) empty
    d1 = decide(lines(REQUIRED_SKU, qty, NAME), record, None, None)
    d2 = decide(lines(qty, REQUIRED_SKU, NAME), record, None, None)
    assert only(d1, Fail).category == only(d2, Fail).category


def test_problem_on_pairing_does_not_depend_on_mapping_order() -> None:
    """An unlinked deal pair in an unmapped stage *and* with an invalid amount."""
    mappings = [FieldMapping(hub="dealname", app="name", required=True),
                FieldMapping(hub="amount", app="amount", transform="number"),
                FieldMapping(hub="dealstage", app="stage", transform="stage", required=True)]
    h = hub({**DEAL_H, "amount": "lots", "dealstage": "contractsent"})
    a = app(DEAL_A)
    d1 = decide(deals(use_default_mappings=False, mappings=mappings), h, a, None)
    d2 = decide(deals(use_default_mappings=False, mappings=mappings[::-1]), h, a, None)
    assert kinds(d1) == kinds(d2), (d1, d2)


# --- match keys in the decision --------------------------------------------------------------


def test_company_without_name_or_domain_is_excluded() -> None:
    rules = compile_rules(ObjectSync(connection="shop", hub_object="companies",
                                     app_object="accounts"))
    d = decide(rules, None, app({"name": "", "domain": "", "city": "Berlin"}), None)
    assert only(d, Exclude).reason == "no_unique_id"
    d = decide(rules, None, app({"name": "Acme Inc.", "domain": ""}), None)
    assert only(d, Create).side == "hub"


def test_record_without_its_unique_property_is_excluded() -> None:
    rules = compile_rules(ObjectSync(
        connection="shop", hub_object="deals", app_object="orders", unique_property="order_no",
        mappings=[FieldMapping(hub="order_no", app="number")]), stage_map=STAGES)
    d = decide(rules, None, app({**DEAL_A, "number": ""}), None)
    assert only(d, Exclude).reason == "no_unique_id"
    d = decide(rules, None, app({**DEAL_A, "number": "SO-1"}), None)
    assert only(d, Create).values["order_no"] == "SO-1"


# --- a hub edit our own write overwrote unseen (issue 10 item 6) ---------------------------

from crmsync.engine import decide_overwritten  # noqa: E402

# We wrote the app's "App" over the hub's firstname; a hub user had set "User" just before.
OURS_H = {**ANN_H, "firstname": "App"}
OURS_A = {**ANN_A, "first_name": "App"}
REST = {"email": "ann@example.com", "lastname": "Lee", "phone": None, "jobtitle": None,
        "company": None}
OURS = snap(firstname="App", **REST)


def test_a_lost_hub_edit_that_wins_goes_back_to_the_hub_and_on_to_the_app() -> None:
    d = decide_overwritten(contacts(conflict_winner="hub"), hub(OURS_H), app(OURS_A), OURS,
                           {"firstname": "User"})
    assert updates(d, "hub") == {"firstname": "User"}
    assert updates(d, "app") == {"first_name": "User"}
    assert d.snapshot == snap(firstname="User", **REST)
    assert {(c.side, c.old, c.new, c.winner) for c in d.changes} == {
        ("hub", "App", "User", "hub"), ("app", "App", "User", "hub")}
    # Applying it converges: deciding on the result changes nothing more.
    after = decide(contacts(conflict_winner="hub"), hub({**OURS_H, "firstname": "User"}),
                   app({**OURS_A, "first_name": "User"}), d.snapshot)
    assert kinds(after) == ["noop"]


def test_a_lost_hub_edit_that_loses_changes_nothing() -> None:
    rules = contacts(conflict_winner="app")
    d = decide_overwritten(rules, hub(OURS_H), app(OURS_A), OURS, {"firstname": "User"})
    assert d == decide(rules, hub(OURS_H), app(OURS_A), OURS)
    assert writes(d) == []


def test_an_empty_winner_keeps_the_other_value() -> None:
    # The hub user cleared the field: the winner's (hub's) value is empty, ours is kept.
    d = decide_overwritten(contacts(conflict_winner="hub"), hub(OURS_H), app(OURS_A), OURS,
                           {"firstname": ""})
    assert writes(d) == []
    # We wrote an empty value over the hub user's: the app (winner) is empty, theirs is kept.
    empty_h = {k: v for k, v in OURS_H.items() if k != "firstname"}
    empty_a = {**OURS_A, "first_name": None}
    d = decide_overwritten(contacts(conflict_winner="app"), hub(empty_h), app(empty_a),
                           snap(firstname=None, **REST),
                           {"firstname": "User"})
    assert updates(d, "hub") == {"firstname": "User"}
    assert updates(d, "app") == {"first_name": "User"}


def test_a_newer_app_change_meets_the_lost_edit_as_a_conflict() -> None:
    newer_a = {**OURS_A, "first_name": "App2"}
    d = decide_overwritten(contacts(conflict_winner="hub"), hub(OURS_H), app(newer_a), OURS,
                           {"firstname": "User"})
    assert updates(d, "hub") == {"firstname": "User"}
    assert updates(d, "app") == {"first_name": "User"}
    d = decide_overwritten(contacts(conflict_winner="app"), hub(OURS_H), app(newer_a), OURS,
                           {"firstname": "User"})
    assert updates(d, "hub") == {"firstname": "App2"}
    assert updates(d, "app") == {}


def test_a_field_that_never_moves_to_the_app_keeps_the_apps_value() -> None:
    rules = contacts(direction="to_hub", conflict_winner="hub")
    d = decide_overwritten(rules, hub(OURS_H), app(OURS_A), OURS, {"firstname": "User"})
    assert writes(d) == []


# --- what the hub holds by the snapshot, for a hub event's property (runtime/echoes.py) ------


def test_the_hub_values_a_snapshot_holds_for_a_property() -> None:
    from crmsync.engine import hub_values_held

    rules = contacts()
    s = snap(email="ann@example.com", firstname="Ann", lastname="Lee", phone=None,
             jobtitle=None, company=None)
    assert hub_values_held(rules, s, "firstname") == {"firstname": "Ann"}
    assert hub_values_held(rules, s, "email") == {"email": "ann@example.com"}
    # A property nothing reads: nothing to tell; a field the snapshot lacks: unknown.
    assert hub_values_held(rules, s, "hs_lead_status") == {}
    assert hub_values_held(rules, snap(email="ann@example.com"), "firstname") is None


def test_a_deal_stage_is_held_with_its_pipeline() -> None:
    from crmsync.engine import hub_values_held

    s = Snapshot(hub={"dealname": "Big deal", "amount": "1000", "closedate": None,
                      "dealstage": "default/closedwon"}, app={})
    held = hub_values_held(deals(), s, "dealstage")
    assert held is not None
    assert (held["pipeline"], held["dealstage"]) == ("default", "closedwon")
