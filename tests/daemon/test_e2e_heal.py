"""A create cut short before its link is healed by matching (DESIGN.md "Durability and
restarts"), even when the source record's match key changed before the retry (issue 17 item
4): the intent recorded the key the create was sent with."""

import sqlite3

import pytest
import trio

from crmsync.runtime import processor as processor_module
from crmsync.runtime.object_sync import Timing

from .harness import companies_sync, running, wait_for


async def test_a_create_cut_short_is_healed_by_the_key_it_was_sent_with(tmp_path,
                                                                         slow_autojump,
                                                                         monkeypatch):
    original = processor_module.Processor._write
    cut = {"done": False}
    db = tmp_path / "app.db"

    async def write_edit_then_crash(self, works):
        out = await original(self, works)
        if any(w.created for w in works) and not cut["done"]:
            cut["done"] = True
            # The app company's domain is edited after the hub company was made from it and
            # before the daemon comes back: the retry decides a create with the new domain.
            conn = sqlite3.connect(db)
            conn.execute("UPDATE organisations SET domain = 'acme-new.example'")
            conn.commit()
            conn.close()
            raise RuntimeError("simulated crash after the writes, before the commit")
        return out

    monkeypatch.setattr(processor_module.Processor, "_write", write_edit_then_crash)
    async with running(tmp_path, syncs=companies_sync(), webhooks=False,
                       timing=Timing(hub_poll_interval=10_000, app_poll_interval=2),
                       organisations=[{"name": "Acme", "domain": "acme.example"}]) as env:
        await env.wait_ready(("companies",), timeout=3000)
        assert cut["done"]
        # One hub company: the one the first attempt made, now with the app's new domain.
        await env.eventually(
            lambda: [r["properties"].get("domain") for r in env.hub("companies")]
            == ["acme-new.example"], timeout=300)
        (item,) = await env.items("companies")
        assert item.state == "syncing" and item.creating == ""
        await trio.sleep(10)
        assert len(env.hub("companies")) == 1


def _crash_after_first_create(monkeypatch, then):
    """The first batch that creates a record crashes after its writes, before its commit
    (the link of the new record is never recorded); `then()` runs in between."""
    original = processor_module.Processor._write
    cut = {"done": False}

    async def write_then_crash(self, works):
        out = await original(self, works)
        if any(w.created for w in works) and not cut["done"]:
            cut["done"] = True
            then()
            raise RuntimeError("simulated crash after the writes, before the commit")
        return out

    monkeypatch.setattr(processor_module.Processor, "_write", write_then_crash)
    return cut


@pytest.mark.parametrize("on_delete", ["mark", "propagate"])
async def test_a_create_cut_short_whose_source_the_app_deleted_is_a_deleted_pair(
        tmp_path, slow_autojump, monkeypatch, on_delete):
    # The hub company made from Acme landed; the app deletes Acme before the restart. The
    # hub company is crmsync's copy of a deleted record: the pair's deletion is decided by
    # on_delete, and Acme never comes back to the app as a copy of its own copy.
    db = tmp_path / "app.db"

    def delete_acme():
        conn = sqlite3.connect(db)
        conn.execute("DELETE FROM organisations")
        conn.commit()
        conn.close()

    cut = _crash_after_first_create(monkeypatch, delete_acme)
    async with running(tmp_path, syncs=companies_sync(on_delete=on_delete), webhooks=False,
                       timing=Timing(hub_poll_interval=2, app_poll_interval=2),
                       organisations=[{"name": "Acme", "domain": "acme.example"}]) as env:
        await env.wait_ready(("companies",), timeout=3000)
        assert cut["done"]
        items: list = []

        async def decided():
            items[:] = await env.items("companies")
            return [i.state for i in items] == ["deleted"]

        await wait_for(decided, timeout=300, step=1.0)
        await trio.sleep(30)  # a few polls of both sides: nothing more happens
        (item,) = await env.items("companies")
        assert env.app_rows("organisations") == []
        hub = env.emu.records("companies", archived=on_delete == "propagate")
        assert [r["properties"]["domain"] for r in hub] == ["acme.example"]
        assert (item.state, item.hub_id) == ("deleted", hub[0]["id"])
        assert item.deleted_side == ("app" if on_delete == "mark" else "both")


@pytest.mark.parametrize("on_delete", ["mark", "propagate"])
async def test_a_create_cut_short_whose_source_the_hub_deleted_is_a_deleted_pair(
        tmp_path, slow_autojump, monkeypatch, on_delete):
    # The mirror: the app company made from a hub company landed; the hub company is deleted
    # before the restart. The app company is crmsync's copy: it is the deleted pair's other
    # record (kept in the item with mark, deleted with propagate), never a company of its own.
    emu_box: list = []

    def delete_on_hub():
        (hub,) = emu_box[0].records("companies")
        emu_box[0].archive_record("companies", hub["id"])

    def configure(emu):
        emu_box.append(emu)

    cut = _crash_after_first_create(monkeypatch, delete_on_hub)
    async with running(tmp_path, syncs=companies_sync(on_delete=on_delete), webhooks=False,
                       timing=Timing(hub_poll_interval=2, app_poll_interval=2),
                       hub_companies=[{"name": "Acme", "domain": "acme.example"}],
                       configure=configure) as env:
        await env.wait_ready(("companies",), timeout=3000)
        assert cut["done"]
        (hub,) = env.emu.records("companies", archived=True)
        items: list = []

        async def decided():
            items[:] = await env.items("companies")
            return [i.state for i in items] == ["deleted"]

        await wait_for(decided, timeout=300, step=1.0)
        await trio.sleep(30)
        (item,) = await env.items("companies")
        assert env.emu.records("companies") == []
        rows = env.app_rows("organisations")
        if on_delete == "mark":
            assert [(str(r["id"]), r["domain"]) for r in rows] == [(item.app_id, "acme.example")]
            assert item.deleted_side == "hub"
        else:
            assert rows == []
            assert item.deleted_side == "both"
        assert item.hub_id == hub["id"]


@pytest.mark.parametrize("on_delete", ["mark", "propagate"])
async def test_a_create_cut_short_whose_source_id_was_reused_is_a_deleted_pair(
        tmp_path, slow_autojump, monkeypatch, on_delete):
    # As above, and the app gives the deleted row's id to its next insert (SQLite without
    # AUTOINCREMENT): letting go of that id must not forget that a create from the deleted
    # row may have landed.
    db = tmp_path / "app.db"

    def reuse_the_id():
        conn = sqlite3.connect(db)
        conn.execute("DELETE FROM organisations")
        new_id = conn.execute("INSERT INTO organisations (name, domain) VALUES "
                              "('Initech', 'initech.example')").lastrowid
        conn.commit()
        conn.close()
        assert new_id == 1

    cut = _crash_after_first_create(monkeypatch, reuse_the_id)
    async with running(tmp_path, syncs=companies_sync(on_delete=on_delete), webhooks=False,
                       timing=Timing(hub_poll_interval=2, app_poll_interval=2),
                       organisations=[{"name": "Acme", "domain": "acme.example"}]) as env:
        await env.wait_ready(("companies",), timeout=3000)
        assert cut["done"]

        def hub_domains(archived=False):
            return sorted(r["properties"]["domain"]
                          for r in env.emu.records("companies", archived=archived))

        async def decided():
            states = sorted((i.state, i.deleted_side) for i in await env.items("companies"))
            return states == [("deleted", "app" if on_delete == "mark" else "both"),
                              ("syncing", "")]

        await wait_for(decided, timeout=300, step=1.0)
        await trio.sleep(30)
        assert [r["name"] for r in env.app_rows("organisations")] == ["Initech"]
        if on_delete == "mark":
            assert hub_domains() == ["acme.example", "initech.example"]
        else:
            assert (hub_domains(), hub_domains(True)) == (["initech.example"], ["acme.example"])


async def test_an_app_edit_after_a_write_that_landed_before_a_crash_is_kept(
        tmp_path, slow_autojump, monkeypatch):
    # Acme is on both sides with another city: the first pairing writes the hub's (York) to
    # the app, and the daemon dies before committing it. The app's user, seeing York, sets
    # Hull. Hull is the newest edit and must win: the app's change log shows crmsync's write
    # landed before it. (Without that, the app's value looked like one that never saw York,
    # a conflict the hub won: Hull was lost.)
    db = tmp_path / "app.db"

    def edit_after_the_write():
        conn = sqlite3.connect(db)
        (city,) = conn.execute("SELECT city FROM organisations").fetchone()
        assert city == "York"  # crmsync's write landed
        conn.execute("UPDATE organisations SET city = 'Hull'")
        conn.commit()
        conn.close()

    original = processor_module.Processor._write
    cut = {"done": False}

    async def write_then_crash(self, works):
        out = await original(self, works)
        if any(a.side == "app" for w in works for a in w.decision.actions
               if type(a).__name__ == "Update") and not cut["done"]:
            cut["done"] = True
            edit_after_the_write()
            raise RuntimeError("simulated crash after the writes, before the commit")
        return out

    monkeypatch.setattr(processor_module.Processor, "_write", write_then_crash)
    async with running(tmp_path, syncs=companies_sync(), webhooks=False,
                       timing=Timing(hub_poll_interval=2, app_poll_interval=2),
                       organisations=[{"name": "Acme", "domain": "acme.example", "city": "Leeds"}],
                       hub_companies=[{"name": "Acme", "domain": "acme.example",
                                       "city": "York"}]) as env:
        await env.wait_ready(("companies",), timeout=3000)
        assert cut["done"]

        def cities():
            return ([r["properties"].get("city") for r in env.hub("companies")],
                    [r["city"] for r in env.app_rows("organisations")])

        with trio.move_on_after(60):
            while cities() != (["Hull"], ["Hull"]):
                await trio.sleep(1)
        assert cities() == (["Hull"], ["Hull"])


async def test_an_edit_survives_two_crashes_in_a_row_of_its_record_s_syncs(
        tmp_path, slow_autojump, monkeypatch):
    # The hub company made from Acme (Leeds) lands, and the daemon dies before linking. The
    # app sets Hull. The next sync heals the create and decides Hull for the hub, commits that
    # intent, and dies before sending it. The sync after that must still know the hub's Leeds
    # was ours (the first intent said so): Hull moves to the hub, and is not lost to a
    # "first pairing" that the hub wins.
    db = tmp_path / "app.db"
    original = processor_module.Processor._write
    crashes: list[str] = []

    async def write_with_two_crashes(self, works):
        if not crashes:
            out = await original(self, works)
            if any(w.created for w in works):
                conn = sqlite3.connect(db)
                conn.execute("UPDATE organisations SET city = 'Hull'")
                conn.commit()
                conn.close()
                crashes.append("after the create")
                raise RuntimeError("simulated crash after the create, before the commit")
            return out
        if len(crashes) == 1 and any(a.side == "hub" and type(a).__name__ == "Update"
                                     for w in works for a in w.decision.actions):
            crashes.append("before the update")
            raise RuntimeError("simulated crash after the intent, before the update")
        return await original(self, works)

    monkeypatch.setattr(processor_module.Processor, "_write", write_with_two_crashes)
    async with running(tmp_path, syncs=companies_sync(), webhooks=False,
                       timing=Timing(hub_poll_interval=2, app_poll_interval=2),
                       organisations=[{"name": "Acme", "domain": "acme.example",
                                       "city": "Leeds"}]) as env:
        await env.wait_ready(("companies",), timeout=3000)

        def cities():
            return ([r["properties"].get("city") for r in env.hub("companies")],
                    [r["city"] for r in env.app_rows("organisations")])

        with trio.move_on_after(60):
            while cities() != (["Hull"], ["Hull"]):
                await trio.sleep(1)
        assert crashes == ["after the create", "before the update"]
        assert cities() == (["Hull"], ["Hull"])
