"""`crmsync run` with `[hub] changes = "journal"` as a real process, over loopback HTTP and the
real clock: its webhook server is off and the emulator delivers no webhooks, so HubSpot's
changes reach it only through the webhooks journal it reads with a client-credentials token
(hubspot-onboarding.md §6); it converges, and no secret reaches its output.

The emulator runs in this test's process (its OAuth app is configured in Python), served by
hypercorn on a loopback port; every wait is bounded by `trio.fail_after`, and the daemon is
killed in teardown (`procs.system`).
"""

from __future__ import annotations

import signal

import pytest
import trio

from crmsync.emulators.hubspot import HubSpotEmulator
from crmsync.emulators.hubspot.oauth import OAuthApp

from ..emulators.serving import serving
from .harness import contacts_sync, make_app_db, wait_for
from .procs import TOKEN, system

pytestmark = pytest.mark.slow

CLIENT_ID = "journal-loopback-client"
CLIENT_SECRET = "journal-canary-SECRET-71c0e2"

APP = [{"email": f"app{i}@example.com", "first_name": f"App{i}", "last_name": "Side"}
       for i in range(5)]
HUB = [{"email": f"hub{i}@example.com", "firstname": f"Hub{i}", "lastname": "Side"}
       for i in range(5)]


def write_config(s, base_url: str) -> None:
    (s.tmp / "token").write_text(TOKEN)
    (s.tmp / "journal-secret").write_text(CLIENT_SECRET)
    s.config.write_text(f"""
[daemon]
state_dir = "{s.tmp / 'state'}"
shutdown_grace_seconds = 5

[daemon.control]
socket_path = "{s.short_dir / 'ctl.sock'}"

[daemon.webhooks]
enabled = false

[hub]
base_url = "{base_url}"
tier = "unlimited"
poll_interval_seconds = 3600
search_index_lag_seconds = 1
request_timeout_seconds = 5
changes = "journal"

[hub.auth]
kind = "private_app"
token_file = "token"

[hub.journal]
client_id = "{CLIENT_ID}"
client_secret_file = "journal-secret"
poll_interval_seconds = 0.5

[[connections]]
name = "shop"
type = "sqlite"
database = "{s.app_db}"
poll_interval_seconds = 0.5

[[connections.tables]]
object = "customers"
table = "customers"

{contacts_sync()}
""")


async def test_a_daemon_without_a_public_url_converges_through_the_journal(tmp_path):
    emu = HubSpotEmulator(tokens=(TOKEN,), seed=0,
                          oauth_clients={CLIENT_ID: OAuthApp(CLIENT_ID, CLIENT_SECRET)})
    emu.add_records("contacts", HUB)
    with trio.fail_after(90):
        async with system(tmp_path) as s, serving(emu) as base_url:
            make_app_db(s.app_db, APP)
            write_config(s, base_url)
            d = await s.start_daemon()
            await d.wait_for_event("journal reader ready", timeout=30)
            await d.wait_for_event("initial sync complete", timeout=30)
            emails = {r["email"] for r in APP} | {f"hub{i}@example.com" for i in range(5)}
            await wait_for(lambda: set(s.app_by_email()) == emails, timeout=30)

            # Hub polling is hourly: within this test only the journal brings hub changes.
            hub_id = next(r["id"] for r in emu.records("contacts")
                          if r["properties"]["email"] == "hub2@example.com")
            emu.update_record("contacts", hub_id, {"jobtitle": "Pulled"})
            emu.add_records("contacts", [{"email": "late@example.com", "firstname": "Late"}])
            await wait_for(lambda: s.app_by_email()["hub2@example.com"]["job_title"] == "Pulled",
                           timeout=20)
            await wait_for(lambda: "late@example.com" in s.app_by_email(), timeout=20)
            assert not d.events("webhook server listening")
            assert d.events("hubspot_client_credentials_granted")
            assert d.events("hubspot_journal_subscribed")

            s.daemon.signal(signal.SIGTERM)
            assert await s.daemon.wait(15) == 0
            assert CLIENT_SECRET not in s.procs.output()
            assert TOKEN not in s.procs.output()
