"""`crmsync run --config` as a real process, against `crmsync emulator hubspot` as another
process and a SQLite app database file: it syncs, speaks sd_notify, stops on SIGTERM / SIGINT
within its grace period, reloads on SIGHUP (and refuses a broken config), writes JSON log lines
with the decision fields, never logs a secret, and refuses a malformed config with exit 2.

Real clock, real loopback sockets: every wait is bounded by `trio.fail_after`, and every
process is killed in teardown (`procs.system`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import signal
import time
from typing import Any

import pytest
import trio

from .harness import contacts_sync, wait_for
from .procs import APP_SECRET, CANARIES, HUB_SECRET, TOKEN, crmsync, notify_listener, system

pytestmark = pytest.mark.slow

APP = [{"email": f"app{i}@example.com", "first_name": f"App{i}", "last_name": "Side"}
       for i in range(12)] + [{"email": f"both{i}@example.com", "first_name": f"Both{i}",
                               "last_name": "FromApp", "phone": f"+1 555 01{i:02d}"}
                              for i in range(4)]
HUB = [{"email": f"hub{i}@example.com", "firstname": f"Hub{i}", "lastname": "Side"}
       for i in range(12)] + [{"email": f"both{i}@example.com", "firstname": f"Both{i}",
                               "lastname": "FromHub"} for i in range(4)]
ALL = ({f"app{i}@example.com" for i in range(12)} | {f"hub{i}@example.com" for i in range(12)}
       | {f"both{i}@example.com" for i in range(4)})


async def prepare(s, **config: Any) -> None:
    s.make_app_db(APP)
    s.write_config(**config)
    await s.start_emulator()
    await s.seed_hub(HUB)


async def converged(s) -> bool:
    hub = await s.hub_by_email()
    app = s.app_by_email()
    return set(hub) == set(app) == ALL


async def stop(s, signum: int = signal.SIGTERM, timeout: float = 15) -> int:
    s.daemon.signal(signum)
    return await s.daemon.wait(timeout)


async def test_it_syncs_both_ways_through_webhooks_and_the_change_log(tmp_path):
    with trio.fail_after(90):
        async with system(tmp_path) as s:
            # Hub polling every 300 s: within this test, only a webhook brings a hub change.
            await prepare(s, hub_poll_interval=300)
            d = await s.start_daemon()
            await d.wait_for_event("initial sync complete", timeout=30)
            await wait_for(lambda: converged(s))
            hub, app = await s.hub_by_email(), s.app_by_email()
            # Paired both ways: the hub wins the conflicting last name, the app's phone fills
            # the hub's empty one.
            assert hub["both1@example.com"]["properties"]["phone"] == "+1 555 0101"
            assert app["both1@example.com"]["last_name"] == "FromHub"
            assert len(await s.hub_contacts()) == len(s.app_rows()) == len(ALL)

            # App -> hub through the change log; hub -> app through a webhook.
            s.app_exec("UPDATE customers SET job_title = 'CTO' WHERE email = 'app3@example.com'")
            await s.hub_update(hub["hub4@example.com"]["id"], {"jobtitle": "CFO"})
            await wait_for(lambda: s.app_by_email()["hub4@example.com"]["job_title"] == "CFO",
                             step=0.05, timeout=10)
            await wait_for(lambda: _hub_prop(s, "app3@example.com", "jobtitle", "CTO"))
            deliveries = d.events("webhook delivery")
            assert any(x["source"] == "hubspot" and x["signature_version"] == "v3"
                       for x in deliveries), d.tail()
            assert await stop(s) == 0


async def _hub_prop(s, email: str, prop: str, value: Any) -> bool:
    rec = (await s.hub_by_email()).get(email)
    return rec is not None and rec["properties"].get(prop) == value


async def test_sd_notify_ready_status_watchdog_and_stopping(tmp_path):
    with trio.fail_after(90):
        async with system(tmp_path) as s:
            await prepare(s)
            async with notify_listener(str(s.short_dir / "notify.sock")) as listener:
                await _sd_notify_full(s, listener)


async def _sd_notify_full(s, listener) -> None:
    d = await s.start_daemon(env={"NOTIFY_SOCKET": listener.path,
                                  "WATCHDOG_USEC": "400000"})
    (ready,) = await listener.wait_for("READY", "1")
    # READY only once the store is open and the webhook socket is bound: both are
    # usable the moment it arrives.
    r = await s.hooks.get("/readyz")
    assert r.status_code == 200, r.text
    assert (await s.hooks.get("/healthz")).status_code == 200
    tables = {t for (t,) in s.state_rows("SELECT name FROM sqlite_master")}
    assert {"items", "inbox"} <= tables
    assert ready.get("STATUS"), f"READY without STATUS: {listener.raw}"
    assert "shop" in ready["STATUS"]
    # WATCHDOG_USEC = 0.4 s: fed about every 0.2 s.
    await listener.wait_for("WATCHDOG", "1", count=5, timeout=10)
    first_ready = next(i for i, m in enumerate(listener.messages) if "READY" in m)
    first_dog = next(i for i, m in enumerate(listener.messages) if "WATCHDOG" in m)
    assert first_ready < first_dog
    await d.wait_for_event("initial sync complete")
    assert await stop(s) == 0
    await listener.wait_for("STOPPING", "1", timeout=5)
    stopping = next(i for i, m in enumerate(listener.messages) if "STOPPING" in m)
    assert not [m for m in listener.messages[stopping:] if "READY" in m]
    for m in listener.messages:
        assert set(m) <= {"READY", "STATUS", "WATCHDOG", "STOPPING"}, m


async def test_sd_notify_on_an_abstract_socket_without_a_watchdog(tmp_path):
    with trio.fail_after(60):
        async with system(tmp_path) as s:
            await prepare(s)
            async with notify_listener(f"@crmsync-test-{s.short_dir.name}") as listener:
                await _sd_notify_abstract(s, listener)


async def _sd_notify_abstract(s, listener) -> None:
    # WATCHDOG_PID names another process: the watchdog is not ours to feed.
    d = await s.start_daemon(env={"NOTIFY_SOCKET": listener.path,
                                  "WATCHDOG_USEC": "200000", "WATCHDOG_PID": "1"})
    await listener.wait_for("READY", "1")
    await d.wait_for_event("initial sync complete")
    await trio.sleep(1)
    assert listener.with_key("WATCHDOG") == []
    assert await stop(s) == 0
    await listener.wait_for("STOPPING", "1", timeout=5)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_stops_with_0_when_idle(tmp_path, signum):
    with trio.fail_after(60):
        async with system(tmp_path) as s:
            await prepare(s)
            d = await s.start_daemon()
            await d.wait_for_event("initial sync complete")
            start = time.monotonic()
            assert await stop(s, signum) == 0, d.tail()
            assert time.monotonic() - start < 5
            assert d.events("stopping") and d.events("crmsync stopped")


@pytest.mark.parametrize("phase", ["initial", "incremental"])
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_stops_with_0_within_the_grace_period_while_a_request_hangs(tmp_path, signum,
                                                                          phase):
    grace = 2.0
    with trio.fail_after(60):
        async with system(tmp_path) as s:
            await prepare(s)
            text = s.config.read_text().replace("shutdown_grace_seconds = 5",
                                                f"shutdown_grace_seconds = {grace}")
            text = text.replace("request_timeout_seconds = 5", "request_timeout_seconds = 60")
            s.config.write_text(text)
            if phase == "initial":
                # Every API request now takes 30 s: the initial sync is stuck in one.
                await s.set_faults(latency=30)
                d = await s.start_daemon()
                await s.wait_running()
                await trio.sleep(1)
                assert not d.events("initial sync complete")
            else:
                d = await s.start_daemon()
                await d.wait_for_event("initial sync complete")
                await s.set_faults(latency=30)
                # A sync of this row starts and hangs in its first hub request.
                s.app_exec("UPDATE customers SET last_name = 'Hang' "
                           "WHERE email = 'app2@example.com'")
                await trio.sleep(1.5)  # the change log is read every 0.5 s
            start = time.monotonic()
            rc = await stop(s, signum, timeout=grace + 10)
            took = time.monotonic() - start
            assert rc == 0, d.tail()
            assert took < grace + 3, f"stopped after {took:.1f} s with a {grace} s grace"
            assert d.events("crmsync stopped"), d.tail()
            if phase == "incremental":
                # The running sync was given the grace period, then cancelled.
                assert took >= grace - 0.5, f"stopped after {took:.1f} s, before the grace"
                assert d.events("grace period over: cancelling running syncs"), d.tail()


async def test_sighup_reloads_and_a_changed_object_sync_restarts_its_initial_sync(tmp_path):
    with trio.fail_after(120):
        async with system(tmp_path) as s:
            await prepare(s)
            d = await s.start_daemon()
            await d.wait_for_event("initial sync complete")
            await wait_for(lambda: converged(s))

            # A changed object sync: the phone mapping switched off, the app wins conflicts.
            s.write_config(syncs=contacts_sync(winner="app", extra="""
[[syncs.mappings]]
hub = "phone"
app = "phone"
enabled = false
"""))
            d.signal(signal.SIGHUP)
            (reloaded,) = await d.wait_for_event("configuration reloaded")
            assert reloaded["changes"] == ["restarted shop"], reloaded
            await d.wait_for_event("object sync settings changed: initial sync restarts",
                                   connection="shop", object="contacts")
            await d.wait_for_event("initial sync complete", count=2, timeout=30)
            # The new settings are the ones in force: a phone change no longer travels, a
            # last-name change still does.
            s.app_exec("UPDATE customers SET phone = '+44 1', last_name = 'Reloaded' "
                       "WHERE email = 'app5@example.com'")
            await wait_for(lambda: _hub_prop(s, "app5@example.com", "lastname", "Reloaded"))
            hub = await s.hub_by_email()
            assert hub["app5@example.com"]["properties"].get("phone") in (None, "")
            assert d.returncode is None

            # A broken config on SIGHUP is refused; the daemon keeps running on the old one.
            good = s.config.read_text()
            s.config.write_text(good.replace('direction = "both"', 'direction = "sideways"'))
            d.signal(signal.SIGHUP)
            (refused,) = await d.wait_for_event("reload refused: the configuration is invalid")
            assert "$.syncs[0].direction" in refused["error"], refused
            await trio.sleep(0.5)
            assert d.returncode is None
            assert (await s.hooks.get("/readyz")).status_code == 200
            s.app_exec("UPDATE customers SET last_name = 'StillSyncing' "
                       "WHERE email = 'app6@example.com'")
            await wait_for(lambda: _hub_prop(s, "app6@example.com", "lastname",
                                               "StillSyncing"))
            # ... with the phone still switched off (the old config is the reloaded one).
            s.app_exec("UPDATE customers SET phone = '+44 2', last_name = 'Again' "
                       "WHERE email = 'app6@example.com'")
            await wait_for(lambda: _hub_prop(s, "app6@example.com", "lastname", "Again"))
            assert (await s.hub_by_email())["app6@example.com"]["properties"].get(
                "phone") in (None, "")
            assert len(d.events("initial sync complete")) == 2
            assert len(d.events("configuration reloaded")) == 1
            assert await stop(s) == 0


async def test_sighup_with_an_unchanged_config_restarts_nothing(tmp_path):
    with trio.fail_after(60):
        async with system(tmp_path) as s:
            await prepare(s)
            d = await s.start_daemon()
            await d.wait_for_event("initial sync complete")
            d.signal(signal.SIGHUP)
            (reloaded,) = await d.wait_for_event("configuration reloaded")
            assert reloaded["changes"] == []
            await trio.sleep(1)
            assert not d.events("object sync settings changed: initial sync restarts")
            assert len(d.events("initial sync complete")) == 1
            assert await stop(s) == 0


def app_headers(body: bytes, *, ts: int, secret: str) -> dict[str, str]:
    """A push signed as `crmsync.connectors.app_webhooks` documents it."""
    sig = hmac.new(secret.encode(), str(ts).encode() + b"." + body, hashlib.sha256).hexdigest()
    return {"X-Crmsync-Timestamp": str(ts), "X-Crmsync-Signature": f"v1={sig}"}


DECISION_KEYS = {"connection", "object", "hub_id", "app_id", "action", "fields", "duration_ms"}


async def test_logs_are_json_lines_with_decision_fields_and_no_secret(tmp_path):
    with trio.fail_after(90):
        async with system(tmp_path) as s:
            await prepare(s)
            d = await s.start_daemon()
            await d.wait_for_event("initial sync complete")
            await wait_for(lambda: converged(s))
            hub = await s.hub_by_email()
            # Values that look like the secrets travel through the sync ...
            await s.hub_update(hub["hub1@example.com"]["id"], {"jobtitle": f"x {TOKEN} y"})
            s.app_exec("UPDATE customers SET job_title = ? WHERE email = 'app1@example.com'",
                       f"Bearer {APP_SECRET}")
            # ... and through the webhook endpoint: signed pushes whose fields hold them,
            # a signature header made of one, a HubSpot delivery signed with another.
            now = int(time.time())
            body = json.dumps([{"event_id": TOKEN, "object": "customers",
                                 "record_id": HUB_SECRET, "change": "upsert",
                                 "occurred_at": f"{APP_SECRET}"}]).encode()
            r = await s.hooks.post("/webhooks/shop", content=body,
                                   headers=app_headers(body, ts=now, secret=APP_SECRET))
            assert r.status_code == 400
            r = await s.hooks.post("/webhooks/shop", content=body, headers={
                "X-Crmsync-Timestamp": str(now), "X-Crmsync-Signature": f"v1={APP_SECRET}"})
            assert r.status_code == 401
            r = await s.hooks.post("/webhooks/hubspot", content=TOKEN.encode(), headers={
                "X-HubSpot-Signature-v3": HUB_SECRET,
                "X-HubSpot-Request-Timestamp": str(now * 1000)})
            assert r.status_code == 401
            await wait_for(lambda: s.app_by_email()["hub1@example.com"]["job_title"]
                             == f"x {TOKEN} y")
            await wait_for(lambda: _hub_prop(s, "app1@example.com", "jobtitle",
                                               f"Bearer {APP_SECRET}"))
            assert await stop(s) == 0

            lines = d.stdout().splitlines()
            assert lines
            decisions = []
            for text in lines:
                line = json.loads(text)  # every line is one JSON object
                assert isinstance(line, dict)
                assert {"event", "level", "timestamp"} <= set(line), line
                assert line["timestamp"].endswith("Z")
                if line["event"] == "sync decision":
                    decisions.append(line)
            assert len(decisions) >= len(ALL)
            for line in decisions:
                assert set(line) >= DECISION_KEYS, line
                assert line["connection"] == "shop" and line["object"] == "contacts"
                assert isinstance(line["fields"], list)
                assert isinstance(line["duration_ms"], int | float)
            actions = {x["action"] for x in decisions}
            assert {"create", "link"} & actions, actions
            assert "webhook rejected" in {x.get("event") for x in d.log_lines()}
            output = d.stdout() + d.stderr()
            for canary in CANARIES:
                assert canary not in output, canary
            assert d.stderr() == "", "everything is logged as JSON on stdout"
            assert "[redacted]" in output  # the values that looked like secrets were met


async def test_a_refused_token_never_reaches_the_logs(tmp_path):
    with trio.fail_after(60):
        async with system(tmp_path) as s:
            s.make_app_db(APP)
            s.write_config()
            # The emulator accepts another token: every call the daemon makes gets a 401.
            proc = await s.procs.start("emulator", crmsync(
                "emulator", "hubspot", "--port", str(s.ports.emulator), "--token",
                "some-other-token", "--records", "0"))
            s.emulator = proc
            await wait_for(lambda: _emulator_up(s), timeout=30)
            d = await s.start_daemon()
            await s.wait_running()
            await wait_for(lambda: any(x.get("level") in ("error", "warning")
                                         for x in d.log_lines()), timeout=20)
            await trio.sleep(1)
            d.signal(signal.SIGTERM)
            await d.wait(15)
            output = d.stdout() + d.stderr()
            for canary in CANARIES:
                assert canary not in output, canary


async def _emulator_up(s) -> bool:
    import httpx

    try:
        return (await s.hub.get("/_emulator/faults")).status_code == 200
    except httpx.TransportError:
        return False


@pytest.mark.parametrize(("edit", "path"), [
    (lambda t: t.replace("state_dir =", "state_directory ="), "$.daemon.state_directory"),
    (lambda t: t.replace("poll_interval_seconds = 5\n", 'poll_interval_seconds = "fast"\n'),
     "$.hub.poll_interval_seconds"),
    (lambda t: t.replace('direction = "both"', 'direction = "sideways"'),
     "$.syncs[0].direction"),
    (lambda t: t.replace('token_file = "token"', 'token_file = "missing-token"'),
     "$.hub.auth.token_file"),
    (lambda t: t + "\n[[nonsense\n", "$"),
], ids=["unknown-key", "wrong-type", "bad-enum", "missing-secret", "not-toml"])
async def test_a_malformed_config_exits_2_naming_the_path(tmp_path, edit, path):
    with trio.fail_after(30):
        async with system(tmp_path) as s:
            s.make_app_db(APP)
            cfg = s.write_config()
            cfg.write_text(edit(cfg.read_text()))
            result = await trio.run_process(crmsync("run", "--config", str(cfg)),
                                            capture_stdout=True, capture_stderr=True,
                                            check=False)
            err = result.stderr.decode()
            assert result.returncode == 2, err
            assert path in err, err
            assert "Traceback" not in err
            for canary in CANARIES:
                assert canary not in err + result.stdout.decode()
            assert not (tmp_path / "state" / "crmsync.db").exists()


async def test_a_running_daemon_loads_no_emulator(tmp_path):
    # DESIGN.md: production code never imports an emulator. `-X importtime` (set through its
    # environment variable) makes the daemon write every module it imports to stderr, when it
    # imports it: also those imported late (the app connector, on open).
    with trio.fail_after(60):
        async with system(tmp_path) as s:
            await prepare(s)
            d = await s.start_daemon(env={"PYTHONPROFILEIMPORTTIME": "1"})
            await d.wait_for_event("initial sync complete", timeout=30)
            assert await stop(s) == 0, d.tail()
            loaded = {line.rpartition("|")[2].strip() for line in d.stderr().splitlines()
                      if line.startswith("import time:")}
            assert {"crmsync.daemon.main", "crmsync.connectors.sqlite.connector",
                    "crmsync.control.server"} <= loaded  # the daemon ran, its app open
            assert sorted(m for m in loaded if m.startswith("crmsync.emulators")) == []
