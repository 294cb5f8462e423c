"""What `crmsync demo` checks at the end, counted the way each check's name claims; and how long
the demo may take.

Pure functions over what the demo observed (record ids, their match keys, event counts), so
each check can be tested on plain values.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping

# Outcomes the event sync counts (runtime/events.py): every streamed event ends in one of them.
EVENT_OUTCOMES = ("sent", "skipped_no_contact", "refused")


def default_timeout(records: int) -> float:
    """Seconds `--until-synced` waits by default: a floor for start-up and the demo's own
    edits, plus time per record (20,000 records took about 90 s on a busy 2-core machine:
    this leaves about five times that)."""
    return 120.0 + 0.02 * max(0, records)


def duplicates_created(before: Iterable[str],
                       now: Iterable[tuple[str, tuple[str, ...]]]) -> list[tuple[str, str]]:
    """Records on one side that did not exist when the demo started and share a match key
    with another record on that side now, as (record id, key).

    `before` holds the ids the side had at the start; `now` every record it holds at the end
    with its match keys. Records that were already there are not counted, however their keys
    repeat: the sample data plants repeated keys on purpose (duplicates that must fail,
    invalid emails that may repeat), and an update that makes two existing records share a
    key creates no record.
    """
    existing = set(before)
    rows = list(now)
    holders = Counter(k for _, keys in rows for k in set(keys))
    return [(rid, k) for rid, keys in rows if rid not in existing
            for k in sorted(set(keys)) if holders[k] > 1]


def events_handled(counts: Mapping[str, int]) -> int:
    """How many app events the event sync has finished with (sent, skipped or refused)."""
    return sum(counts.get(k, 0) for k in EVENT_OUTCOMES)
