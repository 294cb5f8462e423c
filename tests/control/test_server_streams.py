"""The control server's framing and error handling over in-memory streams (no socket, no
daemon): requests answered in order, malformed / oversized / slow requests get an error
reply, a failing handler gets one too, and the server goes on serving. Timeouts run on the
MockClock (autojump)."""

import msgspec
import pytest
import trio
import trio.testing
from structlog.testing import capture_logs

from crmsync.control import framing
from crmsync.control import protocol as p
from crmsync.control import server as srv
from crmsync.control.ops import OperationError
from crmsync.control.server import ControlServer


async def stub_dispatch(req):
    match req:
        case p.Ping():
            return p.PingReply(version="test", pid=1)
        case p.Status(connection="missing"):
            raise OperationError("not_found", "no connection 'missing'")
        case p.Reload():
            raise RuntimeError("boom")
        case p.PollNow(connection=c):
            await trio.sleep(1)
            return p.PollNowReply(connection=c, objects=["contacts"])
    raise OperationError("invalid", "unexpected")


def server(**kw):
    kw.setdefault("max_request_bytes", 1024)
    kw.setdefault("read_timeout", 5.0)
    return ControlServer(stub_dispatch, **kw)


class Client:
    def __init__(self, stream):
        self.stream = stream
        self.buf = bytearray()

    async def send(self, data: bytes):
        await self.stream.send_all(data)

    async def line(self) -> bytes | None:
        while b"\n" not in self.buf:
            chunk = await self.stream.receive_some(65536)
            if not chunk:
                return None
            self.buf += chunk
        i = self.buf.index(b"\n")
        line = bytes(self.buf[:i])
        del self.buf[:i + 1]
        return line

    async def reply(self):
        line = await self.line()
        assert line is not None, "the server closed the connection"
        return p.decode_reply(line)

    async def closed(self) -> bool:
        return await self.line() is None


async def serving(nursery, s, pair=trio.testing.memory_stream_pair):
    client, server_end = pair()
    nursery.start_soon(s.handle_stream, server_end)
    return Client(client)


async def test_requests_are_answered_in_order_on_one_connection():
    with trio.fail_after(5):
        async with trio.open_nursery() as n:
            c = await serving(n, server())
            await c.send(p.encode(p.Ping()) + p.encode(p.Status(connection="missing")))
            assert await c.reply() == p.PingReply(version="test", pid=1)
            err = await c.reply()
            assert err == p.ErrorReply(code="not_found", message="no connection 'missing'")
            await c.send(p.encode(p.Ping()))
            assert isinstance(await c.reply(), p.PingReply)
            await c.stream.aclose()


async def test_lockstep_stream_byte_by_byte():
    with trio.fail_after(5):
        async with trio.open_nursery() as n:
            c = await serving(n, server(), trio.testing.lockstep_stream_pair)
            for b in p.encode(p.Ping()):
                await c.send(bytes([b]))
            assert isinstance(await c.reply(), p.PingReply)
            await c.stream.aclose()


@pytest.mark.parametrize("line", [
    b"this is not json",
    b'{"op": "nope"}',
    b'{"op": "records", "connection": "shop"}',
    b"\xff\xfe\xfd",
    b"[" * 1000,
])
async def test_malformed_request_gets_an_error_and_the_connection_goes_on(line):
    with trio.fail_after(5):
        async with trio.open_nursery() as n:
            c = await serving(n, server())
            await c.send(line + b"\n")
            err = await c.reply()
            assert isinstance(err, p.ErrorReply) and err.code == "bad_request"
            await c.send(p.encode(p.Ping()))
            assert isinstance(await c.reply(), p.PingReply)
            await c.stream.aclose()


async def test_blank_lines_are_skipped_and_a_last_line_without_newline_counts():
    with trio.fail_after(5):
        async with trio.open_nursery() as n:
            c = await serving(n, server())
            await c.send(b"\n\r\n  \n" + p.encode(p.Ping())[:-1])
            await c.stream.send_eof()
            assert isinstance(await c.reply(), p.PingReply)
            assert await c.closed()


async def test_a_failing_handler_is_an_internal_error_reply_not_a_crash():
    with trio.fail_after(5):
        async with trio.open_nursery() as n:
            s = server()
            c = await serving(n, s)
            with capture_logs() as logs:
                await c.send(p.encode(p.Reload()))
                err = await c.reply()
            assert err.code == "internal" and "boom" in err.message
            assert any(e["event"] == "control request failed" for e in logs)
            await c.send(p.encode(p.Ping()))
            assert isinstance(await c.reply(), p.PingReply)
            await c.stream.aclose()
        assert s.errors == 1 and s.requests == 2


@pytest.mark.parametrize("newline", [False, True])
async def test_oversized_request_gets_too_large_and_is_closed(newline):
    with trio.fail_after(5):
        async with trio.open_nursery() as n:
            s = server(max_request_bytes=100)
            c = await serving(n, s)
            big = b'{"op":"status","connection":"' + b"x" * 500 + b'"}'
            with capture_logs() as logs:
                await c.send(big + (b"\n" if newline else b""))
                err = await c.reply()
            assert err.code == "too_large"
            assert await c.closed()
            assert any(e["event"] == "control request too large" for e in logs)
            # The server still serves others.
            c2 = await serving(n, s)
            await c2.send(p.encode(p.Ping()))
            assert isinstance(await c2.reply(), p.PingReply)
            await c2.stream.aclose()


async def test_a_request_exactly_at_the_limit_is_accepted():
    line = p.encode(p.Status(connection="missing"))
    with trio.fail_after(5):
        async with trio.open_nursery() as n:
            c = await serving(n, server(max_request_bytes=len(line) - 1))
            await c.send(line)
            assert (await c.reply()).code == "not_found"
            await c.stream.aclose()


async def test_slow_request_times_out_with_an_error(autojump_clock):
    with trio.fail_after(60):
        async with trio.open_nursery() as n:
            s = server(read_timeout=5.0)
            c = await serving(n, s)
            start = trio.current_time()
            await c.send(b'{"op": "pi')  # ... and nothing more
            err = await c.reply()
            assert err.code == "timeout"
            assert 5.0 <= trio.current_time() - start < 5.5
            assert await c.closed()
            c2 = await serving(n, s)
            await c2.send(p.encode(p.Ping()))
            assert isinstance(await c2.reply(), p.PingReply)
            await c2.stream.aclose()


async def test_dribbled_request_is_bounded_by_the_read_timeout(autojump_clock):
    with trio.fail_after(60):
        async with trio.open_nursery() as n:
            c = await serving(n, server(read_timeout=5.0))
            start = trio.current_time()

            async def dribble():
                for b in b'{"op": "ping"}':
                    await trio.sleep(1)
                    try:
                        await c.send(bytes([b]))
                    except trio.BrokenResourceError:
                        return

            n.start_soon(dribble)
            err = await c.reply()
            assert err.code == "timeout" and trio.current_time() - start < 6


async def test_idle_connection_is_closed_after_the_read_timeout(autojump_clock):
    with trio.fail_after(60):
        async with trio.open_nursery() as n:
            c = await serving(n, server(read_timeout=2.0))
            assert (await c.reply()).code == "timeout"
            assert await c.closed()


async def test_the_read_timeout_does_not_cut_a_long_request(autojump_clock):
    # PollNow's stub handler takes 1 s; with a 0.5 s read timeout the reply still comes.
    with trio.fail_after(60):
        async with trio.open_nursery() as n:
            c = await serving(n, server(read_timeout=0.5))
            await c.send(p.encode(p.PollNow(connection="shop")))
            assert isinstance(await c.reply(), p.PollNowReply)
            await c.stream.aclose()


async def test_a_client_that_never_reads_is_dropped(autojump_clock):
    with trio.fail_after(120):
        client, server_end = trio.testing.lockstep_stream_pair()
        s = server()
        done = trio.Event()

        async def serve():
            await s.handle_stream(server_end)
            done.set()

        async with trio.open_nursery() as n:
            n.start_soon(serve)
            await client.send_all(p.encode(p.Ping()))
            start = trio.current_time()
            await done.wait()  # the reply could not be delivered: given up
            assert trio.current_time() - start >= srv.WRITE_TIMEOUT


async def test_a_client_hanging_up_mid_request_ends_the_handler_quietly():
    with trio.fail_after(5):
        client, server_end = trio.testing.memory_stream_pair()
        s = server()
        async with trio.open_nursery() as n:
            n.start_soon(s.handle_stream, server_end)
            await client.send_all(b'{"op": "pi')
            await client.aclose()
        # The handler returned (nothing raised into the nursery); the reply to the cut-off
        # line could not be delivered.
        assert s.requests <= 1


async def test_receive_line_splits_and_bounds():
    send, recv = trio.testing.memory_stream_one_way_pair()
    buf = bytearray()
    with trio.fail_after(5):
        await send.send_all(b"one\ntwo\nthr")
        assert await framing.receive_line(recv, buf, 10) == b"one"
        assert await framing.receive_line(recv, buf, 10) == b"two"
        await send.send_all(b"ee\n")
        assert await framing.receive_line(recv, buf, 10) == b"three"
        await send.send_all(b"x" * 11)
        with pytest.raises(framing.LineTooLong):
            await framing.receive_line(recv, buf, 10)


async def test_a_line_cut_short_at_the_end_is_a_request_but_no_reply():
    for partial_at_eof, expected in ((True, b"half"), (False, None)):
        send, recv = trio.testing.memory_stream_one_way_pair()
        with trio.fail_after(5):
            await send.send_all(b"half")
            await send.aclose()
            got = await framing.receive_line(recv, bytearray(), 10,
                                             partial_at_eof=partial_at_eof)
        assert got == expected


def test_reply_json_shape_for_socat_users():
    # What `socat` shows: one flat object, the op first.
    line = p.encode(p.ErrorReply(code="timeout", message="m"))
    assert line == b'{"op":"error","code":"timeout","message":"m"}\n'
    assert msgspec.json.decode(p.encode(p.PingReply(version="1", pid=2))) == {
        "op": "ping", "version": "1", "protocol": p.PROTOCOL_VERSION, "pid": 2}
