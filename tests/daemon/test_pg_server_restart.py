"""The PostgreSQL server dies under the daemon (killed: no shutdown, recovery on restart) in
the middle of an initial sync and in the middle of incremental traffic; after it comes back,
both sides converge with nothing lost and nothing created twice.

Real processes and the real clock, each phase bounded by `trio.fail_after`."""

from __future__ import annotations

import random
import signal

import pytest
import trio

from .procs import System, system
from .test_sigkill import (
    APP_COLUMN,
    check_final_state,
    decisions_logged,
    initial_complete,
    initial_data,
    wait_converged,
    wait_inbox_drained,
)

pytestmark = pytest.mark.slow


async def kill_server(s: System) -> None:
    await trio.to_thread.run_sync(s.pg.server.stop, "immediate")


async def start_server(s: System) -> None:
    await trio.to_thread.run_sync(s.pg.server.start)


async def test_server_killed_mid_initial_sync_and_mid_incremental_converges(tmp_path,
                                                                           own_pg_db):
    rng = random.Random(5)
    app_rows, hub_recs, model = initial_data(rng, n_app=300, n_hub=300, n_both=120,
                                             conflicts=2)
    with trio.fail_after(240):
        async with system(tmp_path, pg=own_pg_db) as s:
            s.make_app_db(app_rows)
            s.write_config()
            await s.start_emulator()
            await s.seed_hub(hub_recs)
            d = await s.start_daemon()

            # 1. Killed in the middle of the initial sync.
            with trio.fail_after(60):
                while decisions_logged(s) < 150:
                    await trio.sleep(0.005)
            assert not await initial_complete(s)
            await kill_server(s)
            model.note("KILL postgres (initial sync)")
            await trio.sleep(2)
            await start_server(s)
            model.note("START postgres")
            await wait_converged(s, model, 90, "after the initial sync")
            with trio.fail_after(30):
                while not await initial_complete(s):
                    await trio.sleep(0.1)

            # 2. Killed in the middle of incremental traffic: app edits committed just before
            #    (not all synced yet), hub edits while it is down.
            hub_ids = {e: c["id"] for e, c in (await s.hub_by_email()).items()}
            emails = sorted(model.expected)
            app_side, hub_side = emails[:40], emails[40:60]
            for n, email in enumerate(app_side):
                value = f"app-{n}"
                s.app_exec(f"UPDATE customers SET {APP_COLUMN['jobtitle']} = ?, updated_at = "
                           f"{s.now_sql} WHERE lower(email) = ?", value, email)
                model.expected[email]["jobtitle"] = value
            await kill_server(s)
            model.note("KILL postgres (incremental)")
            for n, email in enumerate(hub_side):
                await s.hub_update(hub_ids[email], {"lastname": f"hub-{n}"})
                model.expected[email]["lastname"] = f"hub-{n}"
            await trio.sleep(2)
            await start_server(s)
            model.note("START postgres")
            await wait_converged(s, model, 90, "after the incremental sync")
            await wait_inbox_drained(s)

            # The outage was reported (the supervisor's restart reason names PostgreSQL) and
            # the daemon itself never died.
            reasons = [x.get("reason", "") for x in d.events("restarting connection")]
            assert any("PostgreSQL" in r or "postgres" in r.lower() for r in reasons), reasons
            d.signal(signal.SIGTERM)
            assert await d.wait(20) == 0, d.tail()
            await check_final_state(s, model)
            assert "Traceback" not in d.stderr(), d.tail()
            # Nothing acknowledged was left behind: what is still in the log is at most the
            # last batch, waiting for the next read to acknowledge it.
            left = own_pg_db.execute("SELECT count(DISTINCT claim) FROM crmsync.changelog "
                                     "WHERE claim IS NOT NULL")
            assert left[0][0] <= 1
