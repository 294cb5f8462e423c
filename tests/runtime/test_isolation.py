"""Failure isolation: a batch that raises is synced again in halves down to single records; a
record that fails alone is handed over as failed, the others sync; errors about the whole
connection are never split."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
import trio

from crmsync.connectors.base import ConnectorError
from crmsync.runtime.batch_writer import WriterStopped
from crmsync.runtime.isolation import concerns_connection, isolate, record_failure
from crmsync.store import StoreError


class Recorder:
    """Syncs units; raises `error` for any batch holding one of `poison`."""

    def __init__(self, poison: set[int], error: Exception | None = None) -> None:
        self.poison = poison
        self.error = error or ValueError("bad record")
        self.synced: list[int] = []
        self.failed: list[tuple[int, Exception]] = []
        self.calls = 0

    async def run(self, units: Sequence[int]) -> None:
        self.calls += 1
        await trio.lowlevel.checkpoint()
        if self.poison & set(units):
            raise self.error
        self.synced.extend(units)

    async def fail(self, unit: int, exc: Exception) -> None:
        self.failed.append((unit, exc))


async def test_a_clean_batch_runs_once() -> None:
    r = Recorder(set())
    await isolate(list(range(100)), r.run, r.fail)
    assert (r.calls, r.synced, r.failed) == (1, list(range(100)), [])


async def test_only_the_poisoned_records_fail_and_every_other_one_syncs() -> None:
    r = Recorder({7, 61})
    await isolate(list(range(100)), r.run, r.fail)
    assert sorted(r.synced) == [u for u in range(100) if u not in (7, 61)]
    assert [u for u, _ in r.failed] == [7, 61]
    assert all(isinstance(e, ValueError) for _, e in r.failed)
    # Halving: a poisoned record costs a couple of calls per level, not one per record.
    assert r.calls <= 2 * 2 * 7 + 1


async def test_a_connector_record_error_fails_the_record_with_its_category() -> None:
    r = Recorder({3}, ConnectorError("record", "invalid_value", "HubSpot refused id 3"))
    await isolate([1, 2, 3], r.run, r.fail)
    assert [u for u, _ in r.failed] == [3]
    assert record_failure(r.failed[0][1]) == ("invalid_value", "HubSpot refused id 3")


@pytest.mark.parametrize("error", [
    ConnectorError("config", "permission_denied", "401"),
    ConnectorError("transient", "api_unavailable", "503"),
    ConnectorError("rate_limited", "rate_limited", "429"),
    StoreError("disk full"),
    WriterStopped("the batch writer stopped"),
    ExceptionGroup("both", [ValueError("x"), ConnectorError("config", "not_found", "gone")]),
])
async def test_errors_about_the_connection_propagate_unsplit(error: Exception) -> None:
    assert concerns_connection(error)
    r = Recorder({5}, error)
    with pytest.raises(type(error)):
        await isolate(list(range(10)), r.run, r.fail)
    assert (r.calls, r.failed) == (1, [])


async def test_cancellation_is_never_taken_for_a_record_error() -> None:
    assert concerns_connection(trio.Cancelled._create())  # type: ignore[attr-defined]
    assert not concerns_connection(ValueError("x"))
    assert not concerns_connection(ExceptionGroup("one", [KeyError("k")]))


def test_record_failure_names_the_error_and_stays_short() -> None:
    category, detail = record_failure(ZeroDivisionError("x" * 1000))
    assert category == "internal"
    assert detail.startswith("ZeroDivisionError: xxx") and len(detail) <= 300
    assert record_failure(ExceptionGroup("g", [KeyError("k")])) == ("internal", "KeyError: 'k'")
