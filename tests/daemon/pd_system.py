"""HubSpot ⇄ Pipedrive end to end over loopback HTTP: both emulators served by hypercorn in the
test's Trio run (so the test reads and edits them through their Python API), `crmsync run` as a
real subprocess (so it can be SIGKILLed), webhooks both ways over loopback.

Everything runs on the real clock; tests bound every wait with `trio.fail_after`, and every
process started is killed and reaped when `pd_system()` exits.
"""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import trio

from crmsync.emulators.hubspot import HubSpotEmulator
from crmsync.emulators.pipedrive import PipedriveEmulator

from .procs import NO_KEEPALIVE, Proc, Procs, crmsync, free_port

HUB_TOKEN = "pat-canary-HUB-7c1d93e0aa"
HUB_SECRET = "hub-canary-SECRET-51b7e2c9d0"
PD_TOKEN = "pd-canary-TOKEN-0f4e8a2b6c"  # crmsync's own Pipedrive user (id 7)
PD_HUMAN = "pd-canary-HUMAN-93d1c5e7f2"  # a person editing through the API (user id 8)
PD_HOOK_PASSWORD = "pd-canary-HOOKPW-6a2e9d41b3"
CANARIES = (HUB_TOKEN, HUB_SECRET, PD_TOKEN, PD_HUMAN, PD_HOOK_PASSWORD)
CRMSYNC_USER = 7
HUMAN_USER = 8

CONTACTS = """
[[syncs]]
connection = "pd"
hub_object = "contacts"
app_object = "persons"
direction = "both"
conflict_winner = "hub"
{extra}
"""

COMPANIES = """
[[syncs]]
connection = "pd"
hub_object = "companies"
app_object = "organizations"
direction = "both"
conflict_winner = "hub"
{extra}
"""

DEALS = """
[[syncs]]
connection = "pd"
hub_object = "deals"
app_object = "deals"
unique_property = "dealname"
auto_map_stages = true
{extra}
"""


async def _serve(app: Any, port: int, *,
                 task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    from hypercorn.config import Config as HyperConfig
    from hypercorn.trio import serve

    hc = HyperConfig()
    hc.bind = [f"127.0.0.1:{port}"]
    hc.accesslog = None
    hc.errorlog = None
    await serve(app, hc, task_status=task_status)


class PdSystem:
    """Both emulators (in this process), the config and the daemon subprocess."""

    def __init__(self, tmp: Path, procs: Procs, short: Path, nursery: trio.Nursery, *,
                 plan: str = "unlimited", seats: int = 1, webhooks: bool = True) -> None:
        self.tmp = tmp
        self.procs = procs
        self.short = short
        self.nursery = nursery
        self.hub_port, self.pd_port, self.hook_port = free_port(), free_port(), free_port()
        self.webhooks = webhooks
        self.hub = HubSpotEmulator(
            tokens=(HUB_TOKEN,), tier="unlimited", seed=0,
            webhook_url=f"http://127.0.0.1:{self.hook_port}/webhooks/hubspot" if webhooks
            else None, webhook_secret=HUB_SECRET if webhooks else None)
        self.pd = PipedriveEmulator(tokens={PD_TOKEN: CRMSYNC_USER, PD_HUMAN: HUMAN_USER},
                                    plan=plan, seats=seats, seed=0)
        self.config = tmp / "crmsync.toml"
        self.daemon: Proc | None = None
        # No kept-alive connections (see procs.NO_KEEPALIVE): a request on a connection the
        # server closes for idleness at that instant fails with RemoteProtocolError.
        self.client = httpx.AsyncClient(timeout=httpx.Timeout(15.0), limits=NO_KEEPALIVE)
        self.pd_api = httpx.AsyncClient(base_url=f"http://127.0.0.1:{self.pd_port}",
                                        headers={"x-api-token": PD_HUMAN},
                                        timeout=httpx.Timeout(15.0), limits=NO_KEEPALIVE)

    @property
    def state_db(self) -> Path:
        return self.tmp / "state" / "crmsync.db"

    async def start_emulators(self) -> None:
        await self.nursery.start(_serve, self.hub.app, self.hub_port)
        await self.nursery.start(_serve, self.pd.app, self.pd_port)
        await self.nursery.start(self.hub.run_webhooks, self.client)
        await self.nursery.start(self.pd.run_webhooks, self.client)

    def write_config(self, syncs: str, *, connection_extra: str = "", hub_extra: str = "",
                     webhooks_extra: str = "", poll_interval: float = 1) -> Path:
        (self.tmp / "hub-token").write_text(HUB_TOKEN)
        (self.tmp / "hub-secret").write_text(HUB_SECRET)
        (self.tmp / "pd-token").write_text(PD_TOKEN)
        (self.tmp / "pd-hook-password").write_text(PD_HOOK_PASSWORD)
        hooks = f"""
[connections.webhooks]
user = "crmsync-hooks"
password_file = "pd-hook-password"
{webhooks_extra}
""" if self.webhooks else ""
        self.config.write_text(f"""
[daemon]
state_dir = "{self.tmp / 'state'}"
shutdown_grace_seconds = 5

[daemon.control]
socket_path = "{self.short / 'ctl.sock'}"

[daemon.webhooks]
enabled = true
listen = "127.0.0.1:{self.hook_port}"
public_base_url = "http://127.0.0.1:{self.hook_port}"

[hub]
base_url = "http://127.0.0.1:{self.hub_port}"
tier = "unlimited"
poll_interval_seconds = 2
search_index_lag_seconds = 0
request_timeout_seconds = 10
{"webhook_client_secret_file = 'hub-secret'" if self.webhooks else ""}
{hub_extra}

[hub.auth]
kind = "private_app"
token_file = "hub-token"

[[connections]]
name = "pd"
type = "pipedrive"
base_url = "http://127.0.0.1:{self.pd_port}"
plan = "{self.pd.rate_limiter.plan}"
poll_interval_seconds = {poll_interval}
request_timeout_seconds = 10
{connection_extra}

[connections.auth]
kind = "api_token"
token_file = "pd-token"
{hooks}
{syncs}
""")
        return self.config

    async def start_daemon(self) -> Proc:
        assert self.daemon is None or self.daemon.returncode is not None, "one daemon at a time"
        self.daemon = await self.procs.start("daemon", crmsync("run", "--config",
                                                                 str(self.config)))
        return self.daemon

    async def wait_synced(self, *objects: str, timeout: float = 120) -> None:
        """Until the daemon logged the initial sync of each object complete."""
        assert self.daemon is not None
        for obj in objects:
            await self.daemon.wait_for_event("initial sync complete", object=obj,
                                             timeout=timeout)

    async def eventually(self, check: Any, timeout: float = 60, step: float = 0.1) -> None:
        """Until `check()` holds (real clock); fails with the daemon's log tail otherwise."""
        try:
            with trio.fail_after(timeout):
                while not check():
                    if self.daemon is not None and self.daemon.returncode is not None:
                        raise AssertionError(f"the daemon exited:\n{self.daemon.tail()}")
                    await trio.sleep(step)
        except trio.TooSlowError:
            tail = self.daemon.tail(60) if self.daemon is not None else ""
            raise AssertionError(f"not within {timeout} s:\n{tail}") from None

    # --- the two sides ------------------------------------------------------------------

    def persons(self) -> list[dict[str, Any]]:
        return self.pd.records("persons")

    def persons_by_email(self) -> dict[str, dict[str, Any]]:
        out = {}
        for p in self.persons():
            for e in p["emails"]:
                if e.get("primary"):
                    out[e["value"].lower()] = p
        return out

    def contacts_by_email(self) -> dict[str, dict[str, Any]]:
        return {str(r["properties"].get("email") or "").lower(): r
                for r in self.hub.records("contacts")}

    # --- crmsync's state (sqlite3, read only) ----------------------------------------------

    def state_rows(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        if not self.state_db.exists():
            return []
        with contextlib.closing(sqlite3.connect(f"file:{self.state_db}?mode=ro", uri=True,
                                                timeout=15)) as conn:
            return list(conn.execute(sql, params))

    def items(self, obj: str, state: str | None = None) -> list[tuple[Any, ...]]:
        """(hub_id, app_id, state, category, detail) of the object sync's items."""
        sql = ("SELECT hub_id, app_id, state, category, detail FROM items WHERE sync_id = ?")
        args: list[Any] = [f"pd/{obj}"]
        if state:
            sql += " AND state = ?"
            args.append(state)
        return self.state_rows(sql, *args)

    async def aclose(self) -> None:
        with trio.CancelScope(shield=True):
            await self.procs.close()
            await self.client.aclose()
            await self.pd_api.aclose()


@asynccontextmanager
async def pd_system(tmp: Path, **kwargs: Any) -> AsyncIterator[PdSystem]:
    """A `PdSystem` with both emulators serving; every process is gone when the block exits."""
    short = Path(tempfile.mkdtemp(prefix="crmsync-pd-", dir="/tmp"))
    procs = Procs(tmp)
    try:
        system: PdSystem | None = None
        try:
            async with trio.open_nursery() as nursery:
                system = PdSystem(tmp, procs, short, nursery, **kwargs)
                try:
                    await system.start_emulators()
                    yield system
                finally:
                    with trio.CancelScope(shield=True):
                        await procs.close()
                    nursery.cancel_scope.cancel()
        finally:
            if system is not None:
                await system.aclose()
    finally:
        shutil.rmtree(short, ignore_errors=True)


async def ctl_json(system: PdSystem, *args: str) -> Any:
    """`crmsync ctl --json ARGS` against the running daemon, decoded."""
    import json
    import subprocess

    result = await trio.run_process(
        crmsync("ctl", "--config", str(system.config), "--json", *args),
        capture_stdout=True, capture_stderr=True, check=False, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr.decode()
    return json.loads(result.stdout)


async def run_cli(system: PdSystem, *args: str) -> str:
    """`crmsync ARGS --config <the config>` to completion; its stdout (it must succeed)."""
    import subprocess

    result = await trio.run_process(
        crmsync(*args, "--config", str(system.config)), capture_stdout=True,
        capture_stderr=True, check=False, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr.decode()
    return str(result.stdout.decode())
