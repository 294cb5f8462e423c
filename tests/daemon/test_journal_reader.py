"""The journal reader on its own: the emulator's journal (in process), a real state database,
`slow_autojump` (the store runs on a worker thread; see harness.py)."""

from __future__ import annotations

import contextlib
import time

import httpx
import trio

from crmsync.config.model import JOURNAL_SCOPES
from crmsync.connectors.hubspot.client_credentials import ClientCredentialsAuth
from crmsync.connectors.hubspot.journal import JournalClient
from crmsync.daemon import journal_reader
from crmsync.daemon.journal_reader import JournalIntake, JournalReader, JournalRoutes
from crmsync.emulators.hubspot import HubSpotEmulator
from crmsync.emulators.hubspot.oauth import OAuthApp
from crmsync.store import Store
from crmsync.store import inbox as store_inbox
from crmsync.store import journal as store_journal
from crmsync.store import reconciles as store_reconciles

CLIENT_ID = "journal-client"
SECRET = "journal-secret-0123456789"
WALL = time.time()
SOURCES = {"contacts": ["hub:shop:contacts"], "companies": ["hub:shop:companies"]}
SYNCS = {"contacts": ["shop/contacts"], "companies": ["shop/companies"]}


def wall() -> float:
    return WALL + trio.current_time()


def make_emulator() -> HubSpotEmulator:
    return HubSpotEmulator(tokens=("crm-token",), seed=0, clock=trio.current_time,
                           now_ms=lambda: int(wall() * 1000),
                           oauth_clients={CLIENT_ID: OAuthApp(CLIENT_ID, SECRET)})


def routes() -> JournalRoutes:
    return JournalRoutes(sources=SOURCES, syncs=SYNCS)


class Outage(httpx.AsyncBaseTransport):
    """The emulator underneath; while `down`, HubSpot answers 503 to everything."""

    def __init__(self, emu: HubSpotEmulator) -> None:
        self.inner = httpx.ASGITransport(app=emu.app)
        self.down = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.down:
            return httpx.Response(503, json={"status": "error", "message": "down"})
        return await self.inner.handle_async_request(request)


@contextlib.asynccontextmanager
async def opened(emu: HubSpotEmulator, tmp_path, *, secret: str = SECRET,
                 max_file_bytes: int = 1 << 20, gaps: list | None = None,
                 transport: httpx.AsyncBaseTransport | None = None):
    auth = ClientCredentialsAuth(client_id=CLIENT_ID, client_secret=secret,
                                 scopes=JOURNAL_SCOPES)
    async with Store.open(tmp_path / "state.db") as store, httpx.AsyncClient(
            base_url="http://hubspot.test", auth=auth,
            transport=transport or httpx.ASGITransport(app=emu.app)) as client:
        journal = JournalClient(client, portal_id=emu.portal_id, max_file_bytes=max_file_bytes)
        reader = JournalReader(journal, store, routes, poll_interval=5.0,
                               on_gap=(gaps.append if gaps is not None else lambda s: None),
                               wall_clock=wall)
        yield reader, store


async def inbox_rows(store: Store, source: str) -> list:
    return await store.read(store_inbox.pending_events, source, 0, 1000)


async def until(check, timeout: float = 600) -> None:
    """Wait in virtual time until `check()` holds (no fixed sleeps: the store's thread may
    take longer than the autojump threshold on a busy machine)."""
    with trio.fail_after(timeout):
        while not check():
            await trio.sleep(1)


async def test_ready_once_the_subscriptions_exist(tmp_path, slow_autojump):
    emu = make_emulator()
    async with opened(emu, tmp_path) as (reader, store), trio.open_nursery() as nursery:
        await nursery.start(reader.run)
        assert {(s.subscription_type, s.object_type.name)
                for s in emu.journal.subscriptions.values()} == {
            ("OBJECT", "contacts"), ("OBJECT", "companies")}
        (_cid,) = emu.add_records("contacts", [{"email": "a@example.com"}])
        (_oid,) = emu.add_records("companies", [{"name": "Acme"}])
        await until(lambda: reader.stats.entries == 1)
        contacts = await inbox_rows(store, "hub:shop:contacts")
        companies = await inbox_rows(store, "hub:shop:companies")
        assert contacts and companies
        assert all(b'"contacts"' in payload for _, payload in contacts)
        assert reader.stats.gaps == 0 and reader.stats.entries == 1
        nursery.cancel_scope.cancel()


async def test_an_unreadable_entry_is_skipped_and_its_syncs_reconciled(tmp_path, slow_autojump):
    emu = make_emulator()
    gaps: list = []
    async with opened(emu, tmp_path, max_file_bytes=3000, gaps=gaps) as (reader, store), \
            trio.open_nursery() as nursery:
        await nursery.start(reader.run)
        emu.add_records("contacts", [{"email": f"c{i}@example.com", "firstname": "x" * 200}
                                     for i in range(10)])
        await until(lambda: reader.stats.gaps > 0)
        assert reader.stats.gaps == 1 and "max_file_bytes" in reader.stats.last_gap_reason
        assert gaps == [["shop/companies", "shop/contacts"]]
        for sid in ("shop/contacts", "shop/companies"):
            asked = await store.read(store_reconciles.pending, sid)
            assert asked is not None and "max_file_bytes" in asked.reason
        skipped_to = reader.offset
        assert skipped_to is not None
        assert (await store.read(store_journal.position, reader.account)).offset == skipped_to
        # The entries after it are read as usual.
        (_cid,) = emu.add_records("contacts", [{"email": "small@example.com"}])
        await until(lambda: reader.stats.entries == 1)
        assert reader.offset != skipped_to and reader.stats.gaps == 1
        nursery.cancel_scope.cancel()


async def test_a_deleted_subscription_is_made_again_and_its_syncs_reconciled(
        tmp_path, slow_autojump):
    emu = make_emulator()
    gaps: list = []
    async with opened(emu, tmp_path, gaps=gaps) as (reader, store), \
            trio.open_nursery() as nursery:
        await nursery.start(reader.run)
        (sub,) = [s for s in emu.journal.subscriptions.values()
                  if s.object_type.name == "companies"]
        emu.journal.delete(str(sub.id))  # somebody removed it
        with trio.fail_after(journal_reader.SUBSCRIPTION_CHECK_SECONDS * 2):
            while not gaps:
                await trio.sleep(5)
        assert trio.current_time() >= journal_reader.SUBSCRIPTION_CHECK_SECONDS
        assert any(s.object_type.name == "companies"
                   for s in emu.journal.subscriptions.values())
        assert gaps == [["shop/companies"]]
        assert await store.read(store_reconciles.pending, "shop/companies") is not None
        assert await store.read(store_reconciles.pending, "shop/contacts") is None
        nursery.cancel_scope.cancel()


async def test_a_refused_secret_pauses_the_reader_without_stopping_the_start(
        tmp_path, slow_autojump):
    emu = make_emulator()
    secret = ["wrong-secret"]

    @contextlib.asynccontextmanager
    async def open_reader(stats):
        async with opened(emu, tmp_path, secret=secret[0]) as (reader, _store):
            reader.stats = stats
            yield reader

    intake = JournalIntake(open_reader)
    async with trio.open_nursery() as nursery:
        await nursery.start(intake.run)
        stats = intake.statistics()
        assert stats.state == "paused" and "hub.journal" in stats.reason
        assert "wrong-secret" not in stats.reason
        secret[0] = SECRET  # the operator fixes it
        intake.retry_now()
        # (Bounded well below the paused retry: only retry_now can bring it back sooner.)
        with trio.fail_after(journal_reader.PAUSED_RETRY / 2):
            while intake.statistics().state != "running":
                await trio.sleep(0.5)
        nursery.cancel_scope.cancel()


async def test_a_journal_that_is_down_is_retried_with_backoff(tmp_path, slow_autojump):
    emu = make_emulator()
    outage = Outage(emu)
    outage.down = True

    @contextlib.asynccontextmanager
    async def open_reader(stats):
        async with opened(emu, tmp_path, transport=outage) as (reader, _store):
            reader.stats = stats
            yield reader

    intake = JournalIntake(open_reader)
    async with trio.open_nursery() as nursery:
        await nursery.start(intake.run)  # after the first attempt's retries gave up
        stats = intake.statistics()
        assert stats.state == "error" and "unavailable" in stats.reason
        outage.down = False
        with trio.fail_after(3600):
            while intake.statistics().state != "running":
                await trio.sleep(1)
        assert intake.statistics().restarts >= 1
        nursery.cancel_scope.cancel()
