"""The control protocol: newline-delimited JSON over the daemon's Unix socket.

A client writes one request per line and reads one reply per line; a connection may carry
several requests, one after the other. Requests and replies are frozen msgspec Structs in two
tagged unions whose tag field is `op`: a request `{"op": "status"}` gets a reply
`{"op": "status", ...}`, or `{"op": "error", "code": ..., "message": ...}`.

Schema evolution (msgspec's rules): a field added later gets a default, a field's type never
changes, and unknown fields are ignored, so an older daemon and a newer CLI (or the reverse)
still understand each other. Requests that change something on a side of a sync carry an
explicit `yes` (default false: report only), so a field a daemon does not know can never turn
a dry run into a real one.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from crmsync.control.views import (
    MAX_PAGE,
    ApproveView,
    BackupView,
    ConnectionStateView,
    DeletesView,
    DeleteSyncView,
    PollNowView,
    PreviewView,
    RecordHistory,
    RecordsPage,
    ReloadView,
    RestoreView,
    ResyncView,
    ReviewView,
    StatusView,
    WebhooksView,
)

# Bumped only for a change older clients cannot ignore (none so far).
PROTOCOL_VERSION = 1

SideName = Literal["", "hub", "app"]
StateName = Literal["pending", "syncing", "failed", "excluded", "queued", "deleted"]

# Every integer argument carries its range, so that a value outside it is a `bad_request`
# naming the field, never an error deep in the daemon (SQLite holds 64-bit signed integers:
# 2**63 reached it as an OverflowError).
ItemId = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]  # 0: from the start
PageSize = Annotated[int, msgspec.Meta(ge=1, le=MAX_PAGE)]
ShownRows = Annotated[int, msgspec.Meta(ge=0, le=MAX_PAGE)]  # 0: counts only


class _Op(msgspec.Struct, frozen=True, kw_only=True, tag_field="op"):
    pass


# --- requests ----------------------------------------------------------------------------------


class Ping(_Op, frozen=True, kw_only=True, tag="ping"):
    """Is the daemon there? Replies with its version and the protocol version."""


class Status(_Op, frozen=True, kw_only=True, tag="status"):
    connection: str = ""  # empty: every connection


class Records(_Op, frozen=True, kw_only=True, tag="records"):
    connection: str
    object: str  # hub or app object name
    state: StateName
    category: str = ""
    limit: PageSize = 100
    after: ItemId = 0  # the previous page's `next_after`
    values: bool = False  # each record's mapped values too, read from one side (export)


class History(_Op, frozen=True, kw_only=True, tag="history"):
    connection: str
    object: str
    record: str  # a hub or app record id (`hub:ID` / `app:ID` when both exist)
    side: SideName = ""
    limit: PageSize = 50


class Preview(_Op, frozen=True, kw_only=True, tag="preview"):
    connection: str
    object: str = ""  # empty: every object sync of the connection
    limit: ShownRows = 20  # entries shown per kind


class Approve(_Op, frozen=True, kw_only=True, tag="approve"):
    connection: str
    object: str = ""


class Resync(_Op, frozen=True, kw_only=True, tag="resync"):
    connection: str
    object: str = ""
    failed: bool = False  # every failed record
    record: str = ""  # one record (needs `object`)
    side: SideName = ""


class RestoreDeleted(_Op, frozen=True, kw_only=True, tag="restore_deleted"):
    connection: str
    object: str
    to: Literal["hub", "app"]  # the side the records were deleted on
    record: str = ""  # one record; empty: every record deleted on `to`
    side: SideName = ""
    yes: bool = False  # false: only list what would be re-created
    limit: ShownRows = 100  # rows listed in the reply (the work is not limited)


class Deletes(_Op, frozen=True, kw_only=True, tag="deletes"):
    connection: str
    object: str
    limit: ShownRows = 100


class ResolveDeletes(_Op, frozen=True, kw_only=True, tag="resolve_deletes"):
    connection: str
    object: str
    action: Literal["approve", "ignore"]
    record: str = ""
    side: SideName = ""
    all: bool = False  # every parked delete (instead of `record`)


class Disable(_Op, frozen=True, kw_only=True, tag="disable"):
    connection: str
    reason: str = ""


class Enable(_Op, frozen=True, kw_only=True, tag="enable"):
    connection: str


class DeleteSync(_Op, frozen=True, kw_only=True, tag="delete_sync"):
    connection: str
    yes: bool = False  # false: only report what would be dropped


class Reload(_Op, frozen=True, kw_only=True, tag="reload"):
    pass


class PollNow(_Op, frozen=True, kw_only=True, tag="poll_now"):
    connection: str
    object: str = ""


class Webhooks(_Op, frozen=True, kw_only=True, tag="webhooks"):
    connection: str
    action: Literal["list", "register", "remove"] = "list"


class Backup(_Op, frozen=True, kw_only=True, tag="backup"):
    """Write a consistent copy of the state database to `out` (an absolute path the daemon
    can write; the file appears complete or not at all, mode 0600)."""

    out: str


Request = (Ping | Status | Records | History | Preview | Approve | Resync | RestoreDeleted
           | Deletes | ResolveDeletes | Disable | Enable | DeleteSync | Reload | PollNow
           | Webhooks | Backup)


# --- replies -------------------------------------------------------------------------------------
# Each reply is the operation's view (control/views.py) with the request's `op` as its tag.


class ErrorReply(_Op, frozen=True, kw_only=True, tag="error"):
    """The request failed. `code`: bad_request, too_large, timeout, permission_denied, busy,
    not_found, not_running, invalid, ambiguous, config, failed, internal."""

    code: str
    message: str


class PingReply(_Op, frozen=True, kw_only=True, tag="ping"):
    version: str
    protocol: int = PROTOCOL_VERSION
    pid: int = 0


class StatusReply(StatusView, frozen=True, kw_only=True, tag_field="op", tag="status"):
    pass


class RecordsReply(RecordsPage, frozen=True, kw_only=True, tag_field="op", tag="records"):
    pass


class HistoryReply(RecordHistory, frozen=True, kw_only=True, tag_field="op", tag="history"):
    pass


class PreviewReply(PreviewView, frozen=True, kw_only=True, tag_field="op", tag="preview"):
    pass


class ApproveReply(ApproveView, frozen=True, kw_only=True, tag_field="op", tag="approve"):
    pass


class ResyncReply(ResyncView, frozen=True, kw_only=True, tag_field="op", tag="resync"):
    pass


class RestoreReply(RestoreView, frozen=True, kw_only=True, tag_field="op",
                   tag="restore_deleted"):
    pass


class DeletesReply(DeletesView, frozen=True, kw_only=True, tag_field="op", tag="deletes"):
    pass


class ResolveDeletesReply(ReviewView, frozen=True, kw_only=True, tag_field="op",
                          tag="resolve_deletes"):
    pass


class DisableReply(ConnectionStateView, frozen=True, kw_only=True, tag_field="op",
                   tag="disable"):
    pass


class EnableReply(ConnectionStateView, frozen=True, kw_only=True, tag_field="op",
                  tag="enable"):
    pass


class DeleteSyncReply(DeleteSyncView, frozen=True, kw_only=True, tag_field="op",
                      tag="delete_sync"):
    pass


class ReloadReply(ReloadView, frozen=True, kw_only=True, tag_field="op", tag="reload"):
    pass


class PollNowReply(PollNowView, frozen=True, kw_only=True, tag_field="op", tag="poll_now"):
    pass


class WebhooksReply(WebhooksView, frozen=True, kw_only=True, tag_field="op", tag="webhooks"):
    pass


class BackupReply(BackupView, frozen=True, kw_only=True, tag_field="op", tag="backup"):
    pass


Reply = (ErrorReply | PingReply | StatusReply | RecordsReply | HistoryReply | PreviewReply
         | ApproveReply | ResyncReply | RestoreReply | DeletesReply | ResolveDeletesReply
         | DisableReply | EnableReply | DeleteSyncReply | ReloadReply | PollNowReply
         | WebhooksReply | BackupReply)


def reply_from(reply_type: type[Any], view: msgspec.Struct) -> Any:
    """The reply of type `reply_type` carrying `view`'s fields (a shallow copy)."""
    return reply_type(**msgspec.structs.asdict(view))


# --- encoding ------------------------------------------------------------------------------------


class ProtocolError(Exception):
    """A line that is not a valid message; `code` is the error reply's code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


_encoder = msgspec.json.Encoder()
_request_decoder = msgspec.json.Decoder(Request)
_reply_decoder = msgspec.json.Decoder(Reply)


def encode(message: msgspec.Struct) -> bytes:
    """One message as one line (JSON never holds a raw newline)."""
    return _encoder.encode(message) + b"\n"


def _decode(decoder: msgspec.json.Decoder[Any], line: bytes, what: str) -> Any:
    try:
        return decoder.decode(line)
    except msgspec.ValidationError as exc:
        raise ProtocolError("bad_request", f"invalid {what}: {exc}") from None
    except msgspec.DecodeError as exc:
        raise ProtocolError("bad_request", f"the {what} is not JSON: {exc}") from None
    except (RecursionError, ValueError, UnicodeError) as exc:  # hostile nesting, bad bytes
        raise ProtocolError("bad_request", f"the {what} cannot be read: "
                                           f"{type(exc).__name__}") from None


def decode_request(line: bytes) -> Request:
    """A request from one line (without or with its newline); raises ProtocolError."""
    return _decode(_request_decoder, line, "request")


def decode_reply(line: bytes) -> Reply:
    """A reply from one line; raises ProtocolError."""
    return _decode(_reply_decoder, line, "reply")


def op_of(message: msgspec.Struct) -> str:
    return str(message.__struct_config__.tag)
