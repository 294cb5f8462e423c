"""What the emulators' fault settings share: reading them from the admin API's JSON, and the
dice that decide each request's fate.

Every random choice comes from one generator seeded by the settings' `seed`, so a run with the
same requests in the same order fails the same way. Each emulator's `faults` module defines its
own settings (a frozen dataclass with at least the fields of `CommonFaults`) and its own
decisions on top of `FaultDice`.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable
from typing import Any, Generic, Protocol, TypeVar

SERVER_ERRORS = (500, 502, 503, 504)


class CommonFaults(Protocol):
    @property
    def error_rate(self) -> float: ...  # share of API requests answered 5xx, not applied
    @property
    def rate_limit_storm_seconds(self) -> float: ...  # every request answers 429 this long
    @property
    def hang_after_apply_rate(self) -> float: ...  # share of applied writes never answered
    @property
    def seed(self) -> int: ...


F = TypeVar("F", bound=CommonFaults)


def faults_from_json(cls: Callable[..., F], body: Any, rates: tuple[str, ...],
                     error: Callable[[str], Exception]) -> F:
    """Settings of the dataclass `cls` from an admin request's body: numbers by field name,
    the `rates` between 0 and 1, `seed` an integer. Raises `error(message)` for anything
    else."""
    if not isinstance(body, dict):
        raise error("faults must be an object")
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = set(body) - names
    if unknown:
        raise error(f"unknown fault settings: {', '.join(sorted(unknown))}")
    try:
        values = {k: float(v) for k, v in body.items() if k != "seed"}
        seed = int(body.get("seed", 0))
    except (TypeError, ValueError) as exc:
        raise error("fault settings are numbers") from exc
    for name in rates:
        if not 0.0 <= values.get(name, 0.0) <= 1.0:
            raise error(f"{name} must be between 0 and 1")
    return cls(seed=seed, **values)


class FaultDice(Generic[F]):
    """The live decisions for one fault setting; the storm runs from when it was set."""

    def __init__(self, faults: F, started_at: float) -> None:
        self.faults = faults
        self.started_at = started_at
        self._rng = random.Random(faults.seed)

    def roll(self, rate: float) -> bool:
        """True with probability `rate` (drawing nothing when it is 0)."""
        return rate > 0 and self._rng.random() < rate

    def storm_active(self, now: float) -> bool:
        return now < self.started_at + self.faults.rate_limit_storm_seconds

    def server_error(self) -> int | None:
        if self.roll(self.faults.error_rate):
            return self._rng.choice(SERVER_ERRORS)
        return None

    def hang_after_apply(self) -> bool:
        return self.roll(self.faults.hang_after_apply_rate)
