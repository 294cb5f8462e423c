"""`crmsync ctl reload` with secrets that once froze the daemon (issue 10, item 9): a FIFO as a
secret file is refused at once (exit 2, the `$.path`), and secret files are read off the
event loop, so that the daemon keeps answering while one is slow to read.

Real clock (ctl runs in a worker thread, see ctl_env.py). A hang is what is being tested for,
so each test holds a safety valve that ends the hang after a while; the assertion is that
the daemon answered before the valve had to act, never how fast.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import trio

from crmsync.config import load as config_load

from .ctl_env import CUSTOMERS, HUB, ctl_daemon, ctl_json

VALVE_SECONDS = 20.0


async def test_reload_refuses_a_fifo_secret_at_once_and_the_daemon_keeps_answering(tmp_path):
    with trio.fail_after(90):
        async with ctl_daemon(tmp_path, customers=CUSTOMERS, hub_contacts=HUB) as c:
            await c.env.wait_ready()
            token = tmp_path / "token"  # the config's token_file
            token.unlink()
            os.mkfifo(token)
            valve_opened = threading.Event()

            def valve() -> None:
                # Ends a read blocked on the FIFO, had there been one: a writer opens it.
                valve_opened.set()
                with open(token, "w"):
                    pass

            timer = threading.Timer(VALVE_SECONDS, valve)
            timer.start()
            try:
                err = await ctl_json(c, "reload", code=2)
                assert not valve_opened.is_set(), "the reload waited for a writer on the FIFO"
            finally:
                timer.cancel()
            assert err["op"] == "error" and err["code"] == "config"
            assert "$.hub.auth.token_file" in err["message"], err
            assert "is a FIFO (named pipe), not a regular file" in err["message"], err
            assert "nothing changed" in err["message"]
            assert (await ctl_json(c, "ping"))["op"] == "ping"
            st = await ctl_json(c, "status")
            assert st["connections"][0]["state"] == "running"


async def test_reload_reads_secrets_off_the_event_loop(tmp_path, monkeypatch):
    """A secret file that takes long to read (a slow disk, a network file system) delays
    the reload, not the daemon: ping is answered while the read is under way."""
    reading, release = threading.Event(), threading.Event()
    real_read_secret = config_load.read_secret

    def slow_read_secret(*args: Any, **kwargs: Any) -> Any:
        reading.set()
        release.wait(VALVE_SECONDS)  # the valve: never blocks for ever
        return real_read_secret(*args, **kwargs)

    with trio.fail_after(90):
        async with ctl_daemon(tmp_path, customers=CUSTOMERS, hub_contacts=HUB) as c:
            await c.env.wait_ready()
            monkeypatch.setattr(config_load, "read_secret", slow_read_secret)
            replies: dict[str, Any] = {}

            async def reload() -> None:
                replies["reload"] = await ctl_json(c, "reload")

            async with trio.open_nursery() as nursery:
                nursery.start_soon(reload)
                await trio.to_thread.run_sync(reading.wait, VALVE_SECONDS)
                assert reading.is_set()
                assert (await ctl_json(c, "ping"))["op"] == "ping"
                assert not release.is_set()  # answered while the secret was being read
                assert "reload" not in replies
                release.set()
            assert replies["reload"] == {"op": "reload", "changes": []}


async def test_a_reload_refused_for_its_configuration_exits_2(tmp_path):
    """As check-config does: exit 2 for a configuration error, with every `$.path`."""
    with trio.fail_after(60):
        async with ctl_daemon(tmp_path, customers=CUSTOMERS, hub_contacts=HUB) as c:
            await c.env.wait_ready()
            cfg = tmp_path / "crmsync.toml"
            cfg.write_text(cfg.read_text().replace('base_url = "http://hubspot.test"',
                                                   'base_url = "http://"'))
            err = await ctl_json(c, "reload", code=2)
            assert err["code"] == "config"
            assert "$.hub.base_url: has no host" in err["message"], err
