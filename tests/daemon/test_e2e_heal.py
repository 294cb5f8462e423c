"""A create cut short before its link is healed by matching (DESIGN.md "Durability and
restarts"), even when the source record's match key changed before the retry (issue 17 item
4): the intent recorded the key the create was sent with."""

import sqlite3

import trio

from crmsync.runtime import processor as processor_module
from crmsync.runtime.object_sync import Timing

from .harness import companies_sync, running


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
