"""What a worker's load decided on, read again once it holds the records' gate (loader.py
StoreView): a real change makes it load again (reading both sides), a record merely shown as
`queued` meanwhile does not."""

from __future__ import annotations

from types import SimpleNamespace

from crmsync.runtime.loader import StoreView
from crmsync.store import Store
from crmsync.store import items as store_items
from crmsync.store.items import IndexRow


async def test_an_item_shown_queued_meanwhile_is_no_change(tmp_path):
    async with Store.open(tmp_path / "state.db") as store:
        ctx = SimpleNamespace(store=store)
        await store.call(store_items.index_records, "shop/contacts", "hub",
                         [IndexRow("h1", ("ann@example.com",), "1")])
        [item] = (await store.read(store_items.find_items, "shop/contacts", "hub",
                                   ["h1"])).values()
        await store.call(store_items.set_state, [item.item_id], "syncing")
        view = StoreView()
        await store.read(view.run, store_items.find_items, "shop/contacts", "hub", ["h1"])
        # Another change of the record came while it was being synced (lock queue).
        await store.call(store_items.mark_queued, [item.item_id])
        assert not await view.changed(ctx)  # type: ignore[arg-type]
        # Another sync failed it meanwhile: that is a change.
        await store.call(store_items.set_state, [item.item_id], "failed", "conflict")
        assert await view.changed(ctx)  # type: ignore[arg-type]
