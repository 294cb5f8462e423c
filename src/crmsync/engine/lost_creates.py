"""What became of a create whose answer was lost (a timeout, a dropped connection, a 5xx after
sending): it may have been made, so it is never sent again blindly. The runtime looks up the
records holding the create's key (`connectors.base.CreateKey`) and asks here:

* a record found that was made no earlier than shortly before the create was first sent (or
  whose creation time is unknown) is the one it made: ours;
* only older records found: the key was taken before: a conflict with the newest of them;
* nothing found, but nothing could be looked up (the create has no key): it is not sent again,
  so that no duplicate is made;
* nothing found: it certainly was not made; it is sent again after a backoff, while attempts
  are left.

Pure: the caller looks the records up and passes them in.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import msgspec

# A record found while healing a create counts as ours if its side made it no earlier than
# this before the first attempt was sent (the two clocks differ).
CLOCK_SKEW_MS = 60_000

Verdict = Literal["ours", "conflict", "no_key", "gave_up", "again"]


class Found(msgspec.Struct, frozen=True):
    """A record holding the create's key: its id and when its side made it (epoch ms;
    None: unknown)."""

    record_id: str
    created_at: int | None = None


class LostCreate(msgspec.Struct, frozen=True):
    verdict: Verdict
    # The record it is (ours) or conflicts with (conflict); None otherwise.
    record_id: str | None = None


def judge_lost_create(found: Sequence[Found], sent_at: int | None, *, has_key: bool,
                      attempts_left: bool, skew_ms: int = CLOCK_SKEW_MS) -> LostCreate:
    """The verdict on one lost create: `found` are the records holding its key (empty when
    it has none: `has_key` False), `sent_at` when it was first sent (epoch ms; None: unknown,
    any record found is taken as ours), `attempts_left` whether it may be sent once more."""
    if found:
        def made_after(f: Found) -> bool:
            return sent_at is None or f.created_at is None or f.created_at >= sent_at - skew_ms

        def newest(f: Found) -> tuple[bool, int]:
            return (f.created_at is None, f.created_at or 0)

        ours = [f for f in found if made_after(f)]
        if ours:
            return LostCreate("ours", max(ours, key=newest).record_id)
        return LostCreate("conflict", max(found, key=newest).record_id)
    if not has_key:
        return LostCreate("no_key")
    if not attempts_left:
        return LostCreate("gave_up")
    return LostCreate("again")
