"""From an empty state directory to a running sync, as a person does it with a real account
(docs/hubspot-setup.md), against `crmsync emulator hubspot` as another process:

`crmsync connect hubspot` (the emulator's consent page, the redirect on localhost) →
`crmsync doctor` failing on a missing property → `crmsync doctor --create-properties --yes` →
`crmsync doctor` passing → `crmsync run` syncing → `crmsync ctl status` showing it.

Real processes and sockets: the real clock, every wait bounded, every process reaped.
"""

from __future__ import annotations

import json
import re
import sqlite3
import stat

import httpx
import pytest
import trio

from .procs import crmsync, free_port, system

pytestmark = pytest.mark.slow

CLIENT_ID = "0b6f-crmsync-test-app"
CLIENT_SECRET = "oauth-canary-CLIENT-SECRET-5c2d9e"

APP_SCHEMA = """
CREATE TABLE customers (
    id INTEGER PRIMARY KEY, email TEXT, first_name TEXT, last_name TEXT, tier TEXT,
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
"""
CUSTOMERS = [("ann@example.com", "Ann", "Lee", "gold"), ("bob@example.com", "Bob", "Ng", None),
             ("cy@example.com", "Cy", "Oh", "silver")]


def config(tmp, emulator: int, webhooks: int, redirect: str, socket: str) -> str:
    return f"""
[daemon]
state_dir = "{tmp / 'state'}"
shutdown_grace_seconds = 5

[daemon.control]
socket_path = "{socket}"

[daemon.webhooks]
listen = "127.0.0.1:{webhooks}"
public_base_url = "http://127.0.0.1:{webhooks}"

[hub]
base_url = "http://127.0.0.1:{emulator}"
tier = "unlimited"
poll_interval_seconds = 5
search_index_lag_seconds = 1
webhook_client_secret_file = "client-secret"

[hub.auth]
kind = "oauth"
client_id = "{CLIENT_ID}"
client_secret_file = "client-secret"
refresh_token_file = "{tmp / 'state' / 'hubspot-refresh-token'}"
redirect_uri = "{redirect}"
authorize_url = "http://127.0.0.1:{emulator}/oauth/authorize"

[[connections]]
name = "shop"
type = "sqlite"
database = "{tmp / 'app.db'}"
poll_interval_seconds = 0.5

[[connections.tables]]
object = "customers"
table = "customers"

[[syncs]]
connection = "shop"
hub_object = "contacts"
app_object = "customers"

[[syncs.mappings]]
hub = "customer_tier"
app = "tier"
"""


async def finished(proc, timeout: float = 60) -> int:
    return await proc.wait(timeout)


async def test_from_an_empty_state_directory_to_a_running_sync(tmp_path):
    with trio.fail_after(240):
        async with system(tmp_path) as s:
            (tmp_path / "state").mkdir()
            assert list((tmp_path / "state").iterdir()) == []
            secret = tmp_path / "client-secret"
            secret.write_text(CLIENT_SECRET + "\n")
            secret.chmod(0o600)
            with sqlite3.connect(tmp_path / "app.db") as conn:
                conn.executescript(APP_SCHEMA)
                conn.executemany("INSERT INTO customers (email, first_name, last_name, tier) "
                                 "VALUES (?, ?, ?, ?)", CUSTOMERS)
            emulator, hooks = s.ports.emulator, s.ports.webhooks
            redirect = f"http://localhost:{free_port()}/oauth-callback"
            cfg = tmp_path / "crmsync.toml"
            cfg.write_text(config(tmp_path, emulator, hooks, redirect,
                                  str(s.short_dir / "ctl.sock")))

            # HubSpot, with the OAuth app (its client secret also signs the webhooks).
            emu = await s.procs.start("emulator", crmsync(
                "emulator", "hubspot", "--host", "127.0.0.1", "--port", str(emulator),
                "--records", "0", "--oauth-app", CLIENT_ID,
                "--oauth-client-secret-file", str(secret), "--oauth-redirect-uri", redirect,
                "--rotate-refresh-tokens",
                "--webhook-url", f"http://127.0.0.1:{hooks}/webhooks/hubspot",
                "--webhook-secret", CLIENT_SECRET))
            await _up(s, emu)
            r = await s.hub.post("/_emulator/seed", json={"contacts": [
                {"email": "dee@example.com", "firstname": "Dee", "lastname": "Hub"}]})
            assert r.status_code == 201, r.text

            # 1. connect: the person opens the printed address; HubSpot consents and redirects.
            connect = await s.procs.start("connect", crmsync(
                "connect", "hubspot", "--config", str(cfg), "--create-properties"))
            url = await _printed_url(connect)
            async with httpx.AsyncClient(timeout=10) as browser:
                consent = await browser.get(url)
                assert consent.status_code == 302, consent.text
                landing = await browser.get(consent.headers["location"])
                assert landing.status_code == 200
            assert await finished(connect) == 0, connect.tail()
            token_file = tmp_path / "state" / "hubspot-refresh-token"
            assert stat.S_IMODE(token_file.stat().st_mode) == 0o600

            # 2. doctor: customer_tier does not exist in HubSpot yet.
            doctor = await s.procs.start("doctor", crmsync("doctor", "--config", str(cfg),
                                                           "--json"))
            assert await finished(doctor) == 2, doctor.tail()
            report = json.loads(doctor.stdout())
            failing = [c["message"] for c in report["checks"] if c["status"] == "fail"]
            assert any("HubSpot has no contacts property 'customer_tier'" in m
                       for m in failing), failing
            assert report["hub_requests"] <= 10

            # 3. doctor --create-properties: shows what it creates, creates it, checks again.
            create = await s.procs.start("doctor", crmsync(
                "doctor", "--config", str(cfg), "--create-properties", "--yes"))
            assert await finished(create) == 0, create.tail()
            assert "will create these HubSpot properties:\n  contacts.customer_tier" in (
                create.stdout())

            # 4. doctor passes: the token, scopes, mappings, the webhook endpoint.
            again = await s.procs.start("doctor", crmsync("doctor", "--config", str(cfg)))
            assert await finished(again) == 0, again.tail()
            out = again.stdout()
            assert "✓ token: valid for HubSpot account 62515" in out
            assert re.search(r"✓ webhooks: a signed test delivery to \S+ reached", out)
            assert out.rstrip().endswith("✓ ready to run")

            # 5. the daemon syncs, both ways, with the new property.
            await s.start_daemon(config=cfg)
            await s.wait_running()

            async def synced() -> bool:
                hub = await s.hub_by_email()
                app = s.app_by_email()
                return (set(hub) == set(app) == {"ann@example.com", "bob@example.com",
                                                  "cy@example.com", "dee@example.com"}
                        and hub["ann@example.com"]["properties"].get("customer_tier") == "gold")

            with trio.fail_after(60):
                while not await synced():
                    await trio.sleep(0.2)

            # 6. ctl status shows the object sync with its records syncing.
            ctl = await s.procs.start("ctl", crmsync("ctl", "--config", str(cfg), "--json",
                                                     "status"))
            assert await finished(ctl, 30) == 0, ctl.tail()
            [conn] = json.loads(ctl.stdout())["connections"]
            assert conn["name"] == "shop" and conn["state"] == "running"
            [contacts] = conn["objects"]
            assert contacts["counts"]["syncing"] == 4, contacts
            text = await s.procs.start("ctl", crmsync("ctl", "--config", str(cfg), "status"))
            assert await finished(text, 30) == 0, text.tail()
            assert "connection shop (sqlite): running" in text.stdout()
            # Nothing printed the client secret or a token anywhere.
            assert CLIENT_SECRET not in s.procs.output()
            assert token_file.read_text().strip() not in s.procs.output()


async def _up(s, emu) -> None:
    with trio.fail_after(30):
        while True:
            if emu.returncode is not None:
                raise AssertionError(f"the emulator exited:\n{emu.tail()}")
            try:
                if (await s.hub.get("/_emulator/faults")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await trio.sleep(0.05)


async def _printed_url(proc) -> str:
    with trio.fail_after(30):
        while True:
            m = re.search(r"\n  (http\S+/oauth/authorize\?\S+)\n", proc.stdout())
            if m:
                return m.group(1)
            if proc.returncode is not None:
                raise AssertionError(f"connect exited first:\n{proc.tail()}")
            await trio.sleep(0.05)
