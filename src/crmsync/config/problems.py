"""What is wrong with a configuration: each problem with its `$.path`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True, slots=True)
class Problem:
    path: str
    message: str
    severity: Literal["error", "warning"] = "error"
    # The rejected value was replaced by a stand-in so the rest could be checked; problems
    # the stand-in causes in the same table are not reported.
    replaced: bool = False

    def __str__(self) -> str:
        return f"{self.severity}: {self.path}: {self.message}"


class ConfigError(Exception):
    """The configuration is not usable; `problems` lists every reason with its path."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("; ".join(str(p) for p in problems))
