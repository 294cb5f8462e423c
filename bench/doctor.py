"""`crmsync doctor` with 20 object syncs: how long it answers, how many API requests it spends.
Prints JSON.

    python bench/doctor.py [--runs 5] [--auth private_app|oauth]

Four SQLite app connections, each syncing contacts (with an owner mapping), companies, deals
(a stage map), invoices and line items: 20 object syncs. The HubSpot emulator is served over
loopback in this process and counts the requests it receives (its request log, admin calls
left out); `crmsync doctor --json` runs as a separate process, as a person runs it, and its
wall time includes Python's start. The webhook check sends its signed test delivery through
loopback to a listener the doctor opens itself (no daemon runs).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

import trio
from hypercorn.config import Config as HyperConfig
from hypercorn.trio import serve

from crmsync.emulators.hubspot import SERVER_REQUEST_ROOM, HubSpotEmulator
from crmsync.emulators.hubspot.oauth import OAuthApp

TOKEN = "bench-token-0123456789"
CLIENT_SECRET = "bench-client-secret-0123456789"

SCHEMA = """
CREATE TABLE customers (id INTEGER PRIMARY KEY, email TEXT, first_name TEXT, last_name TEXT,
    phone TEXT, job_title TEXT, company_name TEXT, rep_email TEXT, updated_at TEXT);
CREATE TABLE organisations (id INTEGER PRIMARY KEY, name TEXT, domain TEXT, phone TEXT,
    city TEXT, industry TEXT, updated_at TEXT);
CREATE TABLE opportunities (id INTEGER PRIMARY KEY, name TEXT, amount REAL, close_date TEXT,
    stage TEXT, pipeline TEXT, updated_at TEXT);
CREATE TABLE invoices (id INTEGER PRIMARY KEY, currency TEXT, invoice_date TEXT,
    due_date TEXT, number TEXT, updated_at TEXT);
CREATE TABLE order_lines (id INTEGER PRIMARY KEY, name TEXT, quantity INTEGER, price REAL,
    sku TEXT, updated_at TEXT);
CREATE TABLE pipelines (id TEXT PRIMARY KEY, label TEXT);
CREATE TABLE stages (id TEXT PRIMARY KEY, pipeline_id TEXT, label TEXT);
INSERT INTO pipelines VALUES ('sales', 'Sales');
INSERT INTO stages VALUES ('won', 'sales', 'Closed won'), ('lost', 'sales', 'Closed lost');
"""

CONNECTION = """
[[connections]]
name = "{name}"
type = "sqlite"
database = "{db}"

[[connections.tables]]
object = "customers"
table = "customers"

[[connections.tables]]
object = "organisations"
table = "organisations"

[[connections.tables]]
object = "opportunities"
table = "opportunities"
pipeline_column = "pipeline"
stage_column = "stage"

[[connections.tables]]
object = "invoices"
table = "invoices"

[[connections.tables]]
object = "order_lines"
table = "order_lines"

[connections.pipelines]

[[syncs]]
connection = "{name}"
hub_object = "contacts"
app_object = "customers"

[[syncs.mappings]]
hub = "hubspot_owner_id"
app = "rep_email"
transform = "owner"

[[syncs]]
connection = "{name}"
hub_object = "companies"
app_object = "organisations"

[[syncs]]
connection = "{name}"
hub_object = "deals"
app_object = "opportunities"
unique_property = "dealname"

[[syncs.stage_map]]
hub_pipeline = "default"
hub_stage = "closedwon"
app_pipeline = "sales"
app_stage = "won"

[[syncs.stage_map]]
hub_pipeline = "default"
hub_stage = "closedlost"
app_pipeline = "sales"
app_stage = "lost"

[[syncs]]
connection = "{name}"
hub_object = "invoices"
app_object = "invoices"
unique_property = "hs_purchase_order_number"

[[syncs]]
connection = "{name}"
hub_object = "line_items"
app_object = "order_lines"
unique_property = "hs_sku"
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_setup(tmp: Path, hub_port: int, auth: str) -> Path:
    for f, text in (("token", TOKEN), ("client-secret", CLIENT_SECRET)):
        (tmp / f).write_text(text + "\n")
        (tmp / f).chmod(0o600)
    state = tmp / "state"
    state.mkdir()
    (state / "hubspot-refresh-token").write_text("rt-bench\n")
    (state / "hubspot-refresh-token").chmod(0o600)
    connections = []
    for i in range(4):
        db = tmp / f"app{i}.db"
        with sqlite3.connect(db) as conn:
            conn.executescript(SCHEMA)
        connections.append(CONNECTION.format(name=f"shop{i}", db=db))
    hub_auth = ('kind = "private_app"\ntoken_file = "token"' if auth == "private_app" else
                f'kind = "oauth"\nclient_id = "bench"\nclient_secret_file = "client-secret"\n'
                f'refresh_token_file = "{state / "hubspot-refresh-token"}"')
    webhooks = free_port()
    cfg = tmp / "crmsync.toml"
    cfg.write_text(f"""
[daemon]
state_dir = "{state}"

[daemon.webhooks]
listen = "127.0.0.1:{webhooks}"
public_base_url = "http://127.0.0.1:{webhooks}"

[hub]
base_url = "http://127.0.0.1:{hub_port}"
tier = "professional"
webhook_client_secret_file = "client-secret"

[hub.auth]
{hub_auth}
{''.join(connections)}
""")
    return cfg


async def measure(runs: int, auth: str) -> dict[str, object]:
    emu = HubSpotEmulator(tokens=(TOKEN,), tier="professional", oauth_clients={
        "bench": OAuthApp("bench", CLIENT_SECRET, refresh_token="rt-bench",
                          scopes=frozenset({"oauth", "crm.objects.contacts.read",
                                            "crm.objects.contacts.write",
                                            "crm.objects.companies.read",
                                            "crm.objects.companies.write",
                                            "crm.objects.deals.read", "crm.objects.deals.write",
                                            "crm.objects.invoices.read",
                                            "crm.objects.invoices.write",
                                            "crm.objects.line_items.read",
                                            "crm.objects.line_items.write",
                                            "crm.objects.owners.read"}))})
    config = HyperConfig()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    config.errorlog = None
    config.h11_max_incomplete_size = SERVER_REQUEST_ROOM
    walls: list[float] = []
    inner: list[float] = []
    requests: list[int] = []
    statuses: list[int] = []
    checks: dict[str, int] = {}
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(serve, emu.app, config)
        port = int(binds[0].rsplit(":", 1)[1])
        with tempfile.TemporaryDirectory() as d:
            cfg = write_setup(Path(d), port, auth)
            for _ in range(runs):
                emu.request_log.clear()
                started = time.perf_counter()
                done = await trio.run_process(
                    [sys.executable, "-m", "crmsync", "doctor", "--config", str(cfg), "--json"],
                    capture_stdout=True, capture_stderr=True, check=False,
                    env={**os.environ, "PYTHONUNBUFFERED": "1"})
                walls.append(time.perf_counter() - started)
                statuses.append(done.returncode)
                report = json.loads(done.stdout)
                inner.append(float(report["seconds"]))
                checks = {s: sum(1 for c in report["checks"] if c["status"] == s)
                          for s in ("ok", "warn", "fail")}
                failing = [c for c in report["checks"] if c["status"] == "fail"]
                if failing:
                    print(json.dumps(failing, indent=1), file=sys.stderr)
                requests.append(sum(1 for _m, path, _s in emu.request_log
                                    if not path.startswith("/_emulator")))
        nursery.cancel_scope.cancel()
    return {
        "auth": auth,
        "object_syncs": 20,
        "runs": runs,
        "exit_status": statuses,
        "checks": checks,
        "wall_seconds": {"median": round(statistics.median(walls), 3),
                         "max": round(max(walls), 3), "all": [round(w, 3) for w in walls]},
        # From loading the configuration to the last check, as the doctor reports it.
        "doctor_seconds": {"median": round(statistics.median(inner), 3),
                           "max": round(max(inner), 3)},
        "api_requests": {"max": max(requests), "all": requests},
        "targets": {"wall_seconds": 5, "api_requests": 10},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--auth", choices=["private_app", "oauth"], default="private_app")
    args = parser.parse_args()
    print(json.dumps(trio.run(measure, args.runs, args.auth), indent=2))


if __name__ == "__main__":
    main()
