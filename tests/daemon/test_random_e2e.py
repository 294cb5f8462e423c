"""A seeded, bounded randomized end-to-end test (issue 17): companies and contacts with their
contact ↔ company associations synced both ways between the HubSpot emulator and a SQLite app,
while a seeded plan (`random_plan.py`) edits, creates, deletes and re-links records on both
sides, makes same-field conflicting edits and same-record creates on both sides at about the
same time, deletes the app's newest row so that SQLite gives its id to the next insert, kills
and restarts the daemon, and switches the emulator's faults on and off (5xx, lost answers of
applied writes, a 429 storm, latency).

Then the faults stop and the test waits until the system is quiescent (not a fixed sleep: the
emulator has nothing to deliver, the inbox is drained, nothing is queued, pending or half
written, every poller polled after the last change, and both sides read the same before and
after), stops the daemon and checks:

- every record on either side is in exactly one item: linked to one record of the same logical
  record on the other side, or in a state that explains why not (a twin's duplicate naming the
  record that holds its key, deleted as `on_delete` says);
- both records of every link hold equal values for every mapped field, and the model's;
- no record was created twice (records per match key and side, against the model);
- every linked contact has the same linked company on both sides, the one of its last re-link;
- nothing waits for ever (pending associations), no app row points at a missing company, and
  `PRAGMA integrity_check` is ok in the state and app databases;
- no daemon crashed (each was killed by the test or stopped cleanly).

Everything runs in this Trio run on the test's MockClock (`slow_autojump`) over in-process
transports, so a seed replays the same plan against the same faults: the emulator behind
`httpx.ASGITransport`, its webhooks delivered to the running daemon's webhook application. A
kill cancels the daemon wherever its tasks wait (what SIGKILL leaves: each store transaction
committed or not, each request sent or not); the subprocess SIGKILL tests are
test_sigkill*.py. A failing round prints its seed, its plan, what each operation did and the
temporary directory holding both databases.

CI runs `CI_SEEDS`; run others with CRMSYNC_RANDOM_SEEDS="4-40" (or "5,7"):
`CRMSYNC_RANDOM_SEEDS=4-40 pytest tests/daemon/test_random_e2e.py` (about 15-20 s a seed).

A seed replays the same plan and faults, but not bit for bit the same interleaving: the
store and the app connector work on threads (slow_autojump moves the clock only once every
task has been blocked 20 ms of real time), and the app's and the emulator's timestamps are
the wall clock's. So a rare race may show in one run of a seed and not the next.

Defects these runs found (issue 17), each fixed with a deterministic test:

- a same-field conflict, the hub's edit then the app's right after, ended with the app's
  value on both sides (conflict_winner = "hub"). It did not show again in the runs made to
  find it; one cause found in the code and reproduced: after a crash, the write of the
  retry that the app refused as stale was decided again with the change log's evidence
  about the crashed attempt's write, and counted as landed (test_e2e_stale_writes.py). The
  seed 17 defect below also ends a hub edit with another value. It showed again with seed 7:
  our hub write was applied, its answer lost (a hang), a hub user saved the field, and the
  retry applied our value again over it (or the save and our write shared a millisecond,
  which the net's window left out); an app edit's sync then read our write's version and
  wrote over the record before the hub edit's event came, and its write replaced the first
  one's window on the item: the event fell in neither. A write that read no newer version
  than our last write made now carries that write's window on (runtime/overwritten.py
  `following`; test_e2e_stale_writes.py, tests/runtime/test_overwritten.py);
- a contact's company differed between the sides: a re-link or a removal on one side came
  undone from the other. Both ends of the association type (the contact's sync and the
  company's) wrote their reads into the shared association snapshot over each other (seed
  13); a sync killed after its association writes left them to pass for hub changes (seed
  3); the re-read after our writes stored a change made meanwhile as seen (seeds 2 and 9)
  (tests/runtime/test_association_snapshots.py); what was seen of a deleted app record's
  association was taken for that of the new record given its id (seed 14;
  test_e2e_associations.py);
- a hub edit was overwritten with the old value: a contact linked to a company (by crmsync,
  then by the app) logs the company as "associate" in the app's change log, which was taken
  for evidence that an interrupted field write to it landed (seed 17;
  tests/connectors/test_sqlite_relations.py).
"""

from __future__ import annotations

import contextlib
import os
import random
import sqlite3
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from crmsync.daemon.main import Daemon
from crmsync.emulators.hubspot import Faults, HubSpotEmulator
from crmsync.runtime.object_sync import Timing

from .harness import (
    HUB_SECRET,
    PUBLIC,
    TOKEN,
    companies_sync,
    contacts_sync,
    make_app_db,
    write_config,
)
from .random_plan import (
    COMPANY_FIELDS,
    COMPANY_KEYS,
    CONTACT_FIELDS,
    SCHEMA,
    InitialData,
    Op,
    RecModel,
    Round,
    fields_of,
    initial_data,
    make_plan,
    norm,
    record_model,
)

ASSOC = """
[[connections.associations]]
from_object = "customers"
to_object = "organisations"
column = "company_id"
"""
TABLE = {"contact": "customers", "company": "organisations"}
HUB_OBJECT = {"contact": "contacts", "company": "companies"}
SYNC_ID = {"contact": "shop/contacts", "company": "shop/companies"}
HUB_POLL = 2.0
# The test's own API calls meet the same faults as the daemon's: a lost answer is a timeout.
CALL_TIMEOUT = 2.0
LOST = object()


def app_key(kind: str, row: dict[str, Any]) -> list[tuple[str, str]]:
    if kind == "contact":
        return [("email", str(row["email"] or "").strip().lower())]
    return [(k, str(row[k]).strip().lower()) for k in COMPANY_KEYS if row[k]]


def hub_key(kind: str, props: dict[str, Any]) -> list[tuple[str, str]]:
    if kind == "contact":
        return [("email", str(props.get("email") or "").strip().lower())]
    return [(k, str(props[k]).strip().lower()) for k in COMPANY_KEYS if props.get(k)]


# --- both sides as the test sees them ------------------------------------------------------------


def task_stacks() -> str:
    """Where every task of this run waits (to tell what a stuck daemon waits for)."""
    out: list[str] = []

    def walk(task: trio.lowlevel.Task, depth: int) -> None:
        frames = [f"{f.f_code.co_filename.split('/')[-1]}:{lineno} {f.f_code.co_name}"
                  for f, lineno in task.iter_await_frames()]
        out.append("  " * depth + f"{task.name}: " + " > ".join(frames[-6:]))
        for n in task.child_nurseries:
            for t in n.child_tasks:
                walk(t, depth + 1)

    walk(trio.lowlevel.current_root_task(), 0)
    return "\n".join(out)


class System:
    """The emulator, the app database and the daemon, all in this Trio run (on the test's
    MockClock). The daemon runs in a cancel scope of its own: `kill` cancels it wherever its
    tasks are (between any two awaits: a store transaction either committed or did not, a
    write was sent or not), which is what SIGKILL leaves behind; `start` runs a new daemon on
    the same state directory. The emulator and its webhook deliveries outlive the daemons: a
    delivery while no daemon runs fails (503) and is retried, as HubSpot does."""

    def __init__(self, tmp: Path, nursery: trio.Nursery) -> None:
        self.tmp = tmp
        self.nursery = nursery
        self.app_db = tmp / "app.db"
        self.config = tmp / "crmsync.toml"
        self.emu = HubSpotEmulator(tokens=(TOKEN,), tier="unlimited", seed=0,
                                   clock=trio.current_time,
                                   webhook_url=f"{PUBLIC}/webhooks/hubspot",
                                   webhook_secret=HUB_SECRET)
        assert self.emu.dispatcher is not None
        self.emu.dispatcher.retry_base = 0.2
        self.daemon: Daemon | None = None
        self._scope: trio.CancelScope | None = None
        self._done: trio.Event | None = None
        self.daemons = 0
        self.crashes: list[BaseException] = []
        self._in_flight: set[trio.CancelScope] = set()
        self.hooks = httpx.AsyncClient(transport=httpx.ASGITransport(app=self._webhooks),
                                       base_url=PUBLIC)

    @property
    def state_db(self) -> Path:
        return self.tmp / "state" / "crmsync.db"

    now_sql = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"

    async def _webhooks(self, scope: Any, receive: Any, send: Any) -> None:
        """The daemon's webhook endpoint while one runs (503 otherwise, as a refused
        connection would be to HubSpot); a kill ends a delivery it was handling."""
        d = self.daemon
        sent = False

        async def tracked(message: Any) -> None:
            nonlocal sent
            sent = True
            await send(message)

        if d is not None and d.webhooks is not None and d.ready.is_set():
            cs = trio.CancelScope()
            self._in_flight.add(cs)
            try:
                with cs:
                    await d.webhooks.app(scope, receive, tracked)
            finally:
                self._in_flight.discard(cs)
        if not sent:
            await send({"type": "http.response.start", "status": 503, "headers": []})
            await send({"type": "http.response.body", "body": b""})

    async def start_daemon(self) -> Daemon:
        assert self.daemon is None, "one daemon at a time"
        daemon = Daemon(self.config, hub_transport=httpx.ASGITransport(app=self.emu.app),
                        timing=Timing(hub_poll_interval=HUB_POLL, app_poll_interval=2.0),
                        configure_logging=False, hub_index_lag=0.0)
        scope, done = trio.CancelScope(), trio.Event()

        async def run() -> None:
            try:
                with scope:
                    await daemon.run()
            except Exception as exc:  # reported by the test, not lost in the nursery
                self.crashes.append(exc)
            finally:
                done.set()

        self.daemon, self._scope, self._done = daemon, scope, done
        self.daemons += 1
        self.nursery.start_soon(run)
        with trio.fail_after(60):
            while not daemon.ready.is_set():
                if done.is_set():
                    raise AssertionError(f"the daemon stopped while starting: {self.crashes}")
                await trio.sleep(0.01)
        return daemon

    async def kill(self) -> None:
        assert self._scope is not None and self._done is not None
        self.daemon = None
        for cs in list(self._in_flight):
            cs.cancel()
        self._scope.cancel()
        with trio.move_on_after(600) as waited:
            await self._done.wait()
        if waited.cancelled_caught:
            raise AssertionError("the killed daemon did not stop:\n" + task_stacks())
        self._scope = self._done = None

    async def stop(self) -> None:
        """A clean stop: what SIGTERM does (in-flight work ends, the store closes)."""
        d = self.daemon
        assert d is not None and d.nursery is not None and self._done is not None
        with trio.fail_after(60):
            await d.shutdown(d.nursery.cancel_scope)
            await self._done.wait()
        self.daemon = None

    def set_faults(self, **faults: Any) -> None:
        self.emu.faults = Faults(**faults)


class Hub:
    """HubSpot's API as another integration uses it, through the same faults the daemon meets:
    5xx and 429 are retried (nothing was applied); no answer within CALL_TIMEOUT is a lost
    answer of a write that was applied (the emulator applies it, then holds the answer back)."""

    def __init__(self, s: System) -> None:
        self.s = s
        self.api = httpx.AsyncClient(transport=httpx.ASGITransport(app=s.emu.app),
                                     base_url="http://hubspot.test",
                                     headers={"Authorization": f"Bearer {TOKEN}"})

    async def aclose(self) -> None:
        await self.api.aclose()

    async def call(self, method: str, path: str, body: Any = None) -> httpx.Response | object:
        with trio.fail_after(600):
            while True:
                r = None
                with trio.move_on_after(CALL_TIMEOUT):
                    r = await self.api.request(method, path, json=body)
                if r is None:
                    if method == "GET":
                        continue
                    return LOST
                if r.status_code == 429 or r.status_code >= 500:
                    await trio.sleep(0.2)
                    continue
                return r

    async def dump(self) -> dict[str, Any]:
        return self.s.emu.dump()

    async def live(self, kind: str) -> list[dict[str, Any]]:
        return [x for x in (await self.dump())["objects"][HUB_OBJECT[kind]]
                if not x.get("archived")]


class App:
    """The app's SQLite database, edited as the app would (each call one transaction)."""

    def __init__(self, s: System) -> None:
        self.s = s

    @contextlib.contextmanager
    def tx(self) -> Any:
        conn = sqlite3.connect(self.s.app_db, timeout=20, isolation_level=None)
        conn.row_factory = sqlite3.Row
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        finally:
            conn.close()

    def rows(self, kind: str) -> list[dict[str, Any]]:
        with self.tx() as conn:
            return [dict(r) for r in conn.execute(f"SELECT * FROM {TABLE[kind]} ORDER BY id")]


# --- running the plan ------------------------------------------------------------------------------


@dataclass
class Runner:
    s: System
    rnd: Round
    hub: Hub
    app: App
    model: dict[str, RecModel]
    log: list[str] = field(default_factory=list)
    t0: float = field(default_factory=trio.current_time)

    def note(self, what: str) -> None:
        self.log.append(f"{trio.current_time() - self.t0:7.2f} {what}")

    # --- finding a record's id on a side --------------------------------------------------

    def app_id(self, rec: RecModel, conn: sqlite3.Connection) -> str | None:
        if rec.kind == "contact":
            ids = [r[0] for r in conn.execute(
                "SELECT id FROM customers WHERE lower(email) = ?", (rec.uid,))]
            return str(ids[0]) if len(ids) == 1 else None
        if rec.app_id is not None:
            row = conn.execute("SELECT name, domain FROM organisations WHERE id = ?",
                               (rec.app_id,)).fetchone()
            if row is not None and set(app_key("company", dict(row))) & rec.keys_seen:
                return rec.app_id
        found = {str(r["id"]) for r in conn.execute("SELECT id, name, domain FROM organisations")
                 if set(app_key("company", dict(r))) & rec.keys_seen}
        if len(found) == 1:
            rec.app_id = found.pop()
            return rec.app_id
        return None

    async def hub_id(self, rec: RecModel) -> str | None:
        records = await self.hub.live(rec.kind)
        if rec.hub_id is not None and any(
                x["id"] == rec.hub_id and set(hub_key(rec.kind, x["properties"])) & rec.keys_of()
                for x in records):
            return rec.hub_id
        found = [x["id"] for x in records
                 if set(hub_key(rec.kind, x["properties"])) & rec.keys_of()]
        if len(found) == 1:
            rec.hub_id = found[0]
            return rec.hub_id
        return None

    # --- operations -------------------------------------------------------------------------

    async def run_op(self, op: Op) -> str:
        """Runs one operation, keeps the model; returns what happened."""
        handler = getattr(self, f"op_{op.kind}")
        result: str = await handler(**op.args)
        return result

    async def op_kill(self, after: float) -> str:
        """Kills the daemon `after` seconds (of the test's clock) from now."""
        if self.s.daemon is None:
            return "no daemon running"
        await trio.sleep(after)
        await self.s.kill()
        return f"killed daemon-{self.s.daemons}"

    async def op_start(self) -> str:
        if self.s.daemon is not None:
            return "already running"
        await self.s.start_daemon()
        return f"started daemon-{self.s.daemons}"

    async def op_faults(self, **faults: Any) -> str:
        self.s.set_faults(**faults)
        return "set"

    def _alive(self, uid: str) -> RecModel | None:
        rec = self.model.get(uid)
        if rec is None or not rec.alive or rec.origin == "twin":
            return None
        return rec

    async def edit(self, rec: RecModel, side: str, name: str, value: str) -> str:
        fm = rec.fields[name]
        if side == "app":
            column = fields_of(rec.kind)[name]
            with self.app.tx() as conn:
                app_id = self.app_id(rec, conn)
                if app_id is None:
                    return "skipped: not in the app (yet)"
                (held,) = conn.execute(f"SELECT {column} FROM {TABLE[rec.kind]} WHERE id = ?",
                                       (app_id,)).fetchone()
                conn.execute(f"UPDATE {TABLE[rec.kind]} SET {column} = ?, updated_at = "
                             f"{self.s.now_sql} WHERE id = ?", (value, app_id))
            hub_edit = fm.latest("hub")
            informed = fm.app_edit(value, norm(held)).informed
            rec.note_keys()
            return f"app {rec.kind} {app_id}: {held!r} -> {value!r}" + (
                "" if informed or hub_edit is None
                else f" (the app has not held the hub's {hub_edit.value!r} yet)")
        hub_id = await self.hub_id(rec)
        if hub_id is None:
            return "skipped: not on the hub (yet)"
        r = await self.hub.call("PATCH", f"/crm/v3/objects/{HUB_OBJECT[rec.kind]}/{hub_id}",
                                {"properties": {name: value}})
        if r is not LOST and r.status_code == 404:  # type: ignore[union-attr]
            return f"skipped: hub {rec.kind} {hub_id} is gone"
        assert r is LOST or r.status_code == 200, r.text  # type: ignore[union-attr]
        fm.hub_edit(value)
        rec.note_keys()
        return f"hub {rec.kind} {hub_id} {name}={value!r}" + (" (answer lost)" if r is LOST
                                                              else "")

    async def op_edit(self, side: str, uid: str, field: str, value: str) -> str:
        rec = self._alive(uid)
        if rec is None:
            return "skipped: deleted"
        return await self.edit(rec, side, field, value)

    async def op_conflict(self, uid: str, field: str, first: str, app: str, hub: str) -> str:
        rec = self._alive(uid)
        if rec is None:
            return "skipped: deleted"
        values = {"app": app, "hub": hub}
        second = "hub" if first == "app" else "app"
        a = await self.edit(rec, first, field, values[first])
        b = await self.edit(rec, second, field, values[second])
        return f"{a}; then {b}"

    async def app_insert(self, kind: str, uid: str, values: dict[str, Any],
                         company: str | None, conn: sqlite3.Connection) -> tuple[str, str | None]:
        cols = {fields_of(kind)[k]: v for k, v in values.items()}
        if kind == "contact":
            cols["email"] = uid
            company_rec = self._alive(company) if company else None
            company_id = self.app_id(company_rec, conn) if company_rec else None
            cols["company_id"] = company_id
            company = company if company_id is not None else None
        names = list(cols)
        cur = conn.execute(f"INSERT INTO {TABLE[kind]} ({', '.join(names)}) VALUES "
                           f"({', '.join('?' * len(names))})", [cols[n] for n in names])
        return str(cur.lastrowid), company

    async def op_insert(self, side: str, uid: str, values: dict[str, Any],
                        company: str | None) -> str:
        kind = "contact" if "@" in uid else "company"
        if side == "app":
            with self.app.tx() as conn:
                app_id, company = await self.app_insert(kind, uid, values, company, conn)
            rec = record_model(kind, uid, "app", values, None)
            rec.app_id, rec.company = app_id, company
            self.model[uid] = rec
            return f"app {kind} {app_id}" + (f" with company {company}" if company else "")
        props = {k: v for k, v in values.items() if v is not None}
        if kind == "contact":
            props["email"] = uid
        rec = record_model(kind, uid, "hub", None, values)
        hub_id = await self.hub_create(rec, props)
        self.model[uid] = rec
        what = f"hub {kind} {hub_id}"
        company_rec = self._alive(company) if company else None
        if kind == "contact" and company_rec is not None and hub_id is not None:
            company_hub = await self.hub_id(company_rec)
            if company_hub is not None:
                await self.associate(hub_id, company_hub)
                rec.company = company
                what += f" with company {company} ({company_hub})"
        return what

    async def hub_create(self, rec: RecModel, props: dict[str, Any]) -> str | None:
        """Creates a record on the hub; its id, or None if the hub refused it (409)."""
        r = await self.hub.call("POST", f"/crm/v3/objects/{HUB_OBJECT[rec.kind]}",
                                {"properties": props})
        if r is LOST:
            mine = [x["id"] for x in await self.hub.live(rec.kind)
                    if all(norm(x["properties"].get(k)) == norm(v) for k, v in props.items())]
            assert len(mine) == 1, f"a create whose answer was lost: {mine}"
            rec.hub_id = mine[0]
            return rec.hub_id
        if r.status_code == 409:  # type: ignore[union-attr]
            return None
        assert r.status_code == 201, r.text  # type: ignore[union-attr]
        rec.hub_id = str(r.json()["id"])  # type: ignore[union-attr]
        return rec.hub_id

    async def associate(self, contact: str, company: str) -> None:
        r = await self.hub.call(
            "PUT", f"/crm/v4/objects/contacts/{contact}/associations/default/companies/{company}")
        assert r is LOST or r.status_code in (200, 201), r.text  # type: ignore[union-attr]

    async def op_twin(self, uid: str, app: dict[str, Any], hub: dict[str, Any],
                      first: str) -> str:
        kind = "contact" if "@" in uid else "company"
        rec = record_model(kind, uid, "twin", app, None)
        rec.twin_values = {"app": app, "hub": hub}
        self.model[uid] = rec
        props = {k: v for k, v in hub.items() if v is not None}
        if kind == "contact":
            props["email"] = uid
        out = []
        for side in (first, "hub" if first == "app" else "app"):
            if side == "app":
                with self.app.tx() as conn:
                    app_id, _ = await self.app_insert(kind, uid, app, None, conn)
                rec.app_id = app_id
                out.append(f"app {kind} {app_id}")
            else:
                hub_id = await self.hub_create(rec, props)
                rec.twin_hub_created = hub_id is not None
                out.append(f"hub {kind} {hub_id}" if hub_id else "hub create refused (exists)")
        return ", ".join(out)

    def _forget_company(self, company: RecModel) -> None:
        for r in self.model.values():
            if r.kind == "contact" and r.company == company.uid:
                r.company = None
                r.company_unsure = not company.delete_known

    async def op_delete(self, side: str, uid: str) -> str:
        rec = self._alive(uid)
        if rec is None:
            return "skipped: deleted"
        if side == "app":
            with self.app.tx() as conn:
                app_id = self.app_id(rec, conn)
                if app_id is None:
                    return "skipped: not in the app (yet)"
                self.app_delete(rec, app_id, conn)
            return f"app {rec.kind} {app_id} deleted" + ("" if rec.delete_known else
                                                         " (crmsync had not paired it)")
        hub_id = await self.hub_id(rec)
        if hub_id is None:
            return "skipped: not on the hub (yet)"
        rec.delete_known = self.paired(rec, "hub", hub_id)
        r = await self.hub.call("DELETE", f"/crm/v3/objects/{HUB_OBJECT[rec.kind]}/{hub_id}")
        assert r is LOST or r.status_code == 204, r.text  # type: ignore[union-attr]
        rec.deleted_on = "hub"
        if rec.kind == "company":
            self._forget_company(rec)  # HubSpot drops an archived record's associations
        return f"hub {rec.kind} {hub_id} deleted" + ("" if rec.delete_known else
                                                      " (crmsync had not paired it)")

    def paired(self, rec: RecModel, side: str, rid: str) -> bool:
        """Whether crmsync paired the record `rid` of `side` (see RecModel.delete_known)."""
        if not self.s.state_db.exists():
            return False
        rows = state_rows(self.s, f"SELECT hub_id, app_id, creating FROM items WHERE sync_id = ? "
                                  f"AND {side}_id = ?", SYNC_ID[rec.kind], rid)
        return any((h and a) or c for h, a, c in rows)

    def app_delete(self, rec: RecModel, app_id: str, conn: sqlite3.Connection) -> None:
        rec.delete_known = self.paired(rec, "app", app_id)
        if rec.kind == "company":
            # What an app's ON DELETE SET NULL does: no contact points at a missing company.
            conn.execute("UPDATE customers SET company_id = NULL, updated_at = "
                         f"{self.s.now_sql} WHERE company_id = ?", (app_id,))
            self._forget_company(rec)
        conn.execute(f"DELETE FROM {TABLE[rec.kind]} WHERE id = ?", (app_id,))
        rec.deleted_on = "app"

    async def op_reuse(self, kind: str, uid: str, values: dict[str, Any]) -> str:
        """Deletes the app's newest row (if it is a live record of the model) and inserts a
        new record, which SQLite gives the same id."""
        with self.app.tx() as conn:
            row = conn.execute(f"SELECT * FROM {TABLE[kind]} ORDER BY id DESC LIMIT 1"
                               ).fetchone()
            deleted = None
            if row is not None:
                keys = set(app_key(kind, dict(row)))
                owners = [r for r in self.model.values()
                          if r.kind == kind and keys & r.keys_of()]
                if len(owners) == 1 and self._alive(owners[0].uid) is not None \
                        and self.app_id(owners[0], conn) == str(row["id"]):
                    deleted = owners[0]
                    self.app_delete(deleted, str(row["id"]), conn)
            app_id, _ = await self.app_insert(kind, uid, values, None, conn)
        rec = record_model(kind, uid, "app", values, None)
        rec.app_id = app_id
        self.model[uid] = rec
        if deleted is None:
            return f"newest row not a live record; app {kind} {app_id} inserted"
        return f"app {kind} {row['id']} ({deleted.uid}) deleted, {uid} inserted as {app_id}"

    async def op_relink(self, side: str, uid: str, company: str | None) -> str:
        rec = self._alive(uid)
        target = self._alive(company) if company else None
        if rec is None or (company and target is None):
            return "skipped: deleted"
        if side == "app":
            with self.app.tx() as conn:
                app_id = self.app_id(rec, conn)
                to = self.app_id(target, conn) if target else None
                if app_id is None or (target and to is None):
                    return "skipped: not in the app (yet)"
                conn.execute(f"UPDATE customers SET company_id = ?, updated_at = "
                             f"{self.s.now_sql} WHERE id = ?", (to, app_id))
            rec.company, rec.company_unsure = company, False
            return f"app contact {app_id} -> company {to}"
        hub_id = await self.hub_id(rec)
        to = await self.hub_id(target) if target else None
        if hub_id is None or (target and to is None):
            return "skipped: not on the hub (yet)"
        r = await self.hub.call("GET", f"/crm/v4/objects/contacts/{hub_id}/associations/companies")
        if r.status_code == 404:  # type: ignore[union-attr]
            return f"skipped: hub contact {hub_id} is gone"
        now = [str(x["toObjectId"]) for x in r.json()["results"]]  # type: ignore[union-attr]
        for old in now:
            if old != to:
                r = await self.hub.call(
                    "DELETE", f"/crm/v4/objects/contacts/{hub_id}/associations/companies/{old}")
                assert r is LOST or r.status_code == 204, r.text  # type: ignore[union-attr]
        if to is not None and to not in now:
            await self.associate(hub_id, to)
        rec.company, rec.company_unsure = company, False
        return f"hub contact {hub_id}: companies {now} -> {to}"


# --- set-up -----------------------------------------------------------------------------------------


def models_from(data: InitialData) -> dict[str, RecModel]:
    out: dict[str, RecModel] = {}
    for kind, app_side, hub_side in (("company", data.app_companies, data.hub_companies),
                                     ("contact", data.app_contacts, data.hub_contacts)):
        for uid in sorted({*app_side, *hub_side}):
            a, h = app_side.get(uid), hub_side.get(uid)
            origin = "both" if a is not None and h is not None else "app" if a else "hub"
            out[uid] = record_model(kind, uid, origin, a, h)
    for uid, company in {**data.app_links, **data.hub_links}.items():
        out[uid].company = company
    return out


async def set_up(s: System, hub: Hub, data: InitialData, rnd: Round) -> None:
    app_companies = sorted(data.app_companies)
    app_company_id = {uid: i + 1 for i, uid in enumerate(app_companies)}
    make_app_db(
        s.app_db, schema=SCHEMA,
        organisations=[{COMPANY_FIELDS[k]: v for k, v in data.app_companies[uid].items()}
                       for uid in app_companies],
        customers=[{"email": uid, **{CONTACT_FIELDS[k]: v for k, v in values.items()},
                    "company_id": app_company_id.get(data.app_links.get(uid, ""))}
                   for uid, values in sorted(data.app_contacts.items())])
    syncs = (contacts_sync(on_delete=rnd.on_delete, extra='associations = ["companies"]\n')
             + companies_sync(on_delete=rnd.on_delete))
    write_config(s.tmp, s.app_db, syncs, connection_extra=ASSOC,
                 hub_extra=f"request_timeout_seconds = {CALL_TIMEOUT}")
    hub_companies = sorted(data.hub_companies)
    seeded = s.emu.seed({
        "companies": [{k: v for k, v in data.hub_companies[uid].items() if v is not None}
                      for uid in hub_companies],
        "contacts": [{"email": uid, **{k: v for k, v in data.hub_contacts[uid].items()
                                       if v is not None}}
                     for uid in sorted(data.hub_contacts)]})
    company_ids = dict(zip(hub_companies, seeded["companies"], strict=True))
    contact_ids = dict(zip(sorted(data.hub_contacts), seeded["contacts"], strict=True))
    inputs = [{"from": {"id": contact_ids[uid]}, "to": {"id": company_ids[company]}}
              for uid, company in sorted(data.hub_links.items())]
    r = await hub.call("POST", "/crm/v4/associations/contacts/companies/batch/associate/default",
                       {"inputs": inputs})
    assert isinstance(r, httpx.Response) and r.status_code in (200, 201), r


# --- waiting for quiescence ------------------------------------------------------------------------


def state_rows(s: System, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(f"file:{s.state_db}?mode=ro", uri=True, timeout=20)
    try:
        return list(conn.execute(sql, params))
    finally:
        conn.close()


def busy(s: System) -> str:
    """What still has work to do ('' when nothing has)."""
    if s.crashes:
        raise AssertionError(f"the daemon crashed: {s.crashes!r}")
    d = s.daemon
    assert d is not None and d.ready.is_set()
    dispatcher = s.emu.dispatcher
    assert dispatcher is not None
    if dispatcher.pending or dispatcher.in_flight:
        return (f"emulator webhooks: {len(dispatcher.pending)} pending, "
                f"{dispatcher.in_flight} in flight")
    phases = state_rows(s, "SELECT phase FROM initial_syncs")
    if sorted(phases) != [("complete",), ("complete",)]:
        return f"initial syncs: {phases}"
    inbox = state_rows(s, "SELECT count(*) FROM inbox WHERE done = 0")[0][0]
    if inbox:
        return f"{inbox} inbox events not done"
    # (A failed item keeps its intent: what is failed is judged by the final check; one
    # failed for a transient reason would be retried after a backoff of 30 s and more.)
    waiting = state_rows(s, "SELECT sync_id, state, count(*) FROM items WHERE state IN "
                            "('queued', 'pending') OR (intent IS NOT NULL AND state != 'failed') "
                            "GROUP BY sync_id, state")
    if waiting:
        return f"items queued, pending or half written: {waiting}"
    return ""


async def observe(hub: Hub, app: App) -> Any:
    """Both sides' records and associations, to tell whether anything still moves."""
    dump = await hub.dump()
    return (
        {k: sorted((x["id"], x.get("archived"), sorted(
            (n, v) for n, v in x["properties"].items() if not n.startswith("hs_")
            and n not in ("lastmodifieddate", "createdate")))
            for x in dump["objects"][k]) for k in ("contacts", "companies")},
        dump["associations"], app.rows("contact"), app.rows("company"))


async def poll_twice(s: System) -> None:
    """Until every poller (hub and app, every object sync) finished a poll begun after now,
    which saw every change made before now."""
    d = s.daemon
    assert d is not None
    handles = [h for obj in HUB_OBJECT.values() if (h := d.handle("shop", obj)) is not None]

    def counts() -> list[int]:
        """Polls made so far, per poller (hub and app of every object sync)."""
        return [pl.polls for h in handles
                for pl in (h.statistics().hub_poller, h.statistics().app_poller)
                if pl is not None]

    assert counts()
    # A poll running now may have begun before now: the one after it did not.
    target = [n + 2 for n in counts()]
    for obj in HUB_OBJECT.values():
        h = d.handle("shop", obj)
        assert h is not None
        h.poll_now()
    while any(n < t for n, t in zip(counts(), target, strict=True)):
        await trio.sleep(0.1)


async def settle(s: System, hub: Hub, app: App, timeout: float) -> None:
    """Until nothing moves any more (see the module docstring)."""
    why = ""
    try:
        with trio.fail_after(timeout):
            while True:
                why = busy(s)
                if why:
                    await trio.sleep(0.5)
                    continue
                before = await observe(hub, app)
                await poll_twice(s)
                why = busy(s)
                if why:
                    continue
                if await observe(hub, app) == before:
                    return
                why = "the sides changed while polling"
    except trio.TooSlowError:
        raise AssertionError(f"not quiescent after {timeout} s: {why}") from None


# --- the final check ------------------------------------------------------------------------------


@dataclass
class Item:
    item_id: int
    kind: str
    hub_id: str | None
    app_id: str | None
    state: str
    category: str
    detail: str
    deleted_side: str


@dataclass
class Final:
    """Everything the check reads, after the daemon stopped."""

    hub: dict[str, dict[str, dict[str, Any]]]  # kind -> hub id -> live record
    app: dict[str, dict[str, dict[str, Any]]]  # kind -> app id -> row
    hub_companies_of: dict[str, set[str]]  # hub contact id -> hub company ids
    items: list[Item]
    pending_assoc: list[tuple[Any, ...]]


async def read_final(s: System, hub: Hub, app: App) -> Final:
    dump = await hub.dump()
    hub_recs = {kind: {x["id"]: x for x in dump["objects"][HUB_OBJECT[kind]]
                       if not x.get("archived")} for kind in TABLE}
    companies_of: dict[str, set[str]] = defaultdict(set)
    for a in dump["associations"]:
        if a["fromType"] == "contact" and a["toType"] == "company":
            companies_of[a["fromId"]].add(a["toId"])
    app_recs = {kind: {str(r["id"]): r for r in app.rows(kind)} for kind in TABLE}
    items = [Item(r[0], "contact" if r[1] == SYNC_ID["contact"] else "company", *r[2:])
             for r in state_rows(s, "SELECT item_id, sync_id, hub_id, app_id, state, category, "
                                    "detail, deleted_side FROM items")]
    pending = state_rows(s, "SELECT from_object, from_side, from_id, to_object, to_id, removed, "
                            "attempts, detail FROM pending_associations")
    return Final(hub_recs, app_recs, companies_of, items, pending)


def hub_values(kind: str, rec: dict[str, Any]) -> dict[str, str | None]:
    return {k: norm(rec["properties"].get(k)) for k in fields_of(kind)}


def app_values(kind: str, row: dict[str, Any]) -> dict[str, str | None]:
    return {k: norm(row[c]) for k, c in fields_of(kind).items()}


def check(f: Final, model: dict[str, RecModel], on_delete: str) -> list[str]:
    """Every way the end state is wrong (empty: right)."""
    bad: list[str] = []
    by_hub: dict[tuple[str, str], list[Item]] = defaultdict(list)
    by_app: dict[tuple[str, str], list[Item]] = defaultdict(list)
    for it in f.items:
        if it.hub_id:
            by_hub[it.kind, it.hub_id].append(it)
        if it.app_id:
            by_app[it.kind, it.app_id].append(it)

    def owner(kind: str, keys: list[tuple[str, str]]) -> RecModel | None:
        found = [r for r in model.values() if r.kind == kind and set(keys) & r.keys_of()]
        return found[0] if len(found) == 1 else None

    # 1. Every record on each side: in exactly one item, of the record the model knows by its
    #    key; linked items link records of the same logical record.
    linked: dict[str, dict[str, str]] = {"contact": {}, "company": {}}  # hub id -> app id
    on_side: dict[tuple[str, str], list[str]] = defaultdict(list)  # (uid, side) -> ids
    for kind in TABLE:
        for side, recs, index in (("hub", f.hub[kind], by_hub), ("app", f.app[kind], by_app)):
            for rid, rec in recs.items():
                keys = (hub_key(kind, rec["properties"]) if side == "hub"
                        else app_key(kind, rec))
                m = owner(kind, keys)
                if m is None:
                    bad.append(f"{side} {kind} {rid} {keys}: no record of the model has its key")
                    continue
                on_side[m.uid, side].append(rid)
                its = index[kind, rid]
                if len(its) != 1:
                    bad.append(f"{side} {kind} {rid} ({m.uid}) is in {len(its)} items: {its}")
        for it in (i for i in f.items if i.kind == kind and i.state == "syncing"):
            h, a = f.hub[kind].get(it.hub_id or ""), f.app[kind].get(it.app_id or "")
            if h is None or a is None:
                bad.append(f"{kind} item {it.item_id} syncing, but a record is missing: "
                           f"hub {it.hub_id} {'ok' if h else 'gone'}, "
                           f"app {it.app_id} {'ok' if a else 'gone'}")
                continue
            mh = owner(kind, hub_key(kind, h["properties"]))
            ma = owner(kind, app_key(kind, a))
            if mh is not ma:
                bad.append(f"{kind} item {it.item_id} links two records: hub {it.hub_id} "
                           f"({mh and mh.uid}) and app {it.app_id} ({ma and ma.uid})")
                continue
            linked[kind][it.hub_id] = it.app_id  # type: ignore[index]
            hv, av = hub_values(kind, h), app_values(kind, a)
            if kind == "contact":
                hv["email"] = norm(h["properties"].get("email"))
                av["email"] = norm(a["email"])
            for name in hv:
                if hv[name] != av[name]:
                    bad.append(f"{mh and mh.uid}: hub {kind} {it.hub_id} {name}={hv[name]!r} "
                               f"but app {it.app_id} {name}={av[name]!r}")
        for it in (i for i in f.items if i.kind == kind and i.state not in ("syncing",
                                                                             "deleted")):
            ok = it.state == "failed" and it.category == "duplicate"
            if not ok:
                bad.append(f"{kind} item {it.item_id} (hub {it.hub_id}, app {it.app_id}) is "
                           f"{it.state} {it.category}: {it.detail}")

    # 2. Every linked contact: the same linked company on both sides.
    app_of_hub = {k: dict(v) for k, v in linked.items()}
    hub_of_app = {k: {a: h for h, a in v.items()} for k, v in linked.items()}

    def companies(h_id: str, a_id: str) -> tuple[set[str], set[str], Any]:
        """A linked contact's linked companies on each side, as hub ids."""
        hub_cos = {c for c in f.hub_companies_of.get(h_id, set()) if c in app_of_hub["company"]}
        app_co = f.app["contact"][a_id]["company_id"]
        app_cos = ({hub_of_app["company"][str(app_co)]}
                   if app_co is not None and str(app_co) in hub_of_app["company"] else set())
        return hub_cos, app_cos, app_co

    for h_id, a_id in linked["contact"].items():
        hub_cos, app_cos, app_co = companies(h_id, a_id)
        if hub_cos != app_cos:
            bad.append(f"contact hub {h_id} / app {a_id}: companies hub {sorted(hub_cos)}, "
                       f"app {sorted(app_cos)} (company_id {app_co})")

    # 3. Per record of the model: the records each side holds, their links, values and company.
    for uid, m in sorted(model.items()):
        k = m.kind
        hubs, apps = on_side.get((uid, "hub"), []), on_side.get((uid, "app"), [])
        pairs = [(h, app_of_hub[k][h]) for h in hubs if h in app_of_hub[k]]
        if m.alive and m.origin != "twin":
            if len(hubs) != 1 or len(apps) != 1 or len(pairs) != 1:
                bad.append(f"{uid}: want one linked record per side, got hub {hubs}, app {apps}, "
                           f"linked {pairs}")
                continue
            want = m.expected()
        elif m.alive:  # twins
            if len(pairs) != 1 or len(hubs) + len(apps) > 3 or len(hubs) > 2 or len(apps) > 2:
                bad.append(f"{uid} (twin): want one linked pair and at most one duplicate, got "
                           f"hub {hubs}, app {apps}, linked {pairs}")
                continue
            hub_linked = pairs[0][0]
            for extra in [*(("hub", h) for h in hubs if h != hub_linked),
                          *(("app", a) for a in apps if a != pairs[0][1])]:
                index = by_hub if extra[0] == "hub" else by_app
                its = index[k, extra[1]]
                it = its[0] if len(its) == 1 else None  # several: reported above
                # The record on the same side that holds the key is named.
                holder = pairs[0][0] if extra[0] == "hub" else pairs[0][1]
                if it is None or it.state != "failed" or it.category != "duplicate" \
                        or holder not in it.detail:
                    bad.append(f"{uid} (twin): {extra[0]} {extra[1]} is not failed as a "
                               f"duplicate of {holder}: {it}")
            hub_made = m.twin_hub_created and (k == "contact" or hub_linked == m.hub_id)
            want = dict(m.twin_values["hub" if hub_made else "app"])
        else:
            gone = m.deleted_on
            survivors = apps if gone == "hub" else hubs
            deleted = hubs if gone == "hub" else apps
            if not m.delete_known and len(pairs) == 1 and len(hubs) == len(apps) == 1:
                # Deleted before crmsync paired it: its other side went on as a record of
                # its own and was copied back (its values are checked equal above).
                continue
            if deleted:
                bad.append(f"{uid}: deleted on the {gone}, but the {gone} holds {deleted}")
            if on_delete == "propagate" and survivors:
                bad.append(f"{uid}: deleted on the {gone}, on_delete=propagate, but the other "
                           f"side holds {survivors}")
            if len(survivors) > 1:
                bad.append(f"{uid}: deleted on the {gone}; the other side holds several: "
                           f"{survivors}")
            for rid in survivors:
                index = by_app if gone == "hub" else by_hub
                its = index[k, rid]
                if [(i.state, i.deleted_side) for i in its] != [("deleted", gone)]:
                    bad.append(f"{uid}: deleted on the {gone}; the survivor {rid} is in {its}")
            continue
        h_id, a_id = pairs[0]
        got_h = hub_values(k, f.hub[k][h_id])
        got_a = app_values(k, f.app[k][a_id])
        for name, value in want.items():
            if got_h[name] != value or got_a[name] != value:
                fm = m.fields[name]
                bad.append(f"{uid} {name}: want {value!r}, hub {h_id} has {got_h[name]!r}, "
                           f"app {a_id} has {got_a[name]!r}; edits: "
                           f"{[(e.side, e.value, e.informed) for e in fm.edits]}")
        if k == "contact":
            hub_cos, app_cos, app_co = companies(h_id, a_id)
            want_co = set()
            if m.company is not None and m.origin != "twin":
                cm = model[m.company]
                linked_co = [h for h in on_side.get((cm.uid, "hub"), [])
                             if h in app_of_hub["company"]]
                want_co = set(linked_co[:1]) if cm.alive else set()
            if not m.company_unsure and not (hub_cos == app_cos == want_co):
                bad.append(f"{uid}: companies hub {sorted(hub_cos)}, app {sorted(app_cos)} "
                           f"(company_id {app_co}), want {sorted(want_co)} ({m.company})")

    # 4. No app row points at a company that does not exist.
    for a_id, row in f.app["contact"].items():
        if row["company_id"] is not None and str(row["company_id"]) not in f.app["company"]:
            bad.append(f"app contact {a_id} ({row['email']}) points at missing company "
                       f"{row['company_id']}")

    # 5. An association waits only while its record is linked and its partner is not (a
    #    partner deleted on that side waits for restore-deleted); anything else waits for ever.
    for row in f.pending_assoc:
        from_object, from_side, from_id, to_object, to_id = row[:5]
        of = "contact" if from_object == "contacts" else "company"
        to = "contact" if to_object == "contacts" else "company"
        index = by_hub if from_side == "hub" else by_app
        waiting = index.get((of, from_id), [])
        partner = (by_hub if from_side == "hub" else by_app).get((to, to_id), [])
        if [i.state for i in waiting] != ["syncing"] or any(
                i.state == "syncing" for i in partner):
            bad.append(f"association waits for ever: {row}; the waiting record's items "
                       f"{waiting}, its partner's {partner}")
    return bad


# --- the test --------------------------------------------------------------------------------------


TICK = 0.25


async def tick() -> None:
    """Keeps a timer due within TICK seconds, so that the MockClock never jumps further.

    The clock jumps to the next deadline once every task has been blocked for 20 ms of real
    time, and a task waiting on the store's thread (a commit with fsync on a busy machine)
    counts as blocked: with only far deadlines pending (a request timeout, the test's bound)
    one slow commit would fire them. With this, firing a 2 s request timeout takes 8 jumps,
    160 ms of real time with every task blocked."""
    while True:
        await trio.sleep(TICK)


# Seeds run in CI (10-20 s each), the ones that passed every run (1, 4 and 6: 3 to 6 runs
# each; 2, 3 and 13, which showed the defects of the module docstring before their fixes:
# 10 runs each after them). More with CRMSYNC_RANDOM_SEEDS="4-40" (or "7,9").
CI_SEEDS = [1, 2, 3, 4, 6, 13]


def _seeds() -> list[int]:
    spec = os.environ.get("CRMSYNC_RANDOM_SEEDS", "")
    if not spec:
        return CI_SEEDS
    out: list[int] = []
    for part in spec.split(","):
        lo, _, hi = part.partition("-")
        out += list(range(int(lo), int(hi or lo) + 1))
    return out


ROUNDS = [Round(seed=n, on_delete="propagate" if n % 2 == 0 else "mark") for n in _seeds()]


@pytest.mark.parametrize("rnd", ROUNDS, ids=[f"seed{r.seed}-{r.on_delete}" for r in ROUNDS])
async def test_random_edits_kills_and_faults_converge(tmp_path, slow_autojump, rnd):
    data = initial_data(random.Random(rnd.seed))
    plan = make_plan(rnd, data)
    model = models_from(data)
    rng = random.Random(rnd.seed)
    # Bounds in the test's (virtual) time: the plan takes a few minutes of it.
    with trio.fail_after(3600):
        async with trio.open_nursery() as nursery:
            s = System(tmp_path, nursery)
            nursery.start_soon(tick)
            nursery.start_soon(s.emu.run_webhooks, s.hooks)
            hub, app = Hub(s), App(s)
            runner = Runner(s, rnd, hub, app, model)
            try:
                await set_up(s, hub, data, rnd)
                await s.start_daemon()
                runner.note("START daemon-1")
                for i, op in enumerate(plan):
                    result = await runner.run_op(op)
                    runner.note(f"#{i} {op}\n            -> {result}")
                    await trio.sleep(rng.uniform(0.01, 0.08))
                s.set_faults()
                if s.daemon is None:
                    await s.start_daemon()
                await settle(s, hub, app, timeout=1800)
                runner.note("quiescent")
                await s.stop()
                assert not s.crashes, s.crashes
                final = await read_final(s, hub, app)
                bad = check(final, model, rnd.on_delete)
                assert state_rows(s, "PRAGMA integrity_check") == [("ok",)]
                with app.tx() as conn:
                    assert [tuple(r) for r in conn.execute("PRAGMA integrity_check")] == [("ok",)]
                assert not bad, f"{len(bad)} problems:\n  " + "\n  ".join(bad[:40])
            except BaseException:
                print(f"round {rnd} in {tmp_path}; plan and what each step did:\n"
                      + "\n".join(runner.log))
                raise
            finally:
                with trio.CancelScope(shield=True):
                    await hub.aclose()
                    await s.hooks.aclose()
                nursery.cancel_scope.cancel()
