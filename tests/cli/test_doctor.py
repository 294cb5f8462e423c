"""`crmsync doctor` against the HubSpot emulator and a SQLite app: one line per check, exit
0 / 2, `--json`, `--create-properties`."""

from __future__ import annotations

import io
import json
import socket
import sqlite3
from pathlib import Path
from typing import Any

import httpx
import pytest

from crmsync.cli import doctor
from crmsync.cli.main import build_parser
from crmsync.emulators.hubspot import HubSpotEmulator
from crmsync.emulators.hubspot.oauth import Credential, OAuthApp

TOKEN = "pat-na1-doctor-0123456789"

SCHEMA = """
CREATE TABLE customers (id INTEGER PRIMARY KEY, email TEXT, first_name TEXT, last_name TEXT,
                        tier TEXT, score INTEGER, vip BOOLEAN, signed_up DATE,
                        rep_email TEXT, updated_at TEXT);
CREATE TABLE opportunities (id INTEGER PRIMARY KEY, name TEXT, amount REAL, stage TEXT,
                            pipeline TEXT, updated_at TEXT);
CREATE TABLE pipelines (id TEXT PRIMARY KEY, label TEXT);
CREATE TABLE stages (id TEXT PRIMARY KEY, pipeline_id TEXT, label TEXT);
INSERT INTO pipelines VALUES ('sales', 'Sales');
INSERT INTO stages VALUES ('open', 'sales', 'Open'), ('won', 'sales', 'Won');
"""

CONTACTS = """
[[syncs]]
connection = "shop"
hub_object = "contacts"
app_object = "customers"
direction = "{direction}"
"""


def setup(tmp: Path, *, mappings: str = "", direction: str = "both", auth: str = "",
          syncs: str | None = None, webhooks: str = "", hub: str = "",
          tables: str = "") -> Path:
    db = tmp / "app.db"
    if not db.exists():
        conn = sqlite3.connect(db)
        conn.executescript(SCHEMA)
        conn.close()
    (tmp / "token").write_text(TOKEN + "\n")
    (tmp / "token").chmod(0o600)
    cfg = tmp / "crmsync.toml"
    cfg.write_text(f"""
[daemon]
state_dir = "{tmp / 'state'}"

[daemon.webhooks]
{webhooks or 'enabled = false'}

[hub]
base_url = "http://hubspot.test"
tier = "starter"
{hub}

[hub.auth]
{auth or 'kind = "private_app"' + chr(10) + 'token_file = "token"'}

[[connections]]
name = "shop"
type = "sqlite"
database = "{db}"

[[connections.tables]]
object = "customers"
table = "customers"

[[connections.tables]]
object = "opportunities"
table = "opportunities"
pipeline_column = "pipeline"
stage_column = "stage"
{tables}

[connections.pipelines]

{syncs if syncs is not None else CONTACTS.format(direction=direction)}
{mappings}
""")
    return cfg


def run(cfg: Path, emu: HubSpotEmulator, *args: str) -> tuple[int, str]:
    out = io.StringIO()
    parsed = build_parser().parse_args(["doctor", "--config", str(cfg), *args])
    status = doctor.run(parsed, out=out, stdin=io.StringIO(),
                        hub_transport=httpx.ASGITransport(emu.app))
    return status, out.getvalue()


def as_json(cfg: Path, emu: HubSpotEmulator, *args: str) -> tuple[int, dict[str, Any]]:
    status, text = run(cfg, emu, "--json", *args)
    return status, json.loads(text)


def by_name(report: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return [c for c in report["checks"] if c["name"] == name]


def test_a_fitting_configuration_passes(tmp_path: Path):
    emu = HubSpotEmulator(tokens=(TOKEN,), tier="starter")
    status, text = run(setup(tmp_path), emu)
    assert status == 0, text
    lines = text.splitlines()
    assert lines[0].startswith("✓ config: ")
    assert any(line.startswith("✓ token: valid for HubSpot account 62515") for line in lines)
    assert any(line.startswith("✓ scopes: the granted scopes cover the object syncs "
                               "(crm.objects.contacts.read, crm.objects.contacts.write)")
               for line in lines)
    assert any(line.startswith("✓ mappings syncs[0]: contacts ⇄ shop.customers:")
               for line in lines)
    # Starter: 250,000 requests a day, reported by HubSpot's headers (fact sheet §3.2).
    assert any(line.startswith("✓ rate budget: ") and "of 250,000 requests left today" in line
               for line in lines)
    assert lines[-1] == "✓ ready to run"


def test_a_missing_property_fails_until_created_from_the_app_column(tmp_path: Path):
    emu = HubSpotEmulator(tokens=(TOKEN,))
    cfg = setup(tmp_path, mappings="""
[[syncs.mappings]]
hub = "customer_score"
app = "score"
transform = "number"

[[syncs.mappings]]
hub = "customer_tier"
app = "tier"
transform = "enum"
options = { g = "Gold", s = "Silver" }

[[syncs.mappings]]
hub = "is_vip"
app = "vip"
transform = "bool"

[[syncs.mappings]]
hub = "signup_date"
app = "signed_up"
transform = "date"
""")
    status, report = as_json(cfg, emu)
    assert status == 2 and not report["ok"]
    failing = [c["message"] for c in by_name(report, "mappings syncs[0]")]
    assert any("$.syncs[0].mappings[0].hub" in m and "customer_score" in m for m in failing)
    [plan] = by_name(report, "create properties")
    assert plan["status"] == "fail" and "--create-properties" in plan["fix"]

    # Without --yes and without a terminal to ask on, nothing is created.
    status, report = as_json(cfg, emu, "--create-properties")
    assert status == 2 and report["created"] == []
    assert emu.state.registry.get(emu.state.object_type("contacts"), "customer_score") is None

    status, text = run(cfg, emu, "--create-properties", "--yes")
    assert status == 0, text
    assert "crmsync doctor will create these HubSpot properties:" in text
    props = {p["name"]: p for p in _properties(emu, "contacts")}
    # hubspot-onboarding.md §5: type/fieldType pairs; enumerations carry their options.
    assert (props["customer_score"]["type"], props["customer_score"]["fieldType"]) == (
        "number", "number")
    assert (props["customer_tier"]["type"], props["customer_tier"]["fieldType"]) == (
        "enumeration", "select")
    assert [o["value"] for o in props["customer_tier"]["options"]] == ["Gold", "Silver"]
    assert (props["is_vip"]["type"], props["is_vip"]["fieldType"]) == ("bool", "booleancheckbox")
    assert (props["signup_date"]["type"], props["signup_date"]["fieldType"]) == ("date", "date")
    assert props["customer_score"]["groupName"] == "contactinformation"
    status, text = run(cfg, emu)
    assert status == 0, text


def _properties(emu: HubSpotEmulator, obj: str) -> list[dict[str, Any]]:
    registry = emu.state.registry
    o = emu.state.object_type(obj)
    return [registry.to_json(o, p) for p in registry.all(o)]


def test_a_service_key_without_the_write_scope(tmp_path: Path):
    emu = HubSpotEmulator(tokens=(Credential(TOKEN, "service_key",
                                             frozenset({"crm.objects.contacts.read"})),))
    cfg = setup(tmp_path, auth='kind = "service_key"\ntoken_file = "token"')
    status, report = as_json(cfg, emu)
    assert status == 2
    [scopes] = by_name(report, "scopes")
    assert scopes["status"] == "fail"
    assert "crm.objects.contacts.write (write contacts ⇄ shop.customers)" in scopes["message"]
    assert "Service keys" in scopes["fix"]
    [cred] = by_name(report, "credential")
    assert "cannot receive webhooks" in cred["message"]
    [hooks] = by_name(report, "webhooks")
    assert hooks["status"] == "ok" and "none for a service key" in hooks["message"]


@pytest.mark.parametrize(("kind", "named", "says"), [
    # hubspot-onboarding.md §0: a service key makes REST calls only; a project app's static
    # token and a legacy private app's token also receive webhooks; legacy private apps can
    # no longer be created since 2026-10-26.
    ("service_key", "service key", "cannot receive webhooks"),
    ("static_token", "project app static token", "REST calls and webhooks"),
    ("private_app", "legacy private app token", "cannot be created since 2026-10-26"),
])
def test_each_kind_of_token_is_taken_and_said_what_it_can_do(tmp_path: Path, kind: str,
                                                             named: str, says: str):
    emu = HubSpotEmulator(tokens=(Credential(TOKEN, kind, frozenset({
        "crm.objects.contacts.read", "crm.objects.contacts.write"})),))
    status, report = as_json(setup(tmp_path, auth=f'kind = "{kind}"\ntoken_file = "token"'),
                             emu)
    assert status == 0, report
    [cred] = by_name(report, "credential")
    assert cred["message"].startswith(f"{named}: ") and says in cred["message"]
    [token] = by_name(report, "token")
    assert token["status"] == "ok" and "account 62515" in token["message"]


def test_a_token_hubspot_does_not_know(tmp_path: Path):
    emu = HubSpotEmulator(tokens=("another-token",))
    status, report = as_json(setup(tmp_path), emu)
    assert status == 2
    [token] = by_name(report, "token")
    assert token["status"] == "fail" and "refused" in token["message"]
    assert "private app" in token["fix"]
    assert TOKEN not in json.dumps(report)
    # Nothing that needs the hub is reported as passing.
    assert not by_name(report, "scopes") and not by_name(report, "mappings syncs[0]")


def test_a_missing_app_table(tmp_path: Path):
    emu = HubSpotEmulator(tokens=(TOKEN,))
    cfg = setup(tmp_path, tables='\n[[connections.tables]]\nobject = "users"\ntable = "users"\n')
    status, report = as_json(cfg, emu)
    assert status == 2
    [conn] = by_name(report, "connection shop")
    assert conn["status"] == "fail" and "users" in conn["message"]


DEALS = """
[[syncs]]
connection = "shop"
hub_object = "deals"
app_object = "opportunities"
unique_property = "dealname"
use_default_mappings = false

[[syncs.mappings]]
hub = "dealname"
app = "name"

[[syncs.mappings]]
hub = "dealstage"
app = "stage"
transform = "stage"

[[syncs.stage_map]]
hub_pipeline = "default"
hub_stage = "{stage}"
app_pipeline = "sales"
app_stage = "won"
"""


def test_stage_map_entries_must_exist_in_hubspot(tmp_path: Path):
    emu = HubSpotEmulator(tokens=(TOKEN,))
    status, report = as_json(setup(tmp_path, syncs=DEALS.format(stage="closedwon")), emu)
    [ok] = by_name(report, "pipelines syncs[0]")
    assert ok["status"] == "ok", report
    status, report = as_json(setup(tmp_path, syncs=DEALS.format(stage="signed")), emu)
    assert status == 2
    [bad] = by_name(report, "pipelines syncs[0]")
    assert "$.syncs[0].stage_map[0]" in bad["message"]
    assert "HubSpot pipeline 'default' has no stage 'signed'" in bad["message"]
    app_side = setup(tmp_path, syncs=DEALS.format(stage="closedwon").replace(
        'app_stage = "won"', 'app_stage = "lost"'))
    status, report = as_json(app_side, emu)
    [bad] = by_name(report, "pipelines syncs[0]")
    assert "app pipeline 'sales' has no stage 'lost' (its stages: open, won)" in bad["message"]


OWNER = """
[[syncs.mappings]]
hub = "hubspot_owner_id"
app = "rep_email"
transform = "owner"
"""


def test_owner_mappings_need_the_owners_scope(tmp_path: Path):
    emu = HubSpotEmulator(tokens=(TOKEN,))
    status, report = as_json(setup(tmp_path, mappings=OWNER), emu)
    [owners] = by_name(report, "owners")
    assert owners["status"] == "ok" and "owners" in owners["message"]
    scoped = HubSpotEmulator(tokens=(Credential(TOKEN, "static_token", frozenset({
        "crm.objects.contacts.read", "crm.objects.contacts.write"})),))
    cfg = setup(tmp_path, mappings=OWNER, auth='kind = "static_token"\ntoken_file = "token"')
    status, report = as_json(cfg, scoped)
    assert status == 2
    [scopes] = by_name(report, "scopes")
    assert "crm.objects.owners.read (record owners of contacts ⇄ shop.customers)" in scopes[
        "message"]
    [owners] = by_name(report, "owners")
    # The emulator's 403 MISSING_SCOPES names what the call needs (hubspot-api.md §4).
    assert owners["status"] == "fail" and "crm.objects.owners.read" in owners["message"]


def test_doctor_spends_few_requests(tmp_path: Path):
    emu = HubSpotEmulator(tokens=(TOKEN,))
    status, report = as_json(setup(tmp_path, mappings=OWNER), emu)
    assert status == 0, report
    # token info, account details, contacts properties, the first page of owners
    assert report["hub_requests"] == 4
    assert len(emu.request_log) == 4


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_webhook_endpoint_takes_a_signed_test_delivery(tmp_path: Path):
    port = _free_port()
    (tmp_path / "hub-secret").write_text("client-secret-for-webhooks\n")
    cfg = setup(tmp_path, webhooks=f'listen = "127.0.0.1:{port}"\n'
                                   f'public_base_url = "http://127.0.0.1:{port}"',
                hub='webhook_client_secret_file = "hub-secret"')
    emu = HubSpotEmulator(tokens=(TOKEN,))
    status, report = as_json(cfg, emu)
    assert status == 0, report
    [hooks] = by_name(report, "webhooks")
    assert hooks["status"] == "ok"
    assert f"http://127.0.0.1:{port}/webhooks/hubspot reached" in hooks["message"]
    [https] = by_name(report, "webhooks https")
    assert https["status"] == "warn"
    [subs] = by_name(report, "subscriptions")
    assert "contact.{creation,deletion,propertyChange,restore,merge}" in subs["message"]


def test_an_unreachable_webhook_url(tmp_path: Path):
    listen, elsewhere = _free_port(), _free_port()
    (tmp_path / "hub-secret").write_text("client-secret-for-webhooks\n")
    cfg = setup(tmp_path, webhooks=f'listen = "127.0.0.1:{listen}"\n'
                                   f'public_base_url = "http://127.0.0.1:{elsewhere}"',
                hub='webhook_client_secret_file = "hub-secret"')
    status, report = as_json(cfg, HubSpotEmulator(tokens=(TOKEN,)))
    assert status == 2
    [hooks] = by_name(report, "webhooks")
    assert hooks["status"] == "fail" and "did not arrive" in hooks["message"]
    assert "reverse proxy" in hooks["fix"]


def test_oauth_reads_account_and_scopes_from_the_refresh(tmp_path: Path):
    state = tmp_path / "state"
    state.mkdir()
    (state / "hubspot-refresh-token").write_text("rt-install\n")
    (state / "hubspot-refresh-token").chmod(0o600)
    (tmp_path / "client-secret").write_text("oauth-secret\n")
    (tmp_path / "client-secret").chmod(0o600)
    emu = HubSpotEmulator(tokens=(), rotate_refresh_tokens=True, oauth_clients={
        "cid": OAuthApp("cid", "oauth-secret", refresh_token="rt-install",
                        scopes=frozenset({"oauth", "crm.objects.contacts.read"}))})
    cfg = setup(tmp_path, direction="to_app", auth=f'''kind = "oauth"
client_id = "cid"
client_secret_file = "client-secret"
refresh_token_file = "{state / 'hubspot-refresh-token'}"''')
    status, report = as_json(cfg, emu)
    assert status == 0, report
    [cred] = by_name(report, "credential")
    assert cred["message"].startswith("OAuth app: ") and "refreshed before" in cred["message"]
    [scopes] = by_name(report, "scopes")
    assert scopes["status"] == "ok"
    [budget] = by_name(report, "rate budget")
    assert "no daily figure to OAuth apps" in budget["message"]
    # HubSpot rotated the refresh token on doctor's refresh: the file holds the new one.
    held = (state / "hubspot-refresh-token").read_text().strip()
    assert held != "rt-install" and emu.auth.refresh_token_info(held) is not None


def test_configuration_errors_are_the_first_lines(tmp_path: Path):
    cfg = setup(tmp_path, direction="sideways")
    status, text = run(cfg, HubSpotEmulator(tokens=(TOKEN,)))
    assert status == 2
    assert text.splitlines()[0].startswith("✗ config: error: $.syncs[0].direction")


@pytest.fixture
def kept_logging():
    """The command line configures structlog for the process (warnings to stderr): put the
    test run's configuration back afterwards."""
    import structlog

    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


@pytest.mark.parametrize("online", [True, False])
def test_check_config_online_is_the_doctor(tmp_path: Path, online: bool, monkeypatch, capsys,
                                           kept_logging):
    from crmsync.cli import main as cli_main

    cfg = setup(tmp_path)
    calls: list[str] = []
    monkeypatch.setattr(doctor, "run_online_check", lambda path: calls.append(path) or 0)
    args = ["check-config", *(["--online"] if online else []), str(cfg)]
    assert cli_main.main(args) == 0
    assert calls == ([str(cfg)] if online else [])


def test_an_oauth_install_hubspot_no_longer_knows(tmp_path: Path):
    state = tmp_path / "state"
    state.mkdir()
    (state / "hubspot-refresh-token").write_text("rt-uninstalled\n")
    (tmp_path / "client-secret").write_text("oauth-secret\n")
    emu = HubSpotEmulator(tokens=(), oauth_clients={
        "cid": OAuthApp("cid", "oauth-secret", refresh_token="rt-other")})
    cfg = setup(tmp_path, auth=f'''kind = "oauth"
client_id = "cid"
client_secret_file = "client-secret"
refresh_token_file = "{state / 'hubspot-refresh-token'}"''')
    status, report = as_json(cfg, emu)
    assert status == 2
    [token] = by_name(report, "token")
    assert token["status"] == "fail" and "refused the OAuth refresh" in token["message"]
    assert "crmsync connect hubspot" in token["fix"]
    assert "rt-uninstalled" not in json.dumps(report)


def test_an_oauth_app_connection_keeps_the_token_the_doctor_rotated(tmp_path: Path):
    """Pipedrive rotates refresh tokens: the doctor's refresh keeps the new one where the
    daemon looks for it (the state database), or the daemon would be left a dead token."""
    import trio as _trio

    from crmsync.daemon.hub_tokens import app_account_key
    from crmsync.emulators.pipedrive import PipedriveEmulator
    from crmsync.store import Store
    from crmsync.store import tokens as store_tokens

    (tmp_path / "pd-secret").write_text("pd-client-secret\n")
    (tmp_path / "pd-rt").write_text("rt-1\n")
    pd = PipedriveEmulator(oauth_clients={"cid": ("pd-client-secret", "rt-1")},
                           rotate_refresh_tokens=True)
    cfg = setup(tmp_path, syncs=CONTACTS.format(direction="both") + """
[[connections]]
name = "pd"
type = "pipedrive"
base_url = "http://pipedrive.test"

[connections.auth]
kind = "oauth"
client_id = "cid"
client_secret_file = "pd-secret"
refresh_token_file = "pd-rt"
token_url = "http://pipedrive.test/oauth/token"

[[syncs]]
connection = "pd"
hub_object = "companies"
app_object = "organizations"
""")
    out = io.StringIO()
    parsed = build_parser().parse_args(["doctor", "--config", str(cfg), "--json"])
    status = doctor.run(parsed, out=out, stdin=io.StringIO(),
                        hub_transport=httpx.ASGITransport(HubSpotEmulator(tokens=(TOKEN,)).app),
                        app_transports={"pd": httpx.ASGITransport(pd.app)})
    report = json.loads(out.getvalue())
    [conn] = by_name(report, "connection pd")
    assert conn["status"] == "ok", report

    async def kept() -> str | None:
        async with Store.open(tmp_path / "state" / "crmsync.db") as store:
            return await store.read(store_tokens.get_refresh_token, app_account_key("pd"))

    token = _trio.run(kept)
    assert token is not None and token != "rt-1"
    assert status in (0, 2)


def test_the_webhooks_journal_and_its_subscriptions(tmp_path: Path):
    """hub.changes = "journal": the app's client credentials get a journal token, and the
    subscriptions that token may read are checked against the object syncs
    (hubspot-onboarding.md §6)."""
    (tmp_path / "journal-secret").write_text("journal-client-secret\n")
    emu = HubSpotEmulator(tokens=(TOKEN,), oauth_clients={
        "journal-app": OAuthApp("journal-app", "journal-client-secret")})
    cfg = setup(tmp_path, hub='changes = "journal"\n\n[hub.journal]\nclient_id = "journal-app"\n'
                              'client_secret_file = "journal-secret"\n')
    status, report = as_json(cfg, emu)
    assert status == 0, report
    [journal] = by_name(report, "journal")
    assert journal["status"] == "ok" and "account 62515" in journal["message"]
    [subs] = by_name(report, "subscriptions")
    assert subs["status"] == "warn" and "object contacts" in subs["message"]
    assert not by_name(report, "webhooks")
    emu.journal.upsert({"subscriptionType": "OBJECT", "objectTypeId": "0-1",
                        "portalId": 62515, "actions": ["CREATE", "UPDATE", "DELETE", "MERGE",
                                                       "RESTORE"]})
    status, report = as_json(cfg, emu)
    [subs] = by_name(report, "subscriptions")
    assert subs["status"] == "ok" and "cover contacts" in subs["message"]
    # Associations with an object whose sync is switched off are not subscribed by the
    # daemon (daemon/main.py `_journal_routes`), so the doctor does not ask for them either.
    with sqlite3.connect(tmp_path / "app.db") as conn:
        conn.execute("CREATE TABLE customer_deals (customer_id INTEGER, deal_id INTEGER)")
    deals_off = DEALS.format(stage="closedwon").replace(
        "use_default_mappings = false", "use_default_mappings = false\nenabled = false")
    associated = setup(
        tmp_path, syncs=CONTACTS.format(direction="both") + 'associations = ["deals"]\n'
        + deals_off,
        tables='\n[[connections.associations]]\nfrom_object = "customers"\n'
               'to_object = "opportunities"\njoin_table = "customer_deals"\n'
               'from_column = "customer_id"\nto_column = "deal_id"\n',
        hub='changes = "journal"\n\n[hub.journal]\nclient_id = "journal-app"\n'
            'client_secret_file = "journal-secret"\n')
    status, report = as_json(associated, emu)
    [subs] = by_name(report, "subscriptions")
    assert subs["message"].endswith("no subscription yet for association contacts"), report
    # A wrong client secret is named, with the fix.
    (tmp_path / "journal-secret").write_text("not-the-secret\n")
    status, report = as_json(cfg, emu)
    assert status == 2
    [journal] = by_name(report, "journal")
    assert journal["status"] == "fail" and "client id and secret" in journal["fix"]
