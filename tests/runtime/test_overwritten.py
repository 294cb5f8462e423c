"""Seeing a hub edit our own write overwrote (issue 10 item 6): which events point at one, and
which value the property's history shows was overwritten."""

from crmsync.connectors.base import PropertyValue
from crmsync.runtime.intake import SeenChange
from crmsync.runtime.overwritten import (
    HubWrite,
    echoes,
    following,
    overwritten,
    suspects,
    value_digest,
)

# We read the record at version 100 and wrote firstname "App" at 200.
WRITE = HubWrite({"firstname": "App"}, read_at=100, written_at=200)


def test_only_a_change_of_a_written_property_between_read_and_write_is_a_suspect():
    seen = [SeenChange(1, 150, "firstname"),  # in the window
            SeenChange(2, 200, "firstname"),  # our own write's event
            SeenChange(3, 90, "firstname"),  # seen by the decision
            SeenChange(4, 150, "lastname"),  # not written by us
            SeenChange(5, 150, None)]  # not a property change
    assert suspects(WRITE, seen) == ["firstname"]
    assert suspects(WRITE, seen[1:]) == []


def test_the_value_set_between_read_and_write_is_the_one_overwritten():
    history = {"firstname": [PropertyValue("App", 200, "INTEGRATION"),
                             PropertyValue("User2", 170, "CRM_UI"),
                             PropertyValue("User1", 150, "CRM_UI"),
                             PropertyValue("Ann", 50, "INTEGRATION")]}
    assert overwritten(WRITE, history, ["firstname"]) == {"firstname": "User2"}


def test_nothing_was_overwritten_when_no_one_changed_it_after_the_read():
    history = {"firstname": [PropertyValue("App", 200), PropertyValue("Ann", 100)]}
    assert overwritten(WRITE, history, ["firstname"]) == {}


def test_a_later_edit_is_the_current_value_not_a_lost_one():
    history = {"firstname": [PropertyValue("User3", 250), PropertyValue("App", 200),
                             PropertyValue("User1", 150)]}
    assert overwritten(WRITE, history, ["firstname"]) == {}


def test_only_events_of_our_value_in_our_write_s_window_are_its_echoes():
    app = value_digest("App")
    assert echoes(WRITE, [SeenChange(1, 200, "firstname", app)])  # our write's own event
    assert echoes(WRITE, [SeenChange(1, 150, "firstname", app),  # a user set the same value
                          SeenChange(2, 200, "firstname", app)])
    # A user's other value in the window (the net's suspect), an edit after our write (back
    # to our value, or not), an event seen by the decision, one of a property we did not
    # write, one without its value or property: each is synced, reading the record.
    for other in (SeenChange(3, 150, "firstname", value_digest("User")),
                  SeenChange(3, 201, "firstname", app),
                  SeenChange(3, 90, "firstname", app),
                  SeenChange(3, 150, "lastname", app),
                  SeenChange(3, 200, "firstname", None),
                  SeenChange(3, 200, None, None)):
        assert not echoes(WRITE, [SeenChange(1, 200, "firstname", app), other])
    assert not echoes(WRITE, [])
    assert not echoes(WRITE, [7])  # a bare inbox id says nothing of its change


def test_another_value_saved_in_our_write_s_millisecond_is_a_suspect():
    # HubSpot's times are milliseconds: a user's save and our write may share one (issue 17,
    # seed 7). Our write's own event there is not a suspect; another value is, and the
    # history tells whether it came before our write (overwritten) or after (current).
    ours, theirs = value_digest("App"), value_digest("User")
    assert suspects(WRITE, [SeenChange(1, 200, "firstname", ours)]) == []
    assert suspects(WRITE, [SeenChange(1, 200, "firstname", theirs)]) == ["firstname"]
    before = {"firstname": [PropertyValue("App", 200), PropertyValue("User", 200),
                            PropertyValue("Ann", 50)]}
    assert overwritten(WRITE, before, ["firstname"]) == {"firstname": "User"}
    after = {"firstname": [PropertyValue("User", 200), PropertyValue("App", 200)]}
    assert overwritten(WRITE, after, ["firstname"]) == {}


def test_a_write_that_read_our_last_write_s_version_carries_its_window_on():
    # Our second write's decision read the version our first write made (200): it saw
    # nothing that write overwrote, so the window still starts at the first write's read.
    second = following(WRITE, {"firstname": "App2"}, read_at=200, written_at=300)
    assert (second.read_at, second.written_at) == (100, 300)
    assert second.values == {"firstname": "App2"}
    assert second.ours("firstname") == {"App", "App2"}
    # The user's save overwritten by the first write (same millisecond, 200) comes now.
    assert suspects(second, [SeenChange(1, 200, "firstname", value_digest("User"))]) == [
        "firstname"]
    history = {"firstname": [PropertyValue("App2", 300), PropertyValue("App", 200),
                             PropertyValue("User", 200), PropertyValue("Ann", 50)]}
    assert overwritten(second, history, ["firstname"]) == {"firstname": "User"}
    # The first write's own event is an echo of the window.
    assert echoes(second, [SeenChange(1, 200, "firstname", value_digest("App"))])
    # A read older still (HubSpot's search index lags) opens the window there.
    assert following(WRITE, {"firstname": "App2"}, read_at=80, written_at=300).read_at == 80
    # A property only the first write wrote stays ours too.
    both = following(HubWrite({"lastname": "Lee"}, 100, 200), {"firstname": "App2"}, 200, 300)
    assert both.values == {"lastname": "Lee", "firstname": "App2"}


def test_a_write_that_read_a_newer_version_starts_its_own_window():
    # The decision read a version after our last write (someone changed the record since):
    # it saw what there was to see, and the earlier window closes.
    second = following(WRITE, {"firstname": "App2"}, read_at=250, written_at=300)
    assert second == HubWrite({"firstname": "App2"}, read_at=250, written_at=300)
    assert following(None, {"firstname": "App"}, 100, 200) == WRITE
