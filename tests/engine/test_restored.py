"""hold_ambiguous(): after a restore, a conflict the restored snapshot cannot judge is held, never
settled by the conflict winner (docs/backup-and-restore.md, "What cannot be told apart")."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crmsync.config.model import ObjectSync
from crmsync.engine import Decision, Fail, Record, Snapshot, Update, compile_rules, decide
from crmsync.engine.restored import AMBIGUOUS, CATEGORY, hold_ambiguous

BACKUP_MS = 1_700_000_000_000  # the backup's time less the clock margin
BEFORE, AFTER = BACKUP_MS - 60_000, BACKUP_MS + 60_000


def rules(**kw: Any) -> Any:
    return compile_rules(ObjectSync(connection="shop", hub_object="contacts",
                                    app_object="customers", **kw))


def hub(last: str | None, at: int, first: str = "Ann") -> Record:
    return Record("h1", {"email": "ann@example.com", "firstname": first, "lastname": last},
                  updated_at=at)


def app(last: str | None, at: int, first: str = "Ann") -> Record:
    return Record("a1", {"email": "ann@example.com", "first_name": first, "last_name": last},
                  updated_at=at)


def snap(last: str | None) -> Snapshot:
    v = {"email": "ann@example.com", "firstname": "Ann", "lastname": last, "phone": None,
         "jobtitle": None, "company": None}
    return Snapshot(hub=dict(v), app=dict(v))


def held(d: Decision) -> bool:
    return any(isinstance(a, Fail) and a.category == CATEGORY for a in d.actions)


def test_an_edit_after_a_copy_the_restore_forgot_is_not_overwritten():
    """The hub changed Lee -> Hub after the backup, crmsync copied it to the app (forgotten by
    the restore), then the app changed it to Newer. The hub wins conflicts: without the hold,
    the app's newer edit would be replaced by the hub's older value."""
    h, a = hub("Hub", AFTER), app("Newer", AFTER)
    d = decide(rules(conflict_winner="hub"), h, a, snap("Lee"))
    assert d.changes[0].reason == "conflict_winner" and isinstance(d.actions[0], Update)
    got = hold_ambiguous(d, h, a, BACKUP_MS)
    assert held(got) and got.snapshot is None
    assert "lastname" in got.actions[0].detail and "correct the wrong side" in \
        got.actions[0].detail


def test_a_conflict_the_backup_already_saw_is_settled_as_usual():
    """The side to be written has not changed since the backup: its value is one the backup's
    state had not synced yet, a true conflict, settled by the winner as the daemon would have."""
    h, a = hub("Hub", AFTER), app("AppBefore", BEFORE)
    d = decide(rules(conflict_winner="hub"), h, a, snap("Lee"))
    assert hold_ambiguous(d, h, a, BACKUP_MS) == d
    # The same records, the app winning: now the hub, changed after the backup, is written.
    d2 = decide(rules(conflict_winner="app"), h, a, snap("Lee"))
    assert held(hold_ambiguous(d2, h, a, BACKUP_MS))


def test_a_first_pairing_with_a_copy_made_after_the_backup_is_held():
    """An app record copied to the hub after the backup (the link forgotten), then edited in
    the app: paired again, the hub's copy must not win over the app's newer value."""
    h, a = hub("AsCopied", AFTER), app("EditedLater", AFTER)
    d = decide(rules(conflict_winner="hub"), h, a, None)
    assert {c.reason for c in d.changes} == {"first_pairing"}
    assert held(hold_ambiguous(d, h, a, BACKUP_MS))


def test_an_emptied_value_is_not_filled_back_from_a_copy():
    h, a = hub("Lee", AFTER), app(None, AFTER)
    d = decide(rules(), h, a, None)
    assert {c.reason for c in d.changes} == {"first_pairing_empty"}
    assert held(hold_ambiguous(d, h, a, BACKUP_MS))


def test_a_record_without_a_time_counts_as_changed():
    h, a = hub("Hub", BEFORE), app("App", 0)
    d = decide(rules(conflict_winner="hub"), h, a, snap("Lee"))
    assert held(hold_ambiguous(d, h, a, BACKUP_MS))


@pytest.mark.parametrize("h, a, s", [
    (hub("Hub", AFTER), app("Lee", AFTER), snap("Lee")),  # changed on one side only
    (hub("Same", AFTER), app("Same", AFTER), snap("Lee")),  # changed alike on both
    (hub("Lee", AFTER), app("Lee", AFTER), None),  # paired, equal
])
def test_changes_that_are_not_conflicts_go_through(h, a, s):
    d = decide(rules(), h, a, s)
    assert hold_ambiguous(d, h, a, BACKUP_MS) == d


def test_a_one_way_field_follows_its_direction_whatever_happened():
    h, a = hub("Hub", AFTER), app("App", AFTER)
    d = decide(rules(direction="to_app"), h, a, snap("Lee"))
    assert {c.reason for c in d.changes} == {"conflict_one_way"}
    assert hold_ambiguous(d, h, a, BACKUP_MS) == d


def test_a_held_record_stays_held_until_both_sides_agree():
    """Out of the catch-up (no backup time any more), the record held keeps its old snapshot:
    a conflict against it stays held, whatever the records' times; once the operator made the
    sides agree, the decision goes through."""
    h, a = hub("Hub", BEFORE), app("App", BEFORE)
    d = decide(rules(), h, a, snap("Lee"))
    assert hold_ambiguous(d, h, a, None) == d  # nobody held it: the usual rule
    assert held(hold_ambiguous(d, h, a, None, held=True))
    fixed = app("Hub", AFTER, first="Annie")
    d2 = decide(rules(), h, fixed, snap("Lee"))
    assert hold_ambiguous(d2, h, fixed, None, held=True) == d2
    assert not held(d2)


VALUES = st.sampled_from([None, "Lee", "Hub", "App"])
TIMES = st.sampled_from([0, BEFORE, AFTER])


@given(hv=VALUES, av=VALUES, sv=st.one_of(st.none(), VALUES), ht=TIMES, at=TIMES,
       winner=st.sampled_from(["hub", "app"]), since=st.one_of(st.none(), st.just(BACKUP_MS)),
       is_held=st.booleans())
def test_holding_never_writes_and_only_replaces_ambiguous_decisions(hv, av, sv, ht, at, winner,
                                                                     since, is_held):
    h, a = hub(hv, ht), app(av, at)
    s = None if sv is None else snap(sv)
    d = decide(rules(conflict_winner=winner), h, a, s)
    got = hold_ambiguous(d, h, a, since, is_held)
    ambiguous = [c for c in d.changes if c.reason in AMBIGUOUS]
    if got != d:
        # Held: nothing is written to either side, and only for an ambiguous move.
        assert got.actions == [Fail(CATEGORY, got.actions[0].detail)] and got.changes == []
        assert ambiguous
        written_recent = any(
            (h if c.side == "hub" else a).updated_at in (0, AFTER) for c in ambiguous)
        assert is_held or (since is not None and written_recent)
    else:
        assert not ambiguous or (not is_held and (since is None or not any(
            (h if c.side == "hub" else a).updated_at in (0, AFTER) for c in ambiguous)))
