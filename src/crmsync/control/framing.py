"""Newline-delimited framing of the control protocol, shared by the server and the Trio client:
one JSON document per line, each side bounding how much it buffers."""

from __future__ import annotations

import trio

RECEIVE_CHUNK = 65536


class LineTooLong(Exception):
    pass


async def receive_line(stream: trio.abc.ReceiveStream, buf: bytearray, max_bytes: int, *,
                       partial_at_eof: bool = True) -> bytes | None:
    """The next line from `stream` (without its newline), buffering the rest in `buf`; None at
    the end of the stream. A last line without a newline counts as a line unless
    `partial_at_eof` is false (a reply cut short is no reply). Raises LineTooLong once more
    than `max_bytes` arrive without a newline."""
    while True:
        i = buf.find(b"\n")
        if i >= 0:
            if i > max_bytes:
                raise LineTooLong
            line = bytes(buf[:i])
            del buf[:i + 1]
            return line
        if len(buf) > max_bytes:
            raise LineTooLong
        chunk = await stream.receive_some(RECEIVE_CHUNK)
        if not chunk:
            if partial_at_eof and buf.strip():
                line = bytes(buf)
                buf.clear()
                return line
            return None
        buf += chunk
