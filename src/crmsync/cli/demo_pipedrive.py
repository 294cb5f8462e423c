"""`crmsync demo --app pipedrive`: HubSpot ⇄ Pipedrive on a laptop, no account anywhere.

The HubSpot emulator and the Pipedrive emulator, both over loopback, each delivering webhooks
to the daemon (crmsync registers its Pipedrive webhooks through the API, with HTTP Basic
credentials); the same sample company as the SQLite demo, put into Pipedrive the way
Pipedrive keeps it (emails and phones as arrays, a website instead of a domain, won and lost
deals as a status beside their stage, associations as `org_id` / `person_id`); then edits on
both sides, and the same summary and checks as the other demos, where they apply (Pipedrive
has no app events to stream, and no invoices).
"""

from __future__ import annotations

import argparse
import secrets
from pathlib import Path
from typing import Any

import httpx
import trio

from crmsync.cli.demo import Demo, _free_port, _serve_emulator, config_head, write_secrets
from crmsync.cli.demo_data import UNMAPPED_STAGE
from crmsync.connectors.pipedrive.fields import Catalog, FieldDef
from crmsync.connectors.pipedrive.records import flatten
from crmsync.daemon.main import Daemon
from crmsync.emulators.hubspot import HubSpotEmulator
from crmsync.emulators.pipedrive import PipedriveEmulator
from crmsync.runtime.object_sync import Timing

CONNECTION = "pipedrive"
OBJECTS = (("contacts", "persons"), ("companies", "organizations"), ("deals", "deals"))
# The demo's sales pipeline in Pipedrive: its stages are labelled much as HubSpot's default
# pipeline's, so auto-mapping pairs them; "On hold" has no HubSpot counterpart. Won and lost
# are a deal's status in Pipedrive (crmsync shows them as the pipeline's Won / Lost stages).
PIPELINE = "Sales"
STAGES = {"appt": "Appointment scheduled", "qualified": "Qualified to buy",
          "demo": "Presentation Scheduled", "contract": "contract-sent",
          UNMAPPED_STAGE: "On hold"}
PLAN = "professional"
SEATS = 3


def _config(work: Path, hub_port: int, pd_port: int, webhook_port: int) -> Path:
    cfg = work / "crmsync.toml"
    cfg.write_text(config_head(work, "crmsync demo --app pipedrive", hub_port, webhook_port)
                   + f"""[[connections]]
name = "{CONNECTION}"
type = "pipedrive"
base_url = "http://127.0.0.1:{pd_port}"
plan = "{PLAN}"
seats = {SEATS}
poll_interval_seconds = 10
request_timeout_seconds = 10

[connections.auth]
kind = "api_token"
token_file = "credentials/pipedrive-token"

[connections.webhooks]
user = "crmsync"
password_file = "credentials/pipedrive-webhook-password"

[[syncs]]
connection = "{CONNECTION}"
hub_object = "contacts"
app_object = "persons"
associations = ["companies"]

[[syncs]]
connection = "{CONNECTION}"
hub_object = "companies"
app_object = "organizations"

[[syncs]]
connection = "{CONNECTION}"
hub_object = "deals"
app_object = "deals"
unique_property = "dealname"
auto_map_stages = true
associations = ["contacts", "companies"]
""")
    return cfg


class PipedriveDemo(Demo):
    """The demo with Pipedrive (its emulator) as the app."""

    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__(args)
        self.connection = CONNECTION
        self.objects = OBJECTS
        self.pd: PipedriveEmulator | None = None
        self.hold_stage = 0
        self.tokens_before = 0
        self.pd_port = 0

    # --- set-up ---------------------------------------------------------------------------

    def _seed_pipedrive(self, pd: PipedriveEmulator) -> None:
        """The sample company, as Pipedrive keeps it. Seeding fires no webhooks."""
        data = self.data
        (pipeline,) = pd.records("pipelines")
        pd.update_record("pipelines", pipeline["id"], {"name": PIPELINE})
        stage_ids = {}
        for stage, label in zip(sorted(pd.records("stages"), key=lambda s: s["order_nr"]),
                                STAGES.items(), strict=True):
            pd.update_record("stages", stage["id"], {"name": label[1]})
            stage_ids[label[0]] = stage["id"]
        self.hold_stage = stage_ids[UNMAPPED_STAGE]
        orgs = pd.seed({"organizations": [
            {"name": o["name"], **({"website": o["domain"]} if o.get("domain") else {})}
            for o in data.app_organisations]})["organizations"]
        persons = []
        for c in data.app_customers:
            name = " ".join(str(c.get(k) or "") for k in ("first_name", "last_name")).strip()
            body: dict[str, Any] = {"name": name or str(c.get("email") or "Someone")}
            if c.get("email"):
                body["emails"] = [{"value": str(c["email"]), "primary": True, "label": "work"}]
            if c.get("phone"):
                body["phones"] = [{"value": str(c["phone"]), "primary": True}]
            if c.get("company_id"):
                body["org_id"] = orgs[int(c["company_id"]) - 1]
            persons.append(body)
        person_ids = pd.seed({"persons": persons})["persons"]
        contact_of = dict(data.deal_contacts)
        deals = []
        for i, d in enumerate(data.app_deals):
            stage = d["stage"]
            body = {"title": d["name"], "value": d["amount"],
                    "expected_close_date": d["close_date"],
                    "stage_id": stage_ids.get(stage, stage_ids["contract"]),
                    "org_id": orgs[int(d["company_id"]) - 1],
                    "person_id": person_ids[contact_of[i + 1] - 1]}
            if stage in ("won", "lost"):
                body["status"] = stage
            deals.append(body)
        pd.seed({"deals": deals})

    def _app_ids(self) -> dict[str, set[str]]:
        pd = self.pd
        if pd is None:
            return {}
        return {obj: {str(r["id"]) for r in pd.records(app)} for obj, app in OBJECTS}

    async def _run(self) -> int:
        args = self.args
        hub_port, pd_port, webhook_port = _free_port(), _free_port(), _free_port()
        cfg_path = _config(self.work, hub_port, pd_port, webhook_port)
        token = "pat-demo-" + secrets.token_hex(12)
        client_secret = secrets.token_hex(16)
        pd_token = "pd-demo-" + secrets.token_hex(12)
        hook_password = secrets.token_hex(16)
        write_secrets(self.work, {"hubspot-token": token, "hubspot-client-secret": client_secret,
                                  "pipedrive-token": pd_token,
                                  "pipedrive-webhook-password": hook_password})
        log_file = self._open_log()

        pd = self.pd = PipedriveEmulator(tokens=(pd_token,), plan=PLAN, seats=SEATS,
                                         seed=args.seed)
        self._seed_pipedrive(pd)
        self.app_ids_before = self._app_ids()
        self.tokens_before = pd.tokens_used_today()
        self.pd_port = pd_port
        emu = self._hub_emulator(token, client_secret, webhook_port)
        self._banner("crmsync demo --app pipedrive", [
            ("HubSpot emulator", f"http://127.0.0.1:{hub_port}  token {token}  "
                                 f"({args.tier} tier)", False),
            ("Pipedrive emulator", f"http://127.0.0.1:{pd_port}  x-api-token {pd_token}  "
                                   f"({PLAN} plan, {SEATS} seats)", False),
            ("webhooks", f"http://127.0.0.1:{webhook_port}/webhooks/{{hubspot,{CONNECTION}}}",
             True)])
        # The Pipedrive connection polls at its own interval: every poll costs tokens.
        daemon = Daemon(cfg_path, configure_logging=False, hub_index_lag=5.0,
                        timing=Timing(hub_poll_interval=15.0))
        return await self._drive(daemon, emu, hub_port, log_file)

    async def _serve_app(self, nursery: trio.Nursery, webhook_client: httpx.AsyncClient
                         ) -> None:
        """The Pipedrive emulator, delivering its webhooks to the daemon."""
        assert self.pd is not None
        await nursery.start(_serve_emulator, self.pd, self.pd_port)
        nursery.start_soon(self.pd.run_webhooks, webhook_client)

    async def _demo_steps(self, daemon: Daemon, emu: HubSpotEmulator, console: Any) -> None:
        # Pipedrive has no app events to stream.
        assert self.pd is not None
        await self._pd_edits(daemon, emu, self.pd, console)

    # --- the demo's edits -----------------------------------------------------------------

    async def _pd_edits(self, daemon: Daemon, emu: HubSpotEmulator, pd: PipedriveEmulator,
                        console: Any) -> None:
        """Edit linked contacts on both sides (last names: a default mapping) and wait until
        each edit shows on the other; Pipedrive's arrive by its webhooks."""
        app_edits, hub_edits = await self._contacts_to_edit(daemon)
        n = len(app_edits)
        stamp = secrets.token_hex(2)
        for i, it in enumerate(app_edits):
            pd.update_record("persons", int(it.app_id or 0),
                             {"last_name": f"Edited in Pipedrive {stamp}-{i}"})
        for i, it in enumerate(hub_edits):
            emu.update_record("contacts", it.hub_id or "",
                              {"lastname": f"Edited in HubSpot {stamp}-{i}"})
        console.print(f"Edited {n} people in Pipedrive and {n} contacts in HubSpot; waiting "
                      "for them to arrive on the other side…")
        expected_hub = {str(it.hub_id): f"Edited in Pipedrive {stamp}-{i}"
                        for i, it in enumerate(app_edits)}
        expected_app = {str(it.app_id): f"Edited in HubSpot {stamp}-{i}"
                        for i, it in enumerate(hub_edits)}
        await self._wait_edits(emu, expected_hub, "lastname", expected_app, lambda: {
            str(r["id"]): r["last_name"] for r in pd.records("persons")})

    # --- checks -----------------------------------------------------------------------------

    def _app_pairs(self) -> dict[str, list[tuple[str, str]]]:
        """Pipedrive's associations (its foreign keys) as (from id, to id)."""
        pd = self.pd
        assert pd is not None
        persons, deals = pd.records("persons"), pd.records("deals")
        return {
            "contacts-companies": [(str(p["id"]), str(p["org_id"])) for p in persons
                                   if p["org_id"]],
            "deals-contacts": [(str(d["id"]), str(d["person_id"])) for d in deals
                               if d["person_id"]],
            "deals-companies": [(str(d["id"]), str(d["org_id"])) for d in deals if d["org_id"]],
        }

    def _app_records(self, obj: str, app: str) -> list[tuple[str, dict[str, Any]]]:
        """Pipedrive's records, read the way the connector reads them."""
        pd = self.pd
        assert pd is not None
        website = FieldDef("website", "website", "string")
        catalog = Catalog(app, [f.to_json() for f in pd.state.registry(app).fields.values()])
        return [(str(r["id"]), flatten(app, r, catalog, website)) for r in pd.records(app)]

    def _app_record_count(self) -> int:
        pd = self.pd
        assert pd is not None
        return sum(len(pd.records(a)) for _, a in self.objects)

    async def _event_checks(self, daemon: Daemon, emu: HubSpotEmulator,
                            checks: dict[str, bool]) -> dict[str, Any]:
        return {}  # Pipedrive has no app events

    def _app_checks(self, objects: dict[str, Any], reasons: dict[str, Any],
                    checks: dict[str, bool]) -> dict[str, Any]:
        pd = self.pd
        assert pd is not None
        # Every 429 was waited out and retried: no record failed for the rate limit, and the
        # day's budget was never exceeded.
        refused = sum(1 for r in pd.request_log if r[2] == 429)
        rate_failed = sum(n for per in reasons.values() for k, n in per.items()
                          if k == "failed:rate_limited")
        used = pd.tokens_used_today() - self.tokens_before
        budget = pd.rate_limiter.daily_budget or 0
        checks["no_rate_limit_left_unhandled"] = rate_failed == 0 and used <= budget
        return {
            "app": "pipedrive",
            "pipedrive": {"plan": PLAN, "seats": SEATS, "daily_token_budget": budget,
                          "tokens_used": used, "requests": len(pd.request_log),
                          "answered_429": refused,
                          "webhook_deliveries": len(pd.webhooks.log.deliveries)},
        }
