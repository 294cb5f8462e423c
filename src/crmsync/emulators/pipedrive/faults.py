"""Fault injection: every random choice comes from one generator seeded by `Faults.seed`, so a
run with the same requests in the same order fails the same way."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ..fault_dice import FaultDice, faults_from_json
from .errors import bad_request

_RATES = ("error_rate", "hang_after_apply_rate", "daily_headers_missing_rate")


@dataclass(frozen=True)
class Faults:
    error_rate: float = 0.0  # share of API requests answered 5xx without being applied
    latency: float = 0.0  # seconds added before every API request is handled
    rate_limit_storm_seconds: float = 0.0  # every API request answers 429 for this long
    hang_after_apply_rate: float = 0.0  # share of writes applied whose answer never comes
    # Share of answers without the daily token headers, which Pipedrive staff say can be
    # missing for a while [UNVERIFIED, see ratelimit.py].
    daily_headers_missing_rate: float = 0.0
    seed: int = 0

    @classmethod
    def from_json(cls, body: Any) -> Faults:
        return faults_from_json(cls, body, _RATES, bad_request)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class FaultInjector(FaultDice[Faults]):
    """The live decisions for one `Faults` setting; the storm runs from when it was set."""

    def drop_daily_headers(self) -> bool:
        return self.roll(self.faults.daily_headers_missing_rate)
