"""Generic app webhooks: what `POST /webhooks/{connection}` verifies and accepts.

An app (or a script beside it) tells crmsync that records changed, instead of waiting for the
next poll of its change log. The request carries

    X-Crmsync-Timestamp: <epoch seconds>
    X-Crmsync-Signature: v1=<hex HMAC-SHA256 of f"{timestamp}.{raw body}" with the connection's
                         shared secret>

(several `v1=` values, comma-separated, are accepted while a secret is being rotated) and a
JSON array body:

    [{"event_id": "e-1", "object": "customers", "record_id": "42",
      "change": "upsert" | "delete", "occurred_at": "2024-05-01T12:00:00Z" | <epoch s or ms>}]

The webhook server checks the signature on the raw bytes *before* parsing (`verify`), parses
(`parse_events`), stores each event in the inbox under its event id (`inbox_items`), and only
then answers 2xx. The event is a hint: the runtime re-reads the record, so a forged-looking but
validly signed event can cause a re-read, never a wrong value.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Callable, Collection, Mapping
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

import msgspec

from crmsync.config.secrets import Secret

TIMESTAMP_HEADER = "X-Crmsync-Timestamp"
SIGNATURE_HEADER = "X-Crmsync-Signature"
SIGNATURE_SCHEME = "v1"
MAX_AGE_SECONDS = 300  # older requests are refused (replays)
MAX_FUTURE_SECONDS = 60  # tolerated clock skew of the sender
MAX_EVENTS = 10_000  # per request; a 1 MiB body holds a few thousand events at most
MAX_RECORD_ID_LENGTH = 256

_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
_DIGITS = re.compile(r"[0-9]{1,12}")
# Year 10000 in epoch milliseconds: anything later is not a time.
_MAX_MS = 253_402_300_800_000
_MS_THRESHOLD = 1e11  # as for updated-at columns: >= 1e11 is milliseconds


class AppWebhookError(Exception):
    """Base of this module's errors; the message is safe to log and to answer with."""


class SignatureError(AppWebhookError):
    """The request is not authentic or not fresh: answer 401 and store nothing.

    `reason`: missing (a header is absent), malformed (a header cannot be read), mismatch
    (no signature matches), stale (older than MAX_AGE_SECONDS), future (more than
    MAX_FUTURE_SECONDS ahead)."""

    def __init__(self, reason: Literal["missing", "malformed", "mismatch", "stale", "future"],
                 message: str) -> None:
        super().__init__(message)
        self.reason = reason


class PayloadError(AppWebhookError):
    """The body is not a valid list of events: answer 400."""


class AppWebhookEvent(msgspec.Struct, frozen=True):
    """One change an app announced. The record is re-read; the event only says which."""

    event_id: str
    object: str
    record_id: str
    change: Literal["upsert", "delete"]
    occurred_at: int  # epoch milliseconds


class _WireEvent(msgspec.Struct, frozen=True):
    event_id: str
    object: str
    record_id: str | int
    change: Literal["upsert", "delete"]
    occurred_at: int | float | str


_BODY_DECODER = msgspec.json.Decoder(list[_WireEvent])
_INBOX_DECODER = msgspec.json.Decoder(AppWebhookEvent)


def _key(secret: Secret | str | bytes) -> bytes:
    if isinstance(secret, Secret):
        secret = secret.reveal()
    return secret.encode("utf-8") if isinstance(secret, str) else secret


def signature(secret: Secret | str | bytes, timestamp: int | str, body: bytes) -> str:
    """The hex HMAC-SHA256 of f"{timestamp}.{body}"."""
    msg = str(timestamp).encode("ascii") + b"." + body
    return hmac.new(_key(secret), msg, hashlib.sha256).hexdigest()


def sign(secret: Secret | str | bytes, body: bytes,
         timestamp: int | None = None) -> dict[str, str]:
    """The headers that make `body` a valid request (for tests, the demo and app authors)."""
    ts = int(time.time()) if timestamp is None else timestamp
    return {
        TIMESTAMP_HEADER: str(ts),
        SIGNATURE_HEADER: f"{SIGNATURE_SCHEME}={signature(secret, ts, body)}",
    }


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:
        low = name.lower()
        for k, v in headers.items():
            if k.lower() == low:
                return v
    return value


def verify(secret: Secret | str | bytes, headers: Mapping[str, str], body: bytes, *,
           now: float | None = None) -> int:
    """Check a request's signature and freshness on its raw body; returns its timestamp.

    Raises SignatureError. Header names are matched case-insensitively. The signature is
    checked first (with `hmac.compare_digest`), then the time window, so "stale" and "future"
    are only ever said of authentic requests."""
    ts_text = _header(headers, TIMESTAMP_HEADER)
    sig_text = _header(headers, SIGNATURE_HEADER)
    if ts_text is None or sig_text is None:
        missing = TIMESTAMP_HEADER if ts_text is None else SIGNATURE_HEADER
        raise SignatureError("missing", f"header {missing} is missing")
    ts_text = ts_text.strip()
    if not _DIGITS.fullmatch(ts_text):
        raise SignatureError("malformed", f"header {TIMESTAMP_HEADER} is not epoch seconds")
    candidates = []
    for part in sig_text.split(","):
        scheme, _, value = part.strip().partition("=")
        if scheme == SIGNATURE_SCHEME and _HEX64.fullmatch(value):
            candidates.append(value.lower().encode("ascii"))
    if not candidates:
        raise SignatureError("malformed",
                             f"header {SIGNATURE_HEADER} holds no {SIGNATURE_SCHEME}=<hex sha256>")
    expected = signature(secret, ts_text, body).encode("ascii")
    # Compare with every candidate (no early exit) so timing says nothing about which matched.
    matched = False
    for c in candidates:
        matched |= hmac.compare_digest(expected, c)
    if not matched:
        raise SignatureError("mismatch", "the signature does not match")
    ts = int(ts_text)
    current = time.time() if now is None else now
    if current - ts > MAX_AGE_SECONDS:
        raise SignatureError("stale", f"the request is older than {MAX_AGE_SECONDS} s")
    if ts - current > MAX_FUTURE_SECONDS:
        raise SignatureError("future",
                             f"the request is more than {MAX_FUTURE_SECONDS} s in the future")
    return ts


def _occurred_ms(value: int | float | str, where: str) -> int:
    ms: float
    try:
        if isinstance(value, str):
            s = value.strip()
            try:
                ms = float(s)
            except ValueError:
                ms = _iso_ms(s, where)
            else:
                ms = ms if abs(ms) >= _MS_THRESHOLD else ms * 1000
        else:
            ms = float(value) if abs(value) >= _MS_THRESHOLD else float(value) * 1000
    except OverflowError:
        ms = -1.0
    if not 0 <= ms <= _MAX_MS:  # also false for NaN
        raise PayloadError(f"{where}.occurred_at is out of range")
    return round(ms)


def _iso_ms(s: str, where: str) -> float:
    try:
        dt = datetime.fromisoformat(s)
    except ValueError:
        raise PayloadError(f"{where}.occurred_at: {s[:40]!r} is not an ISO 8601 time or an "
                           "epoch number") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    try:
        return dt.timestamp() * 1000
    except (OverflowError, OSError, ValueError):
        return -1.0


# Why a record id cannot name a record of an app object (None: it can), as the connection's
# connector knows it once open: (object, record id) -> problem.
IdCheck = Callable[[str, str], str | None]


def _record_id_problem(value: str | int) -> str | None:
    """What no app's record id can be, whatever its keys: ids are stored in 64-bit integer
    or text columns (https://sqlite.org/datatype3.html §2), and an id is a short name."""
    if isinstance(value, int):
        if not -(2**63) <= value < 2**63:
            return "is out of range (ids are 64-bit integers or text)"
        return None
    if not value.strip():
        return "is empty"
    if len(value) > MAX_RECORD_ID_LENGTH:
        return f"is longer than {MAX_RECORD_ID_LENGTH} characters"
    if not value.isprintable():
        return "holds control characters"
    return None


def parse_events(body: bytes, *, objects: Collection[str] | None = None,
                 max_events: int = MAX_EVENTS,
                 check_id: IdCheck | None = None) -> list[AppWebhookEvent]:
    """The events of a verified body. Raises PayloadError (and nothing else, whatever the
    bytes) naming the first problem and where (`$[3].change`). With `objects`, an event for
    another object is refused too; with `check_id`, an event whose record id cannot name a
    record of its object (`check_id(object, record_id)` says why). Unknown members of an
    event are ignored (senders may add fields)."""
    try:
        wire = _BODY_DECODER.decode(body)
    except msgspec.ValidationError as exc:
        raise PayloadError(f"invalid events: {exc}") from None
    except msgspec.DecodeError as exc:
        raise PayloadError(f"body is not JSON: {exc}") from None
    except RecursionError:
        raise PayloadError("body is nested too deeply") from None
    if len(wire) > max_events:
        raise PayloadError(f"too many events: {len(wire)} (at most {max_events} per request)")
    out: list[AppWebhookEvent] = []
    for i, w in enumerate(wire):
        where = f"$[{i}]"
        problem = _record_id_problem(w.record_id)
        if problem is not None:
            raise PayloadError(f"{where}.record_id {problem}")
        record_id = str(w.record_id)
        for name, value in (("event_id", w.event_id), ("object", w.object)):
            if not value.strip():
                raise PayloadError(f"{where}.{name} is empty")
        if objects is not None and w.object not in objects:
            raise PayloadError(f"{where}.object: {w.object[:60]!r} is not an app object of "
                               "this connection")
        problem = check_id(w.object, record_id) if check_id is not None else None
        if problem is not None:
            raise PayloadError(f"{where}.record_id: {problem}")
        out.append(AppWebhookEvent(
            event_id=w.event_id, object=w.object, record_id=record_id, change=w.change,
            occurred_at=_occurred_ms(w.occurred_at, where)))
    return out


def inbox_items(events: Collection[AppWebhookEvent]) -> list[tuple[str, bytes]]:
    """(event key, payload) pairs for the store's inbox, which deduplicates on the key."""
    return [(e.event_id, msgspec.json.encode(e)) for e in events]


def decode_inbox_payload(payload: bytes) -> AppWebhookEvent:
    """An inbox payload written by `inbox_items` back as an event."""
    return _INBOX_DECODER.decode(payload)


class AppReceiver(Protocol):
    """What `POST /webhooks/{connection}` asks of a connection's receiver: check that a
    request is authentic (raise SignatureError: 401, nothing stored), then read its events
    (raise PayloadError: 400). A connector type whose app pushes another format brings its
    own receiver (see the registry)."""

    def verify(self, headers: Mapping[str, str], body: bytes, *,
               now: float | None = None) -> Any: ...

    def parse(self, body: bytes, *, check_id: IdCheck | None = None
              ) -> list[AppWebhookEvent]: ...

    def secret_values(self) -> list[str]:
        """The secrets it holds, so that the logs redact them."""
        ...


class HmacReceiver:
    """The generic push of this module: HMAC-signed JSON arrays of events."""

    def __init__(self, secret: Secret) -> None:
        self._secret = secret

    def verify(self, headers: Mapping[str, str], body: bytes, *,
               now: float | None = None) -> int:
        return verify(self._secret, headers, body, now=now)

    def parse(self, body: bytes, *, check_id: IdCheck | None = None
              ) -> list[AppWebhookEvent]:
        return parse_events(body, check_id=check_id)

    def secret_values(self) -> list[str]:
        return [self._secret.reveal()]
