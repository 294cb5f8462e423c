"""Crash anywhere (the FoundationDB / Jepsen shape): `crmsync run` is SIGKILLed at seeded random
moments of its initial sync and of its incremental sync (while the test keeps editing both
sides), restarted, killed again; afterwards both sides must equal the test's reference model.

Checked after every round:
- every overlapping contact paired, every one-sided contact present on both sides, every edit's
  final value on both sides (the model says which value wins: the last edit of a record, or the
  conflict winner where both sides changed while the daemon was down);
- no contact created twice on either side (emails unique);
- no acknowledged change lost: every edit the app or the hub acknowledged arrives, and the
  webhook inbox is drained (every event HubSpot was answered 2xx for got processed);
- every record's state is right (`syncing`, linked both ways, one item per record), read from
  the state DB with sqlite3 after the daemon stopped, whose `PRAGMA integrity_check` is ok.

Two deterministic tests pin the narrowest windows down: a SIGKILL after a write landed on the
other side but before crmsync committed it (the emulator's `hang_after_apply_rate = 1` holds the
daemon right there), followed by a newer edit of the same record.

Real processes and the real clock: each round is bounded by `trio.fail_after`, and every process
is killed in teardown. A failing round prints its seed and its event log.
"""

from __future__ import annotations

import random
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import trio

from .procs import System, system

pytestmark = pytest.mark.slow

PROPS = ("firstname", "lastname", "jobtitle")  # the mapped fields the test edits
APP_COLUMN = {"firstname": "first_name", "lastname": "last_name", "jobtitle": "job_title",
              "phone": "phone"}
MODEL_PROPS = (*PROPS, "phone")
SYNC_ID = "shop/contacts"


# --- the reference model ------------------------------------------------------------------------


def _norm(v: Any) -> str | None:
    return None if v in (None, "") else str(v)


@dataclass
class Model:
    """What both sides must hold in the end: email -> mapped hub property -> value."""

    expected: dict[str, dict[str, str | None]] = field(default_factory=dict)
    # Per incremental phase: which side a record is edited on (one side only, so the last
    # edit is the final value whatever the timing).
    edit_side: dict[str, str] = field(default_factory=dict)
    # Records created during the current phase: not edited again in it (see
    # test_kill_after_a_create_landed_before_its_link_keeps_a_newer_edit for why).
    fresh: set[str] = field(default_factory=set)
    log: list[str] = field(default_factory=list)
    t0: float = field(default_factory=time.monotonic)

    def note(self, what: str) -> None:
        self.log.append(f"{time.monotonic() - self.t0:7.2f} {what}")

    def mismatches(self, hub: dict[str, dict[str, Any]], app: dict[str, dict[str, Any]]
                   ) -> list[str]:
        out = []
        if set(hub) != set(self.expected):
            out.append(f"hub emails: missing {sorted(set(self.expected) - set(hub))[:5]}, "
                       f"extra {sorted(set(hub) - set(self.expected))[:5]}")
        if set(app) != set(self.expected):
            out.append(f"app emails: missing {sorted(set(self.expected) - set(app))[:5]}, "
                       f"extra {sorted(set(app) - set(self.expected))[:5]}")
        for email, want in sorted(self.expected.items()):
            h, a = hub.get(email), app.get(email)
            for prop, value in want.items():
                if h is not None and _norm(h["properties"].get(prop)) != value:
                    out.append(f"{email} hub {prop}={h['properties'].get(prop)!r}, "
                               f"want {value!r}")
                if a is not None and _norm(a[APP_COLUMN[prop]]) != value:
                    out.append(f"{email} app {APP_COLUMN[prop]}={a[APP_COLUMN[prop]]!r}, "
                               f"want {value!r}")
        return out

    def history(self, email: str) -> list[str]:
        return [x for x in self.log if email in x]


def initial_data(rng: random.Random, n_app: int, n_hub: int, n_both: int, conflicts: int
                 ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], Model]:
    """App rows, hub contacts and the model after the initial sync (hub wins conflicts; an
    empty field takes the other side's value)."""
    model = Model()
    app_rows: list[dict[str, Any]] = []
    hub_recs: list[dict[str, Any]] = []
    lasts = ["Lee", "Ng", "Smith", "Okafor", "Novak", "Ito", "Silva"]

    def values(prefix: str, i: int) -> dict[str, str | None]:
        return {"firstname": f"{prefix}{i}", "lastname": rng.choice(lasts),
                "jobtitle": rng.choice([None, "CEO", "Engineer", "Buyer"]),
                "phone": rng.choice([None, f"+1 555 {i:04d}"])}

    def app_row(email: str, v: dict[str, str | None]) -> dict[str, Any]:
        return {"email": email, **{APP_COLUMN[p]: x for p, x in v.items()}}

    def hub_rec(email: str, v: dict[str, str | None]) -> dict[str, Any]:
        return {"email": email, **{p: x for p, x in v.items() if x is not None}}

    for i in range(n_app):
        email, v = f"a{i}@example.com", values("A", i)
        app_rows.append(app_row(email, v))
        model.expected[email] = dict(v)
    for i in range(n_hub):
        email, v = f"h{i}@example.com", values("H", i)
        hub_recs.append(hub_rec(email, v))
        model.expected[email] = dict(v)
    for i in range(n_both):
        email = f"b{i}@example.com"
        av = values("B", i)
        hv = dict(av)
        if i < conflicts:  # both hold a different last name: the hub wins
            hv["lastname"] = f"HubOnly{i}"
        elif i % 4 == 1:  # only the app knows the phone: it fills the hub's
            av["phone"], hv["phone"] = f"+44 20 {i:04d}", None
        elif i % 4 == 2:  # only the hub knows the job title: it fills the app's
            av["jobtitle"], hv["jobtitle"] = None, "Founder"
        app_rows.append(app_row(email, av))
        hub_recs.append(hub_rec(email, hv))
        model.expected[email] = {p: hv[p] if hv[p] is not None else av[p] for p in hv}
    rng.shuffle(app_rows)
    rng.shuffle(hub_recs)
    return app_rows, hub_recs, model


# --- checks ---------------------------------------------------------------------------------


async def sides(s: System) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]],
                                   list[str], list[str]]:
    hub_list = await s.hub_contacts()
    app_list = s.app_rows()
    hub_emails = [str(c["properties"].get("email") or "").strip().lower() for c in hub_list]
    app_emails = [str(r["email"] or "").strip().lower() for r in app_list]
    hub = {e: c for e, c in zip(hub_emails, hub_list, strict=True)}
    app = {e: r for e, r in zip(app_emails, app_list, strict=True)}
    return hub, app, hub_emails, app_emails


def duplicates(emails: list[str]) -> list[str]:
    seen: set[str] = set()
    return sorted({e for e in emails if e in seen or seen.add(e)})  # type: ignore[func-returns-value]


async def wait_converged(s: System, model: Model, timeout: float, what: str) -> None:
    """Until both sides equal the model; a duplicate is a failure at once."""
    deadline = trio.current_time() + timeout
    last: list[str] = []
    while True:
        hub, app, hub_emails, app_emails = await sides(s)
        dupes = duplicates(hub_emails), duplicates(app_emails)
        assert dupes == ([], []), f"{what}: created twice (hub, app): {dupes}"
        last = model.mismatches(hub, app)
        if not last:
            return
        if trio.current_time() > deadline:
            raise AssertionError(f"{what}: not converged after {timeout} s:\n  "
                                 + "\n  ".join(last[:25]) + "\n" + explain(model, last))
        assert s.daemon is not None
        if s.daemon.returncode is not None:
            raise AssertionError(f"{what}: the daemon died:\n{s.daemon.tail()}")
        await trio.sleep(0.25)


def explain(model: Model, mismatches: list[str]) -> str:
    emails = sorted({m.split()[0] for m in mismatches if "@" in m.split()[0]})[:5]
    return "\n".join(f"history of {e}:\n    " + "\n    ".join(model.history(e) or ["(none)"])
                     for e in emails)


def state_counts(s: System) -> dict[str, int]:
    return dict(s.state_rows("SELECT state, count(*) FROM items WHERE sync_id = ? "
                             "GROUP BY state", SYNC_ID))


async def wait_inbox_drained(s: System, timeout: float = 90) -> None:
    """Until the emulator has nothing left to deliver (echoes of the daemon's own writes keep
    arriving after convergence) and the daemon has processed everything it stored."""
    with trio.fail_after(timeout):
        quiet = 0
        while quiet < 2:
            webhooks = (await s.hub.get("/_emulator/webhooks")).json()
            undone = s.state_rows("SELECT count(*) FROM inbox WHERE done = 0")[0][0]
            busy = webhooks["pending"] or webhooks["inFlight"] or undone
            quiet = 0 if busy else quiet + 1
            await trio.sleep(0.2)


async def check_final_state(s: System, model: Model) -> None:
    """After the daemon stopped: items, states, links and the database's integrity."""
    assert s.state_rows("PRAGMA integrity_check") == [("ok",)]
    hub, app, _, _ = await sides(s)
    rows = s.state_rows("SELECT item_id, hub_id, app_id, state, category, detail FROM items "
                        "WHERE sync_id = ?", SYNC_ID)
    bad = [r for r in rows if r[3] != "syncing" or not r[1] or not r[2]]
    assert not bad, f"items not syncing and linked: {bad[:10]}"
    assert len(rows) == len(model.expected), (len(rows), len(model.expected))
    hub_ids = [r[1] for r in rows]
    app_ids = [r[2] for r in rows]
    assert len(set(hub_ids)) == len(hub_ids), "a hub record is in two items"
    assert len(set(app_ids)) == len(app_ids), "an app record is in two items"
    assert set(hub_ids) == {c["id"] for c in hub.values()}
    assert set(app_ids) == {str(r["id"]) for r in app.values()}
    # Each item links the two records of the same contact.
    by_hub = {c["id"]: e for e, c in hub.items()}
    by_app = {str(r["id"]): e for e, r in app.items()}
    crossed = [r for r in rows if by_hub[r[1]] != by_app[r[2]]]
    assert not crossed, f"items linking different contacts: {crossed[:5]}"
    assert s.state_rows("SELECT count(*) FROM inbox WHERE done = 0") == [(0,)]
    phases = s.state_rows("SELECT phase FROM initial_syncs WHERE sync_id = ?", SYNC_ID)
    assert phases == [("complete",)], phases


# --- driving the system ---------------------------------------------------------------------


def decisions_logged(s: System) -> int:
    assert s.daemon is not None
    return s.daemon.count('"sync decision"')


async def kill(s: System, model: Model, why: str) -> None:
    d = s.daemon
    assert d is not None
    d.kill()
    await d.wait(10)
    model.note(f"KILL {d.name} ({why}) after {decisions_logged(s)} decisions")


async def restart(s: System, model: Model, rng: random.Random) -> None:
    await trio.sleep(rng.uniform(0, 0.3))
    d = await s.start_daemon()
    model.note(f"START {d.name}")


async def initial_complete(s: System) -> bool:
    if not s.state_db.exists():  # never let the test's reader create it
        return False
    try:
        return s.state_rows("SELECT phase FROM initial_syncs WHERE sync_id = ?",
                            SYNC_ID) == [("complete",)]
    except Exception:  # not created yet
        return False


class Editor:
    """Edits both sides while the daemon runs, dies and restarts, and keeps the model."""

    def __init__(self, s: System, model: Model, rng: random.Random, hub_ids: dict[str, str],
                 faults: bool) -> None:
        self.s = s
        self.model = model
        self.rng = rng
        self.hub_ids = hub_ids
        self.n = 0
        self.faults = faults
        # Most edits go to a few hot records: repeated edits of one record while the daemon
        # is killed and restarted are where changes get lost.
        editable = sorted(e for e in model.expected if e not in model.fresh)
        self.hot = rng.sample(editable, 12)
        self.editable = editable

    def pick(self) -> str:
        pool = self.hot if self.rng.random() < 0.7 else self.editable
        return self.rng.choice(pool)

    async def hub_write(self, fn: Callable[[], Any], check: Callable[[], Any]) -> None:
        """A write to the hub; with the lost-answer fault on, a timeout means it was applied
        (the fault holds the answer of an applied write back), which `check` confirms."""
        try:
            await fn()
        except httpx.TimeoutException:
            assert self.faults, "the emulator stopped answering"
            assert await check(), "a write whose answer was lost did not apply"

    async def one(self) -> None:
        self.n += 1
        n, rng, model = self.n, self.rng, self.model
        op = rng.random()
        if op < 0.06:  # a new customer in the app
            email = f"new-app-{n}@example.com"
            v = {"firstname": f"NA{n}", "lastname": f"NewApp{n}", "jobtitle": None,
                 "phone": None}
            self.s.app_exec("INSERT INTO customers (email, first_name, last_name) "
                            "VALUES (?, ?, ?)", email, v["firstname"], v["lastname"])
            model.expected[email], model.edit_side[email] = v, "app"
            model.fresh.add(email)
            model.note(f"app insert {email}")
            return
        if op < 0.12:  # a new contact in the hub
            email = f"new-hub-{n}@example.com"
            v = {"firstname": f"NH{n}", "lastname": f"NewHub{n}", "jobtitle": "Analyst",
                 "phone": None}
            props = {"email": email, **{k: x for k, x in v.items() if x}}
            holder: list[str] = []

            async def create() -> None:
                holder.append(await self.s.hub_create(props))

            async def created() -> bool:
                return email in await self.s.hub_by_email()

            await self.hub_write(create, created)
            model.expected[email], model.edit_side[email] = v, "hub"
            model.fresh.add(email)
            model.note(f"hub create {email}")
            return
        email = self.pick()
        side = model.edit_side.setdefault(email, rng.choice(["app", "hub"]))
        prop = rng.choice(PROPS)
        value = f"{prop[:2]}-{side}-{n}"
        if side == "app":
            self.s.app_exec(f"UPDATE customers SET {APP_COLUMN[prop]} = ?, updated_at = "
                            f"{self.s.now_sql} WHERE lower(email) = ?", value, email)
        else:
            hub_id = self.hub_ids[email]

            async def update() -> None:
                await self.s.hub_update(hub_id, {prop: value})

            async def updated() -> bool:
                rec = (await self.s.hub_by_email())[email]
                return rec["properties"].get(prop) == value

            await self.hub_write(update, updated)
        model.expected[email][prop] = value
        model.note(f"{side} edit {email} {prop}={value}")

    async def run(self, duration: float) -> None:
        end = trio.current_time() + duration
        while trio.current_time() < end:
            await self.one()
            await trio.sleep(self.rng.uniform(0.01, 0.06))


@dataclass(frozen=True)
class Round:
    seed: int
    initial_kills: int
    incremental_kills: int
    conflicts_while_down: bool = False
    faults: bool = False


ROUNDS = [
    Round(seed=11, initial_kills=2, incremental_kills=2),
    Round(seed=22, initial_kills=3, incremental_kills=2, conflicts_while_down=True),
    Round(seed=33, initial_kills=1, incremental_kills=4),
    Round(seed=44, initial_kills=2, incremental_kills=3, conflicts_while_down=True),
    Round(seed=55, initial_kills=2, incremental_kills=2, faults=True),
    Round(seed=66, initial_kills=3, incremental_kills=3),
]


@pytest.mark.parametrize("rnd", ROUNDS, ids=[
    f"seed{r.seed}{'-faults' if r.faults else ''}" for r in ROUNDS])
async def test_sigkill_during_initial_and_incremental_sync_then_converge(tmp_path, rnd):
    rng = random.Random(rnd.seed)
    app_rows, hub_recs, model = initial_data(rng, n_app=200, n_hub=200, n_both=90, conflicts=2)
    with trio.fail_after(150):
        async with system(tmp_path) as s:
            try:
                await run_round(s, rnd, rng, app_rows, hub_recs, model)
            finally:
                # Shown by pytest when the round fails (or with -s).
                milestones = [x for x in model.log if "KILL" in x or "START" in x
                              or "converged" in x or "conflict" in x]
                print(f"round {rnd}: {len(model.log)} events; milestones:\n"
                      + "\n".join(milestones) + "\nlast events:\n"
                      + "\n".join(model.log[-60:]))
                if s.daemon is not None:
                    print(s.daemon.tail(40))


# The same crash-anywhere rounds with a PostgreSQL app (its change log is acknowledged, not
# read by cursor: a killed daemon must get every unacknowledged change again).
PG_ROUNDS = [
    Round(seed=77, initial_kills=2, incremental_kills=3, conflicts_while_down=True),
    Round(seed=88, initial_kills=3, incremental_kills=2),
]


@pytest.mark.parametrize("rnd", PG_ROUNDS, ids=[f"seed{r.seed}" for r in PG_ROUNDS])
async def test_sigkill_with_a_postgres_app_then_converge(tmp_path, rnd, pg_db):
    rng = random.Random(rnd.seed)
    app_rows, hub_recs, model = initial_data(rng, n_app=200, n_hub=200, n_both=90, conflicts=2)
    with trio.fail_after(180):
        async with system(tmp_path, pg=pg_db) as s:
            try:
                await run_round(s, rnd, rng, app_rows, hub_recs, model)
            finally:
                milestones = [x for x in model.log if "KILL" in x or "START" in x
                              or "converged" in x or "conflict" in x]
                print(f"round {rnd}: {len(model.log)} events; milestones:\n"
                      + "\n".join(milestones) + "\nlast events:\n"
                      + "\n".join(model.log[-60:]))
                if s.daemon is not None:
                    print(s.daemon.tail(40))


async def run_round(s: System, rnd: Round, rng: random.Random, app_rows: list[dict[str, Any]],
                    hub_recs: list[dict[str, Any]], model: Model) -> None:
    s.make_app_db(app_rows)
    s.write_config()
    if rnd.faults:
        text = s.config.read_text().replace("request_timeout_seconds = 5",
                                            "request_timeout_seconds = 1.5")
        s.config.write_text(text)
    await s.start_emulator()
    await s.seed_hub(hub_recs)
    if rnd.faults:
        await s.set_faults(hang_after_apply_rate=0.2, seed=rnd.seed)
        s.hub.timeout = httpx.Timeout(3.0)

    # 1. Initial sync, killed at random moments: after a random number of sync decisions,
    #    or a random time after the start (which may fall before the store is even open).
    await s.start_daemon()
    model.note("START daemon-1")
    for _ in range(rnd.initial_kills):
        if rng.random() < 0.6:
            target = decisions_logged(s) + rng.randint(0, 250)
            with trio.move_on_after(20):
                polls = 0
                while decisions_logged(s) < target:
                    polls += 1
                    if polls % 40 == 0 and await initial_complete(s):
                        break
                    await trio.sleep(0.005)
            why = f"initial sync, at decision {target}"
        else:
            delay = rng.uniform(0.3, 1.5)
            await trio.sleep(delay)
            why = f"initial sync, {delay:.2f} s after start"
        if await initial_complete(s):
            why += " (it had completed)"
        await kill(s, model, why)
        await restart(s, model, rng)
    await wait_converged(s, model, 60, "after the initial sync")
    with trio.fail_after(30):
        while not await initial_complete(s):
            await trio.sleep(0.1)
    model.note("initial sync converged")

    # 2. Incremental sync: the test edits both sides while the daemon is killed and restarted.
    hub_ids = {e: c["id"] for e, c in (await s.hub_by_email()).items()}
    editor = Editor(s, model, rng, hub_ids, rnd.faults)
    duration = 8.0

    async def killer() -> None:
        for _ in range(rnd.incremental_kills):
            await trio.sleep(rng.uniform(0.3, duration / rnd.incremental_kills))
            await kill(s, model, "incremental sync")
            await restart(s, model, rng)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(editor.run, duration)
        nursery.start_soon(killer)

    # 3. Both sides change the same records while the daemon is down: the hub wins.
    if rnd.conflicts_while_down:
        await kill(s, model, "before conflicting edits")
        untouched = sorted(e for e in model.expected
                           if e.startswith("b") and e not in model.edit_side)
        for i, email in enumerate(rng.sample(untouched, 3)):
            s.app_exec("UPDATE customers SET last_name = ? WHERE lower(email) = ?",
                       f"ConflictApp{i}", email)
            await s.hub_update(hub_ids[email], {"lastname": f"ConflictHub{i}"})
            model.expected[email]["lastname"] = f"ConflictHub{i}"
            model.note(f"conflict {email}: app ConflictApp{i}, hub ConflictHub{i}")
        await restart(s, model, rng)

    # 4. Converge, drain, stop, check the state database.
    if rnd.faults:
        await s.set_faults()
    await wait_converged(s, model, 60, "after the incremental sync")
    model.note("incremental sync converged")
    await wait_inbox_drained(s)
    assert s.daemon is not None
    s.daemon.signal(signal.SIGTERM)
    assert await s.daemon.wait(20) == 0, s.daemon.tail()
    await check_final_state(s, model)
    # Every daemon started in this round either was killed or stopped cleanly: none crashed.
    for d in s.daemons:
        assert d.returncode in (0, -9), (d.name, d.returncode, d.tail())
        assert "Traceback" not in d.stderr(), d.tail()


# --- the narrow windows, deterministically -------------------------------------------------------

SMALL_APP = [{"email": f"w{i}@example.com", "first_name": f"W{i}", "last_name": "Start"}
             for i in range(5)]


async def _start_small(s: System) -> None:
    s.make_app_db(SMALL_APP)
    s.write_config()
    await s.start_emulator()
    d = await s.start_daemon()
    await d.wait_for_event("initial sync complete", timeout=30)


async def _app_value(s: System, email: str) -> Any:
    return s.app_by_email()[email]["last_name"]


async def _wait_hub(s: System, email: str, value: str, timeout: float = 20) -> None:
    with trio.fail_after(timeout):
        while True:
            rec = (await s.hub_by_email()).get(email)
            if rec is not None and rec["properties"].get("lastname") == value:
                return
            await trio.sleep(0.05)


async def test_kill_after_an_update_landed_before_its_commit_keeps_a_newer_edit(tmp_path):
    """The app edits a contact (v2); crmsync writes v2 to the hub, which applies it, and dies
    before committing the new snapshot. Meanwhile the app edits the contact again (v3). After
    the restart the newer app edit must win: nobody but crmsync itself changed the hub."""
    with trio.fail_after(90):
        async with system(tmp_path) as s:
            await _start_small(s)
            email = "w1@example.com"
            await s.set_faults(hang_after_apply_rate=1.0)  # every write lands, no answer
            s.app_exec("UPDATE customers SET last_name = 'Second' WHERE email = ?", email)
            await _wait_hub(s, email, "Second")  # crmsync's write landed
            s.app_exec("UPDATE customers SET last_name = 'Third' WHERE email = ?", email)
            s.daemon.kill()
            await s.daemon.wait(10)
            await s.set_faults()
            await s.start_daemon()
            with trio.move_on_after(10):
                await _wait_hub(s, email, "Third")
            hub = (await s.hub_by_email())[email]["properties"]["lastname"]
            app = await _app_value(s, email)
            assert (hub, app) == ("Third", "Third"), (
                f"the app's newer edit was lost: hub={hub!r} app={app!r}\n{s.daemon.tail(15)}")


async def test_kill_after_a_create_landed_before_its_link_keeps_a_newer_edit(tmp_path):
    """A new app row (v1) is created in the hub by crmsync, which dies before committing the
    link. The app edits the row (v2). After the restart, healing by matching finds the hub
    record crmsync created; the app's newer edit must win, not the copy crmsync made."""
    with trio.fail_after(90):
        async with system(tmp_path) as s:
            await _start_small(s)
            email = "fresh@example.com"
            await s.set_faults(hang_after_apply_rate=1.0)
            s.app_exec("INSERT INTO customers (email, first_name, last_name) "
                       "VALUES (?, 'Fresh', 'First')", email)
            await _wait_hub(s, email, "First")  # crmsync's create landed
            s.app_exec("UPDATE customers SET last_name = 'Second' WHERE email = ?", email)
            s.daemon.kill()
            await s.daemon.wait(10)
            await s.set_faults()
            await s.start_daemon()
            with trio.move_on_after(10):
                await _wait_hub(s, email, "Second")
            hub = (await s.hub_by_email())[email]["properties"]["lastname"]
            app = await _app_value(s, email)
            emails = [r["email"] for r in s.app_rows()]
            assert emails.count(email) == 1
            assert (hub, app) == ("Second", "Second"), (
                f"the app's newer edit was lost: hub={hub!r} app={app!r}\n{s.daemon.tail(15)}")
