"""`type = "pipedrive"` connections: what check-config accepts and what it refuses, each with
its `$.path`."""

from __future__ import annotations

import pytest

PD_TOKEN_VAR = "CRMSYNC_TEST_PD_TOKEN"
HOOK_VAR = "CRMSYNC_TEST_PD_HOOK"

PIPEDRIVE = f"""
[[connections]]
name = "pd"
type = "pipedrive"
plan = "advanced"

[connections.auth]
kind = "api_token"
token_env = "{PD_TOKEN_VAR}"

[[syncs]]
connection = "pd"
hub_object = "contacts"
app_object = "persons"
"""


@pytest.fixture(autouse=True)
def _pipedrive_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PD_TOKEN_VAR, "pd-test-token")
    monkeypatch.setenv(HOOK_VAR, "pd-hook-password")


def test_a_pipedrive_connection_is_valid(base, problems_of, error_paths):
    text = base + PIPEDRIVE + """
[[syncs]]
connection = "pd"
hub_object = "deals"
app_object = "deals"
unique_property = "dealname"
auto_map_stages = true

[[syncs.mappings]]
hub = "customer_tier"
app = "Customer tier"
"""
    assert error_paths(problems_of(text)) == set()


def test_the_token_is_required_and_must_exist(base, problems_of, find, error_paths,
                                              monkeypatch):
    missing = base + PIPEDRIVE.replace(f'token_env = "{PD_TOKEN_VAR}"\n', "")
    problems = problems_of(missing)
    find(problems, "$.connections[1].auth.token_env", "missing secret")
    assert error_paths(problems) == {"$.connections[1].auth.token_env"}
    monkeypatch.delenv(PD_TOKEN_VAR)
    find(problems_of(base + PIPEDRIVE), "$.connections[1].auth.token_env",
         f"environment variable {PD_TOKEN_VAR} is not set")


def test_oauth_needs_its_client_secret_and_refresh_token(base, problems_of, error_paths):
    text = base + PIPEDRIVE.replace(f'kind = "api_token"\ntoken_env = "{PD_TOKEN_VAR}"',
                                    'kind = "oauth"\nclient_id = "abc"')
    assert error_paths(problems_of(text)) == {"$.connections[1].auth.client_secret_env",
                                              "$.connections[1].auth.refresh_token_env"}


def test_webhooks_need_a_password_and_a_url(base, problems_of, find, error_paths):
    hooks = base + PIPEDRIVE.replace("[[syncs]]", "[connections.webhooks]\nuser = \"u\"\n\n"
                                                  "[[syncs]]", 1)
    problems = problems_of(hooks)
    find(problems, "$.connections[1].webhooks.password_env", "missing secret")
    # No public_base_url in the base document: where would Pipedrive deliver?
    find(problems, "$.connections[1].webhooks.url", "public_base_url")
    assert error_paths(problems) == {"$.connections[1].webhooks.password_env",
                                     "$.connections[1].webhooks.url"}
    fixed = hooks.replace('user = "u"', f'user = "u"\npassword_env = "{HOOK_VAR}"\n'
                                        'url = "https://crmsync.example.com/webhooks/pd"')
    assert error_paths(problems_of(fixed)) == set()


@pytest.mark.parametrize(("app_object", "message"), [
    ("customers", "has no object 'customers'"),
    ("organizations", "sync with HubSpot companies, not contacts"),
])
def test_app_objects_are_pipedrive_objects_of_the_right_kind(base, problems_of, find,
                                                            app_object, message):
    text = base + PIPEDRIVE.replace('app_object = "persons"', f'app_object = "{app_object}"')
    find(problems_of(text), "$.syncs[1].app_object", message)


def test_unknown_keys_and_plans_are_refused(base, problems_of, find):
    text = base + PIPEDRIVE.replace('plan = "advanced"', 'plan = "gold"\ntokens = 5')
    problems = problems_of(text)
    find(problems, "$.connections[1].plan", "unknown value 'gold'")
    find(problems, "$.connections[1].tokens", "unknown key")
