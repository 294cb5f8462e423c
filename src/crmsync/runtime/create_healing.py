"""Creates that heal: `create_healed` sends a batch of creates through a connector and settles
every input the connector could not settle alone, so that every connector gets the same
guarantee: no create is ever sent twice blindly, so no duplicate is made.

* **Answer lost** (`RecordError.unknown`: a timeout, a dropped connection, a 5xx after
  sending). The create may have been made. Each such input is looked up by its key
  (`SupportsCreateHealing.create_keys`); a search-based key is looked up again until the
  side's search index has caught up (`index_lag`). The engine's rule
  (`engine.lost_creates.judge_lost_create`) decides: ours, a conflict with an older record
  (`existing_id`), not sent again for want of a key, or sent again after a backoff, at most
  `retry_policy.max_attempts` times in all.
* **Whole batch refused** (`RecordError.whole_batch`: HubSpot's 409 names only the first
  input that exists). The inputs whose key is found at once (consistent look-ups only) fail
  as conflicts with their record; the others are sent again. When none is found, the batch is
  halved until each refusal has its input.

The batch writer calls it for every create; a create that a crash cut short is healed
before it is sent again by `write_plan.heal`, which uses the same look-ups.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import structlog
import trio

from crmsync.connectors.base import (
    Connector,
    CreateKey,
    RecordError,
    SupportsCreateHealing,
    SupportsFindMany,
    WriteResult,
)
from crmsync.connectors.retry import backoff_delay
from crmsync.engine.lost_creates import Found, judge_lost_create
from crmsync.records import Record

log = structlog.get_logger("crmsync.runtime.create_healing")

# While a search may still miss a record, look again this often.
SEARCH_AGAIN_SECONDS = 5.0

NO_KEY = ("and the record has no match key to check it by; it is not sent again so that no "
          "duplicate is made")


def index_lag(connector: object) -> float:
    """How long a search of `connector` may miss a record after its write (0: not at all;
    `SupportsCreateHealing.index_lag`)."""
    return max(0.0, float(getattr(connector, "index_lag", 0.0) or 0.0))


async def find_by_keys(connector: Connector, object_name: str, keys: Sequence[CreateKey],
                       properties: Sequence[str]) -> dict[tuple[str, str], list[Record]]:
    """The records holding each of `keys`, by (field, value): one `find_many` per field where
    the connector has it (HubSpot: 100 per batch read by email or unique property, else a
    search with an IN filter), else one `find` per value. A key nothing holds is absent. Both
    ways of healing a create look up through here (`write_plan.find_many_created` too)."""
    by_field: dict[str, dict[str, None]] = {}
    for k in keys:
        by_field.setdefault(k.field, {})[k.value] = None
    out: dict[tuple[str, str], list[Record]] = {}
    for name, unique in by_field.items():
        values = list(unique)
        if isinstance(connector, SupportsFindMany):
            got = await connector.find_many(object_name, name, values, properties)
        else:
            got = {v: await connector.find(object_name, name, v, properties) for v in values}
        for v, recs in got.items():
            if recs:
                out[(name, v)] = recs
    return out


async def _look_up(connector: Connector, object_name: str, keys: Mapping[int, CreateKey], *,
                   wait_for_index: bool) -> dict[int, list[Record]]:
    """Per input, the records holding its key. Consistent keys are looked up once; search
    keys, with `wait_for_index`, again every few seconds until found or until the index lag
    has passed."""
    created = (connector.created_at_field if isinstance(connector, SupportsCreateHealing)
               else "")
    props = [created] if created else []
    found: dict[int, list[Record]] = {}
    consistent = {i: k for i, k in keys.items() if k.consistent}
    searched = {i: k for i, k in keys.items() if not k.consistent}
    if consistent:
        got = await find_by_keys(connector, object_name, list(consistent.values()), props)
        for i, k in consistent.items():
            if (k.field, k.value) in got:
                found[i] = got[(k.field, k.value)]
    deadline = trio.current_time() + (index_lag(connector) if wait_for_index else 0.0)
    while searched:
        got = await find_by_keys(connector, object_name, list(searched.values()), props)
        for i, k in list(searched.items()):
            if (k.field, k.value) in got:
                found[i] = got[(k.field, k.value)]
                del searched[i]
        remaining = deadline - trio.current_time()
        if not searched or remaining <= 0:
            break
        # A search sees a record only some time after its write: look again until the lag
        # has passed.
        await trio.sleep(min(SEARCH_AGAIN_SECONDS, remaining))
    return found


class _Healing:
    def __init__(self, connector: Connector, object_name: str,
                 inputs: Sequence[Mapping[str, Any]]) -> None:
        self.connector = connector
        self.object_name = object_name
        self.inputs = inputs
        self.results: list[WriteResult | None] = [None] * len(inputs)
        # Per input: when it was first sent (epoch ms), kept across attempts.
        self.sent_at: dict[int, int | None] = {}

    async def send(self, idx: list[int], attempt: int) -> None:
        """Send the inputs `idx` (attempt 0: the first time) and settle what comes back."""
        if not idx:
            return
        got = await self.connector.create(self.object_name, [self.inputs[i] for i in idx])
        if len(got) != len(idx):
            raise RuntimeError(f"{type(self.connector).__name__}.create returned {len(got)} "
                               f"results for {len(idx)} inputs")
        unknown: list[tuple[int, RecordError]] = []
        refused: list[tuple[int, RecordError]] = []
        healable = isinstance(self.connector, SupportsCreateHealing)
        for i, res in zip(idx, got, strict=True):
            err = res.error
            if not res.ok and err is not None and err.unknown:
                self.sent_at.setdefault(i, err.sent_at)
                if healable:
                    unknown.append((i, err))
                else:
                    self.results[i] = _failed(err, f"{err.message}; this side cannot be "
                                              "checked for it, so it is not sent again so "
                                              "that no duplicate is made", retryable=False)
            elif not res.ok and err is not None and err.whole_batch and healable:
                refused.append((i, err))
            else:
                self.results[i] = res
        if refused:
            await self.settle_refused(refused, attempt)
        if unknown:
            await self.settle_unknown(unknown, attempt)

    async def settle_refused(self, refused: list[tuple[int, RecordError]],
                             attempt: int) -> None:
        """The batch was refused because some of its inputs exist: those found at once fail
        as conflicts with their record; the others are sent again (halving the batch when
        none is found)."""
        assert isinstance(self.connector, SupportsCreateHealing)
        idx = [i for i, _ in refused]
        if len(idx) == 1:
            i, err = refused[0]
            self.results[i] = WriteResult(ok=False, error=RecordError(
                err.category, err.message, retryable=err.retryable, existing_id=err.existing_id))
            return
        keys = await self.connector.create_keys(self.object_name, [self.inputs[i] for i in idx])
        consistent = {i: k for i, k in zip(idx, keys, strict=True)
                      if k is not None and k.consistent}
        found = await _look_up(self.connector, self.object_name, consistent,
                               wait_for_index=False)
        if not found:
            mid = len(idx) // 2
            await self.send(idx[:mid], attempt)
            await self.send(idx[mid:], attempt)
            return
        for i, recs in found.items():
            k, rec = consistent[i], recs[0]
            self.results[i] = WriteResult(ok=False, error=RecordError(
                category="conflict", existing_id=rec.id,
                message=f"a record with {k.field} {k.value!r} already exists (id {rec.id})"))
        await self.send([i for i in idx if i not in found], attempt)

    async def settle_unknown(self, unknown: list[tuple[int, RecordError]],
                             attempt: int) -> None:
        """The creates may or may not have been made: look each up by its key and do what
        `judge_lost_create` says."""
        assert isinstance(self.connector, SupportsCreateHealing)
        conn = self.connector
        idx = [i for i, _ in unknown]
        keys = await conn.create_keys(self.object_name, [self.inputs[i] for i in idx])
        keyed = {i: k for i, k in zip(idx, keys, strict=True) if k is not None}
        found = await _look_up(conn, self.object_name, keyed, wait_for_index=True)
        policy = conn.retry_policy
        again: list[int] = []
        wait = 0.0
        for i, err in unknown:
            recs = {r.id: r for r in found.get(i, [])}
            verdict = judge_lost_create(
                [Found(r.id, conn.created_at(r)) for r in recs.values()], self.sent_at.get(i),
                has_key=i in keyed, attempts_left=attempt + 1 < policy.max_attempts)
            if verdict.verdict == "ours" and verdict.record_id is not None:
                self.results[i] = WriteResult(ok=True, record=recs[verdict.record_id])
            elif verdict.verdict == "conflict" and verdict.record_id is not None:
                k, rid = keyed[i], verdict.record_id
                self.results[i] = WriteResult(ok=False, error=RecordError(
                    category="conflict", existing_id=rid,
                    message=f"a record with {k.field} {k.value!r} already existed (id {rid})"))
            elif verdict.verdict == "no_key":
                self.results[i] = _failed(err, f"{err.message} {NO_KEY}", retryable=False)
            elif verdict.verdict == "gave_up":
                self.results[i] = _failed(err, f"{err.message} after several attempts",
                                          retryable=True)
            else:
                again.append(i)
                wait = max(wait, err.retry_after or 0.0)
        log.info("create_reconciled", object=self.object_name, inputs=len(unknown),
                 found=len(found), recreate=len(again))
        if again:
            await trio.sleep(max(wait, backoff_delay(policy, attempt + 1)))
            await self.send(again, attempt + 1)


def _failed(err: RecordError, message: str, *, retryable: bool) -> WriteResult:
    return WriteResult(ok=False, error=RecordError(category=err.category, message=message,
                                                   retryable=retryable))


async def create_healed(connector: Connector, object_name: str,
                        inputs: Sequence[Mapping[str, Any]]) -> list[WriteResult]:
    """`connector.create(object_name, inputs)`, with every lost answer and whole-batch
    refusal settled (see the module): one result per input, in input order. Raises what
    `create` raises (a failure of a whole call)."""
    healing = _Healing(connector, object_name, inputs)
    await healing.send(list(range(len(inputs))), 0)
    return [r if r is not None else WriteResult(ok=False, error=RecordError(
        "internal", "no result for this input")) for r in healing.results]
