"""The Connector protocol shared by HubSpot and every app connector.

A connector says *what* (objects, fields, how to page, how to parse) and does single API
operations; the runtime owns *how* (page loops, checkpoints, batching, the lock queue).
Connectors never import the runtime, the engine or the store.

Every operation that touches several records returns one result per input, in input order, so
a partial failure (HubSpot's 207) fails only the records concerned. Errors that concern the
whole call raise `ConnectorError` with a `kind` telling the runtime what to do.

Record identity. An app whose ids can be reused (SQLite without AUTOINCREMENT gives a deleted
row's id to the next insert; a text or natural primary key can be inserted again) must not
let a new record pass for the old one. Every app connector:

* gives each record an `incarnation` (records.py) in every read, scan, find, change and write
  result: stable for the life of one record, different for a record later inserted under the
  id of a deleted one (the SQLite connector: the change-log sequence number of the row's
  insert, kept by its triggers; "0" for rows older than change capture; the PostgreSQL
  connector: a number its insert trigger draws, "" for rows older than that trigger);
* records deletes in its change feed: a record deleted since the cursor is reported as
  `Record(id, {}, archived=True)` when no row holds the id any more, and a row that holds it
  again carries its own, new incarnation;
* makes a conditional update (`update(..., expected=...)`) hold only for the same
  incarnation as the record read.

The runtime stores the incarnation of every linked app record; a read that shows another
incarnation under the same id means the linked record was deleted: its link ends for good
(the id is released) and the record now holding the id is new and goes through matching.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

import msgspec
import trio

from crmsync.connectors.ratelimit import RateBudget
from crmsync.records import PipelineInfo, Record, StageInfo

if TYPE_CHECKING:  # retry imports this module
    from crmsync.connectors.retry import RetryPolicy

__all__ = ["PipelineInfo", "Record", "StageInfo"]

# What a failure means for the caller (the table-driven policy of CONVENTIONS.md):
#   transient  - retry later with backoff (5xx, timeouts, connection resets, 423)
#   rate_limited - wait for the rate budget, then retry
#   config     - the connection cannot work until an operator acts (401/403, missing table);
#                the supervisor pauses the connection with the message as its status
#   record     - this input is wrong (validation, conflict, not found): fail the record
ErrorKind = Literal["transient", "rate_limited", "config", "record"]


class ConnectorError(Exception):
    """A failure of a whole call. `category` is a DESIGN.md error category."""

    def __init__(self, kind: ErrorKind, category: str, message: str,
                 retry_after: float | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.category = category
        self.message = message
        self.retry_after = retry_after
        self.status = status
        # A limit of the whole account (a daily budget spent): the connection pauses until
        # `retry_after`, then tries again, instead of failing with backoff.
        self.pause = False


class RecordError(msgspec.Struct, frozen=True):
    """Why one input of a batch failed."""

    category: str  # duplicate, invalid_value, not_found, conflict, permission_denied, ...
    message: str
    retryable: bool = False
    # For a create refused because the record exists (HubSpot 409 "Existing ID: N").
    existing_id: str | None = None
    # For a conditional update refused because the record no longer holds the values it was
    # read with (see `Connector.update`): the caller reads it again and decides again.
    stale: bool = False
    # For a create whose answer was lost (timeout, dropped connection, 5xx after sending): it
    # may have been made. Never sent again blindly: the runtime heals it
    # (`runtime.create_healing`) through `SupportsCreateHealing`. `sent_at`: epoch ms when it
    # was sent; `retry_after`: the least wait (s) before it may be sent again.
    unknown: bool = False
    sent_at: int | None = None
    retry_after: float | None = None
    # For a create refused with the rest of its batch because some inputs of the batch exist
    # already, without saying which (HubSpot's 409 names only the first): the runtime finds
    # the inputs that exist (`SupportsCreateHealing`) and sends the others again.
    whole_batch: bool = False


class WriteResult(msgspec.Struct, frozen=True):
    """The outcome of one input of a create / update / archive call."""

    ok: bool
    record: Record | None = None  # the record as written (with its id after a create)
    error: RecordError | None = None


class Page(msgspec.Struct, frozen=True):
    records: list[Record]
    # Opaque; None on the last page. Persisted as an initial-sync checkpoint.
    next_cursor: str | None = None
    # With `SupportsScanAssociations`: per record id, per object asked for, the associated
    # ids. An object is absent for a record whose list the scan could not carry whole.
    associations: dict[str, dict[str, list[str]]] | None = None


class Changes(msgspec.Struct, frozen=True):
    """Records changed since a cursor (archived ones carry `archived=True`), and the cursor to
    commit once they are synced. `more` says another call would return more right away."""

    records: list[Record]
    cursor: str
    more: bool = False


class FieldInfo(msgspec.Struct, frozen=True):
    name: str
    type: str = "string"  # string | number | bool | date | datetime | enumeration
    read_only: bool = False
    unique: bool = False
    options: tuple[str, ...] = ()  # enumeration option values


class ObjectInfo(msgspec.Struct, frozen=True):
    name: str
    fields: tuple[FieldInfo, ...] = ()
    # The field whose value orders changes (HubSpot: lastmodifieddate / hs_lastmodifieddate).
    updated_at_field: str = ""


class AssociationChange(msgspec.Struct, frozen=True):
    """An association to create or remove between `from_id` and `to_id`. An incarnation
    (records.py) other than "" is the one the record of that id had when the change was
    decided: a connector whose records carry incarnations writes nothing to a record of that
    id that is another record now (the app deleted the one meant and gave its id to a new
    one); creating fails (`association_failed`), removing succeeds (what is to be removed is
    gone with its record)."""

    from_id: str
    to_id: str
    removed: bool = False
    from_incarnation: str = ""
    to_incarnation: str = ""


class AppEvent(msgspec.Struct, frozen=True):
    """A contact event from the app, sent one way to the hub (event sync)."""

    event_id: str
    contact_key: str  # the contact's email
    name: str
    occurred_at: int  # epoch milliseconds
    properties: dict[str, str] = {}


class Capabilities(msgspec.Struct, frozen=True):
    webhooks: bool = False  # pushes changes to POST /webhooks/...
    change_log: bool = False  # changes_since reads a durable change log
    polling: bool = True  # changes_since works by querying modification times
    write_batch_size: int = 100
    read_batch_size: int = 100
    pipelines: bool = False
    associations: bool = False
    events: bool = False  # yields app events (app) / accepts them (hub)
    # find() is a local query that costs no API budget: an incremental create on this side
    # first looks for a record of the same match key made there meanwhile, and pairs with it.
    local_find: bool = False
    # update() honours `expected`: an update is applied only while the record still holds
    # the values it was read with (a database can refuse a stale write; HubSpot cannot).
    conditional_update: bool = False
    # changes_since reports records deleted since the cursor (archived=True). Where it cannot
    # (Pipedrive lists leave deleted persons out), the runtime sweeps for linked records gone
    # from the app every `delete_sweep_interval`.
    deletes_in_changes: bool = True


@runtime_checkable
class Connector(Protocol):
    """One side of an object sync. All methods may raise ConnectorError."""

    name: str
    capabilities: Capabilities

    async def describe(self, object_name: str) -> ObjectInfo:
        """The object's fields (cached by implementations that call an API)."""
        ...

    async def scan(self, object_name: str, cursor: str | None,
                   properties: Sequence[str]) -> Page:
        """One page of every live record, from `cursor` (None: the start)."""
        ...

    async def read(self, object_name: str, ids: Sequence[str],
                   properties: Sequence[str]) -> dict[str, Record]:
        """The records that exist; an id missing from the result is deleted or unknown."""
        ...

    async def create(self, object_name: str,
                     inputs: Sequence[Mapping[str, Any]]) -> list[WriteResult]: ...

    async def update(self, object_name: str, inputs: Sequence[tuple[str, Mapping[str, Any]]],
                     expected: Sequence[Record | None] | None = None) -> list[WriteResult]:
        """Write `(id, changes)` per input. With `expected` (one per input; only given to a
        connector whose `capabilities.conditional_update` is set), input i is applied only
        if its record is still the record `expected[i]` (same incarnation, unless that is "")
        and still holds, in every field it writes that `expected[i]` has, the value
        `expected[i]` has (the record as the decision read it); otherwise nothing of it is written and it fails with
        `RecordError(category="conflict", stale=True)`. The check and the write are one
        atomic step (`UPDATE … WHERE` the expected values, or a row version)."""
        ...

    async def archive(self, object_name: str, ids: Sequence[str]) -> list[WriteResult]: ...

    async def find(self, object_name: str, field: str, value: str,
                   properties: Sequence[str]) -> list[Record]:
        """Records whose `field` equals `value` (case-insensitively for text): how a create
        whose answer was lost is reconciled by its match key instead of being repeated."""
        ...

    async def changes_since(self, object_name: str, cursor: str | None,
                            properties: Sequence[str]) -> Changes:
        """Records changed after `cursor` (None: from now on; returns a starting cursor)."""
        ...


@runtime_checkable
class SupportsRateBudget(Protocol):
    @property
    def budget(self) -> RateBudget:
        """The API account's shared rate budget (its `statistics()` for status)."""
        ...


@runtime_checkable
class SupportsFindMany(Protocol):
    async def find_many(self, object_name: str, field: str, values: Sequence[str],
                        properties: Sequence[str]) -> dict[str, list[Record]]:
        """`find` for many values at once, in as few API calls as the API allows: for each
        of `values` (as given), the records whose `field` equals it (case-insensitively for
        text); a value nothing matches may be absent."""
        ...


class CreateKey(msgspec.Struct, frozen=True):
    """What a record a create makes can be found by again: `field` holding `value`.
    `consistent`: a look-up by it sees a write at once (HubSpot's batch read by `idProperty`);
    otherwise it is a search, which may miss a record for `index_lag` seconds after its
    write."""

    field: str
    value: str
    consistent: bool = True


@runtime_checkable
class SupportsCreateHealing(Protocol):
    """A side whose creates can end with their answer lost (`RecordError.unknown`) or refused
    for the whole batch (`RecordError.whole_batch`). It declares how to find a create's
    record again; the runtime (`runtime.create_healing`) runs the look-ups (`find_many`
    where the connector has it, else `find`) and decides: ours, a conflict with an older
    record, or absent and sent again after a backoff."""

    # How long a search may miss a record after its write (seconds; 0: not at all).
    index_lag: float
    # The property holding a record's creation time, asked for in the look-ups.
    created_at_field: str

    @property
    def retry_policy(self) -> RetryPolicy:
        """Attempts and backoff for sending a lost create again."""
        ...

    async def create_keys(self, object_name: str, inputs: Sequence[Mapping[str, Any]]
                          ) -> list[CreateKey | None]:
        """Per input, what its record is found by (None: nothing identifies it)."""
        ...

    def created_at(self, record: Record) -> int | None:
        """When `record` was made (epoch ms, from `created_at_field`); None: unknown."""
        ...


@runtime_checkable
class SupportsIndexedRead(Protocol):
    async def read_indexed(self, object_name: str, ids: Sequence[str],
                           properties: Sequence[str]) -> dict[str, Record]:
        """Records by id as the side's search index holds them, more per request than
        `read` takes. The index lags behind writes: a record may be absent (not indexed yet,
        or deleted) or older than it is; a caller trusts an answer only where it can tell
        that an edit it does not show is caught later (runtime/reads.py)."""
        ...


@runtime_checkable
class SupportsIdCheck(Protocol):
    def id_problem(self, object_name: str, record_id: str) -> str | None:
        """Why `record_id` cannot name a record of `object_name` (None: it can). Pure and
        quick, no I/O: webhook intake refuses such an event before storing it."""
        ...


@runtime_checkable
class SupportsPipelines(Protocol):
    async def pipelines(self, object_name: str) -> list[PipelineInfo]:
        """Deal pipelines with their stages. Raises ConnectorError(kind="config",
        category="permission_denied") when the connection may not read them."""
        ...


@runtime_checkable
class SupportsOwners(Protocol):
    """A side whose records have owners (HubSpot's `hubspot_owner_id`)."""

    async def owners(self, *, refresh: bool = False) -> list[tuple[str, str]]:
        """The live owners as (owner id, email). Cached; `refresh` asks the service again
        (implementations may answer from a very recent read)."""
        ...


@runtime_checkable
class SupportsAssociations(Protocol):
    async def read_associations(self, from_object: str, to_object: str,
                                ids: Sequence[str]) -> dict[str, list[str]]:
        """For each id, the ids of `to_object` records it is associated with."""
        ...

    async def write_associations(self, from_object: str, to_object: str,
                                 changes: Sequence[AssociationChange]) -> list[WriteResult]:
        """Create (or, with `removed`, remove) associations; one result per change."""
        ...


@runtime_checkable
class SupportsScanAssociations(Protocol):
    async def scan_associated(self, object_name: str, cursor: str | None,
                              properties: Sequence[str], to_objects: Sequence[str]) -> Page:
        """`scan`, each record with its associations to `to_objects` (`Page.associations`),
        read in the same requests."""
        ...


class PropertyValue(msgspec.Struct, frozen=True):
    """One value a property held (HubSpot's ValueWithTimestamp, fact sheet §1.2)."""

    value: str
    at: int  # epoch milliseconds when it was set
    source: str = ""  # who set it: CRM_UI, INTEGRATION, IMPORT, ...


@runtime_checkable
class SupportsPropertyHistory(Protocol):
    async def read_history(self, object_name: str, ids: Sequence[str],
                           properties: Sequence[str]) -> dict[str, dict[str, list[PropertyValue]]]:
        """For each record of `ids` that exists, the values each of `properties` held, newest
        first (a property that never held a value may be absent)."""
        ...


@runtime_checkable
class SupportsWriteEvidence(Protocol):
    """A side whose change log tells crmsync's own writes from everyone else's (a database
    app). After a crash between sending an update and committing its outcome, a record that
    holds neither the value read nor the value written was either changed before the update
    (which, being conditional, was then refused) or after it landed: only the log says
    which, and so whether the record's value is a newer edit or a conflicting one."""

    async def log_position(self) -> str:
        """Where the change log ends now; taken before updates are sent."""
        ...

    async def written_then_changed(self, object_name: str, ids: Sequence[str],
                                   position: str) -> set[str]:
        """The ids among `ids` whose record crmsync wrote after `position` and someone else
        changed after that write."""
        ...


@runtime_checkable
class SupportsEventIntake(Protocol):
    """The hub side of event sync: accepts contact events."""

    async def send_events(self, events: Sequence[tuple[str, AppEvent]]) -> list[WriteResult]:
        """Send (hub contact id, event) pairs as custom behavioral events."""
        ...


@runtime_checkable
class SupportsEventSource(Protocol):
    """The app side of event sync: yields contact events after a cursor."""

    async def events_since(self, cursor: str | None,
                           limit: int) -> tuple[list[AppEvent], str]: ...


# What a change notification is about: ("record", app object), ("event", events table), or
# ("any", "") when notifications may have been missed (after connecting again).
WakeKind = Literal["record", "event", "any"]


@runtime_checkable
class SupportsChangeNotifications(Protocol):
    """An app that announces committed changes (PostgreSQL's LISTEN/NOTIFY)."""

    async def watch_changes(self, wake: Callable[[str, str], None], *,
                            task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                            ) -> None:
        """Run until cancelled, calling `wake(kind, name)` (see WakeKind) soon after a change
        is committed. Only a wake-up: changes are still read with changes_since /
        events_since, and the poll interval still applies (a notification may be lost)."""
        ...
