"""Owner mappings (`transform = "owner"`): what check-config accepts and refuses, with the
`$.path` of each problem."""

from __future__ import annotations

import pytest

PD_TOKEN_VAR = "CRMSYNC_TEST_PD_TOKEN"

OWNER = """
[[syncs.mappings]]
hub = "hubspot_owner_id"
app = "{app}"
transform = "{transform}"
{extra}
"""


def sync_with(app: str = "rep_email", transform: str = "owner", extra: str = "") -> str:
    return OWNER.format(app=app, transform=transform, extra=extra)


def test_an_owner_mapping_by_email_is_valid(base, problems_of, error_paths):
    assert error_paths(problems_of(base + sync_with())) == set()


def test_an_owners_table_must_be_a_table_of_the_connection(base, problems_of, find):
    problems = problems_of(base + sync_with("rep_id", extra='owner_object = "staff"'))
    path = next(p.path for p in problems if p.path.endswith(".owner_object"))
    find(problems, path, "has no table for app object 'staff'")


def test_owner_object_belongs_to_owner_mappings(base, problems_of, find):
    problems = problems_of(base + sync_with("rep_id", "string", 'owner_object = "customers"'))
    path = next(p.path for p in problems if p.path.endswith(".owner_object"))
    find(problems, path, "only an owner mapping")


def test_hubspot_owner_id_without_the_owner_transform_is_a_warning(base, problems_of):
    problems = problems_of(base + sync_with("rep_id", "string"))
    [warning] = [p for p in problems if p.path.endswith(".transform")]
    assert warning.severity == "warning" and "transform = \"owner\"" in warning.message


def test_an_owners_table_on_a_connection_without_tables(base, problems_of, find,
                                                         monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(PD_TOKEN_VAR, "pd-test-token")
    text = base + f"""
[[connections]]
name = "pd"
type = "pipedrive"

[connections.auth]
kind = "api_token"
token_env = "{PD_TOKEN_VAR}"

[[syncs]]
connection = "pd"
hub_object = "deals"
app_object = "deals"
unique_property = "dealname"
auto_map_stages = true
""" + sync_with("owner_id", extra='owner_object = "users"')
    problems = problems_of(text)
    path = next(p.path for p in problems if p.path.endswith(".owner_object"))
    find(problems, path, "has no tables: owners of a pipedrive app are paired by the email")
