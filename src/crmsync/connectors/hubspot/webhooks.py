"""HubSpot webhook deliveries: signature verification and parsing (fact sheet §8).

Written from the fact sheet (DOC-VALID, CL-V3SIG), sharing nothing with the emulator.

v3 (`X-HubSpot-Signature-v3`, `X-HubSpot-Request-Timestamp` in epoch ms):
  1. reject a timestamp older than 5 minutes (or more than ~60 s in the future: clock skew);
  2. in the URI decode exactly `%3A : %2F / %3F ? %40 @ %21 ! %24 $ %27 ' %28 ( %29 ) %2A *
     %2C , %3B ;` (the `?` starting the query string stays as it is);
  3. message = method + uri + raw body + timestamp (UTF-8); `uri` is the full URL HubSpot
     called (scheme, host, path, query) — take it from configuration, never the Host header;
  4. HMAC-SHA256 keyed with the app's client secret, base64;
  5. compare in constant time.
v1 (`X-HubSpot-Signature-Version: v1`): sha256 hex of client secret + raw body.
v2 (`v2`): sha256 hex of client secret + method + uri + raw body.

A delivery is a JSON array of events; `parse_delivery` turns it into `WebhookEvent`s or
raises `WebhookPayloadError` saying what is wrong.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
from collections.abc import Mapping
from typing import Any, Literal

import msgspec

from crmsync.connectors.hubspot.objects import OBJECT_BY_SINGULAR, object_name

__all__ = [
    "MAX_AGE_SECONDS",
    "MAX_FUTURE_SKEW_SECONDS",
    "SIGNATURE_HEADER",
    "SIGNATURE_V3_HEADER",
    "SIGNATURE_VERSION_HEADER",
    "TIMESTAMP_HEADER",
    "WebhookEvent",
    "WebhookPayloadError",
    "WebhookSignatureError",
    "decode_signature_uri",
    "parse_delivery",
    "parse_event",
    "signature_v1",
    "signature_v2",
    "signature_v3",
    "valid_object_id",
    "verify_delivery",
    "verify_v1",
    "verify_v2",
    "verify_v3",
]

SIGNATURE_V3_HEADER = "X-HubSpot-Signature-v3"
TIMESTAMP_HEADER = "X-HubSpot-Request-Timestamp"
SIGNATURE_HEADER = "X-HubSpot-Signature"
SIGNATURE_VERSION_HEADER = "X-HubSpot-Signature-Version"
MAX_AGE_SECONDS = 300
MAX_FUTURE_SKEW_SECONDS = 60

# DOC-VALID's decoding table, applied as given (upper-case escapes).
_URI_DECODING = {
    "%3A": ":", "%2F": "/", "%3F": "?", "%40": "@", "%21": "!", "%24": "$", "%27": "'",
    "%28": "(", "%29": ")", "%2A": "*", "%2C": ",", "%3B": ";",
}
_URI_RE = re.compile("|".join(re.escape(k) for k in _URI_DECODING))


class WebhookSignatureError(ValueError):
    """The delivery's signature does not hold; `reason` is a short machine-readable word:
    missing, bad_timestamp, stale, future, mismatch, unsupported_version."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class WebhookPayloadError(ValueError):
    """The delivery body is not a valid array of HubSpot events."""


def decode_signature_uri(uri: str) -> str:
    """The URI as HubSpot signs it: the table's escapes decoded, everything else untouched."""
    return _URI_RE.sub(lambda m: _URI_DECODING[m.group(0)], uri)


def _text(value: str | bytes) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else value


def signature_v3(secret: str, method: str, uri: str, body: bytes | str, timestamp: str) -> str:
    message = (method.encode("utf-8") + decode_signature_uri(uri).encode("utf-8")
               + _text(body) + timestamp.encode("utf-8"))
    digest = hmac.new(secret.encode("utf-8"), message, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def signature_v1(secret: str, body: bytes | str) -> str:
    return hashlib.sha256(secret.encode("utf-8") + _text(body)).hexdigest()


def signature_v2(secret: str, method: str, uri: str, body: bytes | str) -> str:
    return hashlib.sha256(secret.encode("utf-8") + method.encode("utf-8")
                          + uri.encode("utf-8") + _text(body)).hexdigest()


def _same(expected: str, given: str) -> bool:
    return hmac.compare_digest(expected.encode("utf-8"), given.strip().encode("utf-8"))


def verify_v3(secret: str, *, method: str, uri: str, body: bytes | str, signature: str | None,
              timestamp: str | None, now: float | None = None) -> None:
    """Raise WebhookSignatureError unless the v3 signature holds and the timestamp is within
    5 minutes in the past / 60 s in the future of `now` (epoch seconds; default the clock)."""
    if not signature or not timestamp:
        raise WebhookSignatureError("missing", "the v3 signature or its timestamp is missing")
    try:
        ts_ms = int(timestamp.strip())
    except ValueError:
        raise WebhookSignatureError("bad_timestamp",
                                    f"the request timestamp {timestamp[:32]!r} is not an "
                                    "integer") from None
    now_ms = (time.time() if now is None else now) * 1000.0
    if now_ms - ts_ms > MAX_AGE_SECONDS * 1000:
        raise WebhookSignatureError("stale", "the request timestamp is more than 5 minutes old")
    if ts_ms - now_ms > MAX_FUTURE_SKEW_SECONDS * 1000:
        raise WebhookSignatureError("future", "the request timestamp is in the future")
    if not _same(signature_v3(secret, method, uri, body, timestamp.strip()), signature):
        raise WebhookSignatureError("mismatch", "the v3 signature does not match")


def verify_v1(secret: str, *, body: bytes | str, signature: str | None) -> None:
    if not signature:
        raise WebhookSignatureError("missing", "the v1 signature is missing")
    if not _same(signature_v1(secret, body), signature.lower()):
        raise WebhookSignatureError("mismatch", "the v1 signature does not match")


def verify_v2(secret: str, *, method: str, uri: str, body: bytes | str,
              signature: str | None) -> None:
    if not signature:
        raise WebhookSignatureError("missing", "the v2 signature is missing")
    if not _same(signature_v2(secret, method, uri, body), signature.lower()):
        raise WebhookSignatureError("mismatch", "the v2 signature does not match")


def verify_delivery(secret: str, *, method: str, uri: str, body: bytes,
                    headers: Mapping[str, str], now: float | None = None,
                    allow_legacy: bool = True) -> str:
    """Verify whichever signature the delivery carries, v3 first; return its version.

    `headers` must look names up case-insensitively (httpx/starlette headers do). Without a
    v3 signature, v1/v2 are accepted when `allow_legacy` (they carry no timestamp, so a
    replay cannot be detected).
    """
    if headers.get(SIGNATURE_V3_HEADER):
        verify_v3(secret, method=method, uri=uri, body=body,
                  signature=headers.get(SIGNATURE_V3_HEADER),
                  timestamp=headers.get(TIMESTAMP_HEADER), now=now)
        return "v3"
    if not allow_legacy:
        raise WebhookSignatureError("missing", "the delivery has no v3 signature")
    version = (headers.get(SIGNATURE_VERSION_HEADER) or "").strip().lower()
    signature = headers.get(SIGNATURE_HEADER)
    if version == "v1":
        verify_v1(secret, body=body, signature=signature)
        return "v1"
    if version == "v2":
        verify_v2(secret, method=method, uri=uri, body=body, signature=signature)
        return "v2"
    if not signature:
        raise WebhookSignatureError("missing", "the delivery carries no signature")
    raise WebhookSignatureError("unsupported_version",
                                f"unsupported signature version {version[:16]!r}")


# --- events ------------------------------------------------------------------------------------

ChangeKind = Literal[
    "creation", "deletion", "propertyChange", "associationChange", "merge", "restore",
    "privacyDeletion", "other",
]
_CHANGES = frozenset({"creation", "deletion", "propertyChange", "associationChange", "merge",
                      "restore", "privacyDeletion"})


class WebhookEvent(msgspec.Struct, frozen=True, kw_only=True):
    """One event of a delivery. `object` is the object name as in API paths ("contacts")."""

    event_id: str
    subscription_type: str  # as sent, e.g. "contact.propertyChange"
    object: str
    change: ChangeKind
    object_id: str
    occurred_at: int  # epoch ms
    portal_id: int | None = None
    app_id: int | None = None
    subscription_id: int | None = None
    attempt_number: int = 0
    change_source: str | None = None
    change_flag: str | None = None
    property_name: str | None = None
    property_value: str | None = None
    association_type: str | None = None
    from_object_id: str | None = None
    to_object_id: str | None = None
    association_removed: bool | None = None
    is_primary_association: bool | None = None
    primary_object_id: str | None = None
    merged_object_ids: tuple[str, ...] = ()
    new_object_id: str | None = None


def _id(event: Mapping[str, Any], key: str, where: str, *, required: bool) -> str | None:
    value = event.get(key)
    if value is None:
        if required:
            raise WebhookPayloadError(f"{where}: missing field {key!r}")
        return None
    if isinstance(value, bool) or not isinstance(value, int | str) or str(value) == "":
        raise WebhookPayloadError(f"{where}: field {key!r} must be an id (number or string)")
    return str(value)


# HubSpot record ids are positive 64-bit integers: deliveries carry them as JSON numbers
# (`"objectId":123` in the fact sheet's sample, §8; `65059681032` in real deliveries) and
# `hs_object_id` is a number property. Anything else cannot name a record.
MAX_OBJECT_ID = 2**63 - 1
_OBJECT_ID = re.compile(r"[1-9][0-9]{0,18}")


def valid_object_id(value: str) -> bool:
    """Is `value` (the text of an id) a HubSpot record id: 1 to 2**63 - 1 in plain decimal
    digits, as HubSpot writes it (no sign, no leading zero: "0012" would name record 12
    under another id)?"""
    return bool(_OBJECT_ID.fullmatch(value)) and int(value) <= MAX_OBJECT_ID


def _object_id(event: Mapping[str, Any], key: str, where: str, *,
               required: bool) -> str | None:
    value = _id(event, key, where, required=required)
    if value is not None and not valid_object_id(value):
        raise WebhookPayloadError(f"{where}: field {key!r} is not a HubSpot record id "
                                  f"(a positive 64-bit integer): {value[:40]!r}")
    return value


def _int(event: Mapping[str, Any], key: str, where: str, *, required: bool) -> int | None:
    value = event.get(key)
    if value is None:
        if required:
            raise WebhookPayloadError(f"{where}: missing field {key!r}")
        return None
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise WebhookPayloadError(f"{where}: field {key!r} must be an integer")
    return value


def _str(event: Mapping[str, Any], key: str, where: str) -> str | None:
    value = event.get(key)
    if value is None:
        return None
    if isinstance(value, dict | list):
        raise WebhookPayloadError(f"{where}: field {key!r} must be a scalar")
    return str(value)


def _bool(event: Mapping[str, Any], key: str, where: str) -> bool | None:
    value = event.get(key)
    if value is None:
        return None
    if not isinstance(value, bool):
        raise WebhookPayloadError(f"{where}: field {key!r} must be true or false")
    return value


def _event(raw: Any, index: int) -> WebhookEvent:
    where = f"event {index}"
    if not isinstance(raw, dict):
        raise WebhookPayloadError(f"{where} is not a JSON object")
    stype = raw.get("subscriptionType", raw.get("eventType"))
    if not isinstance(stype, str) or "." not in stype:
        raise WebhookPayloadError(f"{where}: missing or malformed 'subscriptionType'")
    prefix, _, change = stype.partition(".")
    if prefix == "object":
        type_id = _str(raw, "objectTypeId", where)
        obj = object_name(type_id) if type_id else "object"
    else:
        obj = OBJECT_BY_SINGULAR.get(prefix, prefix)
    kind: ChangeKind = change if change in _CHANGES else "other"  # type: ignore[assignment]
    association = kind == "associationChange"
    from_id = _object_id(raw, "fromObjectId", where, required=association)
    object_id = _object_id(raw, "objectId", where, required=not association) or from_id
    assert object_id is not None
    merged = raw.get("mergedObjectIds") or []
    if not isinstance(merged, list) or not all(
            isinstance(m, int | str) and not isinstance(m, bool) and valid_object_id(str(m))
            for m in merged):
        raise WebhookPayloadError(f"{where}: 'mergedObjectIds' must be a list of HubSpot "
                                  "record ids")
    event_id = _id(raw, "eventId", where, required=True)
    occurred = _int(raw, "occurredAt", where, required=True)
    assert event_id is not None and occurred is not None
    return WebhookEvent(
        event_id=event_id,
        subscription_type=stype,
        object=obj,
        change=kind,
        object_id=object_id,
        occurred_at=occurred,
        portal_id=_int(raw, "portalId", where, required=False),
        app_id=_int(raw, "appId", where, required=False),
        subscription_id=_int(raw, "subscriptionId", where, required=False),
        attempt_number=_int(raw, "attemptNumber", where, required=False) or 0,
        change_source=_str(raw, "changeSource", where),
        change_flag=_str(raw, "changeFlag", where),
        property_name=_str(raw, "propertyName", where),
        property_value=_str(raw, "propertyValue", where),
        association_type=_str(raw, "associationType", where),
        from_object_id=from_id,
        to_object_id=_object_id(raw, "toObjectId", where, required=association),
        association_removed=_bool(raw, "associationRemoved", where),
        is_primary_association=_bool(raw, "isPrimaryAssociation", where),
        primary_object_id=_object_id(raw, "primaryObjectId", where, required=False),
        merged_object_ids=tuple(str(m) for m in merged),
        new_object_id=_object_id(raw, "newObjectId", where, required=False),
    )


def parse_event(raw: Any, index: int = 0) -> WebhookEvent:
    """One decoded event (a webhook delivery's or a journal file's); raises
    WebhookPayloadError naming what is wrong (see `parse_delivery`)."""
    return _event(raw, index)


def parse_delivery(body: bytes | str, *, max_events: int = 1000) -> list[WebhookEvent]:
    """The events of one delivery (a JSON array; HubSpot sends at most 100 per request).

    Raises WebhookPayloadError for anything else: invalid or too deeply nested JSON, not an
    array, too many events, an event that is not an object or lacks `eventId`,
    `subscriptionType`, `occurredAt` or `objectId` (`fromObjectId`/`toObjectId` for
    associationChange), or has fields of the wrong type.
    """
    try:
        data = msgspec.json.decode(_text(body))
    except RecursionError:
        raise WebhookPayloadError("the delivery is nested too deeply") from None
    except msgspec.DecodeError as exc:
        raise WebhookPayloadError(f"the delivery is not valid JSON: {exc}") from None
    if not isinstance(data, list):
        raise WebhookPayloadError(
            f"the delivery must be a JSON array of events, not {type(data).__name__}")
    if len(data) > max_events:
        raise WebhookPayloadError(f"the delivery has {len(data)} events (at most {max_events})")
    return [_event(raw, i) for i, raw in enumerate(data)]
