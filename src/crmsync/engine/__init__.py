"""The sync engine: pure, synchronous, no I/O and no Trio.

Match keys, field transforms, filters, stage maps and the three-way decision. Everything here
is testable with plain values.
"""

from crmsync.engine.decide import (
    KeyProblem,
    decide,
    decide_overwritten,
    effective_snapshot,
    hub_values_held,
    match_keys,
    unchanged_since,
)
from crmsync.engine.rules import FieldRule, SyncRules, compile_rules
from crmsync.engine.types import (
    Action,
    Create,
    Decision,
    Delete,
    Exclude,
    Fail,
    FieldChange,
    Link,
    MarkDeleted,
    Noop,
    ParkDelete,
    Record,
    Side,
    Snapshot,
    Update,
)

__all__ = [
    "Action",
    "Create",
    "Decision",
    "Delete",
    "Exclude",
    "Fail",
    "FieldChange",
    "FieldRule",
    "KeyProblem",
    "Link",
    "MarkDeleted",
    "Noop",
    "ParkDelete",
    "Record",
    "Side",
    "Snapshot",
    "SyncRules",
    "Update",
    "compile_rules",
    "decide",
    "decide_overwritten",
    "effective_snapshot",
    "hub_values_held",
    "match_keys",
    "unchanged_since",
]
