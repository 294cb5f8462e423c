"""Record owners: `hubspot_owner_id` ⇄ an app field, paired by the owner's email
(hubspot-onboarding.md §4: ownership is assigned by writing the owner `id` into
`hubspot_owner_id`), and an owner unknown on the other side is a field-level warning, never a
failed record (engine/owners.py)."""

from __future__ import annotations

from typing import Any

from crmsync.config.model import FieldMapping, ObjectSync
from crmsync.engine import Create, Fail, Link, Noop, Record, Update, compile_rules, decide
from crmsync.engine.owners import OwnerDirectory
from crmsync.engine.rules import SyncRules
from crmsync.engine.types import FieldWarning, Snapshot

HUB_OWNERS = [("7", "Ann@Example.com"), ("9", "bob@example.com"), ("11", "cy@example.com")]
APP_USERS = [(3, "cy@example.com"), (4, "dee@example.com")]


def rules(directory: OwnerDirectory, *, through_table: bool = False,
          required: bool = False, direction: str = "both") -> SyncRules:
    owner = FieldMapping(hub="hubspot_owner_id",
                         app="rep_id" if through_table else "rep_email", transform="owner",
                         owner_object="users" if through_table else "", required=required)
    return compile_rules(ObjectSync(connection="shop", hub_object="contacts",
                                    app_object="customers", direction=direction,  # type: ignore[arg-type]
                                    use_default_mappings=False,
                                    mappings=[FieldMapping(hub="email", app="email"),
                                              FieldMapping(hub="firstname", app="first_name"),
                                              owner]),
                         owners=directory)


def directory() -> OwnerDirectory:
    d = OwnerDirectory()
    d.set_hub(HUB_OWNERS)
    d.set_app(APP_USERS)
    return d


def hub(**props: Any) -> Record:
    return Record("h1", {"email": "x@example.com", **props})


def app(**props: Any) -> Record:
    return Record("a1", {"email": "x@example.com", **props})


def test_a_hub_owner_goes_to_the_app_as_its_email():
    d = decide(rules(directory()), hub(hubspot_owner_id="7"), app(rep_email=None), None)
    assert Update("app", "a1", {"rep_email": "ann@example.com"}) in d.actions
    assert d.warnings == []


def test_an_app_owner_email_goes_to_hubspot_as_the_owner_id():
    d = decide(rules(directory()), hub(hubspot_owner_id=""), app(rep_email="Bob@Example.com"),
               None)
    assert Update("hub", "h1", {"hubspot_owner_id": "9"}) in d.actions


def test_the_same_owner_on_both_sides_is_no_change_whatever_the_case():
    r = rules(directory())
    d = decide(r, hub(hubspot_owner_id="7"), app(rep_email="ANN@example.com"), None)
    assert d.actions == [Link("h1", "a1")]
    again = decide(r, hub(hubspot_owner_id="7"), app(rep_email="ANN@example.com"), d.snapshot)
    assert again.actions == [Noop()]


def test_through_an_owners_table_of_the_app():
    r = rules(directory(), through_table=True)
    to_app = decide(r, hub(hubspot_owner_id="11"), app(rep_id=None), None)
    assert Update("app", "a1", {"rep_id": 3}) in to_app.actions  # the app user's own id
    to_hub = decide(r, hub(hubspot_owner_id=None), app(rep_id=3), None)
    assert Update("hub", "h1", {"hubspot_owner_id": "11"}) in to_hub.actions


def test_an_owner_hubspot_does_not_know_is_a_warning_and_the_rest_syncs():
    r = rules(directory())
    d = decide(r, hub(hubspot_owner_id="", firstname=None),
               app(rep_email="stranger@example.com", first_name="Xi"), None)
    assert not any(isinstance(a, Fail) for a in d.actions)
    assert Update("hub", "h1", {"firstname": "Xi"}) in d.actions
    assert d.warnings == [FieldWarning("hubspot_owner_id", "hub",
                                       "stranger@example.com is not a HubSpot owner")]
    assert "hubspot_owner_id" not in d.snapshot.hub  # tried again next time


def test_a_hub_owner_the_app_has_no_user_for_is_a_warning():
    r = rules(directory(), through_table=True)
    d = decide(r, hub(hubspot_owner_id="7"), app(rep_id=None), None)
    assert not any(isinstance(a, Fail | Update) for a in d.actions)
    assert [w.side for w in d.warnings] == ["app"]
    assert "ann@example.com is not a user in the app's owners table" in d.warnings[0].message


def test_an_owner_id_the_directory_does_not_know_is_never_written():
    r = rules(directory())
    d = decide(r, hub(hubspot_owner_id="404"), app(rep_email=None), None)
    assert not any(isinstance(a, Update) for a in d.actions)
    assert "HubSpot owner 404 is unknown" in d.warnings[0].message


def test_a_skipped_owner_keeps_its_snapshot_and_moves_once_the_owner_exists():
    dirs = directory()
    r = rules(dirs)
    linked = Snapshot(hub={"email": "x@example.com", "firstname": None,
                           "hubspot_owner_id": "ann@example.com"},
                      app={"email": "x@example.com", "firstname": None,
                           "hubspot_owner_id": "ann@example.com"})
    # The app moved the record to a new rep HubSpot does not know yet.
    d = decide(r, hub(hubspot_owner_id="7"), app(rep_email="eve@example.com"), linked)
    assert d.actions == [Noop()]
    assert d.snapshot.hub["hubspot_owner_id"] == "ann@example.com"  # as it was
    assert len(d.warnings) == 1
    # Eve gets a HubSpot seat: the next sync of the record assigns her.
    dirs.set_hub([*HUB_OWNERS, ("12", "eve@example.com")])
    d = decide(r, hub(hubspot_owner_id="7"), app(rep_email="eve@example.com"), d.snapshot)
    assert d.actions == [Update("hub", "h1", {"hubspot_owner_id": "12"})]
    assert d.warnings == []


def test_a_create_goes_without_the_unknown_owner():
    r = rules(directory())
    d = decide(r, None, app(rep_email="stranger@example.com", first_name="Xi"), None)
    [create] = [a for a in d.actions if isinstance(a, Create)]
    assert create.values == {"email": "x@example.com", "firstname": "Xi"}
    assert d.warnings[0].field == "hubspot_owner_id"
    assert "hubspot_owner_id" not in d.snapshot.app


def test_a_required_owner_that_cannot_be_written_fails_the_record():
    r = rules(directory(), required=True)
    d = decide(r, None, app(rep_email="stranger@example.com"), None)
    assert isinstance(d.actions[0], Fail) and d.actions[0].category == "invalid_value"


def test_an_owner_cleared_on_one_side_is_cleared_on_the_other():
    r = rules(directory())
    first = decide(r, hub(hubspot_owner_id="9"), app(rep_email="bob@example.com"), None)
    d = decide(r, hub(hubspot_owner_id=""), app(rep_email="bob@example.com"), first.snapshot)
    assert d.actions == [Update("app", "a1", {"rep_email": None})]


def test_the_directory_says_what_it_cannot_resolve():
    d = directory()
    assert d.resolves("hub", "9", through_table=False, towards="app")
    assert not d.resolves("hub", "404", through_table=False, towards="app")
    assert not d.resolves("app", "eve@example.com", through_table=False, towards="hub")
    assert d.resolves("app", 3, through_table=True, towards="hub")
    assert not d.resolves("hub", "7", through_table=True, towards="app")  # no such app user
    assert d.resolves("app", None, through_table=False, towards="hub")
