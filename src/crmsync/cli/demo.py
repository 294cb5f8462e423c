"""`crmsync demo`: the whole thing on a laptop with no account anywhere.

Starts the HubSpot emulator (over loopback, delivering signed webhooks to the daemon), an app
database of sample data, and the daemon on a temporary state directory; shows live progress
per object; then edits records on both sides and shows them arriving on the other side.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import socket
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import structlog
import trio

from crmsync.cli.demo_data import SampleData, generate, write_app_db
from crmsync.daemon import logging as daemon_logging
from crmsync.daemon.main import Daemon
from crmsync.emulators.hubspot import HubSpotEmulator
from crmsync.runtime.object_sync import Timing
from crmsync.store import events as store_events
from crmsync.store import items as store_items

OBJECTS = (("contacts", "customers"), ("companies", "organisations"),
           ("deals", "opportunities"), ("invoices", "invoices"),
           ("line_items", "invoice_lines"))
# Association types the demo keeps, as (hub object, hub object).
ASSOCIATIONS = (("contacts", "companies"), ("deals", "contacts"), ("deals", "companies"),
                ("invoices", "contacts"), ("line_items", "invoices"))


def add_parser(sub: Any) -> None:
    p = sub.add_parser("demo", help="run crmsync against the HubSpot emulator and a sample app "
                                    "database (no account needed)")
    p.add_argument("--records", type=int, default=200,
                   help="sample contacts across both sides (default 200)")
    p.add_argument("--until-synced", action="store_true",
                   help="exit once the initial sync and the demo edits are done")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--state-dir", help="keep the demo's files here (default: a temp dir)")
    p.add_argument("--tier", default="professional",
                   choices=["starter", "professional", "enterprise", "unlimited"],
                   help="the emulated HubSpot account's API limits (default professional)")
    p.add_argument("--edits", type=int, default=5, help="edits made on each side (default 5)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--timeout", type=float, default=110.0,
                   help="give up after this many seconds with --until-synced")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _write_config(work: Path, app_db: Path, hub_port: int, webhook_port: int) -> Path:
    creds = work / "credentials"
    creds.mkdir(mode=0o700, exist_ok=True)
    cfg = work / "crmsync.toml"
    cfg.write_text(f"""# Written by `crmsync demo`.
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
name = "shop"
type = "sqlite"
database = "{app_db}"
poll_interval_seconds = 1

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
object = "invoice_lines"
table = "invoice_lines"

[[connections.associations]]
from_object = "customers"
to_object = "organisations"
column = "company_id"

[[connections.associations]]
from_object = "opportunities"
to_object = "organisations"
column = "company_id"

[[connections.associations]]
from_object = "opportunities"
to_object = "customers"
join_table = "opportunity_customers"
from_column = "opportunity_id"
to_column = "customer_id"

[[connections.associations]]
from_object = "invoices"
to_object = "customers"
column = "customer_id"

[[connections.associations]]
from_object = "invoice_lines"
to_object = "invoices"
column = "invoice_id"

[connections.pipelines]
pipelines_table = "pipelines"
stages_table = "stages"

[connections.events]
table = "events"

[[syncs]]
connection = "shop"
hub_object = "contacts"
app_object = "customers"
direction = "both"
conflict_winner = "hub"
associations = ["companies"]
event_sync = true

[[syncs]]
connection = "shop"
hub_object = "companies"
app_object = "organisations"
direction = "both"
conflict_winner = "hub"

[[syncs]]
connection = "shop"
hub_object = "deals"
app_object = "opportunities"
unique_property = "dealname"
auto_map_stages = true
associations = ["contacts", "companies"]

[[syncs]]
connection = "shop"
hub_object = "invoices"
app_object = "invoices"
unique_property = "hs_purchase_order_number"
associations = ["contacts"]

[[syncs]]
connection = "shop"
hub_object = "line_items"
app_object = "invoice_lines"
unique_property = "hs_sku"
associations = ["invoices"]
""")
    return cfg


async def _serve_emulator(emu: HubSpotEmulator, port: int, *,
                          task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    from hypercorn.config import Config as HyperConfig
    from hypercorn.trio import serve

    hc = HyperConfig()
    hc.bind = [f"127.0.0.1:{port}"]
    hc.accesslog = None
    hc.errorlog = None
    await serve(emu.app, hc, task_status=task_status)  # type: ignore[arg-type]


class Demo:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.work = Path(args.state_dir or tempfile.mkdtemp(prefix="crmsync-demo-"))
        self.work.mkdir(parents=True, exist_ok=True)
        self.data: SampleData = generate(args.records, args.seed)
        self.app_db = self.work / "shop.db"
        self.edits_propagated = 0
        self.edits_total = 0
        self.events_expected = 0
        self.events_unknown = 0
        self.stopped = False

    def _console(self) -> Any:
        from rich.console import Console

        # With --json, stdout carries only the summary.
        return Console(stderr=self.args.json)

    async def run(self) -> int:
        args = self.args
        if self.app_db.exists():
            self.app_db.unlink()
        write_app_db(self.app_db, self.data)
        hub_port, webhook_port = _free_port(), _free_port()
        cfg_path = _write_config(self.work, self.app_db, hub_port, webhook_port)
        token = "pat-demo-" + secrets.token_hex(12)
        client_secret = secrets.token_hex(16)
        (self.work / "credentials" / "hubspot-token").write_text(token)
        (self.work / "credentials" / "hubspot-client-secret").write_text(client_secret)
        log_file = (self.work / "crmsync.log").open("ab")
        daemon_logging.configure("info", "json", stream=log_file)

        emu = HubSpotEmulator(tokens=(token,), tier=args.tier, seed=args.seed,
                              webhook_url=f"http://127.0.0.1:{webhook_port}/webhooks/hubspot",
                              webhook_secret=client_secret)
        emu.add_records("contacts", self.data.hub_contacts)
        emu.add_records("companies", self.data.hub_companies)
        emu.add_records("deals", self.data.hub_deals)
        console = self._console()
        console.print(f"[bold]crmsync demo[/bold] in {self.work}")
        console.print(f"  HubSpot emulator  http://127.0.0.1:{hub_port}  ({args.tier} tier)")
        console.print(f"  app database      {self.app_db}")
        console.print(f"  webhooks          http://127.0.0.1:{webhook_port}/webhooks/hubspot")
        console.print(f"  control socket    {self.work / 'control.sock'}")
        console.print(f"  daemon log        {self.work / 'crmsync.log'}")

        daemon = Daemon(cfg_path, configure_logging=False, hub_index_lag=5.0,
                        timing=Timing(hub_poll_interval=15.0, app_poll_interval=1.0))
        result = 1
        started = time.monotonic()
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(_serve_emulator, emu, hub_port)
                webhook_client = httpx.AsyncClient(timeout=10)
                nursery.start_soon(emu.run_webhooks, webhook_client)
                await nursery.start(self._run_daemon, daemon, nursery.cancel_scope)
                deadline = args.timeout if args.until_synced else float("inf")
                with trio.move_on_after(deadline) as scope:
                    await self._progress(daemon, console)
                    await self._edits(daemon, emu, console)
                    await self._events(daemon, emu, console)
                    await self._wait_associations(daemon, emu, console)
                    summary = await self._summary(daemon, emu)
                    self._print(summary, console, time.monotonic() - started)
                    result = 0 if summary["ok"] else 1
                    if not args.until_synced:
                        console.print("Running; edit either side and watch it sync. "
                                      "Ctrl-C to stop.")
                        await trio.sleep_forever()
                if scope.cancelled_caught:
                    console.print(f"[red]gave up after {args.timeout:g} s[/red]")
                    result = 1
                if self.stopped and not args.until_synced:
                    result = 0
                nursery.cancel_scope.cancel()
                await webhook_client.aclose()
        except KeyboardInterrupt:
            result = 0
        finally:
            log_file.close()
        return result

    async def _run_daemon(self, daemon: Daemon, demo_scope: trio.CancelScope, *,
                          task_status: trio.TaskStatus[Daemon] = trio.TASK_STATUS_IGNORED
                          ) -> None:
        """The daemon with its control server; when it stops (SIGTERM, Ctrl-C) the demo
        stops with it."""
        from crmsync.control.server import serve as serve_control

        try:
            await daemon.run(extra_tasks=[serve_control], task_status=task_status)
        finally:
            self.stopped = True
            demo_scope.cancel()

    async def _progress(self, daemon: Daemon, console: Any) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TaskProgressColumn,
            TextColumn,
            TimeRemainingColumn,
        )

        with Progress(TextColumn("{task.description:<28}"), BarColumn(), MofNCompleteColumn(),
                      TaskProgressColumn(), TimeRemainingColumn(), TextColumn("{task.fields[phase]}"),
                      console=console, transient=False) as progress:
            tasks = {obj: progress.add_task(f"{obj} ⇄ {app}", total=None, phase="starting")
                     for obj, app in OBJECTS}
            while True:
                rt = daemon.connections.get("shop")
                all_ready = rt is not None
                for obj, _ in OBJECTS:
                    st = rt.status.objects.get(obj) if rt else None
                    h = rt.handles.get(obj) if rt else None
                    if st is not None:
                        total = max(st.total, st.done, 1)
                        progress.update(tasks[obj], completed=st.done, total=total,
                                        phase=st.phase)
                    if h is None or not h.ready.is_set():
                        all_ready = False
                    elif st is not None:
                        progress.update(tasks[obj], completed=max(st.total, st.done),
                                        total=max(st.total, st.done, 1), phase="in sync")
                if all_ready:
                    return
                await trio.sleep(0.2)

    async def _edits(self, daemon: Daemon, emu: HubSpotEmulator, console: Any) -> None:
        """Edit linked contacts on both sides and wait until each edit shows on the other."""
        assert daemon.store is not None
        linked = [it for it in await daemon.store.read(store_items.list_items, "shop/contacts",
                                                       "syncing", None, 1000)
                  if it.hub_id and it.app_id]
        n = min(self.args.edits, len(linked) // 2)
        app_edits = linked[:n]
        hub_edits = linked[n:2 * n]
        stamp = secrets.token_hex(2)
        conn = sqlite3.connect(self.app_db)
        try:
            for i, it in enumerate(app_edits):
                conn.execute("UPDATE customers SET job_title = ?, updated_at = "
                             "strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE id = ?",
                             (f"Edited in app {stamp}-{i}", int(it.app_id or 0)))
            conn.commit()
        finally:
            conn.close()
        for i, it in enumerate(hub_edits):
            emu.update_record("contacts", it.hub_id or "", {"jobtitle": f"Edited in hub {stamp}-{i}"})
        self.edits_total = 2 * n
        console.print(f"Edited {n} contacts in the app and {n} in HubSpot; waiting for them "
                      "to arrive on the other side…")
        expected_hub = {str(it.hub_id): f"Edited in app {stamp}-{i}"
                        for i, it in enumerate(app_edits)}
        expected_app = {str(it.app_id): f"Edited in hub {stamp}-{i}"
                        for i, it in enumerate(hub_edits)}
        while True:
            hub_now = {r["id"]: r["properties"].get("jobtitle") for r in emu.records("contacts")}
            c = sqlite3.connect(self.app_db)
            try:
                app_now = {str(r[0]): r[1] for r in c.execute("SELECT id, job_title FROM customers")}
            finally:
                c.close()
            done = (sum(hub_now.get(k) == v for k, v in expected_hub.items())
                    + sum(app_now.get(k) == v for k, v in expected_app.items()))
            self.edits_propagated = done
            if done == self.edits_total:
                console.print(f"[green]{done} edits propagated[/green]")
                return
            await trio.sleep(0.25)

    async def _events(self, daemon: Daemon, emu: HubSpotEmulator, console: Any) -> None:
        """A stream of app events: for linked contacts (sent once) and for people the hub
        does not know (skipped with the reason)."""
        assert daemon.store is not None
        linked = [it for it in await daemon.store.read(store_items.list_items, "shop/contacts",
                                                       "syncing", None, 200)
                  if it.hub_id and it.app_id]
        conn = sqlite3.connect(self.app_db)
        try:
            emails = {str(r[0]): r[1] for r in conn.execute("SELECT id, email FROM customers")}
        finally:
            conn.close()
        n = min(self.args.edits * 4, len(linked))
        known = [emails[it.app_id or ""] for it in linked[:n]]
        unknown = [f"visitor{i}@nowhere.example" for i in range(max(1, n // 4))]
        self.events_expected = len(known)
        self.events_unknown = len(unknown)
        console.print(f"Streaming {len(known) + len(unknown)} app events "
                      f"({len(unknown)} for people HubSpot does not know)…")
        for i, email in enumerate(known + unknown):
            c = sqlite3.connect(self.app_db)
            try:
                c.execute("INSERT INTO events VALUES (?, ?, ?, strftime('%Y-%m-%dT%H:%M:%fZ', "
                          "'now'), ?)", (f"evt-{i}", email,
                                         "pe_viewed_pricing" if i % 2 else "pe_signed_in",
                                         json.dumps({"source": "demo", "n": str(i)})))
                c.commit()
            finally:
                c.close()
            await trio.sleep(0.02)
        # The emulator is another system: its state is watched, not awaited.
        while True:
            if len(emu.events) >= self.events_expected:
                break
            await trio.sleep(0.2)
        console.print(f"[green]{len(emu.events)} events on HubSpot contacts[/green]")

    def _app_pairs(self) -> dict[str, list[tuple[str, str]]]:
        """The app's associations as (from id, to id), by hub association type."""
        c = sqlite3.connect(self.app_db)
        try:
            q = {
                "contacts-companies": "SELECT id, company_id FROM customers WHERE company_id "
                                      "IS NOT NULL",
                "deals-companies": "SELECT id, company_id FROM opportunities WHERE company_id "
                                   "IS NOT NULL",
                "deals-contacts": "SELECT opportunity_id, customer_id FROM "
                                  "opportunity_customers",
                "invoices-contacts": "SELECT id, customer_id FROM invoices WHERE customer_id "
                                     "IS NOT NULL",
                "line_items-invoices": "SELECT id, invoice_id FROM invoice_lines WHERE "
                                       "invoice_id IS NOT NULL",
            }
            return {k: [(str(a), str(b)) for a, b in c.execute(sql)] for k, sql in q.items()}
        finally:
            c.close()

    async def _association_report(self, daemon: Daemon, emu: HubSpotEmulator
                                  ) -> dict[str, dict[str, int]]:
        """Per association type: app associations whose two records are linked, and how many
        of them HubSpot holds between the partners."""
        assert daemon.store is not None
        out: dict[str, dict[str, int]] = {}
        for name, pairs in self._app_pairs().items():
            a_obj, b_obj = name.split("-")
            a_items = await daemon.store.read(store_items.find_items, f"shop/{a_obj}", "app",
                                              [a for a, _ in pairs])
            b_items = await daemon.store.read(store_items.find_items, f"shop/{b_obj}", "app",
                                              [b for _, b in pairs])
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

    async def _wait_associations(self, daemon: Daemon, emu: HubSpotEmulator,
                                 console: Any) -> None:
        while True:
            report = await self._association_report(daemon, emu)
            if all(v["synced"] == v["expected"] for v in report.values()):
                total = sum(v["synced"] for v in report.values())
                console.print(f"[green]{total} associations in HubSpot match the app[/green]")
                return
            await trio.sleep(0.5)

    async def _summary(self, daemon: Daemon, emu: HubSpotEmulator) -> dict[str, Any]:
        assert daemon.store is not None
        objects: dict[str, Any] = {}
        reasons: dict[str, Any] = {}
        for obj, _ in OBJECTS:
            sid = f"shop/{obj}"
            objects[obj] = await daemon.store.read(store_items.counts, sid)
            per: dict[str, int] = {}
            for state in ("failed", "excluded"):
                for it in await daemon.store.read(store_items.list_items, sid, state, None, None):
                    key = f"{state}:{it.category}"
                    per[key] = per.get(key, 0) + 1
            reasons[obj] = per
        hub_contacts = emu.records("contacts")
        hub_records = sum(len(emu.records(o)) for o, _ in OBJECTS)
        c = sqlite3.connect(self.app_db)
        try:
            app_records = sum(c.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                              for _, t in OBJECTS)
            app_emails = [r[0] for r in c.execute("SELECT lower(trim(email)) FROM customers "
                                                  "WHERE email IS NOT NULL")]
        finally:
            c.close()
        hub_emails = [str(r["properties"].get("email") or "").lower() for r in hub_contacts]
        linked = {it.hub_id for it in await daemon.store.read(
            store_items.list_items, "shop/contacts", "syncing", None, None)}
        hub_by_email = {str(r["properties"].get("email") or "").lower(): r["id"]
                        for r in hub_contacts}
        overlaps_paired = all(hub_by_email.get(e) in linked for e in self.data.overlapping_emails)
        planted_dupes = self.data.duplicate_emails
        no_duplicates = (len(hub_emails) == len(set(hub_emails))
                         and len(app_emails) - len(set(app_emails)) == planted_dupes)
        checks = {
            "overlaps_paired": overlaps_paired,
            "no_duplicates_created": no_duplicates,
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
        event_counts = await daemon.store.read(store_events.counts, "shop/contacts")
        checks["events_sent_once"] = (len(emu.events) == self.events_expected
                                      == event_counts.get("sent", 0))
        checks["unknown_contact_events_skipped"] = (event_counts.get("skipped_no_contact", 0)
                                                   == self.events_unknown)
        unmapped = [it for it in await daemon.store.read(store_items.list_items, "shop/deals",
                                                         "excluded", "stage_not_mapped", None)
                    if it.app_id]
        checks["unmapped_stage_deal_excluded"] = (
            len(unmapped) == self.data.unmapped_deals
            and all("'hold'" in it.detail for it in unmapped))
        checks["deals_synced"] = objects["deals"]["syncing"] == (
            len(self.data.app_deals) - self.data.unmapped_deals + len(self.data.hub_deals))
        checks["invoices_synced"] = (objects["invoices"]["syncing"] == len(self.data.app_invoices)
                                     and objects["line_items"]["syncing"]
                                     == len(self.data.app_invoice_lines))
        return {
            "objects": objects,
            "reasons": reasons,
            "hub_records": hub_records,
            "app_records": app_records,
            "edits_propagated": self.edits_propagated,
            "associations": associations,
            "events": {**event_counts, "hub_events": len(emu.events)},
            "excluded_deals": [{"app_id": it.app_id, "reason": it.category, "detail": it.detail}
                               for it in unmapped],
            "checks": checks,
            "ok": all(checks.values()),
        }

    def _print(self, summary: dict[str, Any], console: Any, elapsed: float) -> None:
        if self.args.json:
            out = {k: v for k, v in summary.items()}
            out["seconds"] = round(elapsed, 1)
            print(json.dumps(out, indent=2, sort_keys=True))
            sys.stdout.flush()
            return
        from rich.table import Table

        table = Table(title="records by state")
        states = ["syncing", "failed", "excluded", "queued", "pending", "deleted"]
        table.add_column("object")
        for s in states:
            table.add_column(s, justify="right")
        table.add_column("why failed / excluded")
        for obj, counts in summary["objects"].items():
            why = ", ".join(f"{k.split(':', 1)[1]} {v}"
                            for k, v in sorted(summary["reasons"][obj].items()))
            table.add_row(obj, *(str(counts.get(s, 0)) for s in states), why)
        console.print(table)
        console.print(f"hub records {summary['hub_records']}, app records "
                      f"{summary['app_records']}, edits propagated {summary['edits_propagated']}"
                      f" — {elapsed:.1f} s")
        for name, ok in summary["checks"].items():
            console.print(f"  {'[green]✓' if ok else '[red]✗'} {name}[/]")


def run(args: argparse.Namespace) -> int:
    structlog.contextvars.clear_contextvars()
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    return trio.run(Demo(args).run)
