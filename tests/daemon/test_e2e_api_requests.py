"""HubSpot API requests an initial sync spends, counted at the emulator (issue 16): requests
that bring nothing new are not made. Counts of requests per endpoint are behaviour (what a
user's daily HubSpot budget pays for), not timing."""

from collections import Counter

import trio

from crmsync.runtime import processor as processor_module
from crmsync.runtime.initial_sync import InitialSyncActor
from crmsync.runtime.object_sync import Timing

from .harness import running, wait_for

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


async def test_the_hub_scan_brings_the_associations(tmp_path, slow_autojump):
    """Contacts and companies only in HubSpot, each contact with a company: the hub index
    lists them with `associations=` (fact sheet §1.1), and the association syncs decide on
    what it listed; no v4 batch read is made, whatever order the two initial syncs link in."""
    from .test_e2e_associations import ASSOC, SYNCS, TIMING, setup

    db = setup(tmp_path, [], [])

    def configure(emu):
        orgs = emu.add_records("companies", [{"name": f"Org{i}", "domain": f"o{i}.example"}
                                             for i in range(3)])
        people = emu.add_records("contacts", [{"email": f"p{i}@example.com",
                                               "firstname": f"P{i}"} for i in range(150)])
        for i, p in enumerate(people):
            emu.associate("contacts", p, "companies", orgs[i % 3])

    async with running(tmp_path, syncs=SYNCS, app_db=db, timing=TIMING, configure=configure,
                       config_kwargs={"connection_extra": ASSOC}, webhooks=False) as env:
        await env.wait_ready(["contacts", "companies"])

        def associated() -> bool:
            rows = env.app_by_email()
            orgs = {r["id"]: r["name"] for r in env.app_rows("organisations")}
            return all(orgs.get(rows.get(f"p{i}@example.com", {}).get("company_id"))
                       == f"Org{i % 3}" for i in range(150))

        # The same end state: every contact with its company in the app too.
        await env.eventually(associated)
        calls = by_endpoint(env.emu.request_log)
        assert {k: v for k, v in calls.items() if k.startswith("POST /crm/v4/associations/")
                and k.endswith("/batch/read")} == {}
        assert calls["GET /crm/v3/objects/contacts"] >= 2  # pages of 100 with associations


async def test_a_partner_s_sync_that_wrote_the_association_spares_the_waiting_record_a_sync(
        tmp_path, slow_autojump, monkeypatch):
    """A contact whose new company is not linked yet waits for it; the company's sync then
    sees the same association with both ends linked and writes it. That answers what the
    contact waited for: the contact is not synced again for it (a read of its record on both
    sides and of its associations, to decide nothing)."""
    from crmsync.runtime.associations import AssociationSyncer
    from crmsync.store import associations as store_assoc

    from .test_e2e_associations import ASSOC, SYNCS, TIMING, setup

    db = setup(tmp_path, [{"email": "cy@example.com", "first_name": "Cy"}], [])
    synced: list[tuple[str, list[tuple[str, str]]]] = []
    sync_links = AssociationSyncer.sync_links

    async def spy(self, linked, *args, **kwargs):
        synced.append((self.ctx.hub_object, list(linked)))
        return await sync_links(self, linked, *args, **kwargs)

    monkeypatch.setattr(AssociationSyncer, "sync_links", spy)
    async with running(tmp_path, syncs=SYNCS, app_db=db, timing=TIMING, webhooks=False,
                       config_kwargs={"connection_extra": ASSOC}) as env:
        await env.wait_ready(["contacts", "companies"])
        # The contact's sync waits for the company: the company's sync is held back until
        # the contact's association sync saw it unlinked.
        waited = trio.Event()
        sync_pair = AssociationSyncer._sync_pair

        async def in_order(self, pair, *args, **kwargs):
            if self.ctx.hub_object == "companies":
                await waited.wait()
            order.append(self.ctx.hub_object)
            out = await sync_pair(self, pair, *args, **kwargs)
            if self.ctx.hub_object == "contacts":
                waited.set()
            return out

        order: list[str] = []
        monkeypatch.setattr(AssociationSyncer, "_sync_pair", in_order)
        synced.clear()
        env.app_exec("INSERT INTO organisations (id, name, domain) VALUES (7, 'Hooli', "
                     "'hooli.example')")
        env.app_exec("UPDATE customers SET company_id = 7 WHERE email = 'cy@example.com'")

        def linked():
            cy = env.hub_by_email().get("cy@example.com")
            ids = env.emu.associations("contacts", cy["id"], "companies") if cy else []
            return [r["properties"]["name"] for r in env.hub("companies")
                    if r["id"] in ids] == ["Hooli"]

        await env.eventually(linked)
        await wait_for(lambda: _nothing_waits(env, store_assoc), timeout=60, step=1.0)
        await trio.sleep(30)  # a sync asked for by the last commit would run now
        assert order == ["contacts", "companies"]
        assert sorted(obj for obj, _ in synced) == ["companies", "contacts"]


async def test_a_polled_record_whose_association_alone_changed_is_still_synced(
        tmp_path, slow_autojump):
    """A polled record that holds its snapshot's values is left out as an echo only where its
    associations are also what the last association sync saw: a customer moved to another
    company (no mapped field changed) is synced, and the move reaches HubSpot."""
    from .test_e2e_associations import ASSOC, SYNCS, setup

    orgs = [{"name": f"Org{i}", "domain": f"org{i}.example"} for i in range(2)]
    people = [{"email": f"p{i}@example.com", "first_name": f"P{i}", "company_id": 1}
              for i in range(20)]
    db = setup(tmp_path, people, orgs)
    timing = Timing(hub_poll_interval=10_000, app_poll_interval=2)
    async with running(tmp_path, syncs=SYNCS, app_db=db, timing=timing, webhooks=False,
                       config_kwargs={"connection_extra": ASSOC}) as env:
        await env.wait_ready(["contacts", "companies"])

        def on_hub(email: str, name: str) -> bool:
            hub = env.hub_by_email()[email]
            names = {r["id"]: r["properties"]["name"] for r in env.hub("companies")}
            return [names[c] for c in env.emu.associations("contacts", hub["id"],
                                                           "companies")] == [name]

        await env.eventually(lambda: all(on_hub(f"p{i}@example.com", "Org0")
                                         for i in range(20)))
        env.app_exec("UPDATE customers SET company_id = 2 WHERE email = 'p7@example.com'")
        await env.eventually(lambda: on_hub("p7@example.com", "Org1"), timeout=60)
        assert on_hub("p8@example.com", "Org0")


async def _nothing_waits(env, store_assoc) -> bool:
    return await env.daemon.store.read(store_assoc.pending_count, "shop") == 0


async def test_webhook_echoes_of_our_own_association_writes_read_nothing(tmp_path,
                                                                        slow_autojump):
    """Customers moved to another company in the app: the sync writes the new associations
    to HubSpot, which sends an associationChange event for each end (fact sheet §8.2). The
    last association sync saw each of them as the event says they are now, so they read
    nothing; an association made in HubSpot still syncs."""

    from .test_e2e_associations import ASSOC, SYNCS, setup

    orgs = [{"name": f"Org{i}", "domain": f"org{i}.example"} for i in range(3)]
    people = [{"email": f"p{i}@example.com", "first_name": f"P{i}", "company_id": 1}
              for i in range(60)]
    db = setup(tmp_path, people, orgs)
    timing = Timing(hub_poll_interval=10_000, app_poll_interval=2)
    async with running(tmp_path, syncs=SYNCS, app_db=db, timing=timing,
                       config_kwargs={"connection_extra": ASSOC}) as env:
        await env.wait_ready(["contacts", "companies"])

        async def all_done() -> bool:
            return await env.webhooks_settled(["contacts", "companies"])

        def companies_of(email: str) -> list[str]:
            hub = env.hub_by_email()[email]
            names = {r["id"]: r["properties"]["name"] for r in env.hub("companies")}
            return sorted(names[c] for c in env.emu.associations("contacts", hub["id"],
                                                                 "companies"))

        await env.eventually(lambda: all(companies_of(f"p{i}@example.com") == ["Org0"]
                                         for i in range(60)))
        await wait_for(all_done, timeout=120, step=1.0)
        env.emu.request_log.clear()
        env.app_exec("UPDATE customers SET company_id = 2")
        await env.eventually(lambda: all(companies_of(f"p{i}@example.com") == ["Org1"]
                                         for i in range(60)), timeout=120)
        await wait_for(all_done, timeout=120, step=1.0)
        calls = by_endpoint(env.emu.request_log)
        assert sum(v for k, v in calls.items() if k.startswith("POST /crm/v4/associations/")
                   and k.endswith("/batch/create")) >= 1
        assert calls["POST /crm/v3/objects/contacts/batch/read"] <= 1  # the app edit's own
        assert calls["POST /crm/v3/objects/companies/batch/read"] == 0
        # An association made in HubSpot is no echo: it reaches the app.
        hub = env.hub_by_email()["p5@example.com"]
        org2 = next(r["id"] for r in env.hub("companies") if r["properties"]["name"] == "Org2")
        env.emu.associate("contacts", hub["id"], "companies", org2)
        orgs_by_id = {1: "Org0", 2: "Org1", 3: "Org2"}
        await env.eventually(lambda: orgs_by_id.get(
            env.app_by_email()["p5@example.com"]["company_id"]) == "Org2", timeout=120)


async def test_a_burst_of_app_edits_reads_hubspot_200_records_a_request(tmp_path,
                                                                        slow_autojump):
    """Issue 16 item 1: 400 single-field edits of linked customers in one app transaction,
    with HubSpot's webhooks reaching the daemon. Each worker batch of 200 reads its hub
    records with one search (`hs_object_id IN`, pages of 200, fact sheet §2) where a batch
    read takes 100 (§1.3), and writes them in batch updates of 100; the webhook events of
    those updates (our own values) are not synced, so they read nothing: 6 requests for
    400 edits, where 12 were spent (4 batch reads, 4 updates, 4 batch reads of the echoes)."""
    rows = [{"email": f"c{i}@example.com", "first_name": f"C{i}", "last_name": "Old"}
            for i in range(400)]
    async with running(tmp_path, customers=rows) as env:
        await env.wait_ready()
        await trio.sleep(30)  # the initial sync's webhook echoes and first polls are over
        env.emu.request_log.clear()
        env.app_exec("UPDATE customers SET last_name = 'Edited-' || id")
        await env.eventually(lambda: all(
            h["properties"]["lastname"] == f"Edited-{a['id']}" for a, h in
            ((env.app_by_email()[e], r) for e, r in env.hub_by_email().items())), timeout=120)
        await trio.sleep(30)  # the webhook events of our updates arrive and are handled
        calls = by_endpoint(env.emu.request_log)
        assert calls == {"POST /crm/v3/objects/contacts/search": 2,
                         "POST /crm/v3/objects/contacts/batch/update": 4}
        assert (await env.counts())["syncing"] == 400
