"""Pipedrive webhooks (v2) at `POST /webhooks/<connection>` [PD-wh2][PD-whmig].

Pipedrive signs nothing: it sends the HTTP Basic credentials given when the webhook was
registered, on every delivery. `PipedriveReceiver.verify` checks them (constant-time) before
the body is parsed; `parse` reads `{meta, data, previous}` into crmsync's app webhook events,
keyed by `meta.id` so a delivery retried or duplicated is stored once (the inbox deduplicates
on the key). An event is a hint: the record is re-read before anything is decided.

Echoes: a change crmsync itself made comes back as an event with `change_source = "api"` and
`meta.user_id` = crmsync's Pipedrive user. With `ignore_own_changes`, such events are dropped
(answered 2xx, stored nowhere) — use a dedicated Pipedrive user for crmsync, or changes that
other integrations make through the API with the same user are dropped too (polling still
brings them, one poll interval later).

Events about other objects (activities, stages, ...) are acknowledged and dropped.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Mapping
from typing import Any

import msgspec

from crmsync.config.secrets import Secret
from crmsync.connectors.app_webhooks import (
    AppWebhookEvent,
    IdCheck,
    PayloadError,
    SignatureError,
)
from crmsync.connectors.pipedrive.fields import WEBHOOK_ENTITY
from crmsync.connectors.pipedrive.records import to_ms

OBJECT_OF_ENTITY = {v: k for k, v in WEBHOOK_ENTITY.items()}
_ACTIONS = {"create": "upsert", "change": "upsert", "delete": "delete",
            # v1 names, in case a webhook was registered with version 1.0 by hand [PD-wh1]
            "added": "upsert", "updated": "upsert", "deleted": "delete", "merged": "upsert"}


class _Meta(msgspec.Struct, frozen=True):
    action: str
    id: str | None = None
    entity: str | None = None
    entity_id: str | int | None = None
    timestamp: str | int | float | None = None
    user_id: str | int | None = None
    change_source: str | None = None
    version: str | None = None
    # v1 names [PD-wh1]
    object: str | None = None


class _Delivery(msgspec.Struct, frozen=True):
    meta: _Meta
    data: Any = None
    previous: Any = None


_DECODER = msgspec.json.Decoder(_Delivery)


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:
        low = name.lower()
        for k, v in headers.items():
            if k.lower() == low:
                return v
    return value


class PipedriveReceiver:
    """Verifies and parses one connection's Pipedrive deliveries.

    `own_user_id` is crmsync's Pipedrive user (None: not known yet, nothing is dropped as an
    echo); the connector sets it once it has asked `/v1/users/me`."""

    def __init__(self, user: str, password: Secret, *, ignore_own_changes: bool = True,
                 own_user_id: int | None = None) -> None:
        self.user = user
        self._password = password
        self.ignore_own_changes = ignore_own_changes
        self.own_user_id = own_user_id
        self.echoes = 0

    def secret_values(self) -> list[str]:
        return [self._password.reveal()]

    def verify(self, headers: Mapping[str, str], body: bytes, *, now: float | None = None
               ) -> None:
        """Check the Basic credentials. Raises SignatureError (answered 401)."""
        auth = _header(headers, "Authorization")
        if not auth:
            raise SignatureError("missing", "header Authorization is missing (Pipedrive sends "
                                            "the webhook's HTTP Basic credentials)")
        scheme, _, encoded = auth.strip().partition(" ")
        if scheme.lower() != "basic" or not encoded:
            raise SignatureError("malformed", "the Authorization header is not HTTP Basic")
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise SignatureError("malformed", "the Basic credentials are not base64") from None
        user, sep, password = decoded.partition(b":")
        if not sep:
            raise SignatureError("malformed", "the Basic credentials hold no user:password")
        # Both compared, always, so that timing tells nothing about which one differs.
        ok = hmac.compare_digest(user, self.user.encode("utf-8"))
        ok &= hmac.compare_digest(password, self._password.reveal().encode("utf-8"))
        if not ok:
            raise SignatureError("mismatch", "wrong webhook credentials")

    def parse(self, body: bytes, *, check_id: IdCheck | None = None) -> list[AppWebhookEvent]:
        """The events of one delivery (one event per delivery in v2 [PD-wh2]): [] for an
        echo of crmsync's own write or another object. Raises PayloadError (also for a record
        id `check_id` refuses)."""
        try:
            d = _DECODER.decode(body)
        except msgspec.ValidationError as exc:
            raise PayloadError(f"not a Pipedrive webhook: {exc}") from None
        except msgspec.DecodeError as exc:
            raise PayloadError(f"body is not JSON: {exc}") from None
        except RecursionError:
            raise PayloadError("body is nested too deeply") from None
        meta = d.meta
        entity = meta.entity or meta.object
        obj = OBJECT_OF_ENTITY.get(entity or "")
        change = _ACTIONS.get(meta.action)
        if change is None:
            raise PayloadError(f"meta.action {meta.action[:30]!r} is not a Pipedrive action")
        if obj is None:
            return []  # activities, stages, ...: not synced
        rid = meta.entity_id
        if rid is None or str(rid).strip() == "":
            raise PayloadError("meta.entity_id is missing")
        if not str(rid).strip().isdigit():
            raise PayloadError("meta.entity_id is not a record id")
        if check_id is not None and (why := check_id(obj, str(rid).strip())) is not None:
            raise PayloadError(f"meta.entity_id: {why}")
        if not meta.id:
            raise PayloadError("meta.id (the event id) is missing")
        if (self.ignore_own_changes and self.own_user_id is not None
                and meta.change_source == "api" and str(meta.user_id) == str(self.own_user_id)):
            self.echoes += 1
            return []
        occurred = meta.timestamp
        ms = (to_ms(occurred) if isinstance(occurred, str)
              else int(occurred * (1 if occurred > 1e11 else 1000)) if occurred else 0)
        return [AppWebhookEvent(event_id=f"pipedrive:{meta.id}", object=obj,
                                record_id=str(int(str(rid).strip())), change=change,  # type: ignore[arg-type]
                                occurred_at=max(0, ms))]
