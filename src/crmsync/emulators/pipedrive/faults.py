"""Fault injection: every random choice comes from one generator seeded by `Faults.seed`, so a
run with the same requests in the same order fails the same way."""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass
from typing import Any

from .errors import bad_request

_SERVER_ERRORS = (500, 502, 503, 504)
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
        if not isinstance(body, dict):
            raise bad_request("faults must be an object")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(body) - names
        if unknown:
            raise bad_request(f"unknown fault settings: {', '.join(sorted(unknown))}")
        try:
            values = {k: float(v) for k, v in body.items() if k != "seed"}
            seed = int(body.get("seed", 0))
        except (TypeError, ValueError) as exc:
            raise bad_request("fault settings are numbers") from exc
        for name in _RATES:
            if not 0.0 <= values.get(name, 0.0) <= 1.0:
                raise bad_request(f"{name} must be between 0 and 1")
        return cls(seed=seed, **values)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class FaultInjector:
    """The live decisions for one `Faults` setting; the storm runs from when it was set."""

    def __init__(self, faults: Faults, started_at: float) -> None:
        self.faults = faults
        self.started_at = started_at
        self._rng = random.Random(faults.seed)

    def _roll(self, rate: float) -> bool:
        return rate > 0 and self._rng.random() < rate

    def storm_active(self, now: float) -> bool:
        return now < self.started_at + self.faults.rate_limit_storm_seconds

    def server_error(self) -> int | None:
        if self._roll(self.faults.error_rate):
            return self._rng.choice(_SERVER_ERRORS)
        return None

    def hang_after_apply(self) -> bool:
        return self._roll(self.faults.hang_after_apply_rate)

    def drop_daily_headers(self) -> bool:
        return self._roll(self.faults.daily_headers_missing_rate)
