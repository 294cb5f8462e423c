"""A backup taken mid-sync restores and converges with nothing duplicated (issue 15).

`crmsync run` and the HubSpot emulator run as processes. While the initial sync runs (and the
test creates and edits records on both sides) the state is backed up through the control
socket; the daemon goes on — it finishes the initial sync, the test keeps editing both sides
(incremental traffic), everything converges — and is stopped. While it is down, both sides
change more. Then `crmsync restore-state` puts the mid-sync backup in place and the daemon
starts again on it. Everything the daemon did after the backup is unknown to the restored
state: the copies it created (matched, not created again), the links it made, the webhook
events it acknowledged and the cursors it moved (read again), the values it copied. In the end
both sides equal the test's model, no contact exists twice on either side, and every record
is linked and in sync; on the way, the two records whose field was edited after the backup
and edited again while the daemon was down are held (`conflict_after_restore`), neither side
overwritten, until the test settles them the way an operator would.

Real processes and the real clock, bounded by `trio.fail_after`.
"""

from __future__ import annotations

import random
import re
import signal
import sqlite3
import stat
from pathlib import Path

import pytest
import trio

from crmsync.control import protocol as p
from crmsync.control.client import TrioControlClient
from crmsync.store.backup import inspect_state_file

from .procs import TOKEN, System, crmsync, system
from .test_sigkill import (
    APP_COLUMN,
    SYNC_ID,
    Editor,
    Model,
    check_final_state,
    duplicates,
    initial_data,
    sides,
    wait_converged,
    wait_inbox_drained,
)

pytestmark = pytest.mark.slow

EDIT = re.compile(r"^\s*[\d.]+ (app|hub) edit (\S+) (\w+)=(\S+)$")


async def phase(s: System) -> str:
    if not s.state_db.exists():
        return ""
    try:
        rows = s.state_rows("SELECT phase FROM initial_syncs WHERE sync_id = ?", SYNC_ID)
    except sqlite3.Error:
        return ""  # not created yet
    return str(rows[0][0]) if rows else ""


async def backup(s: System, out: Path) -> p.BackupReply:
    async with await TrioControlClient.connect(s.short_dir / "ctl.sock") as c:
        reply = await c.request(p.Backup(out=str(out)))
    assert isinstance(reply, p.BackupReply), reply
    return reply


async def early_traffic(s: System, model: Model, stop: trio.Event) -> None:
    """While the initial sync runs: new records on both sides, and edits of records that exist
    on one side only (whatever the initial sync has done with them, the last edit wins)."""
    n = 0
    one_sided = sorted(e for e in model.expected if e[0] in "ah")
    rng = random.Random(5)
    while not stop.is_set():
        n += 1
        if n % 3 == 0:
            email = f"early-app-{n}@example.com"
            s.app_exec("INSERT INTO customers (email, first_name, last_name) VALUES (?, ?, ?)",
                       email, f"EA{n}", "Early")
            model.expected[email] = {"firstname": f"EA{n}", "lastname": "Early",
                                     "jobtitle": None, "phone": None}
            model.edit_side[email] = "app"
        else:
            email = rng.choice(one_sided)
            value = f"early-{n}"
            if email.startswith("a"):
                s.app_exec("UPDATE customers SET last_name = ?, updated_at = "
                           "strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE email = ?",
                           value, email)
            else:
                ids = {k: v["id"] for k, v in (await s.hub_by_email()).items()}
                r = await s.hub.patch(f"/crm/v3/objects/contacts/{ids[email]}",
                                      json={"properties": {"lastname": value}},
                                      headers={"Authorization": f"Bearer {TOKEN}"})
                if r.status_code == 429:  # the storm that holds the hub pass: not applied
                    continue
                assert r.status_code == 200, r.text
            model.expected[email]["lastname"] = value
            model.edit_side[email] = "app" if email.startswith("a") else "hub"
        model.note(f"early {email}")
        await trio.sleep(0.05)


async def test_a_backup_taken_mid_sync_restores_and_converges_with_nothing_duplicated(
        tmp_path):
    rng = random.Random(15)
    app_rows, hub_recs, model = initial_data(rng, n_app=250, n_hub=250, n_both=80, conflicts=2)
    with trio.fail_after(240):
        async with system(tmp_path) as s:
            try:
                await run(s, rng, app_rows, hub_recs, model, tmp_path)
            finally:
                print("\n".join(model.log[-80:]))
                if s.daemon is not None:
                    print(s.daemon.tail(40))


async def run(s: System, rng: random.Random, app_rows: list, hub_recs: list, model: Model,
              tmp: Path) -> None:
    s.make_app_db(app_rows)
    s.write_config()
    await s.start_emulator()
    await s.seed_hub(hub_recs)
    # Each hub request takes a while, so the initial sync lasts seconds, not moments.
    await s.set_faults(latency=0.15)
    await s.start_daemon()

    # 1. The initial sync runs, and so does traffic on both sides. Once the app pass is done
    #    and the hub pass (creating the hub-only contacts in the app) has begun, HubSpot is
    #    made to answer 429 for a few seconds, which holds the hub pass where it is: the
    #    backup is taken then, mid-sync.
    stop_early = trio.Event()
    out = tmp / "backups" / "mid-sync.db"
    async with trio.open_nursery() as nursery:
        nursery.start_soon(early_traffic, s, model, stop_early)
        with trio.fail_after(60):
            while await phase(s) != "hub_pass":
                await trio.sleep(0.01)
        await s.set_faults(latency=0.15, rate_limit_storm_seconds=3)
        reply = await backup(s, out)
        model.note(f"BACKUP {reply.path} ({reply.bytes} bytes)")
        await s.set_faults(latency=0.05)
        stop_early.set()
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    info = inspect_state_file(out)
    assert info.phases == {SYNC_ID: "hub_pass"}, info.phases  # taken mid-sync
    assert info.taken_at == reply.taken_at

    # 2. The daemon goes on: the initial sync completes, then incremental traffic on both
    #    sides (edits, new records) while it runs.
    await wait_converged(s, model, 90, "after the initial sync")
    hub_ids = {e: c["id"] for e, c in (await s.hub_by_email()).items()}
    editor = Editor(s, model, rng, hub_ids, faults=False)
    since_backup = len(model.log)
    await editor.run(5.0)
    await wait_converged(s, model, 60, "after the incremental traffic")
    await wait_inbox_drained(s)
    assert s.daemon is not None
    s.daemon.signal(signal.SIGTERM)
    assert await s.daemon.wait(30) == 0, s.daemon.tail()
    model.note("STOP")

    # 3. While the daemon is down. (a) Records nobody touched since the backup change on one
    #    side: they sync as usual. (b) Two fields edited after the backup are edited again on
    #    the same side: against the restored snapshot both sides changed (the copy crmsync made
    #    of the first edit is forgotten); crmsync must not pick a side.
    edited = {}
    for line in model.log[since_backup:]:
        m = EDIT.match(line)
        if m:
            edited[(m.group(2), m.group(3))] = m.group(1)
    # Two records, one field each.
    again = list({email: (email, prop) for email, prop in sorted(edited)}.values())[:2]
    assert len(again) == 2, edited
    held_before: dict[str, tuple[str, str, str, str]] = {}
    for email, prop in again:
        side = edited[(email, prop)]
        previous = model.expected[email][prop]
        value = f"again-{prop[:2]}-{side}"
        if side == "app":
            s.app_exec(f"UPDATE customers SET {APP_COLUMN[prop]} = ?, updated_at = "
                       "strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE lower(email) = ?",
                       value, email)
        else:
            await s.hub_update(hub_ids[email], {prop: value})
        held_before[email] = (prop, side, value, str(previous))
        model.note(f"again {side} {email} {prop}={value} (was {previous})")
    untouched = sorted(e for e in model.expected if e.startswith("b") and e not in
                       model.edit_side and e not in held_before)
    for i, email in enumerate(rng.sample(untouched, 3)):
        s.app_exec("UPDATE customers SET last_name = ?, updated_at = "
                   "strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE lower(email) = ?",
                   f"WhileDown{i}", email)
        model.expected[email]["lastname"] = f"WhileDown{i}"
        model.note(f"while down app {email} lastname=WhileDown{i}")
    email = "made-while-down@example.com"
    await s.hub_create({"email": email, "firstname": "Made", "lastname": "Down"})
    model.expected[email] = {"firstname": "Made", "lastname": "Down", "jobtitle": None,
                             "phone": None}

    # 4. Restore the mid-sync backup with the command an operator runs, and start again.
    proc = await trio.run_process(crmsync("restore-state", "--config", str(s.config),
                                          str(out)), capture_stdout=True,
                                  capture_stderr=True, check=False)
    assert proc.returncode == 0, proc.stderr.decode()
    assert f"restored {s.state_db} from {out}" in proc.stdout.decode()
    d = await s.start_daemon()
    await d.wait_for_event("caught up after a restore", timeout=120)
    model.note("CAUGHT UP")
    _, _, hub_emails, app_emails = await sides(s)
    assert (duplicates(hub_emails), duplicates(app_emails)) == ([], []), "created twice"

    # 5. The held records: failed with the category, each side as it was.
    def held_rows() -> list[tuple[str, str]]:
        return sorted((str(h), str(c)) for h, c in s.state_rows(
            "SELECT hub_id, category FROM items WHERE sync_id = ? AND state = 'failed'",
            SYNC_ID))

    want_held = sorted((hub_ids[e], "conflict_after_restore") for e in held_before)
    with trio.fail_after(60):
        while held_rows() != want_held:
            await trio.sleep(0.2)
    hub_now, app_now, _, _ = await sides(s)
    for email, (prop, side, value, previous) in held_before.items():
        on_hub = hub_now[email]["properties"].get(prop)
        on_app = app_now[email][APP_COLUMN[prop]]
        assert (on_hub, on_app) == ((value, previous) if side == "hub" else (previous, value)), (
            email, prop, on_hub, on_app)

    # 6. The operator settles them on the side that is wrong; everything converges.
    for email, (prop, side, value, _) in held_before.items():
        if side == "hub":
            s.app_exec(f"UPDATE customers SET {APP_COLUMN[prop]} = ?, updated_at = "
                       "strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE lower(email) = ?",
                       value, email)
        else:
            await s.hub_update(hub_ids[email], {prop: value})
        model.expected[email][prop] = value
    await wait_converged(s, model, 90, "after the restore")
    with trio.fail_after(60):
        while held_rows():
            await trio.sleep(0.2)
    await wait_inbox_drained(s)
    s.daemon.signal(signal.SIGTERM)
    assert await s.daemon.wait(30) == 0, s.daemon.tail()
    await check_final_state(s, model)
    for daemon in s.daemons:
        assert "Traceback" not in daemon.stderr(), daemon.tail()
