"""Seeing a hub edit our own write overwrote (issue 10 item 6): which events point at one, and
which value the property's history shows was overwritten."""

from crmsync.connectors.base import PropertyValue
from crmsync.runtime.intake import SeenChange
from crmsync.runtime.overwritten import HubWrite, overwritten, suspects

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
