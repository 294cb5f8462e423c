"""engine.lost_creates: what became of a create whose answer was lost."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from crmsync.engine.lost_creates import CLOCK_SKEW_MS, Found, LostCreate, judge_lost_create

SENT = 1_700_000_000_000


def test_a_record_made_after_the_first_send_is_ours() -> None:
    assert judge_lost_create([Found("7", SENT + 5)], SENT, has_key=True,
                             attempts_left=True) == LostCreate("ours", "7")


def test_a_record_made_shortly_before_counts_as_ours_for_the_clocks_differ() -> None:
    assert judge_lost_create([Found("7", SENT - CLOCK_SKEW_MS)], SENT, has_key=True,
                             attempts_left=True).verdict == "ours"
    assert judge_lost_create([Found("7", SENT - CLOCK_SKEW_MS - 1)], SENT, has_key=True,
                             attempts_left=True) == LostCreate("conflict", "7")


def test_an_unknown_creation_time_or_send_time_is_taken_as_ours() -> None:
    assert judge_lost_create([Found("7")], SENT, has_key=True,
                             attempts_left=False) == LostCreate("ours", "7")
    assert judge_lost_create([Found("7", 1)], None, has_key=True,
                             attempts_left=False) == LostCreate("ours", "7")


def test_among_several_the_newest_is_ours_older_ones_are_someone_elses() -> None:
    found = [Found("1", SENT - 3_600_000), Found("9", SENT + 10), Found("4", SENT - 7_200_000)]
    assert judge_lost_create(found, SENT, has_key=True,
                             attempts_left=True) == LostCreate("ours", "9")
    older = [Found("1", SENT - 3_600_000), Found("4", SENT - 7_200_000)]
    assert judge_lost_create(older, SENT, has_key=True,
                             attempts_left=True) == LostCreate("conflict", "1")


def test_nothing_found_is_sent_again_only_with_a_key_and_attempts_left() -> None:
    assert judge_lost_create([], SENT, has_key=True, attempts_left=True).verdict == "again"
    assert judge_lost_create([], SENT, has_key=True, attempts_left=False).verdict == "gave_up"
    assert judge_lost_create([], SENT, has_key=False, attempts_left=True).verdict == "no_key"


founds = st.lists(st.builds(Found, st.sampled_from(["1", "2", "3", "4"]),
                            st.one_of(st.none(), st.integers(0, 2 * SENT))), max_size=4,
                  unique_by=lambda f: f.record_id)


@given(founds, st.one_of(st.none(), st.integers(0, 2 * SENT)), st.booleans(), st.booleans())
def test_a_found_record_is_never_created_again(found: list[Found], sent: int | None,
                                               has_key: bool, left: bool) -> None:
    # No duplicate: whatever holds the key, a create that may have landed is not sent again.
    v = judge_lost_create(found, sent, has_key=has_key or bool(found), attempts_left=left)
    if found:
        assert v.verdict in ("ours", "conflict")
        assert v.record_id in {f.record_id for f in found}
    else:
        assert v.record_id is None


@given(founds, st.integers(0, 2 * SENT))
def test_ours_only_when_made_no_earlier_than_the_skew_before_sending(found: list[Found],
                                                                     sent: int) -> None:
    v = judge_lost_create(found, sent, has_key=True, attempts_left=True)
    if v.verdict == "ours":
        (made,) = [f.created_at for f in found if f.record_id == v.record_id]
        assert made is None or made >= sent - CLOCK_SKEW_MS
    if v.verdict == "conflict":
        assert all(f.created_at is not None and f.created_at < sent - CLOCK_SKEW_MS
                   for f in found)
