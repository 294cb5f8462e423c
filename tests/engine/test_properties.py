"""Property tests of the decision (DESIGN.md "The decision", issue 2 §3).

A small replica model holds one record per side as plain dicts, applies a Decision's actions
to them and keeps the link's snapshot, the way the runtime would. The properties:

* idempotence: applying the actions and deciding again writes nothing and keeps the snapshot;
* convergence: with `both` everywhere, both sides end with equal canonical values, also after
  any interleaving of edits on either side and syncs;
* directions: nothing is written to a side the direction or a field's direction forbids;
* conflicts: the winner's value wins unless it is empty, then the other side's value is kept;
* field order: permuting the mappings does not change the decision;
* history: every value that moves has one FieldChange with its old and new value and whose
  value it is; every value written to HubSpot is a string.

The generators produce each side's *native* values (HubSpot: strings; the app: ints, floats,
dates, bools, lists...), so "10" vs 10.0 or epoch ms vs ISO strings are exercised everywhere.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
from dataclasses import dataclass, field
from typing import Any

import msgspec
from hypothesis import given, note, settings
from hypothesis import strategies as st

from crmsync.config.model import FieldMapping, Filter, ObjectSync
from crmsync.engine import (
    Create,
    Decision,
    Delete,
    Exclude,
    Fail,
    Link,
    Record,
    Snapshot,
    SyncRules,
    Update,
    compile_rules,
    decide,
)
from crmsync.engine.transforms import InvalidValue

KINDS = ("string", "number", "bool", "date", "datetime", "enum", "multiselect")
# enum option map: app value -> HubSpot option value.
ENUM_OPTIONS = {"Gold": "gold", "Silver": "silver", "Bronze": "bronze_tier"}
MULTI_POOL = ("red", "green", "blue", "dark teal")
SIDES = ("hub", "app")

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
MS_MIN = -2_208_988_800_000  # 1900-01-01
MS_MAX = 4_102_444_800_000  # 2100-01-01


# --- configs --------------------------------------------------------------------------------


@functools.cache
def _weighted_bool(true_weight: int) -> st.SearchStrategy[bool]:
    """True with probability true_weight / 10 (before hypothesis' own biases)."""
    return st.integers(0, 9).map(lambda n: n < true_weight)


@st.composite
def sync_configs(
    draw: st.DrawFn,
    *,
    directions: tuple[str, ...] = ("both", "to_hub", "to_app"),
    field_directions: tuple[str, ...] = ("both", "to_hub", "to_app"),
    required: bool = True,
    disabled: bool = True,
    on_delete: tuple[str, ...] = ("mark", "propagate", "review"),
    min_fields: int = 1,
    keys_and_filters: bool = False,
) -> ObjectSync:
    """An object sync over generated mappings. `keys_and_filters` adds what excludes records
    before they are linked: contacts matched by email (with or without
    sync_contacts_without_email) and filters on either side."""
    kinds = draw(st.lists(st.sampled_from(KINDS), min_size=min_fields, max_size=5))
    mappings = []
    hub_object = "line_items"
    if keys_and_filters and draw(st.booleans()):
        hub_object = "contacts"
        mappings.append(FieldMapping(hub="email", app="email_addr",
                                     direction=draw(st.sampled_from(field_directions))))  # type: ignore[arg-type]
    for i, kind in enumerate(kinds):
        mappings.append(
            FieldMapping(
                hub=f"h_{kind}_{i}",
                app=f"a_{kind}_{i}",
                direction=draw(st.sampled_from(field_directions)),  # type: ignore[arg-type]
                enabled=draw(_weighted_bool(9)) if disabled else True,
                required=draw(_weighted_bool(2)) if required else False,
                transform=kind,  # type: ignore[arg-type]
                options=ENUM_OPTIONS if kind == "enum" else {},
                separator=draw(st.sampled_from([";", ",", "|"])) if kind == "multiselect" else ";",
            )
        )
    filters = []
    if keys_and_filters and draw(_weighted_bool(5)):
        m = draw(st.sampled_from(mappings))
        side = draw(st.sampled_from(SIDES))
        filters.append(Filter(
            side=side,  # type: ignore[arg-type]
            property=m.hub if side == "hub" else m.app,
            operator=draw(st.sampled_from(["HAS_PROPERTY", "NOT_HAS_PROPERTY", "EQ", "NEQ"])),  # type: ignore[arg-type]
            value=draw(st.sampled_from(["Acme", "10", "true", "gold"]))))
    return ObjectSync(
        connection="shop",
        hub_object=hub_object,  # type: ignore[arg-type]
        app_object="order_lines",
        direction=draw(st.sampled_from(directions)),  # type: ignore[arg-type]
        conflict_winner=draw(st.sampled_from(SIDES)),  # type: ignore[arg-type]
        use_default_mappings=False,
        mappings=mappings,
        filters=filters,
        sync_contacts_without_email=keys_and_filters and draw(st.booleans()),
        on_delete=draw(st.sampled_from(on_delete)),  # type: ignore[arg-type]
    )


# --- native values per side -------------------------------------------------------------------

WORDS = st.one_of(
    st.sampled_from(["Acme", "acme", "Globex", "x", "10", "São Paulo"]),
    st.text(min_size=1, max_size=6),
)
DECIMALS = st.decimals(min_value=-(10**9), max_value=10**9, places=3, allow_nan=False,
                       allow_infinity=False)
NUMBERS = st.one_of(st.integers(-(10**9), 10**9), DECIMALS)
# Dates and times around 1970 deserve their own share: their epoch milliseconds are small
# numbers (birth dates of the late 1960s and early 1970s are common CRM values).
DATES = st.one_of(
    st.dates(min_value=dt.date(1900, 1, 1), max_value=dt.date(2100, 12, 31)),
    st.dates(min_value=dt.date(1966, 1, 1), max_value=dt.date(1974, 12, 31)),
)
MILLIS = st.one_of(st.integers(MS_MIN, MS_MAX), st.integers(-(10**11), 10**11))


def _midnight_ms(d: dt.date) -> int:
    return int((dt.datetime(d.year, d.month, d.day, tzinfo=dt.UTC) - EPOCH)
               // dt.timedelta(milliseconds=1))


def _iso_ms(ms: int) -> str:
    d = EPOCH + dt.timedelta(milliseconds=ms)
    return d.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _aware(ms: int) -> dt.datetime:
    return EPOCH + dt.timedelta(milliseconds=ms)


def _multi_lists() -> st.SearchStrategy[list[str]]:
    return st.lists(st.sampled_from(MULTI_POOL), max_size=4)


EMAILS = st.sampled_from(["ann@example.com", " Ann@Example.com", "bob@example.org",
                          "ann(at)example.com", "", "  "])


def hub_values(m: FieldMapping, invalid: bool) -> st.SearchStrategy[Any]:
    """A HubSpot wire value (always a string; "" is empty)."""
    if m.hub == "email":
        return EMAILS
    return _hub_values(m.transform, invalid)


@functools.cache
def _hub_values(kind: str, invalid: bool) -> st.SearchStrategy[Any]:
    if kind == "string":
        s = st.one_of(st.just(""), WORDS)
    elif kind == "number":
        s = st.one_of(st.just(""), NUMBERS.map(str),
                      # "-0": what the engine itself writes when an app holds -0.0
                      st.sampled_from(["10", "10.0", "10.00", "1e1", " 10 ", "-2.50", "-0"]))
    elif kind == "bool":
        s = st.sampled_from(["", "true", "false"])
    elif kind == "date":
        s = st.one_of(st.just(""), DATES.map(dt.date.isoformat),
                      DATES.map(lambda d: str(_midnight_ms(d))),
                      DATES.map(lambda d: f"{d.isoformat()}T00:00:00Z"))
    elif kind == "datetime":
        s = st.one_of(st.just(""), MILLIS.map(str), MILLIS.map(_iso_ms))
    elif kind == "enum":
        s = st.sampled_from(["", *ENUM_OPTIONS.values()])
    else:  # multiselect: HubSpot always joins with ";"
        s = st.one_of(st.just(""), _multi_lists().map(";".join))
    if invalid:
        bad = {"number": ["abc"], "bool": ["maybe"], "date": ["soon", "2024-13-45"],
               "datetime": ["yesterday"], "enum": ["platinum"]}.get(kind, [])
        if bad:
            s = st.one_of(s, st.sampled_from(bad))
    return s


def app_values(m: FieldMapping, invalid: bool) -> st.SearchStrategy[Any]:
    """An app's native value (None is empty)."""
    if m.hub == "email":
        return st.one_of(st.none(), EMAILS)
    return _app_values(m.transform, m.separator, invalid)


@functools.cache
def _app_values(kind: str, sep: str, invalid: bool) -> st.SearchStrategy[Any]:
    if kind == "string":
        s = st.one_of(st.none(), WORDS, st.integers(-5, 5))
    elif kind == "number":
        s = st.one_of(st.none(), st.integers(-(10**9), 10**9), DECIMALS.map(str),
                      st.floats(min_value=-1e9, max_value=1e9, allow_nan=False))
    elif kind == "bool":
        s = st.sampled_from([None, True, False, 0, 1, "yes", "no", "TRUE"])
    elif kind == "date":
        s = st.one_of(st.none(), DATES, DATES.map(dt.date.isoformat),
                      DATES.map(lambda d: dt.datetime(d.year, d.month, d.day)))
    elif kind == "datetime":
        s = st.one_of(st.none(), MILLIS.map(_iso_ms), MILLIS.map(_aware))
    elif kind == "enum":
        keys = list(ENUM_OPTIONS)
        s = st.one_of(st.none(), st.sampled_from(keys + [k.upper() for k in keys]))
    else:
        s = st.one_of(st.none(), _multi_lists().map(sep.join),
                      _multi_lists().map(lambda xs: f"{sep} ".join(xs)), _multi_lists())
    if invalid:
        bad = {"number": ["n/a"], "bool": ["perhaps"], "date": ["31/12/2024"],
               "datetime": ["tomorrow"], "enum": ["Diamond"]}.get(kind, [])
        if bad:
            s = st.one_of(s, st.sampled_from(bad))
    return s


@st.composite
def props_for(draw: st.DrawFn, sync: ObjectSync, side: str, invalid: bool) -> dict[str, Any]:
    props: dict[str, Any] = {}
    for m in sync.mappings:
        if draw(_weighted_bool(1)):
            continue  # property absent from the record
        if side == "hub":
            props[m.hub] = draw(hub_values(m, invalid))
        else:
            props[m.app] = draw(app_values(m, invalid))
    return props


# --- scenarios: (rules, snapshot or none, hub record, app record) ------------------------------


def read(rules: SyncRules, side: str, props: dict[str, Any] | None, name: str) -> Any:
    """The canonical value of one field as the engine reads it, or None if unreadable.

    Any error counts as unreadable here: this helper only builds inputs and reads results;
    decide() itself must turn an unreadable value into fail(invalid_value)."""
    if props is None:
        return None
    r = rules.by_name[name]
    try:
        return r.read_hub(props) if side == "hub" else r.read_app(props)
    except (InvalidValue, ValueError, ArithmeticError):
        return None


class Scenario:
    __slots__ = ("app", "hub", "rules", "snapshot", "sync")

    def __init__(self, sync: ObjectSync, rules: SyncRules, hub: Record | None,
                 app: Record | None, snapshot: Snapshot | None) -> None:
        self.sync, self.rules, self.hub, self.app, self.snapshot = sync, rules, hub, app, snapshot

    def __repr__(self) -> str:  # hypothesis prints draws; _describe() notes the details
        return f"Scenario(hub={self.hub!r}, app={self.app!r}, snapshot={self.snapshot!r})"


@st.composite
def scenarios(
    draw: st.DrawFn,
    sync: ObjectSync,
    *,
    invalid: bool = True,
    deletes: bool = True,
    linked: bool | None = None,
    pair: bool = False,
    consistent: bool = False,
) -> Scenario:
    """A record triple. `consistent`: the snapshot holds equal values on both sides, as it
    always does for two-way fields after a successful sync."""
    rules = compile_rules(sync)
    hub_p = draw(props_for(sync, "hub", invalid))
    app_p = draw(props_for(sync, "app", invalid))
    is_linked = draw(st.booleans()) if linked is None else linked
    snapshot: Snapshot | None = None
    if is_linked:
        prev_h = draw(props_for(sync, "hub", False))
        prev_a = draw(props_for(sync, "app", False))
        snap_h: dict[str, Any] = {}
        snap_a: dict[str, Any] = {}
        for r in rules.fields:
            n = r.name
            choices = {
                "hub_now": read(rules, "hub", hub_p, n),
                "app_now": read(rules, "app", app_p, n),
                "prev_hub": read(rules, "hub", prev_h, n),
                "prev_app": read(rules, "app", prev_a, n),
                "empty": None,
            }
            if draw(_weighted_bool(1)):
                continue  # a field mapped after the last sync: not in the snapshot yet
            h = choices[draw(st.sampled_from(sorted(choices)))]
            a = h if consistent else choices[draw(st.sampled_from(sorted(choices)))]
            snap_h[n], snap_a[n] = h, a
        snapshot = Snapshot(hub=snap_h, app=snap_a)
    if pair or (is_linked and not deletes):
        shape = "pair"
    elif is_linked:
        # a linked record missing on a side was deleted there
        shape = draw(st.sampled_from(["pair", "pair", "pair", "hub", "app", "none"]))
    else:
        shape = draw(st.sampled_from(["pair", "hub", "app"]))
    hub = Record("hub-1", hub_p) if shape in ("pair", "hub") else None
    app = Record("app-1", app_p) if shape in ("pair", "app") else None
    if deletes and draw(_weighted_bool(1)):
        # archived (HubSpot) or soft-deleted (app) also means deleted on that side
        if draw(st.booleans()) and hub is not None:
            hub = Record(hub.id, hub.properties, archived=True)
        elif app is not None:
            app = Record(app.id, app.properties, archived=True)
    return Scenario(sync, rules, hub, app, snapshot)


# --- the replica model -------------------------------------------------------------------------

WRITES = (Create, Update, Delete)


@dataclass
class Replica:
    """One record per side as plain property dicts, and the link's snapshot."""

    rules: SyncRules
    records: dict[str, Record | None]
    snapshot: Snapshot | None
    created: int = 0
    log: list[Decision] = field(default_factory=list)

    @classmethod
    def of(cls, s: Scenario) -> Replica:
        return cls(s.rules, {"hub": s.hub, "app": s.app}, s.snapshot)

    def decide(self) -> Decision:
        d = decide(self.rules, self.records["hub"], self.records["app"], self.snapshot)
        self.log.append(d)
        return d

    def apply(self, d: Decision) -> None:
        for a in d.actions:
            if isinstance(a, Create):
                current = self.records[a.side]
                assert current is None or current.archived, f"create over a live record: {a}"
                self.created += 1
                self.records[a.side] = Record(f"{a.side}-new-{self.created}", dict(a.values))
            elif isinstance(a, Update):
                current = self.records[a.side]
                assert current is not None and not current.archived, f"update of nothing: {a}"
                assert current.id == a.id, f"update of the wrong record: {a}"
                self.records[a.side] = Record(a.id, {**current.properties, **a.changes})
            elif isinstance(a, Delete):
                current = self.records[a.side]
                assert current is not None and current.id == a.id, f"delete of nothing: {a}"
                self.records[a.side] = None
            elif isinstance(a, Link):
                h, ap = self.records["hub"], self.records["app"]
                assert h is not None and ap is not None
                assert (a.hub_id, a.app_id) == (h.id, ap.id), f"link of the wrong pair: {a}"
        if d.snapshot is not None:
            self.snapshot = d.snapshot

    def sync(self) -> Decision:
        d = self.decide()
        self.apply(d)
        return d

    def canon(self, side: str, name: str) -> Any:
        rec = self.records[side]
        return read(self.rules, side, None if rec is None else rec.properties, name)

    def edit(self, side: str, prop: str, value: Any) -> None:
        rec = self.records[side]
        if rec is not None and not rec.archived:
            self.records[side] = Record(rec.id, {**rec.properties, prop: value})


def _fails(d: Decision) -> list[Fail]:
    return [a for a in d.actions if isinstance(a, Fail)]


def _writes(d: Decision) -> list[Any]:
    return [a for a in d.actions if isinstance(a, WRITES)]


def _describe(s: Scenario) -> None:
    note(f"{s.sync.hub_object}: direction={s.sync.direction} "
         f"winner={s.sync.conflict_winner} on_delete={s.sync.on_delete} "
         f"filters={s.sync.filters} without_email={s.sync.sync_contacts_without_email}")
    for m in s.sync.mappings:
        note(f"  mapping {m.hub} <-> {m.app}: {m.transform} {m.direction}"
             f"{' required' if m.required else ''}{'' if m.enabled else ' DISABLED'}"
             f"{' sep=' + m.separator if m.transform == 'multiselect' else ''}")
    note(f"hub={s.hub!r}\napp={s.app!r}\nsnapshot={s.snapshot!r}")


# --- idempotence -----------------------------------------------------------------------------


@given(st.data())
def test_applying_the_decision_then_deciding_again_is_a_noop(data: st.DataObject) -> None:
    sync = data.draw(sync_configs(keys_and_filters=True))
    s = data.draw(scenarios(sync))
    _describe(s)
    world = Replica.of(s)
    first = world.sync()
    note(f"first: {first!r}")
    stored = world.snapshot
    second = world.decide()
    note(f"second: {second!r}")
    assert _writes(second) == [], "deciding again on the applied result writes again"
    assert second.snapshot is None or second.snapshot == stored, "the snapshot moved again"


# --- convergence -----------------------------------------------------------------------------


def _assert_converged(world: Replica) -> None:
    assert world.records["hub"] is not None and world.records["app"] is not None
    for r in world.rules.fields:
        h, a = world.canon("hub", r.name), world.canon("app", r.name)
        assert h == a, f"field {r.name}: hub holds {h!r}, app holds {a!r}"
        assert world.snapshot is not None
        assert world.snapshot.hub.get(r.name) == h == world.snapshot.app.get(r.name), (
            f"field {r.name}: snapshot {world.snapshot} does not hold the synced value {h!r}")


TWO_WAY = {"directions": ("both",), "field_directions": ("both",), "disabled": False}


@given(st.data())
def test_two_way_sync_converges_to_equal_values(data: st.DataObject) -> None:
    sync = data.draw(sync_configs(**TWO_WAY))  # type: ignore[arg-type]
    s = data.draw(scenarios(sync, invalid=False, deletes=False, consistent=True))
    _describe(s)
    world = Replica.of(s)
    d = world.sync()
    note(f"decision: {d!r}")
    fails = _fails(d)
    if fails:
        # Only a required field that would end up empty may stop a two-way sync.
        assert [f.category for f in fails] == ["missing_required_field"], d
        assert any(
            r.required and None in (world.canon("hub", r.name), world.canon("app", r.name))
            for r in s.rules.fields
        ), f"missing_required_field although every required field has a value: {d}"
        return
    _assert_converged(world)


EDIT = st.tuples(st.sampled_from(SIDES), st.integers(0, 4), st.integers(0, 2**16))


@given(st.data())
def test_replicas_applying_each_others_changes_converge(data: st.DataObject) -> None:
    """Edits on either side interleaved with syncs: after a last sync both sides agree, and
    one more sync is a noop."""
    sync = data.draw(sync_configs(required=False, **TWO_WAY))  # type: ignore[arg-type]
    s = data.draw(scenarios(sync, invalid=False, deletes=False, pair=True,
                            consistent=True))
    _describe(s)
    world = Replica.of(s)
    steps = data.draw(st.lists(st.one_of(st.just("sync"), EDIT), max_size=8))
    for step in [*steps, "sync"]:
        if step == "sync":
            d = world.sync()
            note(f"sync: {d!r}")
            assert not _fails(d), d
            continue
        side, idx, _ = step
        m = sync.mappings[idx % len(sync.mappings)]
        if side == "hub":
            value = data.draw(hub_values(m, invalid=False))
            world.edit("hub", m.hub, value)
        else:
            value = data.draw(app_values(m, invalid=False))
            world.edit("app", m.app, value)
        note(f"edit {side} {m.hub if side == 'hub' else m.app} = {value!r}")
    _assert_converged(world)
    again = world.decide()
    assert again.is_noop and again.snapshot == world.snapshot, again


# --- directions ------------------------------------------------------------------------------


def _allowed_props(sync: ObjectSync, side: str) -> set[str]:
    """Properties of `side` that the object sync and the field's direction allow writing."""
    sync_ok = sync.direction in ("both", "to_hub" if side == "hub" else "to_app")
    if not sync_ok:
        return set()
    ok = ("both", "to_hub") if side == "hub" else ("both", "to_app")
    return {m.hub if side == "hub" else m.app for m in sync.mappings
            if m.enabled and m.direction in ok}


def _side_writable(sync: ObjectSync, side: str) -> bool:
    return sync.direction in ("both", "to_hub" if side == "hub" else "to_app")


def _assert_directions_respected(sync: ObjectSync, d: Decision) -> None:
    allowed = {side: _allowed_props(sync, side) for side in SIDES}
    for a in d.actions:
        if isinstance(a, Create | Update | Delete):
            assert _side_writable(sync, a.side), f"{a} writes to a side {sync.direction} forbids"
        if isinstance(a, Create):
            extra = set(a.values) - allowed[a.side]
            assert not extra, f"{a} writes {extra}, which may not be written to the {a.side}"
        elif isinstance(a, Update):
            extra = set(a.changes) - allowed[a.side]
            assert not extra, f"{a} writes {extra}, which may not be written to the {a.side}"
        elif isinstance(a, Delete):
            assert sync.on_delete == "propagate", f"{a} with on_delete={sync.on_delete}"
    by_name = {m.hub: m for m in sync.mappings}
    for c in d.changes:
        m = by_name[c.field]
        prop = m.hub if c.side == "hub" else m.app
        assert prop in allowed[c.side], f"history records a forbidden write: {c}"


@given(st.data())
def test_nothing_is_written_where_the_direction_forbids(data: st.DataObject) -> None:
    sync = data.draw(sync_configs(keys_and_filters=True))
    s = data.draw(scenarios(sync))
    _describe(s)
    world = Replica.of(s)
    for _ in range(2):  # the decision and the one after applying it
        d = world.sync()
        note(f"decision: {d!r}")
        _assert_directions_respected(sync, d)


@given(st.data())
def test_one_way_syncs_never_touch_the_target_of_the_other_way(data: st.DataObject) -> None:
    sync = data.draw(sync_configs(directions=("to_hub", "to_app")))
    s = data.draw(scenarios(sync))
    _describe(s)
    d = decide(s.rules, s.hub, s.app, s.snapshot)
    note(f"decision: {d!r}")
    source = "hub" if sync.direction == "to_app" else "app"
    for a in d.actions:
        if isinstance(a, Create | Update | Delete):
            assert a.side != source, f"{sync.direction} sync writes to the {source}: {a}"
    assert all(c.side != source for c in d.changes), d.changes


def _assert_hub_values_are_strings(d: Decision) -> None:
    for a in d.actions:
        if isinstance(a, Create | Update) and a.side == "hub":
            values = a.values if isinstance(a, Create) else a.changes
            bad = {k: v for k, v in values.items() if not isinstance(v, str)}
            assert not bad, f"HubSpot values are strings on the wire; {a} writes {bad}"


@given(st.data())
def test_every_value_written_to_the_hub_is_a_string(data: st.DataObject) -> None:
    sync = data.draw(sync_configs(keys_and_filters=True))
    s = data.draw(scenarios(sync))
    _describe(s)
    d = decide(s.rules, s.hub, s.app, s.snapshot)
    note(f"decision: {d!r}")
    _assert_hub_values_are_strings(d)


# --- history -----------------------------------------------------------------------------------


@given(st.data())
def test_history_records_every_value_that_moves(data: st.DataObject) -> None:
    """Each written field has one FieldChange: the side written, the old and new canonical
    values, and the side whose value it is (DESIGN.md: old and new values, who won and why)."""
    sync = data.draw(sync_configs(keys_and_filters=True))
    s = data.draw(scenarios(sync))
    _describe(s)
    world = Replica.of(s)
    before = {side: dict(r.properties) if r is not None else None
              for side, r in world.records.items()}
    d = world.sync()
    note(f"decision: {d!r}")
    prop = {(side, m.hub): m.hub if side == "hub" else m.app for m in sync.mappings
            for side in SIDES}
    written: set[tuple[str, str]] = set()
    for a in d.actions:
        if isinstance(a, Create | Update):
            written.update((a.side, k) for k in (a.values if isinstance(a, Create) else a.changes))
    recorded = {(c.side, prop[c.side, c.field]) for c in d.changes}
    assert written == recorded, "writes and history disagree"
    assert len(recorded) == len(d.changes), f"a field recorded twice: {d.changes}"
    created = {a.side for a in d.actions if isinstance(a, Create)}
    for c in d.changes:
        assert c.winner != c.side, f"{c}: the value written comes from the other side"
        assert c.new == world.canon(c.side, c.field), f"{c}: the side now holds another value"
        if c.side in created:
            assert (c.old, c.reason) == (None, "new_record"), c
        else:
            assert c.old == read(s.rules, c.side, before[c.side], c.field), c
            assert c.reason != "new_record", c


# --- conflicts ---------------------------------------------------------------------------------


# Distinct canonical values per kind, each with some of the native forms each side may hold:
# (canonical, HubSpot wire values, app values). Drawing three different entries for the
# snapshot, the hub and the app makes a conflict without filtering examples away.
CONFLICT_VALUES: dict[str, list[tuple[Any, list[Any], list[Any]]]] = {
    "string": [("Acme", ["Acme"], ["Acme"]), ("Globex", ["Globex"], ["Globex"]),
               ("São Paulo", ["São Paulo"], ["São Paulo"]), ("7", ["7"], [7, "7"])],
    "number": [("10", ["10", "10.0"], [10, 10.0, "10.00"]), ("2.5", ["2.5", "2.50"], [2.5, "2.5"]),
               ("-3", ["-3"], [-3, "-3.0"])],
    "bool": [("true", ["true"], [True, 1, "yes"]), ("false", ["false"], [False, 0, "no"])],
    "date": [("2024-01-02", ["2024-01-02", str(_midnight_ms(dt.date(2024, 1, 2)))],
              [dt.date(2024, 1, 2), "2024-01-02"]),
             ("1999-12-31", ["1999-12-31", "1999-12-31T00:00:00Z"],
              [dt.datetime(1999, 12, 31), "1999-12-31"]),
             ("2030-06-15", ["2030-06-15"], [dt.date(2030, 6, 15)])],
    "datetime": [("1704207845123", ["1704207845123", "2024-01-02T15:04:05.123Z"],
                  ["2024-01-02T16:04:05.123+01:00", "2024-01-02T15:04:05.123Z"]),
                 ("946684800000", ["946684800000", "2000-01-01T00:00:00Z"],
                  ["2000-01-01T00:00:00.000Z"])],
    "enum": [("gold", ["gold"], ["Gold", "GOLD"]), ("silver", ["silver"], ["Silver"]),
             ("bronze_tier", ["bronze_tier"], ["Bronze", "bronze"])],
    "multiselect": [("blue;red", ["red;blue", "blue;red"], [["red", "blue"], ["blue", "red"]]),
                    ("green", ["green"], [["green"]]),
                    ("dark teal;green", ["green;dark teal"], [["dark teal", "green"]])],
}
EMPTY = (None, ["", None], [None, ""])


@given(st.data())
def test_a_conflict_goes_to_the_winner_unless_its_value_is_empty(data: st.DataObject) -> None:
    sync = data.draw(sync_configs(required=False, **TWO_WAY))  # type: ignore[arg-type]
    s = data.draw(scenarios(sync, invalid=False, deletes=False, linked=True, pair=True,
                            consistent=True))
    assert s.hub is not None and s.app is not None and s.snapshot is not None
    # One field changed on both sides since the snapshot, to different values.
    m = data.draw(st.sampled_from(sync.mappings))
    pool = [EMPTY, *CONFLICT_VALUES[m.transform]]
    snap_i, hub_i, app_i = data.draw(st.permutations(range(len(pool))))[:3]
    snap, h, a = pool[snap_i][0], pool[hub_i][0], pool[app_i][0]
    hub_raw = data.draw(st.sampled_from(pool[hub_i][1]))
    app_raw = data.draw(st.sampled_from(pool[app_i][2]))
    s.hub = Record(s.hub.id, {**s.hub.properties, m.hub: hub_raw})
    s.app = Record(s.app.id, {**s.app.properties, m.app: app_raw})
    s.snapshot = Snapshot(hub={**s.snapshot.hub, m.hub: snap}, app={**s.snapshot.app, m.hub: snap})
    _describe(s)
    name = m.hub
    winner = sync.conflict_winner
    loser = "app" if winner == "hub" else "hub"
    w_value, l_value = (h, a) if winner == "hub" else (a, h)
    world = Replica.of(s)
    d = world.sync()
    note(f"conflict on {name}: snapshot {snap!r}, hub {h!r}, app {a!r}; decision {d!r}")
    assert not _fails(d), d
    mine = [c for c in d.changes if c.field == name]
    if w_value is not None:
        assert world.canon(loser, name) == w_value, "the winner's value did not reach the loser"
        assert world.canon(winner, name) == w_value, "the winner's own value was overwritten"
        assert [(c.side, c.new, c.winner, c.reason) for c in mine] == [
            (loser, w_value, winner, "conflict_winner")]
    else:
        assert world.canon(loser, name) == l_value, "an empty winner cleared the other side"
        assert all(c.side != loser for c in mine), mine
        assert all(c.reason == "empty_winner" and c.winner == loser for c in mine), mine


# --- field order -----------------------------------------------------------------------------


def _normalised(d: Decision) -> tuple[Any, ...]:
    """The decision without the free-text details (which may name the first failing field)."""

    def act(a: Any) -> str:
        if isinstance(a, Fail):
            return json.dumps(["fail", a.category])
        if isinstance(a, Exclude):
            return json.dumps(["exclude", a.reason])
        return json.dumps(msgspec.to_builtins(a), sort_keys=True, default=str)

    changes = sorted(json.dumps(msgspec.to_builtins(c), sort_keys=True, default=str)
                     for c in d.changes)
    snap = None if d.snapshot is None else msgspec.to_builtins(d.snapshot)
    return sorted(act(a) for a in d.actions), changes, snap


@given(st.data())
def test_the_decision_does_not_depend_on_the_order_of_fields(data: st.DataObject) -> None:
    sync = data.draw(sync_configs(min_fields=2, keys_and_filters=True))
    s = data.draw(scenarios(sync))
    _describe(s)
    d1 = decide(s.rules, s.hub, s.app, s.snapshot)
    note(f"original: {d1!r}")
    # the reversed order flips every pair of fields; a random permutation mixes them
    for order in (sync.mappings[::-1], data.draw(st.permutations(sync.mappings))):
        permuted = msgspec.structs.replace(sync, mappings=order)
        d2 = decide(compile_rules(permuted), s.hub, s.app, s.snapshot)
        note(f"{[m.hub for m in order]}: {d2!r}")
        assert _normalised(d1) == _normalised(d2)


# --- a sanity check of the generators ---------------------------------------------------------


def test_generators_reach_every_kind_of_decision() -> None:
    """The properties above are only as good as the states they visit: each kind of decision
    and each reason is reached by the generators some property above uses."""
    seen: set[str] = set()
    reasons: set[str] = set()

    def record(s: Scenario) -> None:
        try:
            d = decide(s.rules, s.hub, s.app, s.snapshot)
        except Exception:  # a crash is the other properties' business
            seen.add("crash")
            return
        for a in d.actions:
            tag = a.__struct_config__.tag
            seen.add(f"fail:{a.category}" if isinstance(a, Fail) else str(tag))
        reasons.update(c.reason for c in d.changes)

    # Derandomized and with its own budget: a coverage check must not depend on luck or on
    # the profile (the dev profile's 100 examples miss rare kinds now and then). Derandomized
    # is not the same as fixed, though: Hypothesis mixes constants harvested from every local
    # module loaded into its choices, so the examples differ between this module run alone
    # and the whole suite (`pytest tests -k this_test` collects everything and reproduces the
    # suite's examples). Each reason is therefore checked where a property draws it often,
    # not only where it turns up by chance: the general generators of the direction and
    # history properties, and the two-way pairs of the convergence and conflict properties.
    @settings(max_examples=1000, derandomize=True, database=None)
    @given(st.data())
    def collect_general(data: st.DataObject) -> None:
        sync = data.draw(sync_configs(keys_and_filters=True))
        record(data.draw(scenarios(sync)))

    @settings(max_examples=300, derandomize=True, database=None)
    @given(st.data())
    def collect_two_way_pairs(data: st.DataObject) -> None:
        sync = data.draw(sync_configs(required=False, **TWO_WAY))  # type: ignore[arg-type]
        record(data.draw(scenarios(sync, invalid=False, deletes=False, pair=True)))

    collect_general()
    for kind in ("create", "update", "link", "noop", "mark_deleted", "park_delete", "delete",
                 "exclude", "fail:invalid_value", "fail:missing_required_field"):
        assert kind in seen, f"the generators never produced {kind}: {sorted(seen)}"
    assert {"one_sided_change", "first_pairing_empty", "new_record"} <= reasons, reasons
    collect_two_way_pairs()
    assert {"first_pairing", "conflict_winner", "empty_winner"} <= reasons, reasons
