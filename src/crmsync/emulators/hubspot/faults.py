"""Fault injection: every random choice comes from one generator seeded by `Faults.seed`, so a
run with the same requests in the same order fails the same way."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ..fault_dice import FaultDice, faults_from_json
from .errors import validation_error

_RATES = ("error_rate", "hang_after_apply_rate", "batch_item_failure_rate")


@dataclass(frozen=True)
class Faults:
    error_rate: float = 0.0  # share of API requests answered 5xx without being applied
    latency: float = 0.0  # seconds added before every API request is handled
    rate_limit_storm_seconds: float = 0.0  # every API request answers 429 for this long
    hang_after_apply_rate: float = 0.0  # share of writes applied whose answer never comes
    batch_item_failure_rate: float = 0.0  # share of batch-write inputs failed in a 207
    seed: int = 0

    @classmethod
    def from_json(cls, body: Any) -> Faults:
        return faults_from_json(cls, body, _RATES, validation_error)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class FaultInjector(FaultDice[Faults]):
    """The live decisions for one `Faults` setting; the storm runs from when it was set."""

    def fail_batch_item(self) -> bool:
        return self.roll(self.faults.batch_item_failure_rate)
