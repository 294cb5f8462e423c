"""runtime.create_healing: every connector's lost create answers and whole-batch refusals are
settled in the runtime, never by sending a create twice blindly. An in-process connector
(`LossyApp`) stands for any API: its creates can be applied with the answer lost, lost before
they apply, or refused as a batch because some inputs exist; its search lags its writes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import trio

from crmsync.connectors.base import (
    CreateKey,
    Record,
    RecordError,
    SupportsCreateHealing,
    WriteResult,
)
from crmsync.connectors.retry import RetryPolicy
from crmsync.runtime.batch_writer import BatchWriter
from crmsync.runtime.create_healing import create_healed

HOUR_MS = 3_600_000


class LossyApp:
    """Records keyed by `key` (consistent look-up) or `name` (a search that sees a record only
    `index_lag` seconds after it was made)."""

    created_at_field = "made"

    def __init__(self, *, index_lag: float = 0.0, max_attempts: int = 4) -> None:
        self.index_lag = index_lag
        self.policy = RetryPolicy(max_attempts=max_attempts, initial_backoff=1.0,
                                  max_backoff=4.0)
        self.rows: dict[str, dict[str, Any]] = {}
        self.made_at: dict[str, float] = {}  # trio time, for the search lag
        self.calls: list[int] = []
        self.lose_after_apply = 0  # the next n create calls apply, their answer is lost
        self.lose_before_apply = 0  # the next n create calls are lost before they apply
        self.refuse_batches = False  # a batch holding an existing key is refused whole

    def now_ms(self) -> int:
        return 1_700_000_000_000 + int(trio.current_time() * 1000)

    def add(self, values: Mapping[str, Any], made: int | None = None) -> str:
        rid = str(len(self.rows) + 1)
        self.rows[rid] = {**values, "made": made if made is not None else self.now_ms()}
        self.made_at[rid] = trio.current_time() - (1e9 if made is not None else 0)
        return rid

    @property
    def retry_policy(self) -> RetryPolicy:
        return self.policy

    def created_at(self, record: Record) -> int | None:
        made = record.properties.get("made")
        return int(made) if made is not None else None

    async def create_keys(self, object_name: str, inputs: Sequence[Mapping[str, Any]]
                          ) -> list[CreateKey | None]:
        return [CreateKey("key", v["key"]) if v.get("key")
                else CreateKey("name", v["name"], consistent=False) if v.get("name")
                else None for v in inputs]

    async def find(self, object_name: str, field: str, value: str,
                   properties: Sequence[str]) -> list[Record]:
        now = trio.current_time()
        return [Record(rid, dict(row)) for rid, row in self.rows.items()
                if str(row.get(field, "")).lower() == value.lower()
                and (field == "key" or now >= self.made_at[rid] + self.index_lag)]

    def _exists(self, values: Mapping[str, Any]) -> str | None:
        return next((rid for rid, row in self.rows.items()
                     if values.get("key") and row.get("key") == values["key"]), None)

    async def create(self, object_name: str,
                     inputs: Sequence[Mapping[str, Any]]) -> list[WriteResult]:
        self.calls.append(len(inputs))
        sent = self.now_ms()
        lost = WriteResult(ok=False, error=RecordError(
            "api_unavailable", "The app did not confirm this create", retryable=True,
            unknown=True, sent_at=sent))
        if self.lose_before_apply:
            self.lose_before_apply -= 1
            return [lost] * len(inputs)
        existing = [self._exists(v) for v in inputs]
        if self.refuse_batches and any(existing):
            first = next(e for e in existing if e)
            if len(inputs) > 1:
                return [WriteResult(ok=False, error=RecordError(
                    "conflict", f"exists: {first}", whole_batch=True))] * len(inputs)
            return [WriteResult(ok=False, error=RecordError(
                "conflict", f"exists: {first}", existing_id=first))]
        out = [WriteResult(ok=True, record=Record(rid, dict(self.rows[rid])))
               for rid in (self.add(v) for v in inputs)]
        if self.lose_after_apply:
            self.lose_after_apply -= 1
            return [lost] * len(inputs)
        return out


def test_the_fake_offers_what_healing_needs() -> None:
    assert isinstance(LossyApp(), SupportsCreateHealing)


async def test_an_applied_create_whose_answer_is_lost_is_found_not_repeated(autojump_clock):
    app = LossyApp()
    app.lose_after_apply = 1
    results = await create_healed(app, "things", [{"key": f"k{i}"} for i in range(5)])
    assert [r.ok for r in results] == [True] * 5
    assert [r.record.properties["key"] for r in results if r.record] == [
        f"k{i}" for i in range(5)]
    assert len(app.rows) == 5 and app.calls == [5]


async def test_a_create_lost_before_it_applied_is_sent_again_after_a_backoff(autojump_clock):
    app = LossyApp()
    app.lose_before_apply = 2
    start = trio.current_time()
    results = await create_healed(app, "things", [{"key": "a"}, {"key": "b"}])
    assert all(r.ok for r in results)
    assert len(app.rows) == 2 and app.calls == [2, 2, 2]
    # Two backoffs (jittered: at least half of 1 s, then of 2 s).
    assert trio.current_time() - start >= 1.5


async def test_a_create_never_confirmed_gives_up_after_the_attempts_retryable(autojump_clock):
    app = LossyApp(max_attempts=3)
    app.lose_before_apply = 99
    [r] = await create_healed(app, "things", [{"key": "a"}])
    assert app.calls == [1, 1, 1] and not app.rows
    assert r.error is not None and r.error.category == "api_unavailable"
    assert r.error.retryable and not r.error.unknown
    assert r.error.message == "The app did not confirm this create after several attempts"


async def test_without_a_key_a_lost_create_is_not_sent_again(autojump_clock):
    app = LossyApp()
    app.lose_after_apply = 1
    [r] = await create_healed(app, "things", [{"other": "x"}])
    assert app.calls == [1] and len(app.rows) == 1
    assert r.error is not None and r.error.category == "api_unavailable"
    assert not r.error.retryable and "no duplicate" in r.error.message


async def test_an_older_record_holding_the_key_is_a_conflict(autojump_clock):
    app = LossyApp()
    old = app.add({"key": "taken"}, made=app.now_ms() - HOUR_MS)
    app.lose_before_apply = 1
    results = await create_healed(app, "things", [{"key": "taken"}, {"key": "free"}])
    assert results[0].error is not None
    assert (results[0].error.category, results[0].error.existing_id) == ("conflict", old)
    assert "already existed" in results[0].error.message
    assert results[1].ok
    assert sorted(r["key"] for r in app.rows.values()) == ["free", "taken"]


async def test_a_search_key_is_looked_up_until_the_index_lag_has_passed(autojump_clock):
    app = LossyApp(index_lag=30.0)
    app.lose_after_apply = 1
    start = trio.current_time()
    [r] = await create_healed(app, "things", [{"name": "Acme"}])
    # Found once the search saw it (30 s), not created a second time.
    assert r.ok and app.calls == [1] and len(app.rows) == 1
    assert trio.current_time() - start >= 30.0


async def test_a_whole_batch_refusal_fails_the_existing_inputs_and_creates_the_rest(
        autojump_clock):
    app = LossyApp()
    app.refuse_batches = True
    existing = {i: app.add({"key": f"k{i}"}) for i in (1, 4)}
    results = await create_healed(app, "things", [{"key": f"k{i}"} for i in range(6)])
    for i, r in enumerate(results):
        if i in existing:
            assert r.error is not None and r.error.existing_id == existing[i]
            assert r.error.category == "conflict"
        else:
            assert r.ok
    assert len(app.rows) == 6 and app.calls == [6, 4]


async def test_a_whole_batch_refusal_nothing_found_for_is_halved(autojump_clock):
    app = LossyApp()
    app.refuse_batches = True
    taken = app.add({"key": "k2"})
    # The look-up cannot find it (its key is a search for this input): halve down to it.
    app.rows[taken]["name"] = "x"
    inputs: list[dict[str, Any]] = [{"key": f"k{i}"} for i in range(4)]

    async def no_keys(object_name: str, inputs: Sequence[Mapping[str, Any]]
                      ) -> list[CreateKey | None]:
        return [None] * len(inputs)

    app.create_keys = no_keys  # type: ignore[method-assign]
    results = await create_healed(app, "things", inputs)
    assert [r.ok for r in results] == [True, True, False, True]
    assert results[2].error is not None and results[2].error.existing_id == taken
    assert app.calls == [4, 2, 2, 1, 1]


async def test_a_connector_that_cannot_be_checked_never_sends_a_lost_create_again(
        autojump_clock):
    class Blind:
        calls = 0

        async def create(self, object_name: str, inputs: Sequence[Mapping[str, Any]]
                         ) -> list[WriteResult]:
            self.calls += 1
            return [WriteResult(ok=False, error=RecordError(
                "api_unavailable", "no answer", retryable=True, unknown=True))] * len(inputs)

    blind = Blind()
    [r] = await create_healed(blind, "things", [{"key": "a"}])  # type: ignore[arg-type]
    assert blind.calls == 1
    assert r.error is not None and not r.error.retryable and "no duplicate" in r.error.message


async def test_the_batch_writer_heals_every_create(autojump_clock):
    app = LossyApp()
    app.lose_after_apply = 1
    writer = BatchWriter(app, "things")  # type: ignore[arg-type]
    async with trio.open_nursery() as n:
        await n.start(writer.run)
        results = await writer.create([{"key": "a"}, {"key": "b"}])
        await writer.aclose()
    assert all(r.ok for r in results)
    assert len(app.rows) == 2 and app.calls == [2]
