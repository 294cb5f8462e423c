"""Generic app webhooks: signature verification and body parsing (pure, no I/O)."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from crmsync.config.secrets import Secret
from crmsync.connectors.app_webhooks import (
    MAX_AGE_SECONDS,
    MAX_FUTURE_SECONDS,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    AppWebhookEvent,
    PayloadError,
    SignatureError,
    decode_inbox_payload,
    inbox_items,
    parse_events,
    sign,
    verify,
)

SECRET = "s3cret-shop"
NOW = 1_714_564_800
BODY = json.dumps([{"event_id": "e1", "object": "customers", "record_id": 42,
                    "change": "upsert", "occurred_at": "2024-05-01T12:00:00Z"}]).encode()


def test_a_signed_request_verifies() -> None:
    headers = sign(SECRET, BODY, NOW)
    expected = hmac.new(SECRET.encode(), f"{NOW}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert headers == {TIMESTAMP_HEADER: str(NOW), SIGNATURE_HEADER: f"v1={expected}"}
    assert verify(SECRET, headers, BODY, now=NOW) == NOW
    # Header names are case-insensitive; the secret may be a Secret or bytes.
    lower = {k.lower(): v for k, v in headers.items()}
    assert verify(Secret(SECRET, "env:X"), lower, BODY, now=NOW + 10) == NOW
    assert verify(SECRET.encode(), headers, BODY, now=NOW) == NOW


def test_a_rotated_secret_may_send_two_signatures() -> None:
    old = sign("old-secret", BODY, NOW)[SIGNATURE_HEADER]
    new = sign(SECRET, BODY, NOW)[SIGNATURE_HEADER]
    headers = {TIMESTAMP_HEADER: str(NOW), SIGNATURE_HEADER: f"{old}, {new}"}
    assert verify(SECRET, headers, BODY, now=NOW) == NOW


@pytest.mark.parametrize(("mutate", "reason"), [
    (lambda h, b: (h, b + b" "), "mismatch"),                                  # body tampered
    (lambda h, b: (h, b.replace(b"42", b"43")), "mismatch"),
    (lambda h, b: ({**h, TIMESTAMP_HEADER: str(NOW + 1)}, b), "mismatch"),   # timestamp tampered
    (lambda h, b: (sign("wrong-secret", b, NOW), b), "mismatch"),
    (lambda h, b: ({**h, SIGNATURE_HEADER: h[SIGNATURE_HEADER].upper()}, b), "malformed"),
    (lambda h, b: ({**h, SIGNATURE_HEADER: "v2=" + "0" * 64}, b), "malformed"),
    (lambda h, b: ({**h, SIGNATURE_HEADER: "v1=zz"}, b), "malformed"),
    (lambda h, b: ({**h, SIGNATURE_HEADER: "v1=" + "é" * 64}, b), "malformed"),
    (lambda h, b: ({**h, TIMESTAMP_HEADER: "soon"}, b), "malformed"),
    (lambda h, b: ({**h, TIMESTAMP_HEADER: "-5"}, b), "malformed"),
    (lambda h, b: ({SIGNATURE_HEADER: h[SIGNATURE_HEADER]}, b), "missing"),
    (lambda h, b: ({TIMESTAMP_HEADER: h[TIMESTAMP_HEADER]}, b), "missing"),
])
def test_tampered_or_malformed_requests_are_refused(mutate: Any, reason: str) -> None:
    headers, body = mutate(sign(SECRET, BODY, NOW), BODY)
    with pytest.raises(SignatureError) as info:
        verify(SECRET, headers, body, now=NOW)
    assert info.value.reason == reason


@pytest.mark.parametrize(("sent_at", "reason"), [
    (NOW - MAX_AGE_SECONDS - 1, "stale"),
    (NOW + MAX_FUTURE_SECONDS + 1, "future"),
])
def test_stale_and_future_requests_are_refused(sent_at: int, reason: str) -> None:
    headers = sign(SECRET, BODY, sent_at)
    with pytest.raises(SignatureError) as info:
        verify(SECRET, headers, BODY, now=NOW)
    assert info.value.reason == reason


@pytest.mark.parametrize("sent_at", [NOW - MAX_AGE_SECONDS, NOW + MAX_FUTURE_SECONDS])
def test_the_window_edges_are_accepted(sent_at: int) -> None:
    assert verify(SECRET, sign(SECRET, BODY, sent_at), BODY, now=NOW) == sent_at


def test_parse_events() -> None:
    body = json.dumps([
        {"event_id": "e1", "object": "customers", "record_id": 42, "change": "upsert",
         "occurred_at": "2024-05-01T12:00:00Z", "extra": {"ignored": [1, 2]}},
        {"event_id": "e2", "object": "customers", "record_id": "a-7", "change": "delete",
         "occurred_at": 1714564800},
        {"event_id": "e3", "object": "organisations", "record_id": "9", "change": "upsert",
         "occurred_at": 1714564800123},
    ]).encode()
    events = parse_events(body, objects={"customers", "organisations"})
    assert events == [
        AppWebhookEvent("e1", "customers", "42", "upsert", 1714564800000),
        AppWebhookEvent("e2", "customers", "a-7", "delete", 1714564800000),
        AppWebhookEvent("e3", "organisations", "9", "upsert", 1714564800123),
    ]
    assert parse_events(b"[]") == []
    items = inbox_items(events)
    assert [k for k, _ in items] == ["e1", "e2", "e3"]
    assert [decode_inbox_payload(p) for _, p in items] == events


def _event(**change: Any) -> dict[str, Any]:
    e: dict[str, Any] = {"event_id": "e1", "object": "customers", "record_id": "1",
                         "change": "upsert", "occurred_at": 1714564800}
    e.update(change)
    return {k: v for k, v in e.items() if v is not ...}


@pytest.mark.parametrize(("body", "expected"), [
    (b"", "not JSON"),
    (b"\xff\xfe", "not JSON"),
    (b'{"event_id": "e1"}', "Expected `array`, got `object`"),
    (b"42", "Expected `array`"),
    (b"[" * 100_000, "$[0]"),
    (b'[{"x": ' * 50_000, "nested too deeply"),  # RecursionError
    (json.dumps([_event(event_id=...)]).encode(), "missing required field `event_id`"),
    (json.dumps([_event(), _event(change="update")]).encode(), "$[1].change"),
    (json.dumps([_event(record_id=True)]).encode(), "$[0].record_id"),
    (json.dumps([_event(record_id=" ")]).encode(), "$[0].record_id is empty"),
    (json.dumps([_event(record_id=10**30)]).encode(), "$[0].record_id is out of range"),
    (json.dumps([_event(record_id=2**63)]).encode(), "$[0].record_id is out of range"),
    (json.dumps([_event(record_id=-(2**63) - 1)]).encode(), "$[0].record_id is out of range"),
    (json.dumps([_event(record_id="x" * 257)]).encode(), "longer than 256"),
    (json.dumps([_event(record_id="4\n2")]).encode(), "control characters"),
    (json.dumps([_event(object="")]).encode(), "$[0].object is empty"),
    (json.dumps([_event(object="invoices")]).encode(), "not an app object"),
    (json.dumps([_event(occurred_at="yesterday")]).encode(), "not an ISO 8601"),
    (json.dumps([_event(occurred_at=-1)]).encode(), "out of range"),
    (json.dumps([_event(occurred_at=1e300)]).encode(), "out of range"),
    (json.dumps([_event(occurred_at=None)]).encode(), "$[0].occurred_at"),
    (json.dumps([_event()] * 3).encode(), "too many events"),
])
def test_garbage_bodies_get_clear_errors(body: bytes, expected: str) -> None:
    with pytest.raises(PayloadError) as info:
        parse_events(body, objects={"customers"}, max_events=2)
    assert expected in str(info.value)


def test_ids_at_the_edges_of_64_bit_integers_are_accepted() -> None:
    body = json.dumps([_event(record_id=2**63 - 1), _event(event_id="e2",
                                                           record_id=-(2**63))]).encode()
    assert [e.record_id for e in parse_events(body)] == [str(2**63 - 1), str(-(2**63))]


def test_the_connectors_id_check_refuses_an_event_naming_no_possible_record() -> None:
    """The intake asks the open connector whether an id can name a record of the object."""
    def check(obj: str, rid: str) -> str | None:
        return None if rid.isdigit() else f"{rid!r} cannot be a key of {obj}"

    good = json.dumps([_event(record_id="7")]).encode()
    bad = json.dumps([_event(record_id="7"), _event(event_id="e2", record_id="x7")]).encode()
    assert [e.record_id for e in parse_events(good, check_id=check)] == ["7"]
    with pytest.raises(PayloadError, match=r"\$\[1\]\.record_id: 'x7' cannot be a key"):
        parse_events(bad, check_id=check)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)
_fields = st.fixed_dictionaries(
    {},
    optional={"event_id": _json | st.text(), "object": _json | st.sampled_from(["customers"]),
              "record_id": _json | st.integers(), "change": st.sampled_from(["upsert", "delete",
                                                                            "x"]),
              "occurred_at": _json | st.integers() | st.text()},
)


@given(st.binary(max_size=2048))
def test_the_parser_raises_only_its_own_error_on_arbitrary_bytes(body: bytes) -> None:
    try:
        parse_events(body)
    except PayloadError:
        pass


@given(st.lists(_fields | _json, max_size=5))
def test_the_parser_raises_only_its_own_error_on_json_shaped_garbage(doc: Any) -> None:
    body = msgspec.json.encode(doc)
    try:
        events = parse_events(body, objects={"customers"})
    except PayloadError:
        return
    for e in events:
        assert e.event_id.strip() and e.record_id.strip() and e.object == "customers"
        assert e.change in ("upsert", "delete") and e.occurred_at >= 0
