"""Every validation issue 2 lists: each problem names its `$.path` and says why in plain words.

The documents are small TOML texts derived from one valid base (see conftest.py), so each test
shows exactly the mistake it makes. Where a mistake should produce one error, the test checks it
produces only that one: a follow-on error about something that is not wrong misleads an operator.
"""

from __future__ import annotations

import pytest

from crmsync.config import parse_config


def test_the_base_document_is_valid(base, problems_of, error_paths):
    assert error_paths(problems_of(base)) == set()


# --- wrong types ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "key", "value", "path", "expected", "got"),
    [
        ("[hub]", "poll_interval_seconds", '"often"', "$.hub.poll_interval_seconds",
         "number", "string"),
        ("[daemon.webhooks]", "enabled", '"yes"', "$.daemon.webhooks.enabled", "boolean",
         "string"),
        ("[daemon]", "state_dir", "17", "$.daemon.state_dir", "string", "integer"),
        ("[daemon.control]", "mode", '"0600"', "$.daemon.control.mode", "integer", "string"),
        ("[daemon.control]", "max_request_bytes", "65536.5",
         "$.daemon.control.max_request_bytes", "integer", "number"),
        ("[[connections.tables]]", "columns", '"email"', "$.connections[0].tables[0].columns",
         "array", "string"),
        ("[[syncs]]", "associations", '"companies"', "$.syncs[0].associations", "array",
         "string"),
        ("[[syncs.mappings]]", "required", "1", "$.syncs[0].mappings[0].required",
         "boolean", "integer"),
        ("[[syncs.filters]]", "value", "5", "$.syncs[0].filters[0].value", "string",
         "integer"),
    ],
)
def test_wrong_type(base, setkey, problems_of, find, error_paths, header, key, value, path,
                    expected, got):
    problems = problems_of(setkey(base, header, key, value))
    find(problems, path, "wrong type", f"expected {expected}", f"got {got}")
    assert error_paths(problems) == {path}


@pytest.mark.parametrize(
    ("line", "path", "got"),
    [
        ("mappings = 3", "$.syncs[1].mappings", "integer"),
        ('stage_map = "closedwon=won"', "$.syncs[1].stage_map", "string"),
        ("filters = [1]", "$.syncs[1].filters[0]", "integer"),
        ('mappings = [{ hub = "amount", app = "total" }, "dealname=name"]',
         "$.syncs[1].mappings[1]", "string"),
    ],
)
def test_wrong_type_of_an_array_of_tables(base, deals_sync, problems_of, find, line, path, got):
    problems = problems_of(base + deals_sync + "auto_map_stages = true\n" + line + "\n")
    find(problems, path, "wrong type", f"got {got}")


def test_a_table_where_a_value_is_expected_and_the_reverse(base, problems_of, find):
    text = base.replace('state_dir = "/var/lib/crmsync"', "state_dir = { path = 1 }")
    text = text.replace("[daemon.webhooks]\n", "[daemon.webhooks]\nnotify = 1\n")
    text = "hub = 5\n" + text.replace("[hub]\ntier", "[hubx]\ntier").replace(
        "[hub.auth]", "[hubx.auth]")
    problems = problems_of(text)
    find(problems, "$.daemon.state_dir", "wrong type", "got table")
    find(problems, "$.hub", "wrong type", "expected table", "got integer")
    find(problems, "$.hubx", "unknown key")


# --- unknown keys, at every depth --------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "line", "path"),
    [
        ("[daemon]", 'stat_dir = "/tmp"', "$.daemon.stat_dir"),
        ("[daemon.control]", "mod = 0o600", "$.daemon.control.mod"),
        ("[hub]", "poll_intervall_seconds = 60", "$.hub.poll_intervall_seconds"),
        ("[hub.auth]", 'tokn_env = "X"', "$.hub.auth.tokn_env"),
        ("[[connections]]", 'databse = "x.db"', "$.connections[0].databse"),
        ("[[connections.tables]]", 'primary = "id"', "$.connections[0].tables[0].primary"),
        ("[[syncs]]", 'conflict_winer = "hub"', "$.syncs[0].conflict_winer"),
        ("[[syncs.mappings]]", 'transfrom = "string"', "$.syncs[0].mappings[0].transfrom"),
        ("[[syncs.filters]]", 'op = "EQ"', "$.syncs[0].filters[0].op"),
    ],
)
def test_unknown_key(base, edit, problems_of, find, error_paths, header, line, path):
    problems = problems_of(edit(base, header, line))
    find(problems, path, "unknown key")
    assert error_paths(problems) == {path}


def test_unknown_keys_at_the_top_and_in_late_tables(base, deals_sync, problems_of, find):
    text = "version = 2\n" + base + deals_sync + """
[[syncs.stage_map]]
hub_pipeline = "default"
hub_stage = "closedwon"
app_pipeline = "sales"
app_stage = "won"
app_stag = "won"

[hub.limits]
per_10_seconds = 100
daily = 1000
burst = 5

[daemon.notify]
url = "https://hooks.example.com/x"
"""
    problems = problems_of(text)
    find(problems, "$.version", "unknown key")
    find(problems, "$.syncs[1].stage_map[0].app_stag", "unknown key")
    find(problems, "$.hub.limits.burst", "unknown key")
    find(problems, "$.daemon.notify.url", "unknown key")


def test_a_missing_required_key_is_named(base, problems_of, find):
    problems = problems_of(base.replace('database = "shop.db"\n', ""))
    find(problems, "$.connections[0].database", "missing")


# --- secrets ----------------------------------------------------------------------------------


def test_missing_secret_variable(base, problems_of, find, error_paths):
    problems = problems_of(base.replace('token_env = "CRMSYNC_TEST_HUB_TOKEN"',
                                        'token_env = "CRMSYNC_TEST_NOT_SET_ANYWHERE"'))
    find(problems, "$.hub.auth.token_env", "CRMSYNC_TEST_NOT_SET_ANYWHERE", "not set")
    assert error_paths(problems) == {"$.hub.auth.token_env"}


def test_missing_secret_file_names_the_file_it_looked_for(base, problems_of, find, tmp_path):
    problems = problems_of(base.replace('token_env = "CRMSYNC_TEST_HUB_TOKEN"',
                                        'token_file = "hubspot-token"'))
    find(problems, "$.hub.auth.token_file", str(tmp_path / "hubspot-token"), "does not exist")


@pytest.mark.parametrize("value", ["", "   ", "\n", " \t\n "])
def test_empty_secret_variable(base, problems_of, find, monkeypatch, value):
    monkeypatch.setenv("CRMSYNC_TEST_HUB_TOKEN", value)
    find(problems_of(base), "$.hub.auth.token_env", "CRMSYNC_TEST_HUB_TOKEN", "empty")


@pytest.mark.parametrize("content", ["", "\n", "  \n\n"])
def test_empty_secret_file(base, problems_of, find, tmp_path, content):
    (tmp_path / "hubspot-token").write_text(content)
    problems = problems_of(base.replace('token_env = "CRMSYNC_TEST_HUB_TOKEN"',
                                        'token_file = "hubspot-token"'))
    find(problems, "$.hub.auth.token_file", "empty")


def test_a_directory_is_not_a_secret_file(base, problems_of, find, tmp_path):
    (tmp_path / "creds").mkdir()
    problems = problems_of(base.replace('token_env = "CRMSYNC_TEST_HUB_TOKEN"',
                                        'token_file = "creds"'))
    find(problems, "$.hub.auth.token_file", "is a directory, not a regular file")


def test_both_env_and_file(base, problems_of, find, tmp_path):
    (tmp_path / "hubspot-token").write_text("pat-from-file\n")
    problems = problems_of(base.replace(
        'token_env = "CRMSYNC_TEST_HUB_TOKEN"',
        'token_env = "CRMSYNC_TEST_HUB_TOKEN"\ntoken_file = "hubspot-token"'))
    find(problems, "$.hub.auth.token_env", "token_env", "token_file", "not both")


def test_neither_env_nor_file(base, problems_of, find):
    problems = problems_of(base.replace('token_env = "CRMSYNC_TEST_HUB_TOKEN"\n', ""))
    find(problems, "$.hub.auth.token_env", "missing secret")


def test_every_secret_of_oauth_and_connections_is_checked(base, problems_of, find, edit):
    text = base.replace('kind = "private_app"\ntoken_env = "CRMSYNC_TEST_HUB_TOKEN"',
                        'kind = "oauth"\nclient_id = "abc"\n'
                        'client_secret_env = "CRMSYNC_TEST_NO_CLIENT_SECRET"\n'
                        'refresh_token_file = "no-refresh-token"')
    text = edit(text, "[hub]", 'webhook_client_secret_env = "CRMSYNC_TEST_NO_WEBHOOK_SECRET"')
    text = edit(text, "[[connections]]", 'webhook_secret_file = "no-shop-secret"')
    problems = problems_of(text)
    find(problems, "$.hub.auth.client_secret_env", "CRMSYNC_TEST_NO_CLIENT_SECRET", "not set")
    find(problems, "$.hub.auth.refresh_token_file", "no-refresh-token", "does not exist")
    find(problems, "$.hub.webhook_client_secret_env", "CRMSYNC_TEST_NO_WEBHOOK_SECRET")
    find(problems, "$.connections[0].webhook_secret_file", "no-shop-secret", "does not exist")


def test_oauth_without_refresh_token(base, problems_of, find):
    text = base.replace('kind = "private_app"\ntoken_env = "CRMSYNC_TEST_HUB_TOKEN"',
                        'kind = "oauth"\nclient_id = "abc"\n'
                        'client_secret_env = "CRMSYNC_TEST_HUB_TOKEN"')
    find(problems_of(text), "$.hub.auth.refresh_token_env", "missing secret")


def test_secrets_are_not_read_when_not_asked(base):
    text = base.replace('token_env = "CRMSYNC_TEST_HUB_TOKEN"',
                        'token_env = "CRMSYNC_TEST_NOT_SET_ANYWHERE"')
    cfg, _ = parse_config(text, check_host=False)
    assert cfg.hub.auth.token_env == "CRMSYNC_TEST_NOT_SET_ANYWHERE"


# --- connections and object syncs ---------------------------------------------------------------


def test_duplicate_connection_name(base, problems_of, find, error_paths):
    text = base.replace("[[syncs]]", '[[connections]]\nname = "shop"\ntype = "sqlite"\n'
                                     'database = "other.db"\n\n[[syncs]]', 1)
    problems = problems_of(text)
    find(problems, "$.connections[1].name", "duplicate connection name", "'shop'")
    assert error_paths(problems) == {"$.connections[1].name"}


def test_unknown_connection_in_an_object_sync(base, problems_of, find, error_paths):
    problems = problems_of(base.replace('connection = "shop"', 'connection = "shopp"'))
    find(problems, "$.syncs[0].connection", "unknown connection", "'shopp'", "shop")
    assert error_paths(problems) == {"$.syncs[0].connection"}


def test_app_object_not_among_the_connections_tables(base, problems_of, find, error_paths):
    problems = problems_of(base.replace('app_object = "customers"', 'app_object = "clients"'))
    find(problems, "$.syncs[0].app_object", "'shop'", "no table", "'clients'")
    assert error_paths(problems) == {"$.syncs[0].app_object"}


# --- what can be known offline of mappings and associations ------------------------------

INVOICES = """
[[connections.tables]]
object = "invoices"
table = "invoices"

[[connections.tables]]
object = "organisations"
table = "organisations"

[[connections.associations]]
from_object = "invoices"
to_object = "customers"
column = "customer_id"

[[connections.associations]]
from_object = "invoices"
to_object = "organisations"
column = "company_id"
"""

INVOICE_SYNCS = """
[[syncs]]
connection = "shop"
hub_object = "invoices"
app_object = "invoices"
unique_property = "hs_purchase_order_number"
associations = [{assoc}]

[[syncs]]
connection = "shop"
hub_object = "companies"
app_object = "organisations"
"""


def _with_invoices(base: str, assoc: str) -> str:
    text = base.replace("[[syncs]]", INVOICES.strip() + "\n\n[[syncs]]", 1)
    return text + INVOICE_SYNCS.format(assoc=assoc)


def test_invoices_kept_associated_with_companies_is_refused(base, problems_of, find,
                                                             error_paths):
    """The issue's case: accepted, then ignored (invoices keep their contacts and line items
    only, as HubSpot's data sync does)."""
    problems = problems_of(_with_invoices(base, '"contacts", "companies"'))
    find(problems, "$.syncs[1].associations[1]", "invoices are kept associated only with",
         "contacts and line_items", "remove 'companies'")
    assert error_paths(problems) == {"$.syncs[1].associations[1]"}


def test_the_kept_invoice_association_is_valid(base, problems_of, error_paths):
    assert error_paths(problems_of(_with_invoices(base, '"contacts"'))) == set()


def test_an_association_with_an_object_not_synced_is_refused(base, problems_of, find,
                                                            error_paths):
    text = base.replace('app_object = "customers"\n',
                        'app_object = "customers"\nassociations = ["deals"]\n', 1)
    problems = problems_of(text)
    find(problems, "$.syncs[0].associations[0]", "no object sync of deals", "remove 'deals'")
    assert error_paths(problems) == {"$.syncs[0].associations[0]"}


def test_an_association_the_app_does_not_store_is_refused(base, deals_sync, problems_of, find,
                                                         error_paths):
    text = base.replace('app_object = "customers"\n',
                        'app_object = "customers"\nassociations = ["deals"]\n', 1)
    text += deals_sync + 'auto_map_stages = true\n'
    problems = problems_of(text)
    find(problems, "$.syncs[0].associations[0]", "stores no association between app objects",
         "'customers' and 'opportunities'", "$.connections[0].associations")
    assert error_paths(problems) == {"$.syncs[0].associations[0]"}


def test_a_mapped_column_outside_the_tables_columns_is_refused(base, edit, problems_of, find,
                                                              error_paths):
    text = edit(base, "[[connections.tables]]",
                'columns = ["email", "first_name", "last_name", "phone", "job_title", '
                '"company_name"]')
    problems = problems_of(text)
    find(problems, "$.syncs[0].mappings[0].app", "'tier'", "not one of the columns",
         "$.connections[0].tables[0].columns")
    assert error_paths(problems) == {"$.syncs[0].mappings[0].app"}
    listed = text.replace('"company_name"]', '"company_name", "tier"]')
    assert error_paths(problems_of(listed)) == set()


def test_hub_property_mapped_twice(base, problems_of, find, error_paths):
    text = base + '\n[[syncs.mappings]]\nhub = "customer_tier"\napp = "level"\n'
    # The second mapping comes after the filter table, but TOML keeps it in syncs[0].mappings.
    problems = problems_of(text)
    find(problems, "$.syncs[0].mappings[1].hub", "'customer_tier'", "mapped twice")


def test_app_field_mapped_twice_in_the_config(base, problems_of, find):
    text = base + '\n[[syncs.mappings]]\nhub = "membership_level"\napp = "tier"\n'
    problems = problems_of(text)
    find(problems, "$.syncs[0].mappings[1].app", "'tier'", "mapped twice")


def test_app_field_mapped_twice_against_a_default_mapping(base, problems_of, find, error_paths):
    # The sqlite contacts defaults map hub `firstname` to app `first_name`.
    text = base + '\n[[syncs.mappings]]\nhub = "given_name"\napp = "first_name"\n'
    problems = problems_of(text)
    (p,) = [p for p in problems if p.severity == "error"]
    assert p.path.startswith("$.syncs[0].mappings"), p
    assert "'first_name'" in p.message and "mapped twice" in p.message, p
    assert "firstname" in p.message and "given_name" in p.message, p


def test_switching_a_default_off_frees_its_app_field(base, problems_of, error_paths):
    text = base + ('\n[[syncs.mappings]]\nhub = "firstname"\napp = "first_name"\nenabled = false\n'
                   '\n[[syncs.mappings]]\nhub = "given_name"\napp = "first_name"\n')
    assert error_paths(problems_of(text)) == set()


def test_without_default_mappings_a_default_field_is_free(base, edit, problems_of, error_paths):
    text = edit(base, "[[syncs]]", "use_default_mappings = false")
    text += '\n[[syncs.mappings]]\nhub = "email"\napp = "email"\n'
    text += '\n[[syncs.mappings]]\nhub = "given_name"\napp = "first_name"\n'
    assert error_paths(problems_of(text)) == set()


def test_a_required_mapping_switched_off(base, edit, problems_of, find, error_paths):
    text = edit(base, "[[syncs.mappings]]", "required = true", "enabled = false")
    problems = problems_of(text)
    find(problems, "$.syncs[0].mappings[0].enabled", "'customer_tier'", "required",
         "switched off")
    # The filter on `tier` now points at a switched-off mapping: that is a second, real error.
    find(problems, "$.syncs[0].filters[0].property", "'tier'", "not mapped")
    assert error_paths(problems) == {"$.syncs[0].mappings[0].enabled",
                                     "$.syncs[0].filters[0].property"}


@pytest.mark.parametrize(
    ("side", "prop"),
    [("app", "loyalty_points"), ("hub", "hs_lead_status"), ("hub", "tier"), ("app", "customer_tier")],
)
def test_a_filter_on_an_unmapped_property(base, problems_of, find, error_paths, side, prop):
    text = base.replace('side = "app"\nproperty = "tier"', f'side = "{side}"\nproperty = "{prop}"')
    problems = problems_of(text)
    find(problems, "$.syncs[0].filters[0].property", f"{side} property '{prop}'", "not mapped")
    assert error_paths(problems) == {"$.syncs[0].filters[0].property"}


def test_a_filter_on_a_default_mapping_is_fine(base, problems_of, error_paths):
    text = base.replace('side = "app"\nproperty = "tier"\noperator = "EQ"\nvalue = "gold"',
                        'side = "hub"\nproperty = "email"\noperator = "HAS_PROPERTY"')
    assert error_paths(problems_of(text)) == set()


def test_a_filter_on_a_switched_off_default_mapping(base, problems_of, find):
    text = base.replace('side = "app"\nproperty = "tier"', 'side = "hub"\nproperty = "phone"')
    text += '\n[[syncs.mappings]]\nhub = "phone"\napp = "phone"\nenabled = false\n'
    find(problems_of(text), "$.syncs[0].filters[0].property", "'phone'", "not mapped")


@pytest.mark.parametrize(
    ("header", "key", "value", "path", "allowed"),
    [
        ("[[syncs]]", "direction", "sideways", "$.syncs[0].direction", "'to_hub'"),
        ("[[syncs.mappings]]", "direction", "up", "$.syncs[0].mappings[0].direction", "'both'"),
        ("[[syncs.filters]]", "operator", "LIKE", "$.syncs[0].filters[0].operator", "'CONTAINS'"),
        ("[hub]", "tier", "free", "$.hub.tier", "'enterprise'"),
        ("[[syncs.mappings]]", "transform", "upper", "$.syncs[0].mappings[0].transform",
         "'datetime'"),
        ("[[syncs]]", "conflict_winner", "newest", "$.syncs[0].conflict_winner", "'app'"),
        ("[[syncs]]", "on_delete", "cascade", "$.syncs[0].on_delete", "'review'"),
        ("[daemon]", "log_format", "xml", "$.daemon.log_format", "'console'"),
    ],
)
def test_unknown_enum_value(base, setkey, problems_of, find, error_paths, header, key, value, path,
                            allowed):
    problems = problems_of(setkey(base, header, key, f'"{value}"'))
    find(problems, path, f"unknown value '{value}'", allowed)
    assert error_paths(problems) == {path}


@pytest.mark.parametrize("value", ["mysql", "SQLite", "Postgres"])
def test_unknown_connection_type(base, problems_of, find, value):
    problems = problems_of(base.replace('type = "sqlite"', f'type = "{value}"'))
    find(problems, "$.connections[0].type", f"'{value}'", "'sqlite'", "'postgres'")


PG = 'type = "postgres"\ndsn_env = "CRMSYNC_TEST_PG_DSN"'


def postgres(base: str) -> str:
    return base.replace('type = "sqlite"\ndatabase = "shop.db"', PG)


def test_a_postgres_connection_is_valid(base, problems_of, error_paths, monkeypatch):
    monkeypatch.setenv("CRMSYNC_TEST_PG_DSN", "host=/run/postgresql dbname=shop")
    assert error_paths(problems_of(postgres(base))) == set()


def test_a_postgres_connection_needs_its_connection_string(base, problems_of, find,
                                                           error_paths):
    text = postgres(base).replace('dsn_env = "CRMSYNC_TEST_PG_DSN"\n', "")
    find(problems_of(text), "$.connections[0].dsn_env", "dsn_env or dsn_file")
    # Given but unset: named, never the value.
    problems = problems_of(postgres(base))
    find(problems, "$.connections[0].dsn_env", "CRMSYNC_TEST_PG_DSN is not set")
    assert error_paths(problems) == {"$.connections[0].dsn_env"}


def test_a_postgres_connection_takes_no_database_key(base, problems_of, find, monkeypatch):
    monkeypatch.setenv("CRMSYNC_TEST_PG_DSN", "dbname=shop")
    text = postgres(base).replace(PG, PG + '\ndatabase = "shop.db"')
    find(problems_of(text), "$.connections[0].database", "unknown key")


def test_the_changelog_schema_is_crmsyncs_own(base, problems_of, find, monkeypatch):
    monkeypatch.setenv("CRMSYNC_TEST_PG_DSN", "dbname=shop")
    text = postgres(base).replace(PG, PG + '\nchangelog_schema = "public"')
    find(problems_of(text), "$.connections[0].changelog_schema", "must differ")


def test_one_object_sync_per_postgres_table(base, problems_of, find, monkeypatch):
    # Its change-log entries are deleted once the reading object sync acknowledges them.
    monkeypatch.setenv("CRMSYNC_TEST_PG_DSN", "dbname=shop")
    second = """
[[syncs]]
connection = "shop"
hub_object = "companies"
app_object = "customers"
[[syncs.mappings]]
hub = "name"
app = "name"
"""
    find(problems_of(postgres(base) + second), "$.syncs[1].app_object", "already synced")
    # SQLite's log is read by cursor: two readers are fine there.
    assert not [p for p in problems_of(base + second) if "already synced" in p.message]


def test_missing_connection_type(base, problems_of, find):
    find(problems_of(base.replace('type = "sqlite"\n', "")), "$.connections[0].type", "missing",
         "'sqlite'")


def test_unknown_hub_auth_kind(base, problems_of, find):
    problems = problems_of(base.replace('kind = "private_app"', 'kind = "api_key"'))
    find(problems, "$.hub.auth.kind", "unknown value 'api_key'", "'oauth'")


def test_tier_custom_needs_limits(base, problems_of, find, error_paths, edit):
    text = base.replace('tier = "professional"', 'tier = "custom"')
    problems = problems_of(text)
    find(problems, "$.hub.limits", "custom")
    assert error_paths(problems) == {"$.hub.limits"}
    with_limits = text + "\n[hub.limits]\nper_10_seconds = 100\ndaily = 250000\n"
    assert error_paths(problems_of(with_limits)) == set()


@pytest.mark.parametrize("mode", ["0o644", "0o666", "0o700", "0o777", "0", "384"])
def test_control_socket_mode(base, problems_of, find, error_paths, mode):
    problems = problems_of(base.replace("mode = 0o600", f"mode = {mode}"))
    expected = {"384": None}.get(mode, "$.daemon.control.mode")  # 384 == 0o600
    if expected is None:
        assert error_paths(problems) == set()
    else:
        find(problems, expected, "0o600", "0o660")
        assert error_paths(problems) == {expected}


def test_control_socket_mode_660_needs_a_group(base, problems_of, find, error_paths):
    text = base.replace("mode = 0o600", "mode = 0o660")
    find(problems_of(text), "$.daemon.control.group", "group")
    assert error_paths(problems_of(text.replace("mode = 0o660", 'mode = 0o660\ngroup = "adm"'))) \
        == set()


def test_deals_without_a_stage_map(base, deals_sync, problems_of, find, error_paths):
    problems = problems_of(base + deals_sync)
    find(problems, "$.syncs[1].stage_map", "stage")
    assert error_paths(problems) == {"$.syncs[1].stage_map"}
    assert error_paths(problems_of(base + deals_sync + "auto_map_stages = true\n")) == set()
    with_map = base + deals_sync + (
        '\n[[syncs.stage_map]]\nhub_pipeline = "default"\nhub_stage = "closedwon"\n'
        'app_pipeline = "sales"\napp_stage = "won"\n')
    assert error_paths(problems_of(with_map)) == set()


# --- all problems in one run ------------------------------------------------------------------


def test_a_config_with_many_problems_lists_all_of_them(base, deals_sync, problems_of, find):
    text = base
    text = text.replace('state_dir = "/var/lib/crmsync"', 'state_dri = "/var/lib/crmsync"')
    text = text.replace("mode = 0o600", "mode = 0o644")
    text = text.replace('tier = "professional"', 'tier = "custom"\npoll_interval_seconds = "5m"')
    text = text.replace('token_env = "CRMSYNC_TEST_HUB_TOKEN"', 'token_file = "no-such-token"')
    text = text.replace('database = "shop.db"', 'database = "shop.db"\nbatch_size = "big"')
    text = text.replace('connection = "shop"', 'connection = "shopp"')
    text = text.replace('hub = "customer_tier"\napp = "tier"',
                        'hub = "customer_tier"\napp = "tier"\ntransfrom = "enum"')
    text = text.replace('operator = "EQ"', 'operator = "LIKE"')
    text += deals_sync
    text += '\n[[syncs.mappings]]\nhub = "amount"\napp = "total"\nrequired = true\nenabled = false\n'
    text += ('\n[[syncs.filters]]\nside = "hub"\nproperty = "hs_priority"\noperator = "EQ"\n'
             'value = "high"\n')
    text += '\n[[connections]]\nname = "shop"\ntype = "sqlite"\ndatabase = "copy.db"\n'

    problems = problems_of(text)
    # structural
    find(problems, "$.daemon.state_dri", "unknown key")
    find(problems, "$.hub.poll_interval_seconds", "wrong type")
    find(problems, "$.connections[0].batch_size", "wrong type")
    find(problems, "$.syncs[0].mappings[0].transfrom", "unknown key")
    find(problems, "$.syncs[0].filters[0].operator", "unknown value 'LIKE'")
    # semantic
    find(problems, "$.daemon.control.mode", "0o600")
    find(problems, "$.hub.limits", "custom")
    find(problems, "$.hub.auth.token_file", "does not exist")
    find(problems, "$.connections[1].name", "duplicate connection name")
    find(problems, "$.syncs[0].connection", "unknown connection 'shopp'")
    find(problems, "$.syncs[1].stage_map", "stage")
    find(problems, "$.syncs[1].mappings[0].enabled", "required", "switched off")
    find(problems, "$.syncs[1].filters[0].property", "'hs_priority'", "not mapped")


def test_problems_print_as_severity_path_reason(base, problems_of):
    problems = problems_of(base.replace("mode = 0o600", "mode = 0o644"))
    assert [str(p) for p in problems] == [
        "error: $.daemon.control.mode: must be 0o600 or 0o660, not 0o644"]


# --- bugs: reasons that are not plain, or not true ----------------------------------------------


@pytest.mark.parametrize(
    ("header", "key", "value", "path"),
    [
        ("[hub]", "poll_interval_seconds", "-5", "$.hub.poll_interval_seconds"),
        ("[hub]", "poll_interval_seconds", "0.0", "$.hub.poll_interval_seconds"),
        ("[daemon]", "history_retention_days", "0", "$.daemon.history_retention_days"),
        ("[[connections]]", "batch_size", "0", "$.connections[0].batch_size"),
        ("[[connections]]", "database", '""', "$.connections[0].database"),
    ],
)
def test_an_out_of_range_value_is_not_called_a_wrong_type(base, setkey, problems_of, find, header,
                                                          key, value, path):
    """BUG: msgspec's constraint errors ("Expected `int` >= 1") start like type errors, and the
    loader rewrites them to "wrong type: expected integer, got integer"."""
    problems = problems_of(setkey(base, header, key, value))
    p = find(problems, path)
    assert "wrong type" not in p.message, p


@pytest.mark.parametrize(
    ("header", "line", "path", "expected", "got"),
    [
        ("[[connections.tables]]", 'columns = ["email", 1]',
         "$.connections[0].tables[0].columns[1]", "string", "integer"),
        ("[[syncs.mappings]]", "options = { gold = 1 }", "$.syncs[0].mappings[0].options.gold",
         "string", "integer"),
    ],
)
def test_a_wrong_element_type_names_the_element(base, edit, problems_of, find, header, line, path,
                                                expected, got):
    """BUG: an element of an array or a value of a table with the wrong type is reported as
    "wrong type: expected array, got array" (or `options[...]`, "expected table, got table")."""
    problems = problems_of(edit(base, header, line))
    find(problems, path, f"expected {expected}", f"got {got}")


def test_two_configured_mappings_of_one_app_field_do_not_blame_a_default(base, problems_of):
    """BUG: the default-mapping check also sees configured mappings, so two configured mappings
    of one app field get a second error claiming one of them is a default."""
    text = base + '\n[[syncs.mappings]]\nhub = "membership_level"\napp = "tier"\n'
    problems = [p for p in problems_of(text) if p.severity == "error"]
    assert all("by default" not in p.message for p in problems), problems
    assert len(problems) == 1, problems


@pytest.mark.parametrize(
    ("old", "new", "path"),
    [
        # The placeholder hub object ("companies") makes the contacts filter and event sync look
        # wrong.
        ('hub_object = "contacts"', 'hub_object = "contact"\nevent_sync = true',
         "$.syncs[0].hub_object"),
        # The placeholder auth (private_app without a token) makes the given token_env look
        # missing.
        ('kind = "private_app"', 'kind = "api_key"', "$.hub.auth.kind"),
        # The placeholder name ("_invalid_") makes the sync's connection look unknown, and is
        # shown to the operator as a known connection.
        ('name = "shop"', "name = 5", "$.connections[0].name"),
        # A dropped option map makes the enum mapping look like it has none.
        ('hub = "customer_tier"\napp = "tier"',
         'hub = "customer_tier"\napp = "tier"\ntransform = "enum"\noptions = { gold = 1 }',
         "$.syncs[0].mappings[0].options"),
    ],
)
def test_one_invalid_value_gives_one_error_not_follow_on_errors(base, problems_of, old, new,
                                                                path):
    """BUG: an invalid value is replaced by a placeholder (or dropped) to keep checking the
    rest, but the semantic checks then report problems that exist only in the placeholder."""
    problems = [p for p in problems_of(base.replace(old, new)) if p.severity == "error"]
    assert len(problems) == 1 and problems[0].path.startswith(path), problems
