"""Integer arguments of control requests are range-checked by the schema (issue 10, item 14):
`{"op": "records", ..., "after": 9223372036854775808}` answered `internal` with a traceback
in the log (SQLite's OverflowError); a value out of range is a `bad_request` naming the
field, and `internal` is left for real bugs."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
import trio
from msgspec import inspect as mi

from crmsync.control import protocol as p
from crmsync.control.server import ControlServer
from crmsync.control.views import MAX_PAGE

from ..cli.ctl_env import CUSTOMERS, HUB, ctl_daemon, run_ctl

INT64_MAX = 2**63 - 1


def _request_types() -> list[mi.StructType]:
    union = mi.type_info(p.Request)
    assert isinstance(union, mi.UnionType)
    return [t for t in union.types if isinstance(t, mi.StructType)]


def _int_fields() -> list[tuple[str, str, mi.IntType]]:
    return [(str(t.tag), f.encode_name, f.type) for t in _request_types() for f in t.fields
            if isinstance(f.type, mi.IntType)]


def test_every_integer_argument_has_a_range_within_64_bits():
    fields = _int_fields()
    assert {(op, name) for op, name, _ in fields} >= {("records", "after"), ("records", "limit")}
    for op, name, t in fields:
        assert t.ge is not None and t.le is not None, (op, name)
        assert -(2**63) <= t.ge <= t.le <= INT64_MAX, (op, name)


BASE = {"records": {"connection": "shop", "object": "contacts", "state": "failed"},
        "history": {"connection": "shop", "object": "contacts", "record": "1"},
        "preview": {"connection": "shop"},
        "restore_deleted": {"connection": "shop", "object": "contacts", "to": "hub"},
        "deletes": {"connection": "shop", "object": "contacts"}}


@pytest.mark.parametrize(("op", "name"), [(op, name) for op, name, _ in _int_fields()])
@pytest.mark.parametrize("value", [2**63, -(2**63) - 1, 10**30, -1, MAX_PAGE + 1])
def test_an_integer_out_of_range_is_a_bad_request_naming_the_field(op, name, value):
    t = next(t for o, n, t in _int_fields() if (o, n) == (op, name))
    assert t.ge is not None and t.le is not None
    line = msgspec.json.encode({"op": op, **BASE[op], name: value})
    if t.ge <= value <= t.le:
        assert getattr(p.decode_request(line), name) == value
        return
    with pytest.raises(p.ProtocolError) as info:
        p.decode_request(line)
    assert info.value.code == "bad_request"
    assert f"$.{name}" in info.value.message


async def test_the_server_answers_bad_request_without_dispatching():
    dispatched: list[Any] = []

    async def dispatch(req: Any) -> Any:
        dispatched.append(req)
        raise AssertionError("an out-of-range request reached the daemon")

    server = ControlServer(dispatch)
    line = (b'{"op": "records", "connection": "shop", "object": "contacts", '
            b'"state": "failed", "after": 9223372036854775808}')
    reply = await server.answer(line)
    assert isinstance(reply, p.ErrorReply) and reply.code == "bad_request", reply
    assert "$.after" in reply.message
    assert dispatched == []


@pytest.mark.slow
async def test_ctl_records_after_beyond_64_bits_is_a_bad_request_not_internal(tmp_path):
    with trio.fail_after(60):
        async with ctl_daemon(tmp_path, customers=CUSTOMERS, hub_contacts=HUB) as c:
            await c.env.wait_ready()
            for after in (str(2**63), str(-(2**63) - 1)):
                code, _out, err = await run_ctl(c.socket, "records", "shop", "contacts",
                                                "--state", "failed", "--after", after)
                assert code == 1, err
                assert "(bad_request)" in err and "$.after" in err, err
            assert c.server.errors == 2
            code, _out, _err = await run_ctl(c.socket, "ping")
            assert code == 0
