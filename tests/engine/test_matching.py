"""engine.matching: what a record not linked yet does about the holders of its keys."""

from __future__ import annotations

from crmsync.engine.matching import Duplicate, Holder, Pair, match, pairable

FREE = Holder("H1")  # a hub record crmsync has not paired with anything
LINKED = Holder("H1", partner_id="A1", state="syncing")
DUP = Holder("H9", state="failed", category="duplicate")


def test_nobody_holds_the_key_the_record_is_alone() -> None:
    assert match("app", "A2", [], []) is None


def test_another_record_of_its_side_makes_it_a_duplicate() -> None:
    assert match("app", "A2", [Holder("A1", "H1", "syncing")], [LINKED]) == \
        Duplicate("app record A1")
    assert Duplicate("app record A1").detail == "same match key as app record A1"
    # Its own claim is no duplicate.
    assert match("app", "A2", [Holder("A2")], [FREE]) == Pair(FREE)


def test_an_unpaired_record_of_the_other_side_pairs() -> None:
    assert match("app", "A2", [], [FREE]) == Pair(FREE)
    assert match("app", None, [], [Holder("H1", state="pending")]) == \
        Pair(Holder("H1", state="pending"))


def test_a_record_of_the_other_side_paired_elsewhere_makes_it_a_duplicate() -> None:
    # Pairing would move A1's link; creating would make a second H with the key.
    assert match("app", "A2", [], [LINKED]) == Duplicate("app record A1")
    # Its partner was deleted since: the hub record still holds the key.
    gone = Holder("H1", partner_id="A1", state="deleted")
    assert match("app", "A2", [], [gone]) == Duplicate("hub record H1")
    # Paired with this very record: nothing to decide.
    assert match("app", "A1", [], [LINKED]) == Pair(LINKED)


def test_a_failed_duplicate_is_never_a_partner_nor_a_reason_to_be_one() -> None:
    assert not pairable(DUP, None)
    assert match("app", "A2", [], [DUP]) is None
    assert match("app", "A2", [], [DUP, FREE]) == Pair(FREE)
    assert match("hub", "H2", [Holder("H9", category="duplicate", state="queued")], []) is None


def test_a_record_deleted_before_it_was_paired_is_nobodys_partner() -> None:
    assert not pairable(Holder("H1", state="deleted"), None)
    assert match("app", "A2", [], [Holder("H1", state="deleted")]) is None
