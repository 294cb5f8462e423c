"""Mappings against both sides' fields (engine/mapping_check.py): existence, writability where
written, and which field types a transform can read and write.

HubSpot facts used: writing a property that does not exist or is read-only is an error
(fact sheet §1.1: "Read-only or non-existent properties in create/update cause an error");
property types are string, number, bool, date, datetime, enumeration (§1, HubSpot's
`type`); a date property takes midnight UTC only, a datetime any instant.
"""

from __future__ import annotations

import pytest

from crmsync.config.defaults import effective_mappings
from crmsync.config.model import FieldMapping, ObjectSync
from crmsync.connectors.base import FieldInfo
from crmsync.engine.mapping_check import (
    FIELD_TYPES,
    READS,
    check_mappings,
    reads,
    type_problem,
    writes,
)

HUB = {f.name: f for f in (
    FieldInfo("email"), FieldInfo("firstname"), FieldInfo("lastname"), FieldInfo("phone"),
    FieldInfo("jobtitle"), FieldInfo("company"),
    FieldInfo("numberofemployees", "number"), FieldInfo("date_of_birth", "date"),
    FieldInfo("closedate", "datetime"), FieldInfo("vip", "bool"),
    FieldInfo("tier", "enumeration", options=("gold", "silver")),
    FieldInfo("hs_object_id", "number", read_only=True),
    FieldInfo("createdate", "datetime", read_only=True),
)}
APP = {f.name: f for f in (
    FieldInfo("id", "number", read_only=True), FieldInfo("email"), FieldInfo("first_name"),
    FieldInfo("last_name"), FieldInfo("phone"), FieldInfo("job_title"),
    FieldInfo("company_name"), FieldInfo("staff", "number"), FieldInfo("notes"),
    FieldInfo("born", "date"), FieldInfo("seen_at", "datetime"), FieldInfo("vip", "bool"),
    FieldInfo("hubspot_id", "number"), FieldInfo("updated_at", "datetime", read_only=True),
)}


def sync(*mappings: FieldMapping, direction: str = "both", defaults: bool = True
         ) -> ObjectSync:
    return ObjectSync(connection="shop", hub_object="contacts", app_object="customers",
                      direction=direction, mappings=list(mappings),  # type: ignore[arg-type]
                      use_default_mappings=defaults)


def problems(s: ObjectSync, hub=HUB, app=APP) -> list[str]:
    effective = effective_mappings("sqlite", s.hub_object, s.mappings,
                                   s.use_default_mappings, list(app))
    return [str(p) for p in check_mappings(s, effective, hub, app, sync_path="$.syncs[0]")]


def test_the_defaults_fit_a_conventional_table() -> None:
    assert problems(sync()) == []


def test_a_hub_property_that_does_not_exist_names_the_mapping_and_the_fix() -> None:
    """The issue's case: `favorite_color` passed every check, then failed 8 records."""
    [p] = problems(sync(FieldMapping(hub="favorite_color", app="notes")))
    assert p.startswith("$.syncs[0].mappings[0].hub: mapping favorite_color ⇄ notes: ")
    assert "HubSpot has no contacts property 'favorite_color'" in p
    assert "create it in HubSpot or correct `hub`" in p


def test_an_app_column_that_does_not_exist_is_not_dropped_silently() -> None:
    [p] = problems(sync(FieldMapping(hub="lastname", app="surname")))
    assert p.startswith("$.syncs[0].mappings[0].app: ")
    assert "app object 'customers' has no column 'surname'" in p


def test_a_default_mapping_that_does_not_fit_says_how_to_switch_it_off() -> None:
    hub = {k: v for k, v in HUB.items() if k != "jobtitle"}
    [p] = problems(sync(), hub=hub)
    assert p.startswith("$.syncs[0].mappings: mapping jobtitle ⇄ job_title (a default): ")
    assert "hub = 'jobtitle' and enabled = false" in p


@pytest.mark.parametrize(("mapping", "direction", "where", "fix"), [
    (FieldMapping(hub="hs_object_id", app="hubspot_id", transform="number"), "both",
     "HubSpot property 'hs_object_id' is read-only", "'to_app'"),
    (FieldMapping(hub="numberofemployees", app="id", transform="number"), "both",
     "app column 'id' is read-only", "'to_hub'"),
    (FieldMapping(hub="lastname", app="updated_at", transform="datetime"), "to_app",
     "app column 'updated_at' is read-only", "'to_hub'"),
])
def test_a_read_only_field_that_is_written_is_refused(mapping: FieldMapping, direction: str,
                                                      where: str, fix: str) -> None:
    s = sync(mapping, direction=direction, defaults=False)
    [p] = problems(s)
    assert where in p and fix in p


def test_a_read_only_field_that_is_only_read_fits() -> None:
    s = sync(FieldMapping(hub="hs_object_id", app="hubspot_id", direction="to_app",
                          transform="number"),
             FieldMapping(hub="createdate", app="seen_at", direction="to_app",
                          transform="datetime"))
    assert problems(s) == []


@pytest.mark.parametrize(("mapping", "fits"), [
    # Typed transforms normalise: a text field on the other side is read value by value.
    (FieldMapping(hub="numberofemployees", app="notes", transform="number"), True),
    (FieldMapping(hub="numberofemployees", app="staff", transform="number"), True),
    (FieldMapping(hub="numberofemployees", app="staff"), True),  # numbers as they are
    # Text written as it is into a number property: most values would be refused.
    (FieldMapping(hub="numberofemployees", app="notes"), False),
    (FieldMapping(hub="numberofemployees", app="notes", direction="to_app"), True),
    (FieldMapping(hub="numberofemployees", app="born", transform="date"), False),
    (FieldMapping(hub="date_of_birth", app="born", transform="date"), True),
    (FieldMapping(hub="closedate", app="born", transform="date"), True),  # midnight UTC
    (FieldMapping(hub="closedate", app="seen_at", transform="datetime"), True),
    (FieldMapping(hub="date_of_birth", app="seen_at", transform="datetime"), False),
    (FieldMapping(hub="date_of_birth", app="seen_at", transform="datetime",
                  direction="to_app"), True),
    (FieldMapping(hub="vip", app="vip", transform="bool"), True),
    (FieldMapping(hub="vip", app="notes"), False),
    (FieldMapping(hub="firstname", app="vip"), False),  # any text into a bool column
    (FieldMapping(hub="vip", app="staff", transform="number"), False),
    # Enumerations: text written as it is (HubSpot checks each option), or an option map.
    (FieldMapping(hub="tier", app="notes"), True),
    (FieldMapping(hub="tier", app="notes", transform="enum",
                  options={"G": "gold", "S": "silver"}), True),
    (FieldMapping(hub="tier", app="notes", transform="multiselect"), True),
    (FieldMapping(hub="tier", app="staff", transform="date"), False),
])
def test_types_and_transforms(mapping: FieldMapping, fits: bool) -> None:
    got = problems(sync(mapping, defaults=False))
    assert (got == []) is fits, got
    if not fits:
        assert got[0].startswith("$.syncs[0].mappings[0].transform: ")


def test_the_fix_names_the_transform_that_fits() -> None:
    [p] = problems(sync(FieldMapping(hub="numberofemployees", app="notes"), defaults=False))
    assert "HubSpot property 'numberofemployees' (number) cannot hold the string values" in p
    assert "use transform = 'number'" in p


def test_an_option_map_value_that_is_not_a_hubspot_option() -> None:
    [p] = problems(sync(FieldMapping(hub="tier", app="notes", transform="enum",
                                     options={"G": "gold", "P": "platinum"}), defaults=False))
    assert p.startswith("$.syncs[0].mappings[0].options: ")
    assert "'platinum' is not an option of HubSpot property 'tier'" in p


def test_switched_off_and_one_way_mappings_are_checked_only_where_they_move() -> None:
    s = sync(FieldMapping(hub="favorite_color", app="notes", enabled=False),
             FieldMapping(hub="numberofemployees", app="notes", direction="to_app"))
    assert problems(s) == []
    # A to_hub object sync never writes the app: a read-only column is fine there.
    assert problems(sync(FieldMapping(hub="firstname", app="id"), direction="to_hub",
                         defaults=False)) == []


def test_stage_mappings_check_the_pipeline_fields_too() -> None:
    s = ObjectSync(connection="shop", hub_object="deals", app_object="deals",
                   mappings=[FieldMapping(hub="dealstage", app="stage", transform="stage")],
                   use_default_mappings=False, auto_map_stages=True)
    hub = {f.name: f for f in (FieldInfo("dealstage", "enumeration"),)}
    app = {f.name: f for f in (FieldInfo("stage"), FieldInfo("pipeline"))}
    got = check_mappings(s, s.mappings, hub, app, sync_path="$.syncs[1]")
    assert [(p.path, "'pipeline'" in p.message) for p in got] == [
        ("$.syncs[1].mappings[0].hub", True)]
    # An app with one pipeline may have no pipeline column, as long as nothing writes one.
    hub["pipeline"] = FieldInfo("pipeline", "enumeration")
    del app["pipeline"]
    got = check_mappings(s, s.mappings, hub, app, sync_path="$.syncs[1]")
    assert [(p.path, "'pipeline'" in p.message) for p in got] == [
        ("$.syncs[1].mappings[0].app", True)]
    one_way = ObjectSync(connection="shop", hub_object="deals", app_object="deals",
                         direction="to_hub", mappings=s.mappings, use_default_mappings=False,
                         auto_map_stages=True)
    assert check_mappings(one_way, s.mappings, hub, app) == []


def test_the_tables_cover_every_transform_and_type() -> None:
    transforms = set(READS)
    for t in transforms:
        for ft in FIELD_TYPES:
            assert isinstance(reads(t, ft), bool)
            for st in FIELD_TYPES:
                assert isinstance(writes(t, ft, st), bool)
    # Text holds anything and every transform reads it.
    assert all(reads(t, "string") and writes(t, "string", st)
               for t in transforms - {"stage"} for st in FIELD_TYPES if reads(t, st))
    # A field whose type matches the transform's always fits, whichever way values go.
    for t, ft in (("number", "number"), ("bool", "bool"), ("date", "date"),
                  ("datetime", "datetime"), ("enum", "enumeration")):
        assert type_problem(t, "hub", "x", ft, ft, True) is None
        assert type_problem("string", "app", "x", ft, ft, True) is None
