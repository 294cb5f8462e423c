"""effective_snapshot: deciding again after a sync was cut short between sending its writes
and committing its outcome (a crash, a SIGKILL). Writes that landed are ours, not changes;
changes that did not reach the other side still move; edits made since are not lost."""

from crmsync.config.model import FieldMapping, ObjectSync
from crmsync.engine import Record, Snapshot, Update, compile_rules, decide, effective_snapshot

RULES = compile_rules(ObjectSync(
    connection="shop", hub_object="contacts", app_object="customers", conflict_winner="hub",
    use_default_mappings=False,
    mappings=[FieldMapping(hub="email", app="email"),
              FieldMapping(hub="lastname", app="last_name"),
              FieldMapping(hub="jobtitle", app="job_title")]))

OLD = Snapshot(hub={"email": "ann@x.com", "lastname": "First", "jobtitle": None},
               app={"email": "ann@x.com", "lastname": "First", "jobtitle": None})


def hub(**p):
    return Record("h1", {"email": "ann@x.com", **p})


def app(**p):
    return Record("a1", {"email": "ann@x.com", **{("last_name" if k == "lastname" else
                                                    "job_title"): v for k, v in p.items()}})


def writes(d):
    return {(a.side, k, v) for a in d.actions if isinstance(a, Update)
            for k, v in a.changes.items()}


def test_an_update_that_landed_is_ours_and_a_later_edit_on_the_other_side_wins():
    # The app changed lastname to Second; the sync wrote Second to the hub and was killed.
    pending = Snapshot(hub={**OLD.hub, "lastname": "Second"}, app={**OLD.app, "lastname": "Second"})
    # Since then the app changed it again, to Third. The hub holds our Second.
    h, a = hub(lastname="Second"), app(lastname="Third")
    snap = effective_snapshot(RULES, OLD, pending, {"hub": ["lastname"], "app": []}, h, a)
    d = decide(RULES, h, a, snap)
    assert writes(d) == {("hub", "lastname", "Third")}
    # Without it, the hub's landed write looks like a hub change and wins the conflict.
    assert writes(decide(RULES, h, a, OLD)) == {("app", "last_name", "Second")}


def test_a_write_that_did_not_land_is_still_made():
    # The hub changed jobtitle to CTO; the sync's write to the app never landed.
    pending = Snapshot(hub={**OLD.hub, "jobtitle": "CTO"}, app={**OLD.app, "jobtitle": "CTO"})
    h, a = hub(lastname="First", jobtitle="CTO"), app(lastname="First")
    snap = effective_snapshot(RULES, OLD, pending, {"hub": [], "app": ["jobtitle"]}, h, a)
    assert writes(decide(RULES, h, a, snap)) == {("app", "job_title", "CTO")}


def test_a_create_healed_by_matching_keeps_the_edit_made_since():
    # The hub record was created from the app's values (Second) and the daemon died before
    # linking; the app then changed lastname to Third. No old snapshot exists.
    pending = Snapshot(hub={"email": "ann@x.com", "lastname": "Second", "jobtitle": None},
                       app={"email": "ann@x.com", "lastname": "Second", "jobtitle": None})
    h, a = hub(lastname="Second"), app(lastname="Third")
    snap = effective_snapshot(RULES, None, pending,
                              {"hub": ["email", "lastname"], "app": []}, h, a)
    assert writes(decide(RULES, h, a, snap)) == {("hub", "lastname", "Third")}
    # As a first pairing the hub (the winner) would have overwritten the app's edit.
    assert writes(decide(RULES, h, a, None)) == {("app", "last_name", "Second")}


def test_a_create_that_did_not_land_is_not_a_pairing():
    pending = Snapshot(hub={"email": "ann@x.com"}, app={"email": "ann@x.com"})
    assert effective_snapshot(RULES, None, pending, {"hub": ["email"], "app": []},
                              None, app()) is None


def test_a_create_that_landed_whose_source_was_deleted_is_a_deleted_pair():
    # A hub record was created from app record a1 (Second); the daemon died before linking,
    # and a1 was deleted since. The hub record holds what was written: it is the pair's, and
    # the pair's deletion is decided (not a hub record to copy back to the app).
    pending = Snapshot(hub={"email": "ann@x.com", "lastname": "Second", "jobtitle": None},
                       app={"email": "ann@x.com", "lastname": "Second", "jobtitle": None})
    written = {"hub": ["email", "lastname"], "app": []}
    h = hub(lastname="Second")
    snap = effective_snapshot(RULES, None, pending, written, h, None)
    assert snap == pending
    assert [type(x).__name__ for x in decide(RULES, h, None, snap).actions] == ["MarkDeleted"]
    # A hub record that does not hold what was written is not known to be the create's.
    assert effective_snapshot(RULES, None, pending, written, hub(lastname="Other"), None) is None
    # Nor is the source record itself, left alone when the create did not land.
    assert effective_snapshot(RULES, None, pending, written, None, app(lastname="Second")) is None


def test_an_edit_made_after_our_write_landed_is_not_a_conflict():
    # The first pairing wrote the hub's Second to the app (the hub wins); the daemon died
    # before linking; the app, holding Second, then set Third. Only the app's change log
    # says the write landed before Third (`landed`): Third is then the newest edit.
    pending = Snapshot(hub={"email": "ann@x.com", "lastname": "Second", "jobtitle": None},
                       app={"email": "ann@x.com", "lastname": "Second", "jobtitle": None})
    written = {"hub": [], "app": ["lastname"]}
    h, a = hub(lastname="Second"), app(lastname="Third")
    snap = effective_snapshot(RULES, None, pending, written, h, a, landed=("app",))
    assert writes(decide(RULES, h, a, snap)) == {("hub", "lastname", "Third")}
    # Not known to have landed: Third never saw Second, and the hub wins the conflict.
    snap = effective_snapshot(RULES, None, pending, written, h, a)
    assert writes(decide(RULES, h, a, snap)) == {("app", "last_name", "Second")}


def test_a_record_not_found_yet_where_a_create_was_sent_is_not_deleted():
    # The create of a hub record from a1 was healed (found, paired, the app updated) by a
    # sync that was cut short in turn: the item still names no hub record. Its absence from
    # this decision is "not found yet" (the heal finds it again), not a deletion on the hub.
    pending = Snapshot(hub={"email": "ann@x.com", "lastname": "Hub", "jobtitle": None},
                       app={"email": "ann@x.com", "lastname": "Hub", "jobtitle": None})
    written = {"hub": [], "app": ["lastname"]}
    a = app(lastname="Hub")
    assert effective_snapshot(RULES, None, pending, written, None, a, creating="hub") is None
    # Whereas with the hub record known and gone, the pair's deletion is decided.
    assert effective_snapshot(RULES, None, pending, written, None, a) == pending
