"""Which items the processor keeps held after a restore (engine/restored.py decides how)."""

from crmsync.engine.restored import CATEGORY
from crmsync.runtime.processor import held_after_restore
from crmsync.store.items import Item


def item(state: str, category: str) -> Item:
    return Item(item_id=1, sync_id="shop/contacts", hub_id="1", app_id="2", state=state,
                category=category, detail="", match_key="", snapshot=b"{}", hub_version="",
                app_version="", deleted_side="", creating="", attempts=1, updated_at=0.0)


def test_a_held_record_stays_held_while_another_change_queues_it():
    # store/items.mark_queued sets the state and leaves the category: still held.
    assert held_after_restore(item("failed", CATEGORY))
    assert held_after_restore(item("queued", CATEGORY))


def test_other_records_are_not_held():
    assert not held_after_restore(None)
    assert not held_after_restore(item("failed", "conflict"))
    assert not held_after_restore(item("syncing", ""))
