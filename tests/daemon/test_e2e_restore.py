"""A daemon started on a state restored from a backup heals what it did after the backup
(docs/backup-and-restore.md): records it created then are matched, not created again, and an
edit it cannot tell from its own forgotten copy is held, not overwritten.

Each test (on the virtual clock, its waits bounded: a deadline around the whole test would be
where the clock jumps to while a daemon starts) runs a daemon on the emulator and a SQLite app, takes a backup with the store's backup
function (what `crmsync ctl backup` runs), lets the daemon work on, stops it, restores the
backup with `restore_state` (what `crmsync restore-state` runs) and starts a new daemon on the
same sides.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import trio

from crmsync.store import restores as store_restores
from crmsync.store.backup import write_backup
from crmsync.store.restores import restore_state

from .harness import Env, companies_sync, contacts_sync, make_app_db, running, wait_for

COMPANIES = "shop/companies"


def _orgs(prefix: str, n: int, start: int = 0) -> list[dict[str, Any]]:
    return [{"name": f"{prefix} Org {i}", "domain": f"{prefix.lower()}{i}.example.com",
             "city": "Lyon"} for i in range(start, start + n)]


async def backup(env: Env, path: Path) -> Path:
    assert env.daemon.store is not None
    source = env.daemon.store.path
    info = await trio.to_thread.run_sync(
        lambda: write_backup(source, path, crmsync_version="test"))
    return Path(info.path)


def restore(tmp: Path, path: Path, sync_ids: list[str]) -> None:
    """Between two daemons, on the test's thread: in a worker thread, the virtual clock would
    jump to the test's deadline while nothing else is scheduled."""
    restore_state(tmp / "state", path, sync_ids=sync_ids)


async def caught_up(env: Env, sync_id: str) -> None:
    assert env.daemon.store is not None
    store = env.daemon.store

    async def done() -> bool:
        return await store.read(store_restores.catching_up, sync_id) is None

    await wait_for(done, timeout=600, step=0.5)


def domains(env: Env) -> list[str]:
    return sorted(str(r["properties"].get("domain")) for r in env.hub("companies"))


def app_domains(env: Env) -> list[str]:
    return sorted(str(r["domain"]) for r in env.app_rows("organisations"))


async def all_linked(env: Env, obj: str, n: int) -> bool:
    items = await env.items(obj)
    return len(items) == n and all(it.state == "syncing" and it.hub_id and it.app_id
                                   for it in items)


def rewind_to_app_pass(backup_file: Path, sync_id: str, hub_copies: set[str]) -> None:
    """Make the backup the state it was when the app pass began: the hub index of the records
    that existed then, nothing linked, nothing decided. (A backup taken at that instant holds
    exactly this; taking it at that instant from the outside is a matter of luck.)"""
    with sqlite3.connect(backup_file) as conn:
        marks = ",".join("?" * len(hub_copies))
        conn.execute(f"DELETE FROM items WHERE sync_id = ? AND hub_id IN ({marks})",
                     (sync_id, *hub_copies))
        conn.execute(f"DELETE FROM match_keys WHERE sync_id = ? AND (side = 'app' OR "
                     f"record_id IN ({marks}))", (sync_id, *hub_copies))
        conn.execute("DELETE FROM items WHERE sync_id = ? AND hub_id IS NULL", (sync_id,))
        conn.execute("UPDATE items SET app_id = NULL, snapshot = NULL, state = 'pending', "
                     "category = '', detail = '', app_version = '', creating = '', "
                     "intent = NULL WHERE sync_id = ?", (sync_id,))
        conn.execute("DELETE FROM history WHERE sync_id = ?", (sync_id,))
        conn.execute("UPDATE initial_syncs SET phase = 'app_pass', cursor = '', "
                     "completed_at = NULL WHERE sync_id = ?", (sync_id,))
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


async def test_a_restored_initial_sync_matches_the_copies_it_made_after_the_backup(
        tmp_path, slow_autojump):
    """Restored to the start of the app pass: every company crmsync copied to the other side
    after that exists already. The app pass's creates in the hub find them by search (HubSpot
    has no unique key for companies: a create would duplicate), the hub pass's creates in the
    app by a local query; each pair links, nothing is created twice."""
    app_only, hub_only, both = _orgs("App", 5), _orgs("Hub", 5), _orgs("Both", 3)
    app_db = tmp_path / "app.db"
    make_app_db(app_db, organisations=app_only + both)
    async with running(tmp_path, syncs=companies_sync(), app_db=app_db,
                       hub_companies=hub_only + both) as env:
        emu = env.emu
        seeded = {r["id"] for r in env.hub("companies")}
        await env.wait_ready(["companies"])
        assert len(domains(env)) == 13 and len(app_domains(env)) == 13
        saved = await backup(env, tmp_path / "backups" / "b.db")
    copies = {r["id"] for r in emu.records("companies")} - seeded
    assert len(copies) == 5  # the app-only companies, created in the hub by crmsync
    rewind_to_app_pass(saved, COMPANIES, copies)
    restore(tmp_path, saved, [COMPANIES])

    async with running(tmp_path, syncs=companies_sync(), emulator=emu,
                       app_db=app_db) as env:
        await env.wait_ready(["companies"])
        await caught_up(env, COMPANIES)
        assert domains(env) == app_domains(env) == sorted(
            o["domain"] for o in app_only + hub_only + both)
        assert await all_linked(env, "companies", 13)


async def test_a_company_created_after_the_backup_is_matched_not_created_again(
        tmp_path, slow_autojump):
    """After the backup, a new app company is created in the hub by crmsync; the restored state
    knows neither. Catching up, the app's change log is read again from the backup's cursor and
    the catch-up scans the hub: whichever of the two records comes first finds the other (a
    create in the hub by search, a create in the app by a local query), never a second copy."""
    app_db = tmp_path / "app.db"
    make_app_db(app_db, organisations=_orgs("Old", 2))
    async with running(tmp_path, syncs=companies_sync(), app_db=app_db) as env:
        emu = env.emu
        await env.wait_ready(["companies"])
        saved = await backup(env, tmp_path / "b.db")
        env.app_exec("INSERT INTO organisations (name, domain, city) VALUES "
                     "('New Org', 'new.example.com', 'Oslo')")
        await env.eventually(lambda: "new.example.com" in domains(env))
        assert await all_linked(env, "companies", 3)
    restore(tmp_path, saved, [COMPANIES])

    async with running(tmp_path, syncs=companies_sync(), emulator=emu,
                       app_db=app_db) as env:
        await env.wait_ready(["companies"])
        await caught_up(env, COMPANIES)
        assert domains(env) == app_domains(env) == [
            "new.example.com", "old0.example.com", "old1.example.com"]
        assert await all_linked(env, "companies", 3)


async def test_an_edit_made_after_a_forgotten_copy_is_held_not_overwritten(
        tmp_path, slow_autojump):
    """After the backup the hub changes a last name and crmsync copies it to the app; the app
    then changes it again while the daemon is down. Against the restored snapshot both sides
    changed, and the hub wins conflicts: settled as usual, the app's newer edit would be lost.
    It is held instead, both sides untouched, until they agree."""
    ann_app = {"email": "ann@example.com", "first_name": "Ann", "last_name": "Lee"}
    ann_hub = {"email": "ann@example.com", "firstname": "Ann", "lastname": "Lee"}
    bob_app = {"email": "bob@example.com", "first_name": "Bob", "last_name": "Ray"}
    bob_hub = {"email": "bob@example.com", "firstname": "Bob", "lastname": "Ray"}
    app_db = tmp_path / "app.db"
    make_app_db(app_db, customers=[ann_app, bob_app])

    def app_last(env: Env, email: str) -> str:
        return str(env.app_by_email()[email]["last_name"])

    def hub_last(env: Env, email: str) -> str:
        return str(env.hub_by_email()[email]["properties"].get("lastname"))

    async with running(tmp_path, syncs=contacts_sync(winner="hub"), app_db=app_db,
                       hub_contacts=[ann_hub, bob_hub]) as env:
        emu = env.emu
        await env.wait_ready()
        saved = await backup(env, tmp_path / "b.db")
        ann = env.hub_by_email()["ann@example.com"]["id"]
        emu.update_record("contacts", ann, {"lastname": "HubEdit"})
        await env.eventually(lambda: app_last(env, "ann@example.com") == "HubEdit")
    # While the daemon is down: the app edits Ann again, and Bob for the first time since
    # the backup (a change on one side only: it simply syncs).
    env.app_exec("UPDATE customers SET last_name = 'AppNewer', updated_at = "
                 "strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE email = 'ann@example.com'")
    env.app_exec("UPDATE customers SET last_name = 'Rey', updated_at = "
                 "strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE email = 'bob@example.com'")
    restore(tmp_path, saved, ["shop/contacts"])

    async with running(tmp_path, syncs=contacts_sync(winner="hub"), emulator=emu,
                       app_db=app_db) as env:
        await env.wait_ready()
        await caught_up(env, "shop/contacts")
        await env.eventually(lambda: hub_last(env, "bob@example.com") == "Rey")
        assert (hub_last(env, "ann@example.com"), app_last(env, "ann@example.com")) == (
            "HubEdit", "AppNewer")
        failed = await env.items(state="failed")
        assert [(it.hub_id, it.category) for it in failed] == [
            (ann, "conflict_after_restore")]
        # The operator settles it on the side that is wrong: the record syncs again.
        emu.update_record("contacts", ann, {"lastname": "AppNewer"})

        async def settled() -> bool:
            return await env.items(state="failed") == []

        await wait_for(settled, timeout=600, step=0.5)
        emu.update_record("contacts", ann, {"lastname": "Later"})
        await env.eventually(lambda: app_last(env, "ann@example.com") == "Later")
        assert len(env.hub()) == 2 and len(env.app_rows()) == 2


async def test_a_restored_journal_offset_is_read_again_and_nothing_is_applied_twice(
        tmp_path, slow_autojump):
    """`changes = "journal"`: after the backup the reader commits an entry (a hub edit, synced)
    and moves its offset; while the daemon is down the hub creates a contact. The restored
    state has the older offset, so the reader fetches that entry again, not as a gap (the
    backup is within the 3-day retention, hubspot-onboarding.md §6): its edit is synced again
    as a no-op, the new contact arrives, nothing is created twice."""
    from .test_e2e_journal import _file_fetches, hub_id, journal_emulator, run_journal

    emu = journal_emulator()
    async with run_journal(tmp_path, emu) as env:
        await env.wait_ready()
        assert env.daemon.journal is not None
        saved = await backup(env, tmp_path / "b.db")
        backed_up = env.daemon.journal.statistics().offset
        emu.update_record("contacts", hub_id(env, "c0@example.com"), {"jobtitle": "After"})
        await env.eventually(lambda: env.app_by_email()["c0@example.com"]["job_title"]
                             == "After")
        entry = env.daemon.journal.statistics().offset
        assert entry is not None and entry != backed_up
        assert _file_fetches(emu, entry) == 1
    emu.add_records("contacts", [{"email": "down@example.com", "firstname": "D"}])
    restore(tmp_path, saved, ["shop/contacts"])

    async with run_journal(tmp_path, emu, app_db=env.app_db) as env2:
        await env2.wait_ready()
        await caught_up(env2, "shop/contacts")
        assert env2.daemon.journal is not None
        await env2.eventually(lambda: _file_fetches(emu, entry) == 2)
        await env2.eventually(lambda: "down@example.com" in env2.app_by_email())
        assert env2.app_by_email()["c0@example.com"]["job_title"] == "After"
        assert env2.daemon.journal.statistics().gaps == 0
        emails = sorted(r["email"] for r in env2.app_rows())
        assert emails == sorted({*emails}) and len(emails) == 5
        hub_emails = sorted(str(r["properties"].get("email")) for r in env2.hub())
        assert hub_emails == emails
        assert await env2.items(state="failed") == []
