"""Differential test, kept only while the old code exists: restore through the engine and
the shared write-plan executor does what runtime/restore.py did before (loaded from git as
`restore_before`), on generated deleted items and sides."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import time
from contextlib import asynccontextmanager
from pathlib import Path

import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from crmsync.config.model import ObjectSync
from crmsync.connectors.base import RecordError
from crmsync.records import Record
from crmsync.runtime import restore as restore_now
from crmsync.store import Store, reports
from crmsync.store import items as store_items

from .fakes import MemorySide, make_ctx

ROOT = Path(__file__).resolve().parents[2]
SYNC = ObjectSync(connection="c", hub_object="contacts", app_object="customers",
                  on_delete="review")
SID = "c/contacts"
EMAILS = ["ann@example.com", "bob@example.com", "cy@example.com"]


def _old_module():
    src = subprocess.run(["git", "show", "HEAD:src/crmsync/runtime/restore.py"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    spec = importlib.util.spec_from_loader("restore_before", loader=None)
    mod = importlib.util.module_from_spec(spec)
    exec(compile(src, "restore_before.py", "exec"), mod.__dict__)
    sys.modules["restore_before"] = mod
    return mod


OLD = _old_module()


class Ticket:
    async def wait(self) -> None:
        return None


class Queue:
    """The lock queue as restore uses it, with no worker: a submitted sync is not run."""

    @asynccontextmanager
    async def hold(self, keys):
        yield

    async def submit(self, keys):
        return Ticket()


def _contact(side, rid, email):
    if side == "hub":
        return Record(rid, {"email": email, "firstname": "F" + rid}, 5)
    return Record(rid, {"email": email, "first_name": "F" + rid}, 5)


@st.composite
def worlds(draw):
    to = draw(st.sampled_from(["hub", "app"]))
    src = "app" if to == "hub" else "hub"
    n = draw(st.integers(1, 4))
    items, survivors, there = [], [], []
    for i in range(n):
        email = draw(st.sampled_from(EMAILS))
        items.append(dict(
            hub_id=f"H{i}", app_id=f"A{i}", state=draw(st.sampled_from(["deleted", "syncing"])),
            deleted_side=draw(st.sampled_from([to, to, src, "both"])),
            snapshot=draw(st.sampled_from([None, b'{"hub": {"email": "%s"}, "app": {}}'
                                           % email.encode()])),
            creating=draw(st.sampled_from(["", to]))))
        if draw(st.integers(0, 3)):  # mostly a survivor; sometimes gone too
            survivors.append(_contact(src, f"{src[0].upper()}{i}", email))
    # Records already on `to`: an earlier attempt's create, or one a create is refused for.
    for j in range(draw(st.integers(0, 2))):
        there.append(_contact(to, f"X{j}", draw(st.sampled_from(EMAILS))))
    # Who holds them: nobody, an item of their own (linked or not), a failed duplicate.
    holders = [draw(st.sampled_from(["none", "alone", "linked", "duplicate"])) for _ in there]
    fails = {e: draw(st.sampled_from([None, "exists", "invalid"])) for e in EMAILS}
    parked = draw(st.booleans())
    approve = draw(st.booleans())
    return to, items, survivors, there, holders, fails, parked, approve


def _dump(conn):
    items = conn.execute("SELECT item_id, hub_id, app_id, state, category, detail, match_key, "
                         "snapshot, deleted_side, creating, attempts, intent FROM items "
                         "ORDER BY item_id").fetchall()
    keys = conn.execute("SELECT side, key, record_id FROM match_keys ORDER BY 1, 2").fetchall()
    hist = conn.execute("SELECT item_id, hub_id, app_id, action, changes, detail FROM history "
                        "ORDER BY id").fetchall()
    park = conn.execute("SELECT item_id, side, record_id FROM parked_deletes ORDER BY 1"
                        ).fetchall()
    return items, keys, hist, park


async def _run(mod, world):
    to, items, survivors, there, holders, fails, parked, approve = world
    src = "app" if to == "hub" else "hub"
    hub = MemorySide("hub", [r for r in survivors + there if r.id[0] in "HX" and
                             (src == "hub" or r.id.startswith("X"))])
    app = MemorySide("app", [r for r in survivors + there if r.id[0] in "AX" and
                             (src == "app" or r.id.startswith("X"))])
    side_to = hub if to == "hub" else app
    for e, how in fails.items():
        if how == "exists":
            x = next((r.id for r in there if r.properties["email"] == e), "X9")
            side_to.fail_creates[e] = RecordError("conflict", f"exists {x}", existing_id=x)
        elif how == "invalid":
            side_to.fail_creates[e] = RecordError("invalid_value", "bad")
    async with Store.open(":memory:") as store:
        def setup(conn):
            now = time.time()
            for it in items:
                conn.execute("INSERT INTO items (sync_id, hub_id, app_id, state, deleted_side, "
                             "snapshot, creating, created_at, updated_at) "
                             "VALUES (?,?,?,?,?,?,?,?,?)",
                             (SID, it["hub_id"], it["app_id"], it["state"], it["deleted_side"],
                              it["snapshot"], it["creating"], now, now))
            for r, h in zip(there, holders, strict=True):
                if h == "none":
                    continue
                other_id = f"P{r.id}" if h == "linked" else None
                ids = (r.id, other_id) if to == "hub" else (other_id, r.id)
                conn.execute("INSERT INTO items (sync_id, hub_id, app_id, state, category, "
                             "snapshot, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?)",
                             (SID, *ids, "failed" if h == "duplicate" else "syncing",
                              "duplicate" if h == "duplicate" else "",
                              # (a link's snapshot as encode_snapshot writes it)
                              b'{"hub":{},"app":{}}' if h == "linked" else None, now, now))
            for r in survivors:
                conn.execute("INSERT OR IGNORE INTO match_keys VALUES (?,?,?,?)",
                             (SID, src, "email:" + r.properties["email"], r.id))
            if parked:
                for i, it in enumerate(items, start=1):
                    if it["state"] == "deleted" and it["deleted_side"] in ("hub", "app"):
                        other_id = it["app_id"] if it["deleted_side"] == "hub" else it["hub_id"]
                        conn.execute("INSERT INTO parked_deletes (sync_id, item_id, side, "
                                     "record_id, parked_at) VALUES (?,?,?,?,?)",
                                     (SID, i, it["deleted_side"], other_id, now))
        store.call_blocking(setup)
        ctx = make_ctx(store, SYNC, hub, app)
        async with trio.open_nursery() as nursery:
            await nursery.start(ctx.hub_writer.run)
            await nursery.start(ctx.app_writer.run)
            batch = await store.read(store_items.list_items, SID)
            plan = await mod.plan_restore(ctx, to, batch)
            done = await mod.apply_restore(ctx, Queue(), plan)
            review = []
            if parked:
                pk = await store.read(reports.parked, SID)
                review = await mod.resolve_parked(ctx, pk, approve)
            nursery.cancel_scope.cancel()
        state = store.call_blocking(_dump)
    plan_shape = [(c.item.item_id, c.restorable, c.reason, c.source_id, c.values,
                   c.changes) for c in plan]
    return (plan_shape, [msgspec_dump(r) for r in done], [msgspec_dump(r) for r in review],
            state, {k: v for k, v in hub.records.items()}, {k: v for k, v in app.records.items()},
            hub.calls, app.calls)


def msgspec_dump(r):
    import msgspec
    return msgspec.to_builtins(r)


@settings(max_examples=300, deadline=None)
@given(worlds())
def test_restore_does_what_it_did(world) -> None:
    def run(mod):
        try:
            return trio.run(_run, mod, world)
        except BaseExceptionGroup as eg:  # the same failure, or none
            return [repr(e) for e in eg.exceptions]

    assert run(restore_now) == run(OLD)
