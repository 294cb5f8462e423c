"""The seeded plan and the reference model of the randomized end-to-end test
(`test_random_e2e.py`).

A plan is a list of operations drawn from one seed before anything runs: edits of contacts and
companies on either side, same-field conflicting edits, creates, creates of the same record on
both sides at about the same time, deletes (among them the app's newest row, so that SQLite
gives its id to the next insert), re-links of contacts to other companies, SIGKILLs and
restarts of the daemon, and fault settings of the emulator. Records are named by a logical id
(`uid`): a contact by its email (never edited), a company by `c<n>`; the ids each side gives
them are found when an operation runs.

The model says what both sides must hold once everything settled, from DESIGN.md's rules with
`conflict_winner = "hub"`:

- Per field, the edits of each side are kept in order (initial values count as edits, so the
  first pairing follows the same rule). The final value is the last edit's, except that an app
  edit made while the app did not yet hold the hub's latest edit of that field was a conflict,
  which the hub's value wins. Whether the app held it is read in the same transaction as the
  app's edit, so the model knows it exactly. A hub edit that is the last one always wins: it
  is either a one-sided change or the winner of a conflict (HubSpot cannot refuse a stale
  write; crmsync sees an overwritten hub edit in the property history and decides it as the
  conflict it was).
- A record deleted on one side is gone from both with `on_delete = "propagate"`; with "mark"
  it is gone from that side and its other side (if it got there) survives, unlinked, in an item
  marked deleted.
- A contact's company is the one of its last re-link (each contact is re-linked on one side
  only: a foreign key holds one company, HubSpot several, so concurrent re-links on both sides
  have no single right answer); a contact whose company is deleted has none.
- Records created on both sides at about the same time ("twins") may end linked, or as a
  linked pair plus the other side's second record failed as a duplicate naming the record that
  holds the key; the linked pair holds the values of the hub record the test made if that one
  is in the pair, else the app's.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

CONTACT_FIELDS = {"firstname": "first_name", "lastname": "last_name", "jobtitle": "job_title",
                  "phone": "phone"}
COMPANY_FIELDS = {"name": "name", "domain": "domain", "city": "city", "phone": "phone"}
# Company fields that are match keys: edited only on companies that started on one side
# (editing both keys of a company present on both sides before its first pairing would make
# two companies of it, as designed), never on twins.
COMPANY_KEYS = ("name", "domain")

SCHEMA = """
CREATE TABLE organisations (
    id INTEGER PRIMARY KEY, name TEXT, domain TEXT, city TEXT, phone TEXT, industry TEXT,
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')));
CREATE TABLE customers (
    id INTEGER PRIMARY KEY, email TEXT, first_name TEXT, last_name TEXT, phone TEXT,
    job_title TEXT, company_id INTEGER REFERENCES organisations(id),
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')));
"""


def fields_of(kind: str) -> dict[str, str]:
    """Hub property -> app column of the mapped fields of `kind` ("contact" or "company")."""
    return CONTACT_FIELDS if kind == "contact" else COMPANY_FIELDS


def norm(value: Any) -> str | None:
    """A field value as both sides are compared: empty is None."""
    return None if value in (None, "") else str(value)


# --- the plan ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Op:
    kind: str  # edit | conflict | insert | twin | delete | reuse | relink | kill | start | faults
    args: dict[str, Any]

    def __str__(self) -> str:
        return f"{self.kind} " + " ".join(f"{k}={v!r}" for k, v in self.args.items())


@dataclass
class _Planned:
    """What the plan generator knows of a record (it runs before anything happens)."""

    kind: str
    uid: str
    origin: str  # app | hub | both | twin
    alive: bool = True
    assoc_side: str = "app"


@dataclass(frozen=True)
class Round:
    seed: int
    on_delete: str  # mark | propagate
    ops: int = 130
    kills: int = 3


def _values(rng: random.Random, kind: str, tag: str, full: bool = False) -> dict[str, str | None]:
    """Non-key values for a new record (`full`: every field set)."""
    if kind == "contact":
        out: dict[str, str | None] = {
            "firstname": f"F{tag}", "lastname": f"L{tag}",
            "jobtitle": rng.choice([None, "CEO", "Buyer", "Engineer"]),
            "phone": rng.choice([None, f"+1 555 {rng.randrange(10**4):04d}"])}
    else:
        out = {"city": rng.choice([None, "Leeds", "York", "Hull", f"Town{tag}"]),
               "phone": rng.choice([None, f"+44 20 {rng.randrange(10**4):04d}"])}
    if full:
        out = {k: v if v is not None else f"{k[:2]}{tag}" for k, v in out.items()}
    return out


def company_values(rng: random.Random, n: int, tag: str, full: bool = False
                   ) -> dict[str, str | None]:
    return {"name": f"Firm {tag}{n}", "domain": f"firm-{tag}{n}.example",
            **_values(rng, "company", f"{tag}{n}", full)}


@dataclass
class InitialData:
    """The records both sides hold before the daemon starts, per side, by uid."""

    app_companies: dict[str, dict[str, str | None]] = field(default_factory=dict)
    hub_companies: dict[str, dict[str, str | None]] = field(default_factory=dict)
    app_contacts: dict[str, dict[str, str | None]] = field(default_factory=dict)
    hub_contacts: dict[str, dict[str, str | None]] = field(default_factory=dict)
    # contact uid -> company uid, per side
    app_links: dict[str, str] = field(default_factory=dict)
    hub_links: dict[str, str] = field(default_factory=dict)


def initial_data(rng: random.Random, n_companies: int = 8, n_contacts: int = 16
                 ) -> InitialData:
    """Companies and contacts on the app only, the hub only and both (the shared ones partly
    differ: an empty field on one side, or another value, which the hub wins)."""
    d = InitialData()
    n = 0
    for origin in ("app", "hub", "both"):
        for _ in range(n_companies if origin != "both" else n_companies // 2):
            uid = f"c{n}"
            v = company_values(rng, n, "i")
            if origin in ("app", "both"):
                d.app_companies[uid] = dict(v)
            if origin in ("hub", "both"):
                h = dict(v)
                if origin == "both":
                    h.update(_values(rng, "company", f"h{n}"))
                d.hub_companies[uid] = h
            n += 1
    companies = {"app": sorted(d.app_companies), "hub": sorted(d.hub_companies)}
    both_companies = sorted(set(companies["app"]) & set(companies["hub"]))
    for origin in ("app", "hub", "both"):
        for _ in range(n_contacts if origin != "both" else n_contacts // 2):
            uid = f"p{n}@example.com"
            v = _values(rng, "contact", str(n))
            if origin in ("app", "both"):
                d.app_contacts[uid] = dict(v)
            if origin in ("hub", "both"):
                h = dict(v)
                if origin == "both":
                    h.update({k: x for k, x in _values(rng, "contact", f"h{n}").items()
                              if rng.random() < 0.5})
                d.hub_contacts[uid] = h
            # A company on the record's sides: a shared contact has the same one on both
            # sides, or one on one side only (HubSpot's several against the app's one would
            # have no single right answer at the first pairing).
            if rng.random() < 0.75:
                if origin == "both":
                    company = rng.choice(both_companies)
                    sides = rng.choice([("app", "hub"), ("app",), ("hub",)])
                else:
                    company = rng.choice(companies[origin])
                    sides = (origin,)
                for s in sides:
                    (d.app_links if s == "app" else d.hub_links)[uid] = company
            n += 1
    return d


def make_plan(rnd: Round, data: InitialData) -> list[Op]:
    """The operations of one round, drawn from its seed (the same seed, the same plan)."""
    rng = random.Random(rnd.seed * 7919 + 1)
    recs: dict[str, _Planned] = {}
    for uid in sorted({*data.app_companies, *data.hub_companies}):
        origin = ("both" if uid in data.app_companies and uid in data.hub_companies
                  else "app" if uid in data.app_companies else "hub")
        recs[uid] = _Planned("company", uid, origin)
    for uid in sorted({*data.app_contacts, *data.hub_contacts}):
        origin = ("both" if uid in data.app_contacts and uid in data.hub_contacts
                  else "app" if uid in data.app_contacts else "hub")
        # Re-linked on the side that holds its company (if only one does): a re-link on the
        # other side before crmsync carried that company over would be a concurrent change
        # of one foreign key against HubSpot's several, which DESIGN.md gives no outcome.
        sides = [s for s, links in (("app", data.app_links), ("hub", data.hub_links))
                 if uid in links]
        side = sides[0] if len(sides) == 1 else rng.choice(["app", "hub"])
        recs[uid] = _Planned("contact", uid, origin, assoc_side=side)
    next_n = 1000
    ops: list[Op] = []

    def live(kind: str, editable: bool = True) -> list[_Planned]:
        return sorted((r for r in recs.values() if r.kind == kind and r.alive
                       and (not editable or r.origin != "twin")), key=lambda r: r.uid)

    def side_for(r: _Planned) -> str:
        # Mostly the side the record started on (it is there at once); the other side once
        # the daemon has copied it there (an operation that finds no record there is skipped).
        if r.origin in ("app", "hub") and rng.random() < 0.6:
            return r.origin
        return rng.choice(["app", "hub"])

    def new_record(kind: str, tag: str) -> tuple[str, dict[str, str | None]]:
        nonlocal next_n
        n = next_n
        next_n += 1
        if kind == "contact":
            return f"n{n}@example.com", _values(rng, "contact", f"{tag}{n}", tag == "t")
        return f"c{n}", company_values(rng, n, tag, tag == "t")

    # Kills at seeded places (the first while the initial sync runs), each followed by a
    # restart a few operations later; faults switched on and off in between.
    kill_at = sorted({*rng.sample(range(12, rnd.ops - 15), rnd.kills - 1), rng.randint(1, 4)})
    start_at = {k + rng.randint(1, 4) for k in kill_at}
    fault_plan = {
        rnd.ops // 5: {"error_rate": 0.15, "seed": rnd.seed},
        rnd.ops // 3: {"hang_after_apply_rate": 0.12, "seed": rnd.seed},
        rnd.ops // 2: {"rate_limit_storm_seconds": 1.5, "seed": rnd.seed},
        (3 * rnd.ops) // 5: {"latency": 0.15, "error_rate": 0.05,
                             "hang_after_apply_rate": 0.05, "seed": rnd.seed},
        (4 * rnd.ops) // 5: {},
    }
    for i in range(rnd.ops):
        if i in kill_at:
            ops.append(Op("kill", {"after": round(rng.uniform(0.0, 3.0), 2)}))
        if i in start_at:
            ops.append(Op("start", {}))
        if i in fault_plan:
            ops.append(Op("faults", dict(fault_plan[i])))
        roll = rng.random()
        kind = "contact" if rng.random() < 0.6 else "company"
        if roll < 0.44:  # a field edit on one side
            r = rng.choice(live(kind))
            names = [f for f in fields_of(kind)
                     if kind == "contact" or f not in COMPANY_KEYS or r.origin in ("app", "hub")]
            name = rng.choice(names)
            side = side_for(r)
            ops.append(Op("edit", {"side": side, "uid": r.uid, "field": name,
                                   "value": _edit_value(name, side, i)}))
        elif roll < 0.54:  # the same field edited on both sides, one right after the other
            r = rng.choice(live(kind))
            name = rng.choice([f for f in fields_of(kind) if f not in COMPANY_KEYS])
            ops.append(Op("conflict", {"uid": r.uid, "field": name,
                                       "first": rng.choice(["app", "hub"]),
                                       "app": _edit_value(name, "app", i),
                                       "hub": _edit_value(name, "hub", i)}))
        elif roll < 0.62:  # a new record on one side
            side = rng.choice(["app", "hub"])
            uid, values = new_record(kind, side[0])
            company = None
            if kind == "contact" and rng.random() < 0.6:
                company = rng.choice(live("company")).uid
            ops.append(Op("insert", {"side": side, "uid": uid, "values": values,
                                     "company": company}))
            recs[uid] = _Planned(kind, uid, side, assoc_side=side)
        elif roll < 0.66:  # the same new record on both sides at about the same time
            uid, app_values = new_record(kind, "t")
            hub_values = {k: _twin_value(k, v) for k, v in app_values.items()}
            ops.append(Op("twin", {"uid": uid, "app": app_values, "hub": hub_values,
                                   "first": rng.choice(["app", "hub"])}))
            recs[uid] = _Planned(kind, uid, "twin")
        elif roll < 0.73:  # a delete
            r = rng.choice(live(kind))
            ops.append(Op("delete", {"side": side_for(r), "uid": r.uid}))
            r.alive = False
        elif roll < 0.79:  # the app deletes its newest row and inserts another: same id
            uid, values = new_record(kind, "r")
            ops.append(Op("reuse", {"kind": kind, "uid": uid, "values": values}))
            recs[uid] = _Planned(kind, uid, "app", assoc_side="app")
            # Which record the newest row is, is known only when it runs.
        else:  # a contact re-linked to another company (or to none)
            r = rng.choice(live("contact"))
            target = rng.choice(live("company")).uid if rng.random() < 0.85 else None
            ops.append(Op("relink", {"side": r.assoc_side, "uid": r.uid, "company": target}))
    if any(o.kind == "kill" for o in ops) and ops[-1].kind != "start":
        ops.append(Op("start", {}))
    return ops


def _twin_value(name: str, value: str | None) -> str | None:
    """The hub twin's value of a field: the same key, another value for every other field."""
    if name in COMPANY_KEYS or value is None:
        return value
    return value + "9" if name == "phone" else value + "h"


def _edit_value(name: str, side: str, i: int) -> str:
    if name == "domain":
        return f"edit-{side}{i}.example"
    if name == "name":
        return f"Firm {side}{i}x"
    if name == "phone":
        return f"+1 444 {i:04d}{0 if side == 'app' else 1}"
    return f"{name[:2]}-{side}-{i}"


# --- the model ------------------------------------------------------------------------------------


@dataclass
class Edit:
    side: str
    value: str | None
    informed: bool = True  # app edits: the app held the hub's latest edit of the field


@dataclass
class FieldModel:
    initial: str | None = None
    edits: list[Edit] = field(default_factory=list)
    # Whether the app has held the hub's latest edit of the field (seen by an app edit: each
    # reads the value it replaces in its own transaction). Only then is a later app edit a
    # one-sided change rather than a conflict with that hub edit.
    app_saw_hub: bool = False

    def app_edit(self, value: str, held: str | None) -> Edit:
        hub = self.latest("hub")
        if hub is None or held == hub.value:
            self.app_saw_hub = True
        edit = Edit("app", value, self.app_saw_hub)
        self.edits.append(edit)
        return edit

    def hub_edit(self, value: str) -> None:
        self.app_saw_hub = False
        self.edits.append(Edit("hub", value))

    def latest(self, side: str) -> Edit | None:
        return next((e for e in reversed(self.edits) if e.side == side), None)

    def final(self) -> str | None:
        if not self.edits:
            return self.initial
        last = self.edits[-1]
        if last.side == "hub":
            return last.value
        hub = self.latest("hub")
        if hub is None or last.informed:
            return last.value
        return hub.value  # the hub won the conflict (its value is never empty here)


@dataclass
class RecModel:
    kind: str
    uid: str
    origin: str  # app | hub | both | twin
    fields: dict[str, FieldModel] = field(default_factory=dict)
    deleted_on: str | None = None  # the side the test deleted it on
    # Whether crmsync had paired the record when the test deleted it (an item held both its
    # records, or a create from it had been sent). If not, crmsync may never have seen the
    # deleted record, and its other side is a record of its own, copied back as a new one.
    delete_known: bool = True
    company: str | None = None  # contacts: the company it must be associated with
    # Contacts whose company was deleted before crmsync paired it: that company may live on
    # as a record of its own (see delete_known), still associated; unsure until re-linked.
    company_unsure: bool = False
    app_id: str | None = None
    hub_id: str | None = None
    # Twins: the values each side was created with and whether the test's hub create
    # happened (a contact's email is unique on the hub: the second create is refused).
    twin_values: dict[str, dict[str, str | None]] = field(default_factory=dict)
    twin_hub_created: bool = False
    # Every name/domain the company has held (to find it on a side that lags behind).
    keys_seen: set[tuple[str, str]] = field(default_factory=set)

    @property
    def alive(self) -> bool:
        return self.deleted_on is None

    def note_keys(self) -> None:
        if self.kind != "company":
            return
        for name in COMPANY_KEYS:
            fm = self.fields[name]
            for v in [fm.initial, *(e.value for e in fm.edits)]:
                if v:
                    self.keys_seen.add((name, v.strip().lower()))

    def keys_of(self) -> set[tuple[str, str]]:
        """The match keys it is found by: its email, or every name and domain it has held."""
        return {("email", self.uid)} if self.kind == "contact" else self.keys_seen

    def expected(self) -> dict[str, str | None]:
        return {name: fm.final() for name, fm in self.fields.items()}


def record_model(kind: str, uid: str, origin: str, app: dict[str, Any] | None,
                 hub: dict[str, Any] | None) -> RecModel:
    """A record present on the app (`app` values), the hub (`hub`) or both before it was first
    paired: initial values count as edits, the app's first, so the first pairing follows the
    same rule as later conflicts."""
    rec = RecModel(kind, uid, origin)
    for name in fields_of(kind):
        a = norm(app.get(name)) if app is not None else None
        h = norm(hub.get(name)) if hub is not None else None
        fm = FieldModel()
        if app is not None and hub is not None and a == h:
            fm.initial = a
        else:
            if a is not None:
                fm.edits.append(Edit("app", a, informed=False))
            if h is not None:
                fm.hub_edit(h)
        rec.fields[name] = fm
    rec.note_keys()
    return rec
