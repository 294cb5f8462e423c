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
import time
from pathlib import Path
from typing import Any

import httpx
import trio

from crmsync.cli.demo import Demo, _Every, _free_port, _serve_emulator
from crmsync.cli.demo_checks import default_timeout, duplicates_created
from crmsync.cli.demo_data import UNMAPPED_STAGE
from crmsync.connectors.pipedrive.fields import Catalog, FieldDef
from crmsync.connectors.pipedrive.records import flatten
from crmsync.daemon import logging as daemon_logging
from crmsync.daemon.main import Daemon
from crmsync.emulators.hubspot import HubSpotEmulator
from crmsync.emulators.pipedrive import PipedriveEmulator
from crmsync.engine.decide import KeyProblem, match_keys
from crmsync.runtime.object_sync import Timing
from crmsync.store import items as store_items

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
    cfg.write_text(f"""# Written by `crmsync demo --app pipedrive`.
[daemon]
state_dir = "{work / 'state'}"
log_format = "json"
log_level = "info"
shutdown_grace_seconds = 5

[daemon.control]
socket_path = "{work / 'control.sock'}"

[daemon.webhooks]
listen = "127.0.0.1:{webhook_port}"
public_base_url = "http://127.0.0.1:{webhook_port}"

[hub]
base_url = "http://127.0.0.1:{hub_port}"
tier = "professional"
poll_interval_seconds = 15
webhook_client_secret_file = "credentials/hubspot-client-secret"

[hub.auth]
kind = "private_app"
token_file = "credentials/hubspot-token"

[[connections]]
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
        creds = self.work / "credentials"
        creds.mkdir(mode=0o700, exist_ok=True)
        token = "pat-demo-" + secrets.token_hex(12)
        client_secret = secrets.token_hex(16)
        pd_token = "pd-demo-" + secrets.token_hex(12)
        hook_password = secrets.token_hex(16)
        for name, secret in (("hubspot-token", token), ("hubspot-client-secret", client_secret),
                             ("pipedrive-token", pd_token),
                             ("pipedrive-webhook-password", hook_password)):
            path = creds / name
            path.write_text(secret)
            path.chmod(0o600)
        log_file = (self.work / "crmsync.log").open("ab")
        daemon_logging.configure("info", "json", stream=log_file)

        pd = self.pd = PipedriveEmulator(tokens=(pd_token,), plan=PLAN, seats=SEATS,
                                         seed=args.seed)
        self._seed_pipedrive(pd)
        self.app_ids_before = self._app_ids()
        self.tokens_before = pd.tokens_used_today()
        emu = HubSpotEmulator(tokens=(token,), tier=args.tier, seed=args.seed,
                              webhook_url=f"http://127.0.0.1:{webhook_port}/webhooks/hubspot",
                              webhook_secret=client_secret)
        self.hub_ids_before = {obj: set() for obj, _ in OBJECTS}
        for obj, records in (("contacts", self.data.hub_contacts),
                             ("companies", self.data.hub_companies),
                             ("deals", self.data.hub_deals)):
            self.hub_ids_before[obj] = set(emu.add_records(obj, records))
        console = self.console
        console.print(f"[bold]crmsync demo --app pipedrive[/bold] in {self.work}"
                      + ("" if not self.temporary or args.keep
                         else " (removed on exit; --keep keeps it)"))
        console.print(f"  HubSpot emulator    http://127.0.0.1:{hub_port}  token {token}  "
                      f"({args.tier} tier)", highlight=False)
        console.print(f"  Pipedrive emulator  http://127.0.0.1:{pd_port}  x-api-token "
                      f"{pd_token}  ({PLAN} plan, {SEATS} seats)", highlight=False)
        console.print(f"  webhooks            http://127.0.0.1:{webhook_port}/webhooks/"
                      f"{{hubspot,{CONNECTION}}}")
        console.print(f"  control socket      {self.work / 'control.sock'}")
        console.print(f"  daemon log          {self.work / 'crmsync.log'}")

        # The Pipedrive connection polls at its own interval: every poll costs tokens.
        daemon = Daemon(cfg_path, configure_logging=False, hub_index_lag=5.0,
                        timing=Timing(hub_poll_interval=15.0))
        result = 1
        started = time.monotonic()
        timeout = args.timeout if args.timeout is not None else default_timeout(args.records)
        try:
            # The webhook client is closed once the nursery's tasks have stopped (as in
            # `Demo._run`): a cancelled delivery task still posts until its next checkpoint.
            async with httpx.AsyncClient(timeout=10) as webhook_client, \
                    trio.open_nursery() as nursery:
                await nursery.start(_serve_emulator, emu, hub_port)
                await nursery.start(_serve_emulator, pd, pd_port)
                nursery.start_soon(emu.run_webhooks, webhook_client)
                nursery.start_soon(pd.run_webhooks, webhook_client)
                await nursery.start(self._run_daemon, daemon, nursery.cancel_scope)
                deadline = timeout if args.until_synced else float("inf")
                with trio.move_on_after(deadline) as scope:
                    await self._progress(daemon, console)
                    await self._pd_edits(daemon, emu, pd, console)
                    await self._wait_associations(daemon, emu, console)
                    await self._wait_settled(daemon)
                    summary = await self._summary(daemon, emu)
                    self._print(summary, console, time.monotonic() - started)
                    result = 0 if summary["ok"] else 1
                    if not args.until_synced:
                        console.print("Running; edit either side and watch it sync. "
                                      "Ctrl-C to stop.")
                        await trio.sleep_forever()
                if scope.cancelled_caught:
                    console.print(f"[red]gave up after {timeout:g} s, waiting for "
                                  f"{self.waiting}[/red] (--timeout sets the limit)")
                    result = 1
                if self.stopped and not args.until_synced:
                    result = 0
                nursery.cancel_scope.cancel()
        except KeyboardInterrupt:
            result = 0
        finally:
            log_file.close()
        return result

    # --- the demo's edits -----------------------------------------------------------------

    async def _pd_edits(self, daemon: Daemon, emu: HubSpotEmulator, pd: PipedriveEmulator,
                        console: Any) -> None:
        """Edit linked contacts on both sides (last names: a default mapping) and wait until
        each edit shows on the other; Pipedrive's arrive by its webhooks."""
        assert daemon.store is not None
        linked = [it for it in await daemon.store.read(
            store_items.list_items, f"{CONNECTION}/contacts", "syncing", None, 1000)
            if it.hub_id and it.app_id]
        n = min(self.args.edits, len(linked) // 2)
        app_edits, hub_edits = linked[:n], linked[n:2 * n]
        stamp = secrets.token_hex(2)
        for i, it in enumerate(app_edits):
            pd.update_record("persons", int(it.app_id or 0),
                             {"last_name": f"Edited in Pipedrive {stamp}-{i}"})
        for i, it in enumerate(hub_edits):
            emu.update_record("contacts", it.hub_id or "",
                              {"lastname": f"Edited in HubSpot {stamp}-{i}"})
        self.edits_total = 2 * n
        console.print(f"Edited {n} people in Pipedrive and {n} contacts in HubSpot; waiting "
                      "for them to arrive on the other side…")
        expected_hub = {str(it.hub_id): f"Edited in Pipedrive {stamp}-{i}"
                        for i, it in enumerate(app_edits)}
        expected_app = {str(it.app_id): f"Edited in HubSpot {stamp}-{i}"
                        for i, it in enumerate(hub_edits)}
        every = _Every(self.progress_every)
        while True:
            hub_now = {r["id"]: r["properties"].get("lastname") for r in emu.records("contacts")}
            app_now = {str(r["id"]): r["last_name"] for r in pd.records("persons")}
            done = (sum(hub_now.get(k) == v for k, v in expected_hub.items())
                    + sum(app_now.get(k) == v for k, v in expected_app.items()))
            self.edits_propagated = done
            if done == self.edits_total:
                console.print(f"[green]{done} edits propagated[/green]")
                return
            self.waiting = f"the edits ({done} of {self.edits_total} arrived)"
            self._note(f"waiting for {self.waiting}", every)
            await trio.sleep(0.25)

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

    async def _association_report(self, daemon: Daemon, emu: HubSpotEmulator
                                  ) -> dict[str, dict[str, int]]:
        assert daemon.store is not None
        out: dict[str, dict[str, int]] = {}
        for name, pairs in self._app_pairs().items():
            a_obj, b_obj = name.split("-")
            a_items = await daemon.store.read(store_items.find_items, f"{CONNECTION}/{a_obj}",
                                              "app", [a for a, _ in pairs])
            b_items = await daemon.store.read(store_items.find_items, f"{CONNECTION}/{b_obj}",
                                              "app", [b for _, b in pairs])
            expected = synced = 0
            for a, b in pairs:
                ia, ib = a_items.get(a), b_items.get(b)
                if ia is None or ib is None or not ia.linked or not ib.linked:
                    continue
                expected += 1
                if ib.hub_id in emu.associations(a_obj, ia.hub_id or "", b_obj):
                    synced += 1
            out[name] = {"expected": expected, "synced": synced}
        return out

    async def _wait_settled(self, daemon: Daemon) -> None:
        assert daemon.store is not None
        every = _Every(self.progress_every)
        while True:
            moving = {}
            for obj, _ in OBJECTS:
                c = await daemon.store.read(store_items.counts, f"{CONNECTION}/{obj}")
                n = c.get("queued", 0) + c.get("pending", 0)
                if n:
                    moving[obj] = n
            if not moving:
                return
            self.waiting = "records still syncing (" + ", ".join(
                f"{obj} {n}" for obj, n in moving.items()) + ")"
            self._note(f"waiting for {self.waiting}", every)
            await trio.sleep(0.2)

    def _pd_duplicates(self, daemon: Daemon, emu: HubSpotEmulator
                       ) -> dict[str, list[dict[str, str]]]:
        """Records the sync created sharing a match key with another on their side; the
        Pipedrive ones read the way the connector reads them."""
        pd = self.pd
        assert pd is not None
        website = FieldDef("website", "website", "string")

        def keys(rules: Any, side: Any, props: dict[str, Any]) -> tuple[str, ...]:
            try:
                return match_keys(rules, side, props)
            except KeyProblem:
                return ()

        out: dict[str, list[dict[str, str]]] = {}
        for obj, entity in OBJECTS:
            h = daemon.handle(CONNECTION, obj)
            assert h is not None
            catalog = Catalog(entity, [f.to_json() for f in
                                       pd.state.registry(entity).fields.values()])
            hub_now = [(str(r["id"]), keys(h.rules, "hub", r["properties"]))
                       for r in emu.records(obj)]
            app_now = [(str(r["id"]), keys(h.rules, "app",
                                           flatten(entity, r, catalog, website)))
                       for r in pd.records(entity)]
            found = [{"side": "hub", "id": rid, "key": k} for rid, k in
                     duplicates_created(self.hub_ids_before.get(obj, set()), hub_now)]
            found += [{"side": "app", "id": rid, "key": k} for rid, k in
                      duplicates_created(self.app_ids_before.get(obj, set()), app_now)]
            if found:
                out[obj] = found
        return out

    async def _summary(self, daemon: Daemon, emu: HubSpotEmulator) -> dict[str, Any]:
        assert daemon.store is not None
        pd = self.pd
        assert pd is not None
        objects: dict[str, Any] = {}
        reasons: dict[str, Any] = {}
        for obj, _ in OBJECTS:
            sid = f"{CONNECTION}/{obj}"
            objects[obj] = await daemon.store.read(store_items.counts, sid)
            per: dict[str, int] = {}
            for state in ("failed", "excluded"):
                for it in await daemon.store.read(store_items.list_items, sid, state, None, None):
                    key = f"{state}:{it.category}"
                    per[key] = per.get(key, 0) + 1
            reasons[obj] = per
        linked = {it.hub_id for it in await daemon.store.read(
            store_items.list_items, f"{CONNECTION}/contacts", "syncing", None, None)}
        hub_by_email = {str(r["properties"].get("email") or "").lower(): r["id"]
                        for r in emu.records("contacts")}
        duplicates = self._pd_duplicates(daemon, emu)
        checks = {
            "overlaps_paired": all(hub_by_email.get(e) in linked
                                   for e in self.data.overlapping_emails),
            "no_duplicates_created": not duplicates,
            "planted_invalid_excluded": reasons["contacts"].get("excluded:invalid_email", 0)
            == self.data.invalid_emails,
            "planted_missing_excluded": reasons["contacts"].get("excluded:no_email", 0)
            == self.data.missing_emails,
            "planted_duplicates_failed": reasons["contacts"].get("failed:duplicate", 0)
            == self.data.duplicate_emails,
            "edits_propagated": self.edits_propagated == self.edits_total,
        }
        associations = await self._association_report(daemon, emu)
        checks["associations_synced"] = all(v["synced"] == v["expected"] and v["expected"] > 0
                                            for v in associations.values())
        unmapped = [it for it in await daemon.store.read(
            store_items.list_items, f"{CONNECTION}/deals", "excluded", "stage_not_mapped", None)
            if it.app_id]
        checks["unmapped_stage_deal_excluded"] = (
            len(unmapped) == self.data.unmapped_deals
            and all(f"'{self.hold_stage}'" in it.detail for it in unmapped))
        checks["deals_synced"] = objects["deals"]["syncing"] == (
            len(self.data.app_deals) - self.data.unmapped_deals + len(self.data.hub_deals))
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
            "objects": objects,
            "reasons": reasons,
            "hub_records": sum(len(emu.records(o)) for o, _ in OBJECTS),
            "app_records": sum(len(pd.records(a)) for _, a in OBJECTS),
            "edits_propagated": self.edits_propagated,
            "duplicates_created": {obj: found[:10] for obj, found in duplicates.items()},
            "associations": associations,
            "excluded_deals": [{"app_id": it.app_id, "reason": it.category, "detail": it.detail}
                               for it in unmapped],
            "pipedrive": {"plan": PLAN, "seats": SEATS, "daily_token_budget": budget,
                          "tokens_used": used, "requests": len(pd.request_log),
                          "answered_429": refused,
                          "webhook_deliveries": len(pd.webhooks.log.deliveries)},
            "checks": checks,
            "ok": all(checks.values()),
        }
