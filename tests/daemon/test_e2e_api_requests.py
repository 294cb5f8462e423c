"""HubSpot API requests an initial sync spends, counted at the emulator (issue 16): requests
that bring nothing new are not made. Counts of requests per endpoint are behaviour (what a
user's daily HubSpot budget pays for), not timing."""

from collections import Counter

import trio

from crmsync.runtime import processor as processor_module
from crmsync.runtime.initial_sync import InitialSyncActor

from .harness import running

N, OVERLAP = 250, 75  # app customers and hub contacts each; OVERLAP of them the same people


def customers() -> list[dict[str, str]]:
    return [{"email": f"both{i}@example.com" if i < OVERLAP else f"app{i}@example.com",
             "first_name": f"A{i}", "last_name": "App"} for i in range(N)]


def hub_contacts() -> list[dict[str, str]]:
    return [{"email": f"both{i}@example.com" if i < OVERLAP else f"hub{i}@example.com",
             "firstname": f"H{i}", "phone": f"+1 555 {i:04d}"} for i in range(N)]


def by_endpoint(log: list[tuple[str, str, int]]) -> Counter[str]:
    return Counter(f"{m} {p}" for m, p, _ in log if not p.startswith("/_emulator/"))


async def test_initial_sync_does_not_read_again_what_its_scan_listed(tmp_path, slow_autojump,
                                                                      monkeypatch):
    seen: list[Counter[str]] = []

    async def counted(self: InitialSyncActor, finish=InitialSyncActor._finish) -> None:
        seen.append(by_endpoint(env.emu.request_log))
        await finish(self)

    monkeypatch.setattr(InitialSyncActor, "_finish", counted)
    async with running(tmp_path, customers=customers(), hub_contacts=hub_contacts(),
                       webhooks=False) as env:
        await env.wait_ready()
        [calls] = seen
        # Every hub contact was listed by the hub index (pages of 100, fact sheet §1.1): the
        # paired ones (app pass) and the hub-only ones (hub pass) are decided on those values.
        assert calls["POST /crm/v3/objects/contacts/batch/read"] == 0
        assert calls["GET /crm/v3/objects/contacts"] == 3
        assert calls["POST /crm/v3/objects/contacts/batch/create"] == 2  # 175 app-only
        assert calls["POST /crm/v3/objects/contacts/batch/update"] == 1  # 75 pairs
        # The same end state: pairs merged (hub wins first names, empty fields filled both
        # ways), every record on both sides once.
        hub, app = env.hub_by_email(), env.app_by_email()
        assert len(hub) == len(app) == 2 * N - OVERLAP
        assert app["both3@example.com"]["first_name"] == "H3"
        assert app["both3@example.com"]["phone"] == "+1 555 0003"
        assert hub["both3@example.com"]["properties"]["lastname"] == "App"
        assert app["hub200@example.com"]["first_name"] == "H200"
        assert hub["app200@example.com"]["properties"]["firstname"] == "A200"
        assert (await env.counts())["syncing"] == 2 * N - OVERLAP


async def test_creates_cut_short_are_healed_one_request_per_hundred(tmp_path, slow_autojump,
                                                                     monkeypatch):
    """A crash after a batch of hub creates and before their links were committed: the
    restarted sync finds the 250 contacts it made by email, 100 per batch read
    (`idProperty=email`, fact sheet §1.1, §1.3), instead of one look-up per record; none is
    created twice."""
    original = processor_module.Processor._write
    cut: dict[str, int] = {}

    async def write_then_crash(self, works):
        out = await original(self, works)
        if any(w.created for w in works) and not cut:
            cut["at"] = len(env.emu.request_log)
            raise RuntimeError("simulated crash after the writes, before the commit")
        return out

    async def counted(self: InitialSyncActor, finish=InitialSyncActor._finish) -> None:
        cut["end"] = len(env.emu.request_log)
        await finish(self)

    monkeypatch.setattr(processor_module.Processor, "_write", write_then_crash)
    monkeypatch.setattr(InitialSyncActor, "_finish", counted)
    async with running(tmp_path, customers=customers(), webhooks=False) as env:
        await env.wait_ready()
        assert cut
        # What the initial sync asked after the crash (the hub poller reads its new records
        # after it: not healing).
        after = by_endpoint(env.emu.request_log[cut["at"]:cut["end"]])
        assert len(env.hub()) == N  # every customer once in the hub
        assert (await env.counts())["syncing"] == N
        assert all(not it.creating for it in await env.items())
        assert after["POST /crm/v3/objects/contacts/batch/create"] == 0
        assert after["POST /crm/v3/objects/contacts/batch/read"] == 3  # 100 + 100 + 50


async def test_echoes_of_our_own_writes_read_nothing_from_the_other_side(tmp_path,
                                                                        slow_autojump,
                                                                        monkeypatch):
    """The app poller after the initial sync reports every customer the sync created or
    updated (its own writes, SQLite change capture logs them): those still hold their
    snapshot's values, so HubSpot is not read for them. A real edit still is."""
    done: list[int] = []

    async def counted(self: InitialSyncActor, finish=InitialSyncActor._finish) -> None:
        await finish(self)
        done.append(len(env.emu.request_log))

    monkeypatch.setattr(InitialSyncActor, "_finish", counted)
    async with running(tmp_path, customers=customers(), hub_contacts=hub_contacts(),
                       webhooks=False) as env:
        await env.wait_ready()
        handle = env.daemon.handle("shop", "contacts")
        assert handle is not None and handle.statistics().app_poller is not None

        def app_polls() -> int:
            stats = handle.statistics().app_poller
            return stats.polls if stats is not None else 0

        await env.eventually(lambda: app_polls() >= 3, timeout=60, step=0.5)
        assert (await env.counts())["syncing"] == 2 * N - OVERLAP
        after = by_endpoint(env.emu.request_log[done[0]:])
        assert after["POST /crm/v3/objects/contacts/batch/read"] == 0
        env.emu.request_log.clear()
        env.app_exec("UPDATE customers SET last_name = 'Edited' WHERE email = ?",
                     "both7@example.com")
        await env.eventually(lambda: env.hub_by_email()["both7@example.com"]["properties"]
                             ["lastname"] == "Edited", timeout=60)
        assert by_endpoint(env.emu.request_log)["POST /crm/v3/objects/contacts/batch/read"] == 1


async def test_associations_of_records_created_in_the_hub_are_not_read_back(tmp_path,
                                                                            slow_autojump,
                                                                            monkeypatch):
    """New app customers of linked companies (a foreign key): their sync creates them in
    HubSpot and writes their associations. A record a sync just created holds no association
    in HubSpot (its create wrote none, and no other sync knows its id before this one
    commits), and HubSpot keeps every association written (fact sheet §5): the sync that
    creates them reads neither with a v4 batch read."""
    from crmsync.connectors.hubspot.connector import HubSpotConnector

    from .test_e2e_associations import ASSOC, SYNCS, TIMING, setup

    created: dict[object, set[str]] = {}  # per task syncing associations: hub ids it created
    made: set[str] = set()
    read_back: set[str] = set()
    sync_assoc = processor_module.Processor._associations
    read_assoc = HubSpotConnector.read_associations

    async def associations(self, works):
        mine = {w.created["hub"] for w in works if "hub" in w.created}
        made.update(mine)
        created[trio.lowlevel.current_task()] = mine
        try:
            return await sync_assoc(self, works)
        finally:
            del created[trio.lowlevel.current_task()]

    async def read_associations(self, frm, to, ids):
        read_back.update(set(ids) & created.get(trio.lowlevel.current_task(), set()))
        return await read_assoc(self, frm, to, ids)

    monkeypatch.setattr(processor_module.Processor, "_associations", associations)
    monkeypatch.setattr(HubSpotConnector, "read_associations", read_associations)
    orgs = [{"name": f"Org{i}", "domain": f"org{i}.example"} for i in range(3)]
    db = setup(tmp_path, [], orgs)
    async with running(tmp_path, syncs=SYNCS, app_db=db, timing=TIMING,
                       config_kwargs={"connection_extra": ASSOC}) as env:
        await env.wait_ready(["contacts", "companies"])
        env.emu.request_log.clear()
        env.app_exec("INSERT INTO customers (email, first_name, company_id) VALUES "
                     + ", ".join(f"('p{i}@example.com', 'P{i}', {1 + i % 3})"
                                 for i in range(150)))

        def associated() -> bool:
            hub = env.hub_by_email()
            names = {r["id"]: r["properties"]["name"] for r in env.hub("companies")}
            return all(f"p{i}@example.com" in hub and [names[c] for c in env.emu.associations(
                "contacts", hub[f"p{i}@example.com"]["id"], "companies")] == [f"Org{i % 3}"]
                for i in range(150))

        # The same end state: every contact with its company, on both sides.
        await env.eventually(associated)
        assert len(made) == 3 + 150  # the companies (initial sync), the contacts
        assert read_back == set()
        assert by_endpoint(env.emu.request_log)[
            "POST /crm/v4/associations/contacts/companies/batch/create"] >= 1
