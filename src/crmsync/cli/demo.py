"""`crmsync demo`: the whole thing on a laptop with no account anywhere.

Starts the HubSpot emulator (over loopback, delivering signed webhooks to the daemon), an app
database of sample data, and the daemon on a temporary state directory; shows live progress
per object (a line every few seconds when the output is not a terminal); then edits records on
both sides and shows them arriving on the other side, and checks the result. The temporary
directory is removed on exit unless `--keep` is given.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import socket
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx
import structlog
import trio

from crmsync.cli.demo_checks import default_timeout, duplicates_created, events_handled
from crmsync.cli.demo_data import (
    UNMAPPED_STAGE,
    SampleData,
    generate,
    write_app_db,
    write_pg_app,
)
from crmsync.daemon import logging as daemon_logging
from crmsync.daemon.main import Daemon
from crmsync.emulators.hubspot import HubSpotEmulator
from crmsync.engine.decide import KeyProblem, match_keys
from crmsync.engine.rules import SyncRules
from crmsync.runtime.object_sync import Timing
from crmsync.store import events as store_events
from crmsync.store import items as store_items

OBJECTS = (("contacts", "customers"), ("companies", "organisations"),
           ("deals", "opportunities"), ("invoices", "invoices"),
           ("line_items", "invoice_lines"))


def add_parser(sub: Any) -> None:
    p = sub.add_parser("demo", help="run crmsync against the HubSpot emulator and a sample app "
                                    "database (no account needed)")
    p.add_argument("--records", type=int, default=200,
                   help="sample contacts across both sides (default 200)")
    p.add_argument("--until-synced", action="store_true",
                   help="exit once the initial sync and the demo edits are done")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--state-dir", help="keep the demo's files here (default: a temporary "
                                       "directory, removed on exit)")
    p.add_argument("--keep", action="store_true",
                   help="keep the temporary directory (state, log, app database) on exit")
    p.add_argument("--tier", default="professional",
                   choices=["starter", "professional", "enterprise", "unlimited"],
                   help="the emulated HubSpot account's API limits (default professional)")
    p.add_argument("--edits", type=int, default=5, help="edits made on each side (default 5)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--timeout", type=float, default=None,
                   help="give up after this many seconds with --until-synced (default: "
                        "120 s plus 20 s per 1,000 records)")
    p.add_argument("--progress-every", type=float, default=5.0, metavar="SECONDS",
                   help="seconds between progress lines when the output is not a terminal "
                        "(default 5)")
    p.add_argument("--app", choices=["sqlite", "postgres", "pipedrive"], default="sqlite",
                   help="the sample app: a SQLite file (default), PostgreSQL (a throwaway "
                        "server, when one is installed), or Pipedrive (its emulator)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class SqliteApp:
    """The demo's app database: a SQLite file."""

    now = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"

    def __init__(self, work: Path, data: SampleData) -> None:
        self.path = work / "shop.db"
        if self.path.exists():
            self.path.unlink()
        write_app_db(self.path, data)

    def describe(self) -> str:
        return str(self.path)

    def connection_lines(self, work: Path) -> str:
        return f'type = "sqlite"\ndatabase = "{self.path}"'

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        conn = sqlite3.connect(self.path)
        try:
            rows = conn.execute(sql, params).fetchall()
            conn.commit()
            return rows
        finally:
            conn.close()

    def rows(self, table: str) -> list[dict[str, Any]]:
        conn = sqlite3.connect(self.path)
        conn.row_factory = sqlite3.Row
        try:
            return [dict(r) for r in conn.execute(f"SELECT * FROM {table}")]
        finally:
            conn.close()

    def close(self) -> None:
        pass


class PostgresApp:
    """The demo's app database: PostgreSQL on a throwaway server (stopped and removed by
    `close`)."""

    now = "now()"

    def __init__(self, work: Path, data: SampleData) -> None:
        import psycopg

        from crmsync.cli.throwaway_postgres import ThrowawayPostgres

        # In the system temp directory: the postgres user may not enter the demo's own.
        self.server = ThrowawayPostgres.create()
        try:
            with psycopg.connect(self.server.dsn(), autocommit=True) as conn:
                conn.execute("CREATE DATABASE shop")
            self.dsn = self.server.dsn("shop")
            write_pg_app(self.dsn, data)
        except BaseException:
            self.server.destroy()
            raise

    def describe(self) -> str:
        return f"PostgreSQL {self.dsn}"

    def connection_lines(self, work: Path) -> str:
        creds = work / "credentials"
        creds.mkdir(mode=0o700, exist_ok=True)
        (creds / "shop-dsn").write_text(self.dsn + "\n")
        return 'type = "postgres"\ndsn_file = "credentials/shop-dsn"'

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        import psycopg

        with psycopg.connect(self.dsn, autocommit=True) as conn:
            cur = conn.execute(sql.replace("%", "%%").replace("?", "%s"), list(params))
            return cur.fetchall() if cur.description else []

    def rows(self, table: str) -> list[dict[str, Any]]:
        import psycopg
        from psycopg.rows import dict_row

        with psycopg.connect(self.dsn, autocommit=True, row_factory=dict_row) as conn:
            return list(conn.execute(f"SELECT * FROM {table}"))

    def close(self) -> None:
        self.server.destroy()


def config_head(work: Path, command: str, hub_port: int, webhook_port: int) -> str:
    """The start of a demo's crmsync.toml: the daemon (state, control socket, webhook
    listener) and the hub (the HubSpot emulator on `hub_port`, its credentials in files)."""
    return f"""# Written by `{command}`.
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

"""


def write_secrets(work: Path, secrets_by_name: dict[str, str]) -> None:
    """Each secret in its own file under `work/credentials` (0600, the directory 0700), where
    the config's `*_file` settings name them."""
    creds = work / "credentials"
    creds.mkdir(mode=0o700, exist_ok=True)
    for name, secret in secrets_by_name.items():
        path = creds / name
        path.write_text(secret)
        path.chmod(0o600)


def _write_config(work: Path, app_lines: str, hub_port: int, webhook_port: int) -> Path:
    creds = work / "credentials"
    creds.mkdir(mode=0o700, exist_ok=True)
    cfg = work / "crmsync.toml"
    cfg.write_text(config_head(work, "crmsync demo", hub_port, webhook_port) + f"""[[connections]]
name = "shop"
{app_lines}
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


class _Every:
    """`due()` is true at most once per `seconds` of the monotonic clock (and at the first
    call too, with `first`)."""

    def __init__(self, seconds: float, *, first: bool = False) -> None:
        self.seconds = seconds
        self.last = -float("inf") if first else time.monotonic()

    def due(self) -> bool:
        now = time.monotonic()
        if now - self.last < self.seconds:
            return False
        self.last = now
        return True


class Demo:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        # A directory the demo made for itself is removed on exit (unless --keep); one the
        # user named is theirs.
        self.temporary = not args.state_dir
        self.work = Path(args.state_dir or tempfile.mkdtemp(prefix="crmsync-demo-"))
        self.work.mkdir(parents=True, exist_ok=True)
        self.data: SampleData = generate(args.records, args.seed)
        self.app: SqliteApp | PostgresApp | None = None
        self.edits_propagated = 0
        self.edits_total = 0
        self.events_expected = 0
        self.events_unknown = 0
        self.stopped = False
        # Ids each side held before the sync started, by hub object: a record not among
        # them was created by the sync.
        self.hub_ids_before: dict[str, set[str]] = {}
        self.app_ids_before: dict[str, set[str]] = {}
        # What the demo is waiting for, for the progress lines and a timeout's message.
        self.waiting = "the daemon to start"
        self.progress_every = float(getattr(args, "progress_every", 5.0))
        self.console: Any = self._console()
        # The connection and its (hub object, app object) pairs the progress lines follow.
        self.connection = "shop"
        self.objects: tuple[tuple[str, str], ...] = OBJECTS
        # The app's name of the stage no hub stage maps to (its deals are excluded).
        self.hold_stage: int | str = UNMAPPED_STAGE

    def _console(self) -> Any:
        from rich.console import Console

        # With --json, stdout carries only the summary. A pipe or a file gets 120 columns
        # (rich would use 80) and lines that never wrap: a log keeps one line per note.
        console = Console(stderr=self.args.json)
        if not console.is_terminal:
            console = Console(stderr=self.args.json, soft_wrap=True,
                              width=int(os.environ.get("COLUMNS", "") or 120))
        return console

    def cleanup(self) -> None:
        """Remove the temporary directory (after `run`), unless --keep."""
        if not self.temporary:
            return
        if getattr(self.args, "keep", False):
            self.console.print(f"kept the demo's files in {self.work}")
            return
        shutil.rmtree(self.work, ignore_errors=True)

    def _note(self, text: str, every: _Every) -> None:
        """Print `text` when `every` is due: a long wait shows what it waits for, on a
        terminal or not."""
        if every.due():
            self.console.print(f"  … {text}")

    async def run(self) -> int:
        try:
            return await self._run()
        finally:
            if self.app is not None:
                await trio.to_thread.run_sync(self.app.close)

    @property
    def db(self) -> SqliteApp | PostgresApp:
        assert self.app is not None
        return self.app

    async def _run(self) -> int:
        args = self.args
        if args.app == "postgres":
            from crmsync.cli.throwaway_postgres import NoPostgres

            try:
                self.app = await trio.to_thread.run_sync(PostgresApp, self.work, self.data)
            except NoPostgres as exc:
                print(f"crmsync demo --app postgres: {exc}", file=sys.stderr)
                return 2
        else:
            self.app = SqliteApp(self.work, self.data)
        hub_port, webhook_port = _free_port(), _free_port()
        cfg_path = _write_config(self.work, self.app.connection_lines(self.work), hub_port,
                                 webhook_port)
        token = "pat-demo-" + secrets.token_hex(12)
        client_secret = secrets.token_hex(16)
        write_secrets(self.work, {"hubspot-token": token, "hubspot-client-secret": client_secret})
        self.app_ids_before = self._app_ids()
        log_file = self._open_log()
        emu = self._hub_emulator(token, client_secret, webhook_port)
        # The token is the emulator's only credential: with it, curl or any HubSpot client
        # can look at (and edit) the emulated account while the demo runs.
        self._banner("crmsync demo", [
            ("HubSpot emulator", f"http://127.0.0.1:{hub_port}  token {token}  "
                                 f"({args.tier} tier)", False),
            ("app database", self.db.describe(), True),
            ("webhooks", f"http://127.0.0.1:{webhook_port}/webhooks/hubspot", True)])
        daemon = Daemon(cfg_path, configure_logging=False, hub_index_lag=5.0,
                        timing=Timing(hub_poll_interval=15.0, app_poll_interval=1.0))
        return await self._drive(daemon, emu, hub_port, log_file)

    # --- what every demo does the same way --------------------------------------------------

    def _open_log(self) -> Any:
        """The daemon's log file in the work directory (JSON lines); the caller closes it
        (`_drive` does)."""
        log_file = (self.work / "crmsync.log").open("ab")
        daemon_logging.configure("info", "json", stream=log_file)
        return log_file

    def _hub_emulator(self, token: str, client_secret: str, webhook_port: int
                      ) -> HubSpotEmulator:
        """The HubSpot emulator with the sample data's hub records (their ids kept in
        `hub_ids_before`), delivering signed webhooks to the daemon's listener."""
        args = self.args
        emu = HubSpotEmulator(tokens=(token,), tier=args.tier, seed=args.seed,
                              webhook_url=f"http://127.0.0.1:{webhook_port}/webhooks/hubspot",
                              webhook_secret=client_secret)
        self.hub_ids_before = {obj: set() for obj, _ in self.objects}
        for obj, records in (("contacts", self.data.hub_contacts),
                             ("companies", self.data.hub_companies),
                             ("deals", self.data.hub_deals)):
            self.hub_ids_before[obj] = set(emu.add_records(obj, records))
        return emu

    def _banner(self, command: str, services: list[tuple[str, str, bool]]) -> None:
        """The demo's first lines: where its files are, then per service (label, where,
        highlight) and the control socket and log, the labels in one column."""
        console = self.console
        console.print(f"[bold]{command}[/bold] in {self.work}"
                      + ("" if not self.temporary or self.args.keep
                         else " (removed on exit; --keep keeps it)"))
        lines = [*services, ("control socket", str(self.work / "control.sock"), True),
                 ("daemon log", str(self.work / "crmsync.log"), True)]
        width = max(len(label) for label, _, _ in lines) + 2
        for label, where, highlight in lines:
            if highlight:
                console.print(f"  {label:<{width}}{where}")
            else:
                console.print(f"  {label:<{width}}{where}", highlight=False)

    async def _serve_app(self, nursery: trio.Nursery, webhook_client: httpx.AsyncClient
                         ) -> None:
        """Start what serves the app besides the daemon (an emulator): none for a database."""

    async def _demo_steps(self, daemon: Daemon, emu: HubSpotEmulator, console: Any) -> None:
        """What the demo does once the initial syncs are done, before the final checks."""
        await self._edits(daemon, emu, console)
        await self._events(daemon, emu, console)

    async def _drive(self, daemon: Daemon, emu: HubSpotEmulator, hub_port: int,
                     log_file: Any) -> int:
        """Serve the emulator(s) and run the daemon; show the initial syncs, do the demo's
        steps, wait for the associations and for every record to settle, print the summary;
        then keep running (or return, with --until-synced). Returns the exit status; closes
        `log_file`."""
        args = self.args
        console = self.console
        result = 1
        started = time.monotonic()
        timeout = args.timeout if args.timeout is not None else default_timeout(args.records)
        try:
            # The webhook client is closed once the nursery's tasks have stopped: a cancelled
            # delivery task still posts until its next checkpoint, and a closed client would
            # fail that post with a RuntimeError instead of the cancellation.
            async with httpx.AsyncClient(timeout=10) as webhook_client, \
                    trio.open_nursery() as nursery:
                await nursery.start(_serve_emulator, emu, hub_port)
                await self._serve_app(nursery, webhook_client)
                nursery.start_soon(emu.run_webhooks, webhook_client)
                await nursery.start(self._run_daemon, daemon, nursery.cancel_scope)
                deadline = timeout if args.until_synced else float("inf")
                with trio.move_on_after(deadline) as scope:
                    await self._progress(daemon, console)
                    await self._demo_steps(daemon, emu, console)
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

    def _initial_sync_state(self, daemon: Daemon) -> tuple[bool, list[tuple[str, str, int, int]]]:
        """Whether every object sync is running, and per hub object (name, phase, done,
        total)."""
        rt = daemon.connections.get(self.connection)
        all_ready = rt is not None
        rows = []
        for obj, _ in self.objects:
            st = rt.status.objects.get(obj) if rt else None
            h = daemon.handle(self.connection, obj)
            ready = h is not None and h.is_running
            all_ready = all_ready and ready
            done, total = (st.done, max(st.total, st.done)) if st is not None else (0, 0)
            phase = "in sync" if ready else st.phase if st is not None else "starting"
            rows.append((obj, phase, done if not ready else total, total))
        return all_ready, rows

    async def _progress(self, daemon: Daemon, console: Any) -> None:
        """Until every object sync's initial sync is complete: live bars on a terminal, a
        line every `progress_every` seconds otherwise (a log or a CI job shows it moving)."""
        self.waiting = "the initial syncs"
        if not console.is_terminal:
            await self._progress_lines(daemon, console)
            return
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
            tasks = [progress.add_task(f"{obj} ⇄ {app}", total=None, phase="starting")
                     for obj, app in self.objects]  # in the order of _initial_sync_state's rows
            while True:
                all_ready, rows = self._initial_sync_state(daemon)
                for task, (_, phase, done, total) in zip(tasks, rows, strict=True):
                    progress.update(task, completed=done, total=max(total, 1), phase=phase)
                if all_ready:
                    return
                await trio.sleep(0.2)

    async def _progress_lines(self, daemon: Daemon, console: Any) -> None:
        started = time.monotonic()
        every = _Every(self.progress_every, first=True)
        while True:
            all_ready, rows = self._initial_sync_state(daemon)
            if every.due() or all_ready:
                line = "; ".join(obj + (f" {phase}" if phase in ("in sync", "starting")
                                        else f" {phase} {done:,}/{total:,}")
                                 for obj, phase, done, total in rows)
                console.print(f"[{time.monotonic() - started:5.1f} s] initial sync: {line}",
                              highlight=False, markup=False)
            if all_ready:
                return
            await trio.sleep(0.2)

    async def _edits(self, daemon: Daemon, emu: HubSpotEmulator, console: Any) -> None:
        """Edit linked contacts on both sides and wait until each edit shows on the other."""
        app_edits, hub_edits = await self._contacts_to_edit(daemon)
        n = len(app_edits)
        stamp = secrets.token_hex(2)
        for i, it in enumerate(app_edits):
            self.db.query(f"UPDATE customers SET job_title = ?, updated_at = {self.db.now} "
                          "WHERE id = ?", (f"Edited in app {stamp}-{i}", int(it.app_id or 0)))
        for i, it in enumerate(hub_edits):
            emu.update_record("contacts", it.hub_id or "", {"jobtitle": f"Edited in hub {stamp}-{i}"})
        console.print(f"Edited {n} contacts in the app and {n} in HubSpot; waiting for them "
                      "to arrive on the other side…")
        expected_hub = {str(it.hub_id): f"Edited in app {stamp}-{i}"
                        for i, it in enumerate(app_edits)}
        expected_app = {str(it.app_id): f"Edited in hub {stamp}-{i}"
                        for i, it in enumerate(hub_edits)}
        await self._wait_edits(emu, expected_hub, "jobtitle", expected_app, lambda: {
            str(r[0]): r[1] for r in self.db.query("SELECT id, job_title FROM customers")})

    async def _contacts_to_edit(self, daemon: Daemon
                               ) -> tuple[list[store_items.Item], list[store_items.Item]]:
        """Linked contacts to edit: up to --edits on the app's side, as many others on the
        hub's (their store items); sets `edits_total`."""
        assert daemon.store is not None
        linked = [it for it in await daemon.store.read(
            store_items.list_items, f"{self.connection}/contacts", "syncing", None, 1000)
            if it.hub_id and it.app_id]
        n = min(self.args.edits, len(linked) // 2)
        self.edits_total = 2 * n
        return linked[:n], linked[n:2 * n]

    async def _wait_edits(self, emu: HubSpotEmulator, expected_hub: dict[str, str],
                          hub_property: str, expected_app: dict[str, str],
                          app_now: Callable[[], dict[str, Any]]) -> None:
        """Until every edit shows on the other side: `expected_hub` by HubSpot contact id (the
        value of `hub_property`), `expected_app` by app id (as `app_now()` reads them)."""
        console = self.console
        every = _Every(self.progress_every)
        while True:
            hub_now = {r["id"]: r["properties"].get(hub_property)
                       for r in emu.records("contacts")}
            app_values = app_now()
            done = (sum(hub_now.get(k) == v for k, v in expected_hub.items())
                    + sum(app_values.get(k) == v for k, v in expected_app.items()))
            self.edits_propagated = done
            if done == self.edits_total:
                console.print(f"[green]{done} edits propagated[/green]")
                return
            self.waiting = f"the edits ({done} of {self.edits_total} arrived)"
            self._note(f"waiting for {self.waiting}", every)
            await trio.sleep(0.25)

    async def _events(self, daemon: Daemon, emu: HubSpotEmulator, console: Any) -> None:
        """A stream of app events: for linked contacts (sent once) and for people the hub
        does not know (skipped with the reason)."""
        assert daemon.store is not None
        linked = [it for it in await daemon.store.read(store_items.list_items, "shop/contacts",
                                                       "syncing", None, 200)
                  if it.hub_id and it.app_id]
        emails = {str(r[0]): r[1] for r in self.db.query("SELECT id, email FROM customers")}
        n = min(self.args.edits * 4, len(linked))
        known = [emails[it.app_id or ""] for it in linked[:n]]
        unknown = [f"visitor{i}@nowhere.example" for i in range(max(1, n // 4))]
        self.events_expected = len(known)
        self.events_unknown = len(unknown)
        console.print(f"Streaming {len(known) + len(unknown)} app events "
                      f"({len(unknown)} for people HubSpot does not know)…")
        for i, email in enumerate(known + unknown):
            self.db.query("INSERT INTO events (event_id, contact_email, name, occurred_at, "
                          f"properties) VALUES (?, ?, ?, {self.db.now}, ?)",
                          (f"evt-{i}", email, "pe_viewed_pricing" if i % 2 else "pe_signed_in",
                           json.dumps({"source": "demo", "n": str(i)})))
            await trio.sleep(0.02)
        counts = await self._wait_events(daemon, emu)
        console.print(f"[green]{len(emu.events)} events on HubSpot contacts, "
                      f"{counts.get('skipped_no_contact', 0)} skipped (no such contact)"
                      "[/green]")

    async def _wait_events(self, daemon: Daemon, emu: HubSpotEmulator) -> dict[str, int]:
        """Until the event sync has finished with every streamed event (sent, skipped or
        refused, as its counts in the store say) and the hub holds every one sent; returns
        the counts. The emulator is another system: its state is watched, not awaited."""
        assert daemon.store is not None
        streamed = self.events_expected + self.events_unknown
        every = _Every(self.progress_every)
        while True:
            counts = await daemon.store.read(store_events.counts, "shop/contacts")
            handled = events_handled(counts)
            if handled >= streamed and len(emu.events) >= counts.get("sent", 0):
                return counts
            self.waiting = f"the app events ({handled} of {streamed} handled)"
            self._note(f"waiting for {self.waiting}", every)
            await trio.sleep(0.2)

    def _app_pairs(self) -> dict[str, list[tuple[str, str]]]:
        """The app's associations as (from id, to id), by hub association type."""
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
        return {k: [(str(a), str(b)) for a, b in self.db.query(sql)] for k, sql in q.items()}

    async def _association_report(self, daemon: Daemon, emu: HubSpotEmulator
                                  ) -> dict[str, dict[str, int]]:
        """Per association type: app associations whose two records are linked, and how many
        of them HubSpot holds between the partners."""
        assert daemon.store is not None
        out: dict[str, dict[str, int]] = {}
        for name, pairs in self._app_pairs().items():
            a_obj, b_obj = name.split("-")
            a_items = await daemon.store.read(store_items.find_items,
                                              f"{self.connection}/{a_obj}", "app",
                                              [a for a, _ in pairs])
            b_items = await daemon.store.read(store_items.find_items,
                                              f"{self.connection}/{b_obj}", "app",
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
        every = _Every(self.progress_every)
        while True:
            report = await self._association_report(daemon, emu)
            if all(v["synced"] == v["expected"] for v in report.values()):
                total = sum(v["synced"] for v in report.values())
                console.print(f"[green]{total} associations in HubSpot match the app[/green]")
                return
            synced = sum(v["synced"] for v in report.values())
            expected = sum(v["expected"] for v in report.values())
            self.waiting = f"the associations ({synced:,} of {expected:,} in HubSpot)"
            self._note(f"waiting for {self.waiting}", every)
            await trio.sleep(0.5)

    async def _wait_settled(self, daemon: Daemon) -> None:
        """Until no record waits for a sync (queued) or for the initial sync (pending): the
        checks count records by state, and a record still moving is in neither count."""
        assert daemon.store is not None
        every = _Every(self.progress_every)
        while True:
            moving = {}
            for obj, _ in self.objects:
                c = await daemon.store.read(store_items.counts, f"{self.connection}/{obj}")
                n = c.get("queued", 0) + c.get("pending", 0)
                if n:
                    moving[obj] = n
            if not moving:
                return
            self.waiting = "records still syncing (" + ", ".join(
                f"{obj} {n}" for obj, n in moving.items()) + ")"
            self._note(f"waiting for {self.waiting}", every)
            await trio.sleep(0.2)

    def _app_ids(self) -> dict[str, set[str]]:
        return {obj: {str(r[0]) for r in self.db.query(f"SELECT id FROM {table}")}
                for obj, table in self.objects}

    def _app_records(self, obj: str, app: str) -> list[tuple[str, dict[str, Any]]]:
        """The app's records of `app` (synced as hub `obj`) as (id, properties), the
        properties as the connector reads them."""
        return [(str(r["id"]), dict(r)) for r in self.db.rows(app)]

    def _duplicates_created(self, daemon: Daemon, emu: HubSpotEmulator
                            ) -> dict[str, list[dict[str, str]]]:
        """Per object, records the sync created that share a match key with another record
        on the same side (see demo_checks.duplicates_created)."""
        def keys(rules: SyncRules, side: Any, props: dict[str, Any]) -> tuple[str, ...]:
            try:
                return match_keys(rules, side, props)
            except KeyProblem:
                return ()

        out: dict[str, list[dict[str, str]]] = {}
        for obj, app in self.objects:
            h = daemon.handle(self.connection, obj)
            assert h is not None
            hub_now = [(str(r["id"]), keys(h.rules, "hub", r["properties"]))
                       for r in emu.records(obj)]
            app_now = [(rid, keys(h.rules, "app", props))
                       for rid, props in self._app_records(obj, app)]
            found = [{"side": "hub", "id": rid, "key": k} for rid, k in
                     duplicates_created(self.hub_ids_before.get(obj, set()), hub_now)]
            found += [{"side": "app", "id": rid, "key": k} for rid, k in
                      duplicates_created(self.app_ids_before.get(obj, set()), app_now)]
            if found:
                out[obj] = found
        return out

    async def _summary(self, daemon: Daemon, emu: HubSpotEmulator) -> dict[str, Any]:
        """Records by state and reason, what the sync created, the associations, and the
        checks: those every demo makes, then the app's own (`_event_checks`, `_app_checks`)."""
        assert daemon.store is not None
        objects: dict[str, Any] = {}
        reasons: dict[str, Any] = {}
        for obj, _ in self.objects:
            sid = f"{self.connection}/{obj}"
            objects[obj] = await daemon.store.read(store_items.counts, sid)
            per: dict[str, int] = {}
            for state in ("failed", "excluded"):
                for it in await daemon.store.read(store_items.list_items, sid, state, None, None):
                    key = f"{state}:{it.category}"
                    per[key] = per.get(key, 0) + 1
            reasons[obj] = per
        linked = {it.hub_id for it in await daemon.store.read(
            store_items.list_items, f"{self.connection}/contacts", "syncing", None, None)}
        hub_by_email = {str(r["properties"].get("email") or "").lower(): r["id"]
                        for r in emu.records("contacts")}
        duplicates = self._duplicates_created(daemon, emu)
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
        own = await self._event_checks(daemon, emu, checks)
        unmapped = [it for it in await daemon.store.read(
            store_items.list_items, f"{self.connection}/deals", "excluded", "stage_not_mapped",
            None) if it.app_id]
        checks["unmapped_stage_deal_excluded"] = (
            len(unmapped) == self.data.unmapped_deals
            and all(f"'{self.hold_stage}'" in it.detail for it in unmapped))
        checks["deals_synced"] = objects["deals"]["syncing"] == (
            len(self.data.app_deals) - self.data.unmapped_deals + len(self.data.hub_deals))
        own |= self._app_checks(objects, reasons, checks)
        return {
            "objects": objects,
            "reasons": reasons,
            "hub_records": sum(len(emu.records(o)) for o, _ in self.objects),
            "app_records": self._app_record_count(),
            "edits_propagated": self.edits_propagated,
            # The first few of each object, to look at when the check fails.
            "duplicates_created": {obj: found[:10] for obj, found in duplicates.items()},
            "associations": associations,
            "excluded_deals": [{"app_id": it.app_id, "reason": it.category, "detail": it.detail}
                               for it in unmapped],
            **own,
            "checks": checks,
            "ok": all(checks.values()),
        }

    def _app_record_count(self) -> int:
        return sum(self.db.query(f"SELECT count(*) FROM {t}")[0][0] for _, t in self.objects)

    async def _event_checks(self, daemon: Daemon, emu: HubSpotEmulator,
                            checks: dict[str, bool]) -> dict[str, Any]:
        """Add the app events' checks to `checks`; returns the summary's "events"."""
        assert daemon.store is not None
        event_counts = await daemon.store.read(store_events.counts, "shop/contacts")
        checks["events_sent_once"] = (len(emu.events) == self.events_expected
                                      == event_counts.get("sent", 0))
        checks["unknown_contact_events_skipped"] = (event_counts.get("skipped_no_contact", 0)
                                                   == self.events_unknown)
        return {"events": {**event_counts, "hub_events": len(emu.events)}}

    def _app_checks(self, objects: dict[str, Any], reasons: dict[str, Any],
                    checks: dict[str, bool]) -> dict[str, Any]:
        """Add the checks of what only this app syncs to `checks`; returns what the summary
        shows of them."""
        checks["invoices_synced"] = (objects["invoices"]["syncing"] == len(self.data.app_invoices)
                                     and objects["line_items"]["syncing"]
                                     == len(self.data.app_invoice_lines))
        return {}

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
    demo: Demo
    if getattr(args, "app", "sqlite") == "pipedrive":
        from crmsync.cli.demo_pipedrive import PipedriveDemo

        demo = PipedriveDemo(args)
    else:
        demo = Demo(args)
    try:
        return trio.run(demo.run)
    finally:
        demo.cleanup()
