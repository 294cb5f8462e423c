"""The record: the one value type every layer shares.

It sits below every layer package (DESIGN.md's layers import downwards only; connectors return
records, the engine decides on them, the runtime moves them), so it depends on nothing of ours.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

Side = Literal["hub", "app"]


def other(side: Side) -> Side:
    return "app" if side == "hub" else "hub"


class Record(msgspec.Struct, frozen=True):
    """A record as one side returns it. Property values are that side's native values
    (HubSpot: always strings; an app: whatever its storage holds)."""

    id: str
    properties: dict[str, Any]
    updated_at: int = 0  # epoch milliseconds
    archived: bool = False
    # Tells apart records that held the same id one after the other (an app table whose
    # primary key a later insert may reuse): the same in every read of one record, different
    # for a record given a deleted record's id. "" where ids are never reused (HubSpot).
    incarnation: str = ""


class StageInfo(msgspec.Struct, frozen=True):
    id: str
    label: str


class PipelineInfo(msgspec.Struct, frozen=True):
    """A deal pipeline and its stages, as either side lists them."""

    id: str
    label: str
    stages: tuple[StageInfo, ...] = ()
