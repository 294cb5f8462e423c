"""Faults from the emulator (seeded): 5xx outages, 429 storms, writes applied whose answer is
lost, per-record 207 failures. In every case both sides converge, nothing is created twice and
no change is lost."""

import trio

from crmsync.emulators.hubspot import Faults
from crmsync.runtime.object_sync import Timing

from .harness import running

N = 120
CUSTOMERS = [{"email": f"a{i}@example.com", "first_name": f"A{i}", "last_name": "App"}
             for i in range(N)]
HUB = [{"email": f"h{i}@example.com", "firstname": f"H{i}", "lastname": "Hub"}
       for i in range(N)] + [{"email": f"a{i}@example.com", "firstname": f"A{i}"}
                             for i in range(0, N, 3)]


def assert_converged(env):
    hub = env.hub_by_email()
    app = env.app_by_email()
    emails = [str(r["properties"].get("email")).lower() for r in env.hub()]
    assert len(emails) == len(set(emails)), "a contact was created twice in the hub"
    app_emails = [r["email"].lower() for r in env.app_rows()]
    assert len(app_emails) == len(set(app_emails)), "a row was created twice in the app"
    assert set(hub) == set(app) == ({f"a{i}@example.com" for i in range(N)}
                                    | {f"h{i}@example.com" for i in range(N)})
    for email, rec in hub.items():
        assert rec["properties"].get("lastname") == app[email]["last_name"], email


async def wait_converged(env, timeout=5000):
    with trio.fail_after(timeout):
        while True:
            try:
                assert_converged(env)
                counts = await env.counts()
                if counts["failed"] == 0 and counts["pending"] == 0:
                    return
            except AssertionError:
                pass
            await trio.sleep(5)


TIMING = Timing(hub_poll_interval=60, app_poll_interval=2)


async def test_5xx_outage_then_full_catch_up(tmp_path, slow_autojump):
    def configure(emu):
        emu.faults = Faults(error_rate=0.4, seed=3)

    async with running(tmp_path, customers=CUSTOMERS, hub_contacts=HUB, timing=TIMING,
                       configure=configure) as env:
        await env.wait_ready(timeout=5000)
        env.emu.faults = Faults()
        await wait_converged(env)
        assert sum(1 for _, _, s in env.emu.request_log if s >= 500) > 0


async def test_429_storm_is_waited_out(tmp_path, slow_autojump):
    async with running(tmp_path, customers=CUSTOMERS, hub_contacts=HUB, timing=TIMING,
                       tier="professional") as env:
        env.emu.faults = Faults(rate_limit_storm_seconds=45, seed=1)
        await env.wait_ready(timeout=5000)
        await wait_converged(env)
        assert sum(1 for _, _, s in env.emu.request_log if s == 429) > 0


async def test_a_write_applied_whose_answer_is_lost_is_not_repeated(tmp_path, slow_autojump):
    async with running(tmp_path, customers=CUSTOMERS, hub_contacts=HUB, timing=TIMING) as env:
        env.emu.faults = Faults(hang_after_apply_rate=0.3, seed=5)
        await env.wait_ready(timeout=5000)
        env.emu.faults = Faults()
        await wait_converged(env)


async def test_207_partial_failures_fail_only_their_records_then_recover(
        tmp_path, slow_autojump):
    async with running(tmp_path, customers=CUSTOMERS, hub_contacts=HUB, timing=TIMING) as env:
        env.emu.faults = Faults(batch_item_failure_rate=0.2, seed=9)
        await env.wait_ready(timeout=5000)
        counts = await env.counts()
        failed = await env.items(state="failed")
        # Some records failed, with a category; the rest synced.
        assert failed and counts["syncing"] > 0
        assert {i.category for i in failed} <= {"api_unavailable", "rate_limited"}
        env.emu.faults = Faults()
        # Transient failures are retried by themselves after a backoff.
        await wait_converged(env)


async def test_changes_during_an_outage_are_not_lost(tmp_path, slow_autojump):
    async with running(tmp_path, customers=CUSTOMERS[:10], hub_contacts=HUB[:10],
                       timing=TIMING) as env:
        await env.wait_ready()
        env.emu.faults = Faults(error_rate=1.0, seed=2)
        env.app_exec("UPDATE customers SET last_name = 'During outage' WHERE id <= 5")
        await trio.sleep(300)
        env.emu.faults = Faults()
        await env.eventually(lambda: sum(
            1 for r in env.hub() if r["properties"].get("lastname") == "During outage") == 5,
            timeout=5000)
