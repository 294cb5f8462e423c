"""The three-way decision: snapshot vs hub record vs app record -> actions.

Rules (DESIGN.md, "The decision"):

* Per mapped field, with a snapshot: changed on one side only -> copied to the other side if the
  direction allows; changed on both to different values -> the conflict winner's value goes to
  the other side, unless it is empty, in which case the other side's value is kept (and copied
  to the winner's side where allowed). A one-way field's source always wins.
* No snapshot (first pairing): a value empty on one side takes the other's; differing values go
  the winner's way; the direction still applies.
* A required field left empty on a side it is written to -> fail(missing_required_field).
* Not yet linked: a duplicate fails (`duplicate`); no match key or a filter mismatch excludes.
  Once linked, filters no longer apply.
* Deleted on one side: `on_delete` = mark | propagate | review.
* A value the other side cannot take although the record is fine (an owner it does not know,
  `SkipField`) leaves that field out — not written, its snapshot as it was, so it is tried
  again next time — with a field-level warning; the rest of the record syncs.

The decision is pure: same inputs, same output, no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from crmsync.engine.filters import first_mismatch
from crmsync.engine.match_keys import (
    company_keys,
    contact_keys,
    unique_keys,
)
from crmsync.engine.rules import SyncRules
from crmsync.engine.stages import StageProblem
from crmsync.engine.transforms import InvalidValue, SkipField
from crmsync.engine.types import (
    Action,
    Canon,
    Create,
    Decision,
    Delete,
    Exclude,
    Fail,
    FieldChange,
    FieldWarning,
    Link,
    MarkDeleted,
    Noop,
    ParkDelete,
    Record,
    Side,
    Snapshot,
    Update,
    other,
)

NOOP = Decision(actions=[Noop()])


class KeyProblem(ValueError):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def match_keys(rules: SyncRules, side: Side, props: Mapping[str, Any]) -> tuple[str, ...]:
    """The record's match keys, or KeyProblem saying why it has none it may sync with.

    Contacts without a valid email return () when the object sync allows them.
    """
    names = rules.hub_key_props if side == "hub" else rules.app_key_fields
    if rules.match == "email":
        raw = props.get(names[0])
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            if rules.sync_without_email:
                return ()
            raise KeyProblem("no_email", "the contact has no email address")
        keys = contact_keys(raw)
        if not keys:
            # Allowed contacts without a valid email sync unmatched (the hub may still
            # refuse the address itself: the record then fails with invalid_value).
            if rules.sync_without_email:
                return ()
            raise KeyProblem("invalid_email", f"{raw!r} is not a valid email address")
        return keys
    if rules.match == "company":
        keys = company_keys(props.get(names[0]), props.get(names[1]))
        if not keys:
            raise KeyProblem("no_unique_id", "the company has neither a name nor a valid domain")
        return keys
    if rules.match == "unique":
        keys = unique_keys(props.get(names[0]))
        if not keys:
            raise KeyProblem("no_unique_id", f"the unique property {names[0]!r} is empty")
        return keys
    return ()


def _gone(r: Record | None) -> bool:
    return r is None or r.archived


def decide(
    rules: SyncRules,
    hub: Record | None,
    app: Record | None,
    snapshot: Snapshot | None,
    duplicate_of: str | None = None,
) -> Decision:
    """Decide what to do for one record (or pair).

    `snapshot` is None until the pair is linked and synced once. A linked record that is None
    or archived on a side was deleted there. `duplicate_of` names the record that already
    holds this record's match key (an app record id, or "<side> record <id>").
    """
    if snapshot is not None:
        hub_gone, app_gone = _gone(hub), _gone(app)
        if hub_gone and app_gone:
            return Decision(actions=[MarkDeleted("both")], snapshot=snapshot)
        if hub_gone or app_gone:
            assert hub is not None or app is not None
            return _deleted(rules, "hub" if hub_gone else "app", hub, app, snapshot)
        assert hub is not None and app is not None
        return _merge(rules, hub, app, snapshot)

    if duplicate_of is not None:
        holder = duplicate_of if " record " in duplicate_of else f"app record {duplicate_of}"
        return Decision(actions=[Fail("duplicate", f"same match key as {holder}")])
    if hub is not None and hub.archived:
        hub = None
    if app is not None and app.archived:
        app = None
    if hub is None and app is None:
        return NOOP
    excluded = _inclusion(rules, hub, app)
    if excluded is not None:
        return excluded
    if hub is not None and app is not None:
        return _merge(rules, hub, app, None)
    lone: Side = "hub" if hub is not None else "app"
    record = hub if hub is not None else app
    assert record is not None
    return _create(rules, lone, record)


def _inclusion(rules: SyncRules, hub: Record | None, app: Record | None) -> Decision | None:
    """Exclusions that apply before a record is first linked: match key and filters."""
    for side, rec in (("hub", hub), ("app", app)):
        if rec is None:
            continue
        try:
            match_keys(rules, side, rec.properties)  # type: ignore[arg-type]
        except KeyProblem as exc:
            return Decision(actions=[Exclude(exc.reason, f"{side} record {rec.id}: {exc.detail}")])
        miss = first_mismatch(rules.filters, side, rec.properties)
        if miss is not None:
            return Decision(actions=[Exclude("filter", f"{side} record {rec.id} does not match "
                                                       f"{miss.describe()}")])
    return None


def _problem(exc: Exception, name: str, linked: bool) -> Decision:
    if isinstance(exc, StageProblem):
        if exc.category == "stage_not_mapped":
            if not linked:
                return Decision(actions=[Exclude("stage_not_mapped", exc.detail)])
            return Decision(actions=[Fail("unmapped_stage", exc.detail)])
        return Decision(actions=[Fail(exc.category, exc.detail)])
    return Decision(actions=[Fail("invalid_value", f"field {name!r}: {exc}")])


# When several fields have a problem, the decision names one: the most serious kind, then
# the first field by name, so that the decision never depends on the order of the mappings.
_PROBLEM_RANK = {"stage": 0, "invalid_value": 1, "missing_required_field": 2}


def _worst(problems: list[tuple[str, str, Exception | None]], linked: bool) -> Decision:
    _kind, name, exc = min(problems, key=lambda p: (_PROBLEM_RANK[p[0]], p[1]))
    if exc is not None:
        return _problem(exc, name, linked)
    return Decision(actions=[Fail("missing_required_field", f"required field {name!r} is empty")])


def _classify(exc: Exception) -> str:
    return "stage" if isinstance(exc, StageProblem) else "invalid_value"


def _create(rules: SyncRules, source: Side, record: Record) -> Decision:
    target = other(source)
    if not (rules.can_write_app if target == "app" else rules.can_write_hub):
        return Decision(actions=[Exclude(
            "one_way", f"one-way sync {rules.direction}: {source}-only records are not copied")])
    props = record.properties
    values: dict[str, Any] = {}
    changes: list[FieldChange] = []
    snap_src: dict[str, Canon] = {}
    snap_dst: dict[str, Canon] = {}
    problems: list[tuple[str, str, Exception | None]] = []
    warnings: list[FieldWarning] = []
    for r in rules.fields:
        try:
            c = r.read_hub(props) if source == "hub" else r.read_app(props)
            flows = r.to_app if target == "app" else r.to_hub
            snap_src[r.name] = c
            if not flows:
                snap_dst[r.name] = None
                continue
            if c is None:
                if r.required:
                    problems.append(("missing_required_field", r.name, None))
                snap_dst[r.name] = None
                continue
            values.update(r.write_app(c) if target == "app" else r.write_hub(c))
        except SkipField as exc:
            if r.required:
                problems.append(("invalid_value", r.name, exc))
            else:
                # Out of the snapshot: the next sync of the record tries it again.
                del snap_src[r.name]
                warnings.append(FieldWarning(r.name, target, str(exc)))
            continue
        except (InvalidValue, StageProblem) as exc:
            problems.append((_classify(exc), r.name, exc))
            continue
        snap_dst[r.name] = c
        changes.append(FieldChange(r.name, target, None, c, source, "new_record"))
    if problems:
        return _worst(problems, linked=False)
    snap = (Snapshot(hub=snap_src, app=snap_dst) if source == "hub"
            else Snapshot(hub=snap_dst, app=snap_src))
    return Decision(actions=[Create(target, values)], changes=changes, snapshot=snap,
                    warnings=warnings)


def _merge(rules: SyncRules, hub: Record, app: Record, snapshot: Snapshot | None) -> Decision:
    hub_p, app_p = hub.properties, app.properties
    snap_h = snapshot.hub if snapshot is not None else None
    snap_a = snapshot.app if snapshot is not None else None
    linked = snapshot is not None
    new_h: dict[str, Canon] = {}
    new_a: dict[str, Canon] = {}
    hub_changes: dict[str, Any] = {}
    app_changes: dict[str, Any] = {}
    changes: list[FieldChange] = []
    problems: list[tuple[str, str, Exception | None]] = []
    warnings: list[FieldWarning] = []

    for r in rules.fields:
        name = r.name
        # Which value flows where: (target side, value, winner, reason) or None.
        move: tuple[Side, Canon, Side, str] | None = None
        try:
            t = r.transform
            if t is not None:
                h = t.hub_canon(hub_p.get(r.hub_prop))
                a = t.app_canon(app_p.get(r.app_field))
            else:
                h = r.read_hub(hub_p)
                a = r.read_app(app_p)

            if h != a:
                if snap_h is not None and snap_a is not None and name in snap_h \
                        and name in snap_a:
                    hc = h != snap_h[name]
                    ac = a != snap_a[name]
                    if hc and not ac:
                        move = ("app", h, "hub", "one_sided_change")
                    elif ac and not hc:
                        move = ("hub", a, "app", "one_sided_change")
                    elif hc and ac:
                        move = (_conflict(r.winner, h, a, "conflict_winner", "empty_winner")
                                if r.to_hub and r.to_app else
                                _conflict(r.winner, h, a, "conflict_one_way", "empty_winner"))
                elif h is None:
                    move = ("hub", a, "app", "first_pairing_empty")
                elif a is None:
                    move = ("app", h, "hub", "first_pairing_empty")
                elif r.to_hub and r.to_app:
                    move = _conflict(r.winner, h, a, "first_pairing", "first_pairing")
                else:
                    # The direction decides (r.winner is the field's source), not the
                    # conflict winner: the history must say which rule applied.
                    move = _conflict(r.winner, h, a, "first_pairing_one_way",
                                     "first_pairing_one_way")

            if move is not None:
                target, value, winner, reason = move
                if target == "app" and r.to_app:
                    app_changes.update(r.write_app(value))
                    changes.append(FieldChange(name, "app", a, value, winner, reason))  # type: ignore[arg-type]
                    a = value
                elif target == "hub" and r.to_hub:
                    hub_changes.update(r.write_hub(value))
                    changes.append(FieldChange(name, "hub", h, value, winner, reason))  # type: ignore[arg-type]
                    h = value
        except SkipField as exc:
            warnings.append(FieldWarning(name, move[0] if move else "hub", str(exc)))
            if snap_h is not None and snap_a is not None and name in snap_h and name in snap_a:
                new_h[name], new_a[name] = snap_h[name], snap_a[name]
            continue
        except (InvalidValue, StageProblem) as exc:
            problems.append((_classify(exc), name, exc))
            continue

        if r.required and ((h is None and r.to_hub) or (a is None and r.to_app)):
            problems.append(("missing_required_field", name, None))
        new_h[name] = h
        new_a[name] = a

    if problems:
        return _worst(problems, linked)
    actions: list[Action] = []
    if not linked:
        actions.append(Link(hub.id, app.id))
    if hub_changes:
        actions.append(Update("hub", hub.id, hub_changes))
    if app_changes:
        actions.append(Update("app", app.id, app_changes))
    if not actions:
        if snapshot is not None and snapshot.hub == new_h and snapshot.app == new_a:
            return Decision(actions=[Noop()], snapshot=snapshot, warnings=warnings)
        actions.append(Noop())
    return Decision(actions=actions, changes=changes, snapshot=Snapshot(hub=new_h, app=new_a),
                    warnings=warnings)


def unchanged_since(rules: SyncRules, side: Side, record: Record,
                    snapshot: Snapshot) -> bool:
    """Whether `record` (of `side`) holds, in every mapped field, the value the snapshot says
    that side held after the last sync: a change event about it brings nothing from that side
    (an echo of our own write, or a change of fields the sync does not map). A value that does
    not convert counts as changed (the decision reports it)."""
    if record.archived:
        return False
    held = snapshot.hub if side == "hub" else snapshot.app
    props = record.properties
    for r in rules.fields:
        if r.name not in held:
            return False
        try:
            t = r.transform
            if t is not None:
                now = (t.hub_canon(props.get(r.hub_prop)) if side == "hub"
                       else t.app_canon(props.get(r.app_field)))
            else:
                now = r.read_hub(props) if side == "hub" else r.read_app(props)
        except (InvalidValue, StageProblem):
            return False
        if now != held[r.name]:
            return False
    return True


def hub_values_held(rules: SyncRules, snapshot: Snapshot,
                    prop: str) -> dict[str, Any] | None:
    """What the snapshot says the hub holds in the properties of every field read from hub
    property `prop`, as the sync writes them (`write_hub`): a hub event reporting another
    value for `prop` brings a change, one reporting that value is an echo of our own write.
    {} when neither a field nor a match key reads `prop` (filters apply only before the
    first link); None when it cannot say (a field the snapshot lacks, a key no field maps,
    a value that does not convert)."""
    readers = [r for r in rules.fields if prop in r.hub_props]
    if not readers:
        return None if prop in rules.hub_key_props else {}
    out: dict[str, Any] = {}
    for r in readers:
        if r.name not in snapshot.hub:
            return None
        try:
            out.update(r.write_hub(snapshot.hub[r.name]))
        except (InvalidValue, StageProblem, ValueError):
            return None
    return out


def _conflict(winner: Side, h: Canon, a: Canon, reason: str,
              empty_reason: str) -> tuple[Side, Canon, Side, str]:
    if winner == "hub":
        if h is None:
            return ("hub", a, "app", empty_reason)
        return ("app", h, "hub", reason)
    if a is None:
        return ("app", h, "hub", empty_reason)
    return ("hub", a, "app", reason)


def _deleted(rules: SyncRules, gone: Side, hub: Record | None, app: Record | None,
             snapshot: Snapshot) -> Decision:
    survivor = app if gone == "hub" else hub
    assert survivor is not None
    policy = rules.on_delete
    if policy == "review":
        return Decision(actions=[ParkDelete(gone)], snapshot=snapshot)
    if policy == "propagate":
        target = other(gone)
        allowed = rules.can_write_app if target == "app" else rules.can_write_hub
        if allowed:
            return Decision(actions=[Delete(target, survivor.id), MarkDeleted(gone)],
                            snapshot=snapshot)
    return Decision(actions=[MarkDeleted(gone)], snapshot=snapshot)


def decide_overwritten(rules: SyncRules, hub: Record | None, app: Record | None,
                       snapshot: Snapshot | None, lost: Mapping[str, Any]) -> Decision:
    """Decide a linked pair whose hub record had an edit that our own last write to it
    overwrote unseen: `lost` holds, per hub property, the value that edit set (HubSpot cannot
    refuse a stale write; its property history shows what was overwritten).

    Each such field is decided as the conflict it was, between the lost value and the value
    written over it (what the hub holds), by the field's rule: the winner's value, unless it
    is empty (then the other's); a field that may not move hub -> app keeps ours. Where the
    lost value wins, the hub record is decided as holding it, so it goes on to the app as a
    hub change (or meets a newer app change as a conflict), and it is written back to the
    hub unless that decision writes another value there. Without a lost value that wins,
    this is `decide()`."""
    if snapshot is None or hub is None or hub.archived or app is None or not lost:
        return decide(rules, hub, app, snapshot)
    restored: dict[str, Any] = {}
    restores: list[FieldChange] = []
    for r in rules.fields:
        mine = {p: v for p, v in lost.items() if p in r.hub_props}
        if not mine or not r.to_app:
            continue
        try:
            ours = r.read_hub(hub.properties)
            theirs = r.read_hub({**hub.properties, **mine})
        except (InvalidValue, StageProblem):
            continue
        if theirs == ours:
            continue
        target, _value, _winner, reason = _conflict(r.winner, theirs, ours, "conflict_winner",
                                                    "empty_winner")
        if target == "app":  # the hub's lost value wins
            restored.update(mine)
            restores.append(FieldChange(r.name, "hub", ours, theirs, "hub", reason))  # type: ignore[arg-type]
    if not restored:
        return decide(rules, hub, app, snapshot)
    as_edited = Record(hub.id, {**hub.properties, **restored}, hub.updated_at,
                       incarnation=hub.incarnation)
    d = decide(rules, as_edited, app, snapshot)
    if d.snapshot is None or any(isinstance(a, Fail | Exclude) for a in d.actions):
        return d
    written = next((a for a in d.actions if isinstance(a, Update) and a.side == "hub"), None)
    back = {p: v for p, v in restored.items() if written is None or p not in written.changes}
    if not back:
        return d
    actions: list[Action] = [a for a in d.actions if not isinstance(a, Noop) and a is not written]
    actions.append(Update("hub", hub.id, {**back, **(written.changes if written else {})}))
    again = {c.field for c in d.changes if c.side == "hub"}
    changes = [c for c in restores if c.field not in again] + d.changes
    return Decision(actions=actions, changes=changes, snapshot=d.snapshot)


def effective_snapshot(rules: SyncRules, snapshot: Snapshot | None, pending: Snapshot,
                       written: dict[str, list[str]], hub: Record | None,
                       app: Record | None, landed: Collection[Side] = (),
                       creating: str = "") -> Snapshot | None:
    """The snapshot to decide with when a sync was interrupted after its writes were sent
    and before its outcome was committed (`pending` is the snapshot it would have stored,
    `written` the fields it wrote per side).

    Per field: one that sync did not write takes the pending values (they are what that sync
    would have stored); one it wrote takes the pending values if the side written now holds
    the value written (the write landed: it is ours, not a change there) or the side is in
    `landed` (its change log shows our write landed and the record was changed after it: the
    value it holds is a newer edit), else the old snapshot's (the value still has to move).
    So a write of ours that landed is not mistaken for a change, an edit made after it is not
    mistaken for a conflict, and a change that did not reach the other side is not forgotten.
    `creating` names the side a create was sent to and not healed yet: a record missing there
    is not known yet, not deleted.
    """
    if snapshot is None and (hub is None or app is None):
        # Never linked and one record missing. The record left is one that sync wrote (it
        # created it, or updated it to pair it) and still holds what was written: the sync
        # paired the two and its write landed, and the other record was deleted since, which
        # is decided as the deletion of a linked pair (never as a new record to copy back).
        # Otherwise the interrupted sync was a create that did not land (or is not found
        # yet): there is no pairing to remember.
        left_side: Side = "hub" if hub is not None else "app"
        left = hub if hub is not None else app
        if left is None or left.archived or creating == other(left_side) \
                or not _holds_written(rules, pending, written, left_side, left):
            return None
    wrote = {name: side for side in ("hub", "app") for name in written.get(side, ())}
    old_hub = snapshot.hub if snapshot is not None else {}
    old_app = snapshot.app if snapshot is not None else {}
    hub_snap: dict[str, Canon] = {}
    app_snap: dict[str, Canon] = {}
    for r in rules.fields:
        name = r.name
        if name not in pending.hub or name not in pending.app:
            use_pending = False
        elif name not in wrote:
            use_pending = True
        else:
            side = wrote[name]
            rec = hub if side == "hub" else app
            use_pending = side in landed
            if not use_pending and rec is not None and not rec.archived:
                try:
                    now = r.read_hub(rec.properties) if side == "hub" else r.read_app(
                        rec.properties)
                    target = pending.hub[name] if side == "hub" else pending.app[name]
                    use_pending = now == target
                except (InvalidValue, StageProblem):
                    use_pending = False
        if use_pending:
            hub_snap[name], app_snap[name] = pending.hub[name], pending.app[name]
        elif name in old_hub and name in old_app:
            hub_snap[name], app_snap[name] = old_hub[name], old_app[name]
        # else: unknown on both: decided as a first pairing
    if not hub_snap and snapshot is None:
        return None
    return Snapshot(hub=hub_snap, app=app_snap)


def _holds_written(rules: SyncRules, pending: Snapshot, written: dict[str, list[str]],
                   side: Side, rec: Record) -> bool:
    """Whether `rec` holds every value an interrupted sync wrote to it (and it wrote some)."""
    names = set(written.get(side, ()))
    if not names:
        return False
    want = pending.hub if side == "hub" else pending.app
    for r in rules.fields:
        if r.name not in names:
            continue
        try:
            now = r.read_hub(rec.properties) if side == "hub" else r.read_app(rec.properties)
        except (InvalidValue, StageProblem):
            return False
        if r.name not in want or now != want[r.name]:
            return False
    return True
