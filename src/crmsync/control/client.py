"""Clients of the control socket: a blocking one for the CLI and a Trio one for async callers.

Both send one request line and read one reply line; a connection can carry several requests
in turn (the export pages through records that way). Connection problems raise
`ControlUnavailable`; error replies are returned as `ErrorReply` for the caller to show.
"""

from __future__ import annotations

import socket
from pathlib import Path
from types import TracebackType

import trio

from crmsync.control import protocol as p
from crmsync.control.framing import LineTooLong, receive_line

# A reply line is bounded too (a page of 1000 records is well under 1 MiB).
MAX_REPLY_BYTES = 64 * 1024 * 1024


class ControlUnavailable(Exception):
    """The daemon cannot be reached (no socket, refused, permission, timeout, hung up)."""

    def __init__(self, path: Path | str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = str(path)
        self.message = message


def _explain(path: Path | str, exc: OSError) -> ControlUnavailable:
    if isinstance(exc, FileNotFoundError):
        return ControlUnavailable(path, "no control socket here: is crmsync running? "
                                        "(systemctl status crmsync)")
    if isinstance(exc, ConnectionRefusedError):
        return ControlUnavailable(path, "nobody listens on this socket: crmsync is not running "
                                        "(a stale socket)")
    if isinstance(exc, PermissionError):
        return ControlUnavailable(path, "permission denied: run as root, as the crmsync user "
                                        "or as a member of the control socket's group")
    if isinstance(exc, TimeoutError | socket.timeout):
        return ControlUnavailable(path, "the daemon did not answer in time")
    return ControlUnavailable(path, exc.strerror or str(exc))


class ControlClient:
    """Blocking client: `with ControlClient(path) as c: reply = c.request(p.Status())`.

    `timeout` bounds connecting and each reply (None: wait as long as the daemon works)."""

    def __init__(self, path: str | Path, timeout: float | None = 30.0) -> None:
        self.path = Path(path)
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self._buf = bytearray()

    def __enter__(self) -> ControlClient:
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _connect(self) -> socket.socket:
        if self._sock is None:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
            s.settimeout(self.timeout if self.timeout is not None else 10.0)
            try:
                s.connect(str(self.path))
            except OSError as exc:
                s.close()
                raise _explain(self.path, exc) from None
            s.settimeout(self.timeout)
            self._sock = s
            self._buf.clear()
        return self._sock

    def request(self, req: p.Request) -> p.Reply:
        """Send `req`, return the daemon's reply (an `ErrorReply` on failure)."""
        s = self._connect()
        try:
            s.sendall(p.encode(req))
            line = self._line(s)
        except OSError as exc:
            self.close()
            raise _explain(self.path, exc) from None
        try:
            return p.decode_reply(line)
        except p.ProtocolError as exc:
            self.close()
            raise ControlUnavailable(self.path, f"unreadable reply: {exc.message}") from None

    def _line(self, s: socket.socket) -> bytes:
        while True:
            i = self._buf.find(b"\n")
            if i >= 0:
                line = bytes(self._buf[:i])
                del self._buf[:i + 1]
                return line
            if len(self._buf) > MAX_REPLY_BYTES:
                raise ControlUnavailable(self.path, "reply too large")
            chunk = s.recv(1 << 20)
            if not chunk:
                self.close()
                raise ControlUnavailable(self.path, "the daemon closed the connection")
            self._buf += chunk


class TrioControlClient:
    """The same over Trio: `async with await TrioControlClient.connect(path) as c: ...`.
    Callers bound the time with `trio.fail_after`."""

    def __init__(self, stream: trio.SocketStream, path: Path) -> None:
        self.stream = stream
        self.path = path
        self._buf = bytearray()

    @classmethod
    async def connect(cls, path: str | Path) -> TrioControlClient:
        try:
            stream = await trio.open_unix_socket(str(path))
        except OSError as exc:
            raise _explain(path, exc) from None
        return cls(stream, Path(path))

    async def __aenter__(self) -> TrioControlClient:
        return self

    async def __aexit__(self, t: type[BaseException] | None, e: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stream.aclose()

    async def send_raw(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def receive_line(self) -> bytes:
        try:
            line = await receive_line(self.stream, self._buf, MAX_REPLY_BYTES,
                                      partial_at_eof=False)
        except LineTooLong:
            raise ControlUnavailable(self.path, "reply too large") from None
        if line is None:
            raise ControlUnavailable(self.path, "the daemon closed the connection")
        return line

    async def request(self, req: p.Request) -> p.Reply:
        await self.stream.send_all(p.encode(req))
        return p.decode_reply(await self.receive_line())
