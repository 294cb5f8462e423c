"""Webhook signatures (v1/v2 official vectors, v3 by the documented algorithm) and parsing."""

from __future__ import annotations

import base64
import hashlib
import hmac

import httpx
import pytest

from crmsync.connectors.hubspot.webhooks import (
    WebhookEvent,
    WebhookPayloadError,
    WebhookSignatureError,
    decode_signature_uri,
    parse_delivery,
    signature_v1,
    signature_v2,
    signature_v3,
    verify_delivery,
    verify_v1,
    verify_v3,
)

# DOC-VALID's v1 test vector (fact sheet §8.3).
DOC_SECRET = "yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy"
DOC_BODY = (b'[{"eventId":1,"subscriptionId":12345,"portalId":62515,"occurredAt":1564113600000,'
            b'"subscriptionType":"contact.creation","attemptNumber":0,"objectId":123,'
            b'"changeSource":"CRM","changeFlag":"NEW","appId":54321}]')
DOC_V1 = "232db2615f3d666fe21a8ec971ac7b5402d33b9a925784df3ca654d05f4817de"

SECRET = "my-client-secret"
BODY = ('[{"eventId":100,"subscriptionId":7,"portalId":62515,"appId":54321,'
        '"occurredAt":1700000000000,"subscriptionType":"contact.propertyChange",'
        '"attemptNumber":0,"objectId":123,"propertyName":"email",'
        '"propertyValue":"jörg@example.com","changeSource":"CRM"}]').encode()
TS = "1700000000123"
NOW = 1700000000.123  # epoch seconds matching TS
URI = "https://hooks.example.com/webhooks/hubspot"
# Computed once by hand from the documented source string method+uri+body+timestamp:
# base64(HMAC-SHA256("my-client-secret", "POST" + URI + BODY + TS)).
V3 = "J/oby/1AJjYSFUIcSjO6ziB/MgG2Yhj7Fk7ATLXBbs8="
# The same with an encoded URI: HubSpot signs it with the table's characters decoded.
ENCODED_URI = ("https://hooks.example.com/webhooks/hub%3Aspot?tag=a%40b%21%24&x=%28"
               "1%29%2A%2C%3B%2F%3F")
DECODED_URI = "https://hooks.example.com/webhooks/hub:spot?tag=a@b!$&x=(1)*,;/?"
V3_ENCODED = "8MIp4rDQSKiE5Cd88FWW/bAbgf5bVl4Ev8LR9oLinQA="


def hand_v3(secret: str, source: str) -> str:
    return base64.b64encode(hmac.new(secret.encode(), source.encode(), hashlib.sha256)
                            .digest()).decode()


def test_official_v1_vector():
    assert signature_v1(DOC_SECRET, DOC_BODY) == DOC_V1
    verify_v1(DOC_SECRET, body=DOC_BODY, signature=DOC_V1)
    verify_v1(DOC_SECRET, body=DOC_BODY, signature=DOC_V1.upper())
    with pytest.raises(WebhookSignatureError) as info:
        verify_v1(DOC_SECRET, body=DOC_BODY + b" ", signature=DOC_V1)
    assert info.value.reason == "mismatch"


def test_official_v2_vectors():
    # legacydocs.hubspot.com/docs/faq/v2-request-validation
    assert signature_v2(DOC_SECRET, "GET", "https://www.example.com/webhook_uri", b"") == (
        "eee2dddcc73c94d699f5e395f4b9d454a069a6855fbfa152e91e88823087200e")
    assert signature_v2(DOC_SECRET, "POST", "https://www.example.com/webhook_uri",
                        b'{"example_field":"example_value"}') == (
        "9569219f8ba981ffa6f6f16aa0f48637d35d728c7e4d93d0d52efaa512af7900")


def test_v3_vectors():
    assert hand_v3(SECRET, "POST" + URI + BODY.decode() + TS) == V3
    assert signature_v3(SECRET, "POST", URI, BODY, TS) == V3
    verify_v3(SECRET, method="POST", uri=URI, body=BODY, signature=V3, timestamp=TS, now=NOW)


def test_v3_percent_encoded_uri():
    assert decode_signature_uri(ENCODED_URI) == DECODED_URI
    assert hand_v3(SECRET, "POST" + DECODED_URI + BODY.decode() + TS) == V3_ENCODED
    verify_v3(SECRET, method="POST", uri=ENCODED_URI, body=BODY, signature=V3_ENCODED,
              timestamp=TS, now=NOW)


def test_uri_decoding_is_exactly_the_table():
    # Only the listed escapes; others (space, %, #, non-ASCII) stay encoded.
    assert decode_signature_uri("https://x.io/a%20b%25c%23d%C3%A9?q=%3D") == (
        "https://x.io/a%20b%25c%23d%C3%A9?q=%3D")
    # A decoded % never starts a second decoding.
    assert decode_signature_uri("/p%253A") == "/p%253A"
    assert decode_signature_uri("/%3A%2F%3F%40%21%24%27%28%29%2A%2C%3B") == "/:/?@!$'()*,;"


@pytest.mark.parametrize(("now", "ok", "reason"), [
    (NOW, True, None),
    (NOW + 299, True, None),  # 299 s old
    (NOW + 301, False, "stale"),  # more than 5 minutes old
    (NOW - 59, True, None),  # 59 s in the future: clock skew
    (NOW - 61, False, "future"),
])
def test_v3_timestamp_window(now, ok, reason):
    if ok:
        verify_v3(SECRET, method="POST", uri=URI, body=BODY, signature=V3, timestamp=TS,
                  now=now)
    else:
        with pytest.raises(WebhookSignatureError) as info:
            verify_v3(SECRET, method="POST", uri=URI, body=BODY, signature=V3, timestamp=TS,
                      now=now)
        assert info.value.reason == reason


@pytest.mark.parametrize(("change", "reason"), [
    ({"body": BODY.replace(b"123", b"124")}, "mismatch"),
    ({"body": BODY + b"\n"}, "mismatch"),
    ({"uri": URI + "/"}, "mismatch"),
    ({"uri": URI.replace("https", "http")}, "mismatch"),
    ({"method": "PUT"}, "mismatch"),
    ({"secret": "other-secret"}, "mismatch"),
    ({"signature": V3[:-2] + "A="}, "mismatch"),
    ({"signature": ""}, "missing"),
    ({"timestamp": None}, "missing"),
    ({"timestamp": "1700000000124"}, "mismatch"),  # the timestamp is signed too
    ({"timestamp": "soon"}, "bad_timestamp"),
])
def test_v3_tampering(change, reason):
    args = {"secret": SECRET, "method": "POST", "uri": URI, "body": BODY, "signature": V3,
            "timestamp": TS}
    args.update(change)
    secret = args.pop("secret")
    with pytest.raises(WebhookSignatureError) as info:
        verify_v3(secret, now=NOW, **args)  # type: ignore[arg-type]
    assert info.value.reason == reason


def test_verify_delivery_picks_the_version():
    v3_headers = httpx.Headers({"x-hubspot-signature-v3": V3, "x-hubspot-request-timestamp": TS,
                                "X-HubSpot-Signature": "ignored",
                                "X-HubSpot-Signature-Version": "v1"})
    assert verify_delivery(SECRET, method="POST", uri=URI, body=BODY, headers=v3_headers,
                           now=NOW) == "v3"
    v1_headers = httpx.Headers({"X-HubSpot-Signature": DOC_V1,
                                "X-HubSpot-Signature-Version": "v1"})
    assert verify_delivery(DOC_SECRET, method="POST", uri=URI, body=DOC_BODY,
                           headers=v1_headers) == "v1"
    with pytest.raises(WebhookSignatureError):
        verify_delivery(DOC_SECRET, method="POST", uri=URI, body=DOC_BODY, headers=v1_headers,
                        allow_legacy=False)
    with pytest.raises(WebhookSignatureError) as info:
        verify_delivery(SECRET, method="POST", uri=URI, body=BODY, headers=httpx.Headers({}))
    assert info.value.reason == "missing"


def test_parse_the_documented_sample():
    [event] = parse_delivery(DOC_BODY)
    assert event == WebhookEvent(
        event_id="1", subscription_type="contact.creation", object="contacts",
        change="creation", object_id="123", occurred_at=1564113600000, portal_id=62515,
        app_id=54321, subscription_id=12345, attempt_number=0, change_source="CRM",
        change_flag="NEW")


def test_parse_kinds_of_events():
    body = (b'[{"eventId":2,"subscriptionType":"deal.propertyChange","objectId":"9",'
            b'"occurredAt":5,"propertyName":"dealstage","propertyValue":"closedwon"},'
            b'{"eventId":3,"subscriptionType":"company.associationChange","occurredAt":6,'
            b'"associationType":"COMPANY_TO_CONTACT","fromObjectId":11,"toObjectId":12,'
            b'"associationRemoved":true,"isPrimaryAssociation":false},'
            b'{"eventId":4,"subscriptionType":"contact.merge","objectId":20,"occurredAt":7,'
            b'"primaryObjectId":20,"mergedObjectIds":[21,22],"newObjectId":23},'
            b'{"eventId":5,"subscriptionType":"line_item.deletion","objectId":30,'
            b'"occurredAt":8,"changeFlag":"DELETED"},'
            b'{"eventId":6,"subscriptionType":"object.creation","objectTypeId":"0-52",'
            b'"objectId":40,"occurredAt":9},'
            b'{"eventId":7,"subscriptionType":"contact.privacyDeletion","objectId":50,'
            b'"occurredAt":10},'
            b'{"eventId":8,"subscriptionType":"conversation.newMessage","objectId":60,'
            b'"occurredAt":11}]')
    events = parse_delivery(body)
    assert [(e.object, e.change, e.object_id) for e in events] == [
        ("deals", "propertyChange", "9"),
        ("companies", "associationChange", "11"),
        ("contacts", "merge", "20"),
        ("line_items", "deletion", "30"),
        ("invoices", "creation", "40"),
        ("contacts", "privacyDeletion", "50"),
        ("conversation", "other", "60"),
    ]
    assert events[0].property_value == "closedwon"
    assert (events[1].to_object_id, events[1].association_removed) == ("12", True)
    assert events[2].merged_object_ids == ("21", "22")


@pytest.mark.parametrize(("body", "message"), [
    (b"", "not valid JSON"),
    (b"{", "not valid JSON"),
    (b'{"eventId":1}', "must be a JSON array"),
    (b'"events"', "must be a JSON array"),
    (b"[" * 50_000 + b"]" * 50_000, "nested too deeply"),
    (b"[1]", "event 0 is not a JSON object"),
    (b'[{"eventId":1,"objectId":1,"occurredAt":1}]', "subscriptionType"),
    (b'[{"eventId":1,"subscriptionType":"contact.creation","occurredAt":1}]',
     "missing field 'objectId'"),
    (b'[{"subscriptionType":"contact.creation","objectId":1,"occurredAt":1}]',
     "missing field 'eventId'"),
    (b'[{"eventId":1,"subscriptionType":"contact.creation","objectId":1}]',
     "missing field 'occurredAt'"),
    (b'[{"eventId":1,"subscriptionType":"contact.creation","objectId":{"a":1},'
     b'"occurredAt":1}]', "'objectId' must be an id"),
    (b'[{"eventId":1,"subscriptionType":"contact.creation","objectId":1,'
     b'"occurredAt":"yesterday"}]', "'occurredAt' must be an integer"),
    (b'[{"eventId":1,"subscriptionType":"contact.associationChange","occurredAt":1,'
     b'"fromObjectId":1}]', "missing field 'toObjectId'"),
    (b'[{"eventId":1,"subscriptionType":"contact.creation","objectId":1,"occurredAt":1},'
     b'{"eventId":true,"subscriptionType":"contact.creation","objectId":1,"occurredAt":1}]',
     "event 1: field 'eventId'"),
])
def test_garbage_is_refused_clearly(body, message):
    with pytest.raises(WebhookPayloadError) as info:
        parse_delivery(body)
    assert message in str(info.value)


@pytest.mark.parametrize("bad", [
    b'"9223372036854775808"', b"9223372036854775808", b"0", b"-5", b'"abc"', b'"0012"',
    b'" 12"', b'"12.0"', b"1e3"])
@pytest.mark.parametrize("field", ["objectId", "mergedObjectIds", "toObjectId"])
def test_an_id_that_is_not_a_hubspot_record_id_refuses_the_event(bad, field):
    """HubSpot record ids are positive 64-bit integers (the fact sheet's sample delivery,
    §8, carries `"objectId":123`): anything else cannot name a record."""
    value = b"[" + bad + b"]" if field == "mergedObjectIds" else bad
    kind = b"contact.associationChange" if field == "toObjectId" else b"contact.merge"
    body = (b'[{"eventId":1,"subscriptionType":"' + kind + b'","objectId":5,'
            b'"fromObjectId":5,"toObjectId":6,"occurredAt":1,"' + field.encode() + b'":'
            + value + b"}]")
    with pytest.raises(WebhookPayloadError, match=field):
        parse_delivery(body)


def test_the_largest_hubspot_record_id_is_accepted():
    body = (b'[{"eventId":1,"subscriptionType":"contact.creation","occurredAt":1,'
            b'"objectId":"9223372036854775807"}]')
    assert parse_delivery(body)[0].object_id == "9223372036854775807"


def test_too_many_events():
    one = b'{"eventId":1,"subscriptionType":"contact.creation","objectId":1,"occurredAt":1}'
    with pytest.raises(WebhookPayloadError, match="at most 10"):
        parse_delivery(b"[" + b",".join([one] * 11) + b"]", max_events=10)
