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
