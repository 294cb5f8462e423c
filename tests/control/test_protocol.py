"""The control protocol's messages: one line each, tagged by `op`, decoded by one decoder,
with schema evolution (unknown fields ignored, new fields defaulted) and clear errors."""

import msgspec
import pytest

from crmsync.control import protocol as p
from crmsync.control import views

REQUESTS = [
    p.Ping(),
    p.Status(),
    p.Status(connection="shop"),
    p.Records(connection="shop", object="contacts", state="failed", category="duplicate",
              limit=10, after=5),
    p.History(connection="shop", object="customers", record="42", side="app", limit=3),
    p.Preview(connection="shop"),
    p.Approve(connection="shop", object="contacts"),
    p.Resync(connection="shop", object="contacts", failed=True),
    p.Resync(connection="shop", object="contacts", record="hub:7"),
    p.RestoreDeleted(connection="shop", object="contacts", to="hub", yes=True),
    p.Deletes(connection="shop", object="companies"),
    p.ResolveDeletes(connection="shop", object="companies", action="ignore", all=True),
    p.Disable(connection="shop", reason="maintenance"),
    p.Enable(connection="shop"),
    p.DeleteSync(connection="shop", yes=True),
    p.Reload(),
    p.PollNow(connection="shop", object="contacts"),
    p.Backup(out="/var/lib/crmsync/backups/crmsync.db"),
]


@pytest.mark.parametrize("req", REQUESTS, ids=lambda r: p.op_of(r))
def test_every_request_round_trips_as_one_line(req):
    line = p.encode(req)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert msgspec.json.decode(line)["op"] == p.op_of(req)
    assert p.decode_request(line) == req


def test_every_request_has_a_reply_with_the_same_op():
    request_ops = {p.op_of(r) for r in REQUESTS}
    reply_ops = {t.__struct_config__.tag for t in p.Reply.__args__}
    assert request_ops <= reply_ops
    assert "error" in reply_ops


def test_replies_round_trip():
    view = views.RecordsPage(connection="shop", hub_object="contacts", app_object="customers",
                             state="failed", total=1,
                             records=[views.RecordView(item_id=1, hub_id="7", app_id=None,
                                                       match_key="email:a@b.c", state="failed",
                                                       category="duplicate", hint="merge")],
                             next_after=None)
    reply = p.reply_from(p.RecordsReply, view)
    line = p.encode(reply)
    assert msgspec.json.decode(line)["op"] == "records"
    assert p.decode_reply(line) == reply
    err = p.ErrorReply(code="not_found", message="no connection")
    assert p.decode_reply(p.encode(err)) == err


def test_defaults_fill_fields_an_older_client_does_not_send():
    req = p.decode_request(b'{"op": "records", "connection": "shop", "object": "contacts", '
                           b'"state": "syncing"}')
    assert req == p.Records(connection="shop", object="contacts", state="syncing", limit=100,
                            after=0, category="")
    # Destructive requests default to the dry run.
    assert p.decode_request(b'{"op":"delete_sync","connection":"shop"}').yes is False
    assert p.decode_request(b'{"op":"restore_deleted","connection":"s","object":"c",'
                            b'"to":"app"}').yes is False


def test_unknown_fields_from_a_newer_client_are_ignored():
    req = p.decode_request(b'{"op":"status","connection":"shop","colour":"blue"}')
    assert req == p.Status(connection="shop")


def test_a_newline_terminated_line_decodes():
    assert p.decode_request(b'{"op":"ping"}\n') == p.Ping()


@pytest.mark.parametrize("line, fragment", [
    (b"", "not JSON"),
    (b"hello", "not JSON"),
    (b"\xff\xfe{}", "not JSON"),
    (b"[1, 2]", "invalid request"),
    (b"null", "invalid request"),
    (b'{"connection": "shop"}', "missing required field `op`"),
    (b'{"op": "frobnicate"}', "Invalid value 'frobnicate'"),
    (b'{"op": "records", "connection": "shop"}', "missing required field"),
    (b'{"op": "records", "connection": "shop", "object": "c", "state": "lost"}', "$.state"),
    (b'{"op": "records", "connection": 5, "object": "c", "state": "failed"}', "$.connection"),
    (b'{"op": "restore_deleted", "connection": "s", "object": "c", "to": "both"}', "$.to"),
    (b'{"op": "status", "connection": "' + b"[" * 5000, "not JSON"),
    (b"[" * 100_000, "invalid request"),
    (b'{"op":"status","connection":' + b"[" * 100_000 + b"]" * 100_000 + b"}",
     "invalid request"),
])
def test_malformed_requests_raise_a_protocol_error(line, fragment):
    with pytest.raises(p.ProtocolError) as info:
        p.decode_request(line)
    assert info.value.code == "bad_request"
    assert fragment in info.value.message


def test_a_reply_that_is_not_one_raises():
    with pytest.raises(p.ProtocolError):
        p.decode_reply(b'{"op":"status"}')
