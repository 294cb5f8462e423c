"""HubSpot changes through the webhooks journal (`[hub] changes = "journal"`), end to end:
the daemon makes outgoing calls only (no webhook server listening, the emulator delivers no
webhooks), reads the emulated journal with a client-credentials token, and converges; a gap
past the journal's 3-day retention (hubspot-onboarding.md §6) triggers a reconciliation.

All in one Trio run on `slow_autojump`; the emulator's wall clock (its journal retention) and
the daemon's are the same function of the MockClock, so jumping the clock ages entries out.
"""

from __future__ import annotations

import io
import time

import msgspec
import pytest
import trio
from rich.console import Console
from structlog.testing import capture_logs

from crmsync.cli.ctl.render import render_status
from crmsync.control import protocol as p
from crmsync.control.ops import status as status_op
from crmsync.emulators.hubspot import HubSpotEmulator
from crmsync.emulators.hubspot.oauth import OAuthApp
from crmsync.runtime.object_sync import Timing
from crmsync.store import cursors as store_cursors
from crmsync.store import journal as store_journal
from crmsync.store import reconciles as store_reconciles

from .harness import TOKEN, running, wait_for

CLIENT_ID = "journal-app-client-id"
CLIENT_SECRET = "journal-app-client-secret-0123456789"
JOURNAL_INTERVAL = 5.0
DAY = 86400.0

CUSTOMERS = [{"email": f"c{i}@example.com", "first_name": f"C{i}", "last_name": "App"}
             for i in range(4)]
HUB = [{"email": f"c{i}@example.com", "firstname": f"C{i}", "lastname": "App"}
       for i in range(4)]

BASE = time.time()


def wall() -> float:
    """The wall clock of both the emulator and the daemon: moves with the MockClock."""
    return BASE + trio.current_time()


def journal_emulator() -> HubSpotEmulator:
    # No webhook_url: the emulator delivers no webhooks at all.
    emu = HubSpotEmulator(tokens=(TOKEN,), seed=0, clock=trio.current_time,
                          now_ms=lambda: int(wall() * 1000),
                          oauth_clients={CLIENT_ID: OAuthApp(CLIENT_ID, CLIENT_SECRET)})
    emu.add_records("contacts", HUB)
    return emu


def journal_config(tmp, interval: float = JOURNAL_INTERVAL) -> dict:
    (tmp / "journal-secret").write_text(CLIENT_SECRET)
    return {"hub_extra": f"""changes = "journal"
[hub.journal]
client_id = "{CLIENT_ID}"
client_secret_file = "journal-secret"
poll_interval_seconds = {interval}
"""}


def run_journal(tmp, emu, **kw):
    tmp.mkdir(parents=True, exist_ok=True)
    # The hub poller runs once at start, then not again within these tests: only the journal
    # (or a reconciliation) can bring a hub change.
    timing = kw.pop("timing", Timing(hub_poll_interval=10**7, app_poll_interval=2,
                                     reconcile_interval=10**8))
    return running(tmp, customers=CUSTOMERS, webhooks=False, emulator=emu, timing=timing,
                   config_kwargs=journal_config(tmp), daemon_kwargs={"wall_clock": wall},
                   app_db=kw.pop("app_db", None), **kw)


def hub_id(env, email):
    return env.hub_by_email()[email]["id"]


async def test_hub_changes_arrive_only_through_the_journal(tmp_path, slow_autojump):
    emu = journal_emulator()
    async with run_journal(tmp_path, emu) as env:
        await env.wait_ready()
        assert env.daemon.webhooks is not None and env.daemon.webhooks.accepted == 0
        assert env.daemon.journal is not None
        stats = env.daemon.journal.statistics()
        assert stats.state == "running"
        assert "object:contacts" in stats.subscriptions
        # The reader created the subscription with the spec's required fields (SPEC
        # ObjectSubscriptionUpsertRequest: portalId, objectIds, properties...).
        subs = list(emu.journal.subscriptions.values())
        assert [(s.subscription_type, s.object_type.name, s.portal_id) for s in subs] == [
            ("OBJECT", "contacts", emu.portal_id)]

        polled = env.daemon.connections["shop"].status.objects["contacts"].last_poll
        emu.update_record("contacts", hub_id(env, "c2@example.com"), {"phone": "+1 555"})
        emu.add_records("contacts", [{"email": "fresh@example.com", "firstname": "F"}])
        await env.eventually(lambda: env.app_by_email()["c2@example.com"]["phone"] == "+1 555",
                             step=0.1)
        await env.eventually(lambda: "fresh@example.com" in env.app_by_email(), step=0.1)
        # Not by the hub poller: it has not polled since (its interval is months).
        assert env.daemon.connections["shop"].status.objects["contacts"].last_poll == polled
        stats = env.daemon.journal.statistics()
        assert stats.entries >= 1 and stats.events >= 2 and stats.gaps == 0
        # The client-credentials token is never sent to the API for CRM calls, and the CRM
        # token never to the journal: the emulator would have answered 401/403.
        assert not [r for r in emu.request_log if r[2] in (401, 403)]

        # App -> hub still works as before.
        env.app_exec("UPDATE customers SET job_title = 'CTO' WHERE email = 'c1@example.com'")
        await env.eventually(lambda: env.hub_by_email()["c1@example.com"]["properties"].get(
            "jobtitle") == "CTO")


async def test_the_token_is_renewed_before_it_expires(tmp_path, slow_autojump):
    emu = journal_emulator()
    emu.auth.access_token_seconds = 120  # tokens live 2 minutes (HubSpot: 30)
    async with run_journal(tmp_path, emu) as env:
        await env.wait_ready()
        await trio.sleep(30 * 60)  # 15 token lifetimes of journal polling
        emu.update_record("contacts", hub_id(env, "c3@example.com"), {"lastname": "Late"})
        await env.eventually(lambda: env.app_by_email()["c3@example.com"]["last_name"] == "Late",
                             step=0.5)
        stats = env.daemon.journal.statistics()
        assert stats.token_grants >= 15
        assert stats.state == "running" and stats.restarts == 0
        # Never a call with an expired token: renewed before expiry, not after a 401.
        assert not [r for r in emu.request_log if r[2] == 401]


async def test_an_offset_aged_out_triggers_a_reconciliation(tmp_path, slow_autojump):
    emu = journal_emulator()
    with capture_logs() as logs:
        async with run_journal(tmp_path, emu) as env:
            await env.wait_ready()
            emu.update_record("contacts", hub_id(env, "c0@example.com"), {"jobtitle": "Seen"})
            await env.eventually(
                lambda: env.app_by_email()["c0@example.com"]["job_title"] == "Seen")
            offset = env.daemon.journal.statistics().offset
            assert offset is not None
            # A change, then four days pass before the reader looks again (as if HubSpot's
            # journal was unreachable): the entries holding the stored offset and that
            # change age out, and the next read of the offset answers 404.
            emu.update_record("contacts", hub_id(env, "c1@example.com"), {"jobtitle": "Lost"})
            slow_autojump.jump(4 * DAY)
            await env.eventually(
                lambda: env.app_by_email()["c1@example.com"]["job_title"] == "Lost")
            status = env.daemon.connections["shop"].status.objects["contacts"]
            await env.eventually(lambda: status.last_reconcile is not None)
            assert status.last_reconcile_reason.startswith("journal gap: journal offset aged "
                                                           "out or unknown (404)")
            stats = env.daemon.journal.statistics()
            assert stats.gaps == 1 and stats.offset != offset
            # The request was cleared once its reconciliation ran.
            pending = await env.daemon.store.read(store_reconciles.pending, "shop/contacts")
            assert pending is None
            # Changes after the gap come through the journal again.
            emu.update_record("contacts", hub_id(env, "c2@example.com"), {"jobtitle": "After"})
            await env.eventually(
                lambda: env.app_by_email()["c2@example.com"]["job_title"] == "After", step=0.5)
            assert env.daemon.journal.statistics().gaps == 1
            # `crmsync ctl status` shows it, through the control protocol.
            reply = p.reply_from(p.StatusReply, await status_op.status(env.daemon))
            st = msgspec.json.decode(msgspec.json.encode(reply), type=p.Reply)
            assert st.changes == "journal" and st.journal.gaps == 1
            (obj,) = st.connections[0].objects
            assert obj.last_reconcile_reason.startswith("journal gap")
            assert obj.reconcile_pending == ""
            out = io.StringIO()
            render_status(st, Console(file=out, width=200, color_system=None))
            text = out.getvalue()
            assert "HubSpot changes: journal running" in text
            assert "1 gap(s)" in text and "journal offset aged out" in text
            assert "reconciled" in text
    gaps = [x for x in logs if x["event"] == "journal gap: reconciling"]
    assert len(gaps) == 1 and gaps[0]["syncs"] == ["shop/contacts"]
    done = [x for x in logs if x["event"] == "reconciliation done"]
    assert done and done[0]["reason"].startswith("journal gap")


async def test_a_daemon_stopped_past_the_retention_reconciles(tmp_path, slow_autojump):
    emu = journal_emulator()
    async with run_journal(tmp_path, emu) as env:
        await env.wait_ready()
        emu.update_record("contacts", hub_id(env, "c0@example.com"), {"jobtitle": "Seen"})
        await env.eventually(lambda: env.app_by_email()["c0@example.com"]["job_title"] == "Seen")

    # Stopped; meanwhile a change is made and four days pass.
    emu.update_record("contacts", hub_id(env, "c1@example.com"), {"jobtitle": "Missed"})
    slow_autojump.jump(4 * DAY)
    async with run_journal(tmp_path, emu, app_db=env.app_db) as env2:
        await env2.wait_ready()
        await env2.eventually(
            lambda: env2.app_by_email()["c1@example.com"]["job_title"] == "Missed")
        status = env2.daemon.connections["shop"].status.objects["contacts"]
        await env2.eventually(lambda: status.last_reconcile is not None)
        assert status.last_reconcile_reason.startswith("journal gap")
        assert env2.daemon.journal.statistics().gaps == 1


async def test_a_journal_unread_for_longer_than_the_retention_is_a_gap(tmp_path, slow_autojump):
    """Even where the stored offset still answers: the journal was last read more than 3
    days ago (the daemon was stopped), so it cannot be trusted to hold everything since."""
    emu = journal_emulator()
    async with run_journal(tmp_path, emu) as env:
        await env.wait_ready()
        emu.update_record("contacts", hub_id(env, "c0@example.com"), {"jobtitle": "Seen"})
        await env.eventually(lambda: env.app_by_email()["c0@example.com"]["job_title"] == "Seen")
        account = env.daemon.journal.reader.account
        # As if the journal was last read 4 days ago (its entries are still there).
        await env.daemon.store.call(store_cursors.set_cursor, account, store_journal.READ_AT,
                                    repr(wall() - 4 * DAY))
    with capture_logs() as logs:
        async with run_journal(tmp_path, emu, app_db=env.app_db) as env2:
            await env2.wait_ready()
            status = env2.daemon.connections["shop"].status.objects["contacts"]
            await env2.eventually(lambda: status.last_reconcile is not None)
            assert "not read for 4.0 days" in status.last_reconcile_reason
    assert [x for x in logs if x["event"] == "journal gap: reconciling"]


def _hold_at_commit(env, *, after: bool) -> trio.Event:
    """Holds the journal reader at the commit of its next entry: just before it (`after` false)
    or just after it. The test then stops everything at that instant: what was not committed
    is lost, as with a SIGKILL."""
    store = env.daemon.store
    real_call = store.call
    reached = trio.Event()

    async def call(fn, *args):
        if fn is store_journal.commit_entry and not reached.is_set():
            if after:
                await real_call(fn, *args)
            reached.set()
            await trio.sleep_forever()
        return await real_call(fn, *args)

    store.call = call
    return reached


def _file_fetches(emu, offset: str) -> int:
    return sum(1 for _, path, _ in emu.request_log
               if path.startswith("/_emulator/journal-files/") and offset in path)


@pytest.mark.parametrize("after", [False, True], ids=["before_commit", "after_commit"])
async def test_a_kill_around_the_offset_commit_applies_each_entry_once(tmp_path, slow_autojump,
                                                                       after):
    emu = journal_emulator()
    async with run_journal(tmp_path, emu) as env:
        await env.wait_ready()
        reached = _hold_at_commit(env, after=after)
        c2 = hub_id(env, "c2@example.com")
        emu.update_record("contacts", c2, {"jobtitle": "Once"})
        emu.add_records("contacts", [{"email": "born@example.com", "firstname": "B"}])
        with trio.fail_after(60):
            await reached.wait()
        entry = emu.journal.latest()[0].offset
        stored = await env.daemon.store.read(store_journal.position, env.daemon.journal.reader.account)
        assert stored.offset == (entry if after else None)
    # "Killed" there. A new daemon on the same state reads on from the committed offset.
    async with run_journal(tmp_path, emu, app_db=env.app_db) as env2:
        await env2.wait_ready()
        await env2.eventually(lambda: env2.app_by_email()["c2@example.com"]["job_title"]
                              == "Once")
        await env2.eventually(lambda: "born@example.com" in env2.app_by_email())
        account = env2.daemon.journal.reader.account
        await env2.eventually(lambda: env2.daemon.journal.statistics().offset == entry)

        def inbox(conn):
            return conn.execute("SELECT event_key, count(*), min(done) FROM inbox "
                                "GROUP BY event_key").fetchall()

        async def drained():
            rows = await env2.daemon.store.read(inbox)
            return rows and all(done == 1 for _, _, done in rows)

        await wait_for(drained, timeout=60)
        rows = await env2.daemon.store.read(inbox)
        # creation + its property changes, and the update: each stored once, each synced.
        assert len(rows) >= 3 and all(n == 1 for _, n, _ in rows)
        assert (await env2.daemon.store.read(store_journal.position, account)).offset == entry
        # Fetched again only when the first fetch was never committed.
        assert _file_fetches(emu, entry) == (1 if after else 2)
        assert len([r for r in env2.app_rows() if r["email"] == "born@example.com"]) == 1
        assert len([r for r in env2.hub() if r["properties"].get("email")
                    == "born@example.com"]) == 1


async def test_poll_mode_refuses_hubspot_webhooks_and_relies_on_the_poller(tmp_path,
                                                                          slow_autojump):
    """`changes = "poll"`: the poller alone; HubSpot deliveries are not accepted even with a
    webhook secret configured (check-config warns that it is ignored)."""
    timing = Timing(hub_poll_interval=60, app_poll_interval=2)
    async with running(tmp_path, customers=CUSTOMERS, hub_contacts=HUB, timing=timing,
                       config_kwargs={"hub_extra": 'changes = "poll"'}) as env:
        await env.wait_ready()
        assert env.daemon.journal is None
        start = trio.current_time()
        env.emu.update_record("contacts", hub_id(env, "c3@example.com"), {"lastname": "Polled"})
        await env.eventually(lambda: env.app_by_email()["c3@example.com"]["last_name"] == "Polled")
        assert trio.current_time() - start > 5  # not at once: at the next poll
        await env.eventually(lambda: env.daemon.webhooks.rejected > 0)
        assert env.daemon.webhooks.accepted == 0
