"""Real processes for the daemon's process-level tests: `crmsync emulator hubspot` and
`crmsync run --config`, on free loopback ports, with a SQLite app database file.

Everything here runs on the real clock (the tests wrap it in `trio.fail_after`). Every process
started through `Procs` is killed and reaped when its `async with` block exits, whatever
happened, so no test leaves a straggler behind.

The secrets are canaries: distinctive strings that must never appear in any process output.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import trio

from .harness import contacts_sync, make_app_db

TOKEN = "pat-canary-TOKEN-5b1e0c7d9a"
HUB_SECRET = "hub-canary-SECRET-3f8a2c61e4"
APP_SECRET = "app-canary-SECRET-9d7c4b20aa"
CANARIES = (TOKEN, HUB_SECRET, APP_SECRET)

# Variables a test runner might itself have (e.g. under systemd) that would change how the
# daemon behaves; a test sets them explicitly when it means to.
_SCRUBBED_ENV = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS", "LISTEN_PID",
                 "LISTEN_FDNAMES", "CREDENTIALS_DIRECTORY", "RUNTIME_DIRECTORY")

NO_KEEPALIVE = httpx.Limits(max_keepalive_connections=0)


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED_ENV}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def crmsync(*args: str) -> list[str]:
    return [sys.executable, "-m", "crmsync", *args]


class Proc:
    """One child process; its stdout and stderr go to files so they can be read at any time
    (and nothing blocks on a full pipe)."""

    def __init__(self, name: str, process: trio.Process, out: Path, err: Path) -> None:
        self.name = name
        self.process = process
        self.out = out
        self.err = err
        self._counted: dict[str, tuple[int, int]] = {}

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def returncode(self) -> int | None:
        return self.process.poll()

    def stdout(self) -> str:
        return self.out.read_text(errors="replace")

    def stderr(self) -> str:
        return self.err.read_text(errors="replace")

    def count(self, needle: str) -> int:
        """How many complete stdout lines contain `needle` (reads only what is new)."""
        offset, n = self._counted.get(needle, (0, 0))
        with open(self.out, "rb") as f:
            f.seek(offset)
            data = f.read()
        end = data.rfind(b"\n") + 1
        n += data[:end].count(needle.encode())
        self._counted[needle] = (offset + end, n)
        return n

    def log_lines(self) -> list[dict[str, Any]]:
        """The JSON log lines written so far (a last, partially written line is skipped)."""
        lines = []
        for text in self.stdout().splitlines():
            try:
                lines.append(json.loads(text))
            except ValueError:
                continue
        return lines

    def events(self, name: str) -> list[dict[str, Any]]:
        return [x for x in self.log_lines() if x.get("event") == name]

    async def wait_for_log(self, check: Callable[[dict[str, Any]], bool], *,
                           timeout: float = 30, step: float = 0.02) -> dict[str, Any]:
        """The first log line `check` accepts; fails if the process dies first."""
        with trio.fail_after(timeout):
            while True:
                for line in self.log_lines():
                    if check(line):
                        return line
                if self.returncode is not None:
                    raise AssertionError(
                        f"{self.name} exited with {self.returncode} first:\n{self.tail()}")
                await trio.sleep(step)

    async def wait_for_event(self, name: str, *, count: int = 1, timeout: float = 30,
                             **fields: Any) -> list[dict[str, Any]]:
        """Wait until `count` log lines with event `name` (and `fields`) exist."""
        with trio.fail_after(timeout):
            while True:
                got = [x for x in self.events(name)
                       if all(x.get(k) == v for k, v in fields.items())]
                if len(got) >= count:
                    return got
                if self.returncode is not None:
                    raise AssertionError(f"{self.name} exited with {self.returncode} before "
                                         f"{count} x {name!r}:\n{self.tail()}")
                await trio.sleep(0.02)

    def tail(self, n: int = 30) -> str:
        out = self.stdout().splitlines()[-n:]
        err = self.stderr().splitlines()[-n:]
        return "\n".join(["--- stdout:", *out, "--- stderr:", *err])

    def signal(self, signum: int) -> None:
        if self.returncode is None:
            self.process.send_signal(signum)

    def kill(self) -> None:
        if self.returncode is None:
            self.process.kill()

    async def wait(self, timeout: float = 30) -> int:
        with trio.fail_after(timeout):
            return await self.process.wait()


class Procs:
    """Starts processes and owns them: `close()` kills and reaps whatever still runs."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.started: list[Proc] = []

    async def start(self, name: str, args: list[str], *, env: Mapping[str, str] | None = None,
                    cwd: Path | None = None) -> Proc:
        n = sum(1 for p in self.started if p.name.split("-")[0] == name) + 1
        tag = f"{name}-{n}"
        out, err = self.tmp / f"{tag}.out", self.tmp / f"{tag}.err"
        with open(out, "wb") as fo, open(err, "wb") as fe:
            process = await trio.lowlevel.open_process(
                args, stdout=fo, stderr=fe, stdin=subprocess.DEVNULL, env=child_env(env),
                cwd=str(cwd or self.tmp))
        proc = Proc(tag, process, out, err)
        self.started.append(proc)
        return proc

    async def close(self) -> None:
        with trio.CancelScope(shield=True):
            for p in self.started:
                p.kill()
            with trio.move_on_after(20):
                for p in self.started:
                    await p.process.wait()

    def output(self) -> str:
        """Every byte any process wrote, for the canary check."""
        return "\n".join(p.stdout() + "\n" + p.stderr() for p in self.started)


# --- the system under test -------------------------------------------------------------------

@dataclass
class Ports:
    emulator: int = field(default_factory=free_port)
    webhooks: int = field(default_factory=free_port)


def write_config(tmp: Path, app_db: Path, ports: Ports, *, syncs: str | None = None,
                 daemon_extra: str = "", hub_extra: str = "", connection_extra: str = "",
                 webhooks_extra: str = "", control_socket: str = "",
                 hub_poll_interval: float = 5, name: str = "crmsync.toml",
                 app: str | None = None) -> Path:
    """A configuration for `crmsync run` against the emulator subprocess on `ports`; `app`:
    the connection's type and location lines (default: the SQLite file `app_db`)."""
    if app is None:
        app = f'type = "sqlite"\ndatabase = "{app_db}"'
    (tmp / "token").write_text(TOKEN)
    (tmp / "hub-secret").write_text(HUB_SECRET)
    (tmp / "app-secret").write_text(APP_SECRET)
    cfg = tmp / name
    cfg.write_text(f"""
[daemon]
state_dir = "{tmp / 'state'}"
shutdown_grace_seconds = 5
{daemon_extra}

[daemon.control]
socket_path = "{control_socket}"

[daemon.webhooks]
enabled = true
listen = "127.0.0.1:{ports.webhooks}"
public_base_url = "http://127.0.0.1:{ports.webhooks}"
{webhooks_extra}

[hub]
base_url = "http://127.0.0.1:{ports.emulator}"
tier = "unlimited"
poll_interval_seconds = {hub_poll_interval}
search_index_lag_seconds = 1
request_timeout_seconds = 5
webhook_client_secret_file = "hub-secret"
{hub_extra}

[hub.auth]
kind = "private_app"
token_file = "token"

[[connections]]
name = "shop"
{app}
poll_interval_seconds = 0.5
webhook_secret_file = "app-secret"
{connection_extra}

[[connections.tables]]
object = "customers"
table = "customers"

[[connections.tables]]
object = "organisations"
table = "organisations"

{contacts_sync() if syncs is None else syncs}
""")
    return cfg


class System:
    """The emulator subprocess, the app database, the config and the daemon subprocess(es)."""

    def __init__(self, tmp: Path, procs: Procs, short_dir: Path, pg: Any = None) -> None:
        # pg: a test database (see tests/conftest.py): the app is PostgreSQL, not SQLite.
        self.pg = pg
        self.tmp = tmp
        self.procs = procs
        self.short_dir = short_dir
        self.ports = Ports()
        self.app_db = tmp / "app.db"
        self.config = tmp / "crmsync.toml"
        self.emulator: Proc | None = None
        self.daemon: Proc | None = None
        self.daemons: list[Proc] = []
        # No kept-alive connections: the servers (hypercorn) close an idle one after 5 s, and
        # a request sent on it at that instant fails with RemoteProtocolError (seen once in
        # test_sigkill, between two reads of the emulator several seconds apart).
        self.hub = httpx.AsyncClient(base_url=f"http://127.0.0.1:{self.ports.emulator}",
                                     timeout=httpx.Timeout(10.0), limits=NO_KEEPALIVE)
        self.hooks = httpx.AsyncClient(base_url=f"http://127.0.0.1:{self.ports.webhooks}",
                                       timeout=httpx.Timeout(5.0), limits=NO_KEEPALIVE)

    @property
    def state_db(self) -> Path:
        return self.tmp / "state" / "crmsync.db"

    # --- set-up ------------------------------------------------------------------------

    def write_config(self, **kwargs: Any) -> Path:
        kwargs.setdefault("control_socket", str(self.short_dir / "ctl.sock"))
        if self.pg is not None:
            (self.tmp / "pg-dsn").write_text(self.pg.dsn + "\n")
            kwargs.setdefault("app", 'type = "postgres"\ndsn_file = "pg-dsn"')
        return write_config(self.tmp, self.app_db, self.ports, **kwargs)

    def make_app_db(self, customers: Iterable[dict[str, Any]] = ()) -> None:
        if self.pg is not None:
            from .pg_harness import make_pg_app

            make_pg_app(self.pg, customers)
            return
        make_app_db(self.app_db, customers)

    @property
    def now_sql(self) -> str:
        """The app database's "now" in the updated-at column's format."""
        return "now()" if self.pg is not None else "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"

    async def start_emulator(self, *, webhooks: bool = True) -> Proc:
        args = crmsync("emulator", "hubspot", "--host", "127.0.0.1",
                       "--port", str(self.ports.emulator), "--token", TOKEN, "--records", "0")
        if webhooks:
            args += ["--webhook-url", f"http://127.0.0.1:{self.ports.webhooks}/webhooks/hubspot",
                     "--webhook-secret", HUB_SECRET]
        proc = await self.procs.start("emulator", args)
        with trio.fail_after(30):
            while True:
                if proc.returncode is not None:
                    raise AssertionError(f"the emulator exited:\n{proc.tail()}")
                try:
                    r = await self.hub.get("/_emulator/faults")
                    if r.status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await trio.sleep(0.05)
        self.emulator = proc
        return proc

    async def start_daemon(self, env: Mapping[str, str] | None = None,
                           config: Path | None = None) -> Proc:
        assert self.daemon is None or self.daemon.returncode is not None, "one daemon at a time"
        proc = await self.procs.start("daemon", crmsync("run", "--config",
                                                          str(config or self.config)), env=env)
        self.daemon = proc
        self.daemons.append(proc)
        return proc

    async def wait_running(self, timeout: float = 30) -> None:
        assert self.daemon is not None
        await self.daemon.wait_for_event("crmsync running", timeout=timeout)

    async def aclose(self) -> None:
        with trio.CancelScope(shield=True):
            await self.procs.close()
            await self.hub.aclose()
            await self.hooks.aclose()

    # --- the hub (emulator) --------------------------------------------------------------

    async def seed_hub(self, contacts: list[dict[str, Any]]) -> list[str]:
        r = await self.hub.post("/_emulator/seed", json={"contacts": contacts})
        assert r.status_code == 201, r.text
        return list(r.json().get("contacts", []))

    async def hub_contacts(self) -> list[dict[str, Any]]:
        r = await self.hub.get("/_emulator/dump")
        r.raise_for_status()
        return [c for c in r.json()["objects"]["contacts"] if not c.get("archived")]

    async def hub_by_email(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for c in await self.hub_contacts():
            out[str(c["properties"].get("email") or "").strip().lower()] = c
        return out

    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {TOKEN}"}

    async def hub_update(self, record_id: str, properties: dict[str, Any]) -> None:
        """An edit through HubSpot's API (fires webhooks), as another integration would."""
        r = await self.hub.patch(f"/crm/v3/objects/contacts/{record_id}",
                                 json={"properties": properties}, headers=self._auth())
        assert r.status_code == 200, r.text

    async def hub_create(self, properties: dict[str, Any]) -> str:
        r = await self.hub.post("/crm/v3/objects/contacts", json={"properties": properties},
                                headers=self._auth())
        assert r.status_code == 201, r.text
        return str(r.json()["id"])

    async def set_faults(self, **faults: Any) -> None:
        r = await self.hub.post("/_emulator/faults", json=faults)
        assert r.status_code == 200, r.text

    # --- the app (SQLite) -----------------------------------------------------------------

    def _pg_query(self, sql: str, params: Iterable[Any] = ()) -> list[dict[str, Any]]:
        import psycopg
        from psycopg.rows import dict_row

        from .pg_harness import pg_sql

        with psycopg.connect(self.pg.dsn, autocommit=True, row_factory=dict_row) as conn:
            cur = conn.execute(pg_sql(sql), list(params))
            return list(cur) if cur.description else []

    def app_conn(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.app_db, timeout=15, isolation_level=None)
        conn.row_factory = sqlite3.Row
        return conn

    def app_rows(self) -> list[dict[str, Any]]:
        if self.pg is not None:
            return self._pg_query("SELECT * FROM customers ORDER BY id")
        with contextlib.closing(self.app_conn()) as conn:
            return [dict(r) for r in conn.execute("SELECT * FROM customers ORDER BY id")]

    def app_by_email(self) -> dict[str, dict[str, Any]]:
        return {str(r["email"]).strip().lower(): r for r in self.app_rows() if r["email"]}

    def app_exec(self, sql: str, *params: Any) -> int:
        if self.pg is not None:
            self._pg_query(sql, params)
            return 0
        with contextlib.closing(self.app_conn()) as conn:
            cur = conn.execute(sql, params)
            return int(cur.lastrowid or 0)

    # --- crmsync's state (read after the daemon stopped) -------------------------------

    def state_rows(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        with contextlib.closing(sqlite3.connect(self.state_db, timeout=15)) as conn:
            return list(conn.execute(sql, params))


@asynccontextmanager
async def system(tmp: Path, pg: Any = None) -> AsyncIterator[System]:
    """A `System` whose processes are all gone when the block exits; with `pg` (a test
    database), its app is PostgreSQL."""
    short = Path(tempfile.mkdtemp(prefix="crmsync-", dir="/tmp"))
    sys_ = System(tmp, Procs(tmp), short, pg)
    try:
        yield sys_
    finally:
        await sys_.aclose()
        shutil.rmtree(short, ignore_errors=True)


class NotifyListener:
    """A datagram socket standing in for systemd's $NOTIFY_SOCKET; collects the messages."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.messages: list[dict[str, str]] = []
        self.raw: list[str] = []
        self.sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)

    async def bind(self) -> None:
        address = "\0" + self.path[1:] if self.path.startswith("@") else self.path
        await self.sock.bind(address)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        task_status.started()
        while True:
            data = await self.sock.recv(65536)
            text = data.decode("utf-8", errors="replace")
            self.raw.append(text)
            fields = dict(line.partition("=")[::2] for line in text.split("\n") if line)
            self.messages.append(fields)

    def with_key(self, key: str) -> list[dict[str, str]]:
        return [m for m in self.messages if key in m]

    async def wait_for(self, key: str, value: str | None = None, *, count: int = 1,
                       timeout: float = 30) -> list[dict[str, str]]:
        with trio.fail_after(timeout):
            while True:
                got = [m for m in self.with_key(key) if value is None or m[key] == value]
                if len(got) >= count:
                    return got
                await trio.sleep(0.01)

    def close(self) -> None:
        self.sock.close()
        if not self.path.startswith("@"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)


@asynccontextmanager
async def notify_listener(path: str) -> AsyncIterator[NotifyListener]:
    """A bound, listening `NotifyListener` for the block's duration."""
    listener = NotifyListener(path)
    try:
        await listener.bind()
        async with trio.open_nursery() as nursery:
            await nursery.start(listener.run)
            yield listener
            nursery.cancel_scope.cancel()
    finally:
        listener.close()
