"""The control server: a Unix socket in the daemon answering `crmsync ctl`.

Security (see reference/operations.md):

* a path socket (abstract sockets have no permissions), created 0600 — or 0660 owned by the
  configured admin group — with `umask(0o177)` set around `bind()`, so it never exists with
  wider permissions; the group and the 0660 mode are applied after the bind, narrowing first;
* an existing path is removed only if it is a socket nobody listens on (a stale one left by a
  crash); anything else is refused with a clear error;
* every connection's peer is read with `SO_PEERCRED` and allowed only if it is root, the
  daemon's own uid, or in the admin group; refusals are logged with the peer's pid/uid/gid;
* one request per line, at most `max_request_bytes`, arriving within `read_timeout_seconds`;
  a malformed, oversized or slow request gets an error reply (the latter two then close the
  connection) and never reaches the daemon. A handler's failure is an error reply too: nothing
  a client sends can take the daemon down.
"""

from __future__ import annotations

import errno
import grp
import os
import pwd
import socket
import stat
import struct
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog
import trio

from crmsync import __version__
from crmsync.config import ConfigError, Problem
from crmsync.control import ops
from crmsync.control import protocol as p
from crmsync.control.framing import RECEIVE_CHUNK, LineTooLong, receive_line
from crmsync.control.ops import (
    backup,
    connections,
    preview,
    records,
    repair,
    status,
    webhooks,
)
from crmsync.control.paths import MAX_PATH_BYTES, server_socket_path
from crmsync.daemon.logging import redact_secrets

if TYPE_CHECKING:
    from crmsync.daemon.main import Daemon

log = structlog.get_logger("crmsync.control")

# Connections served at once; more get a `busy` error (a runaway script cannot starve the
# daemon of file descriptors).
MAX_CONNECTIONS = 32
# A client that does not read its reply is dropped after this long.
WRITE_TIMEOUT = 30.0
# After a closing error reply: how long, and how much, of what the client still sends is
# read and dropped before the connection is closed.
LINGER_SECONDS = 1.0
LINGER_BYTES = 1 << 20
# Requests that are polled often (watch) are logged at debug level.
QUIET_OPS = frozenset({"ping", "status", "records", "history", "preview", "deletes"})


class ControlSocketError(Exception):
    """The control socket cannot be set up (path taken, too long, unknown group...);
    `setting` is the [daemon.control] key to fix."""

    def __init__(self, message: str, setting: str = "socket_path") -> None:
        super().__init__(message)
        self.setting = setting


@dataclass(frozen=True, slots=True)
class Peer:
    pid: int
    uid: int
    gid: int


def peer_credentials(sock: Any) -> Peer:
    """The connecting process's pid, uid and gid (`SO_PEERCRED`, taken at connect time)."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, gid = struct.unpack("3i", raw)
    return Peer(pid, uid, gid)


def resolve_group(group: str) -> int:
    """A group name (or number) to its gid."""
    if group.isdigit():
        return int(group)
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        raise ControlSocketError(f"the control socket's group {group!r} does not exist: create "
                                 "it (see systemd/crmsync.sysusers) or fix "
                                 "[daemon.control] group", "group") from None


def _proc_groups(pid: int, uid: int) -> set[int]:
    """Supplementary groups of a process, if /proc shows it (and it still has `uid`)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return set()
    uids: list[int] = []
    groups: set[int] = set()
    for line in text.splitlines():
        if line.startswith("Uid:"):
            uids = [int(x) for x in line.split()[1:]]
        elif line.startswith("Groups:"):
            groups = {int(x) for x in line.split()[1:]}
    return groups if uids and uids[0] == uid else set()


def in_group(peer: Peer, gid: int) -> bool:
    """Is the peer in group `gid`: as its primary group, as a member in the group database,
    or as a supplementary group of the connecting process?"""
    if peer.gid == gid:
        return True
    try:
        user = pwd.getpwuid(peer.uid)
        if user.pw_gid == gid or user.pw_name in grp.getgrgid(gid).gr_mem:
            return True
    except KeyError:
        pass
    return gid in _proc_groups(peer.pid, peer.uid)


@dataclass(frozen=True, slots=True)
class Access:
    """Who may use the socket: root, the service's uid, and the admin group (if any)."""

    service_uid: int
    admin_gid: int | None = None

    def allows(self, peer: Peer) -> bool:
        if peer.uid in (0, self.service_uid):
            return True
        return self.admin_gid is not None and in_group(peer, self.admin_gid)


# --- the socket file ------------------------------------------------------------------------------


def _listening(path: Path) -> bool:
    """Does a process accept connections on the socket at `path`?"""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    probe.settimeout(1.0)
    try:
        probe.connect(str(path))
    except (ConnectionRefusedError, FileNotFoundError):
        return False
    except OSError as exc:
        raise ControlSocketError(f"cannot tell whether {path} is in use: {exc.strerror}; "
                                 "remove it if no crmsync runs") from None
    else:
        return True
    finally:
        probe.close()


def bind_socket(path: Path, mode: int = 0o600, gid: int | None = None) -> socket.socket:
    """Create the listening socket at `path`: 0600, or 0660 owned by `gid`; never wider on
    the way there. Removes a stale socket; refuses anything else at `path`."""
    if len(os.fsencode(path)) > MAX_PATH_BYTES:
        raise ControlSocketError(
            f"the control socket path {path} is {len(os.fsencode(path))} bytes; Unix sockets "
            f"allow {MAX_PATH_BYTES}: set a shorter [daemon.control] socket_path")
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        pass
    else:
        if not stat.S_ISSOCK(st.st_mode):
            raise ControlSocketError(f"{path} exists and is not a socket: not removing it; "
                                     "move it away or set another [daemon.control] socket_path")
        if _listening(path):
            raise ControlSocketError(f"another process serves the control socket {path} (is "
                                     "crmsync already running?)")
        log.info("removing a stale control socket", path=str(path))
        os.unlink(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    bound = False
    try:
        # The umask is process-wide: held only across the bind() system call, no await in
        # between. Files other threads create meanwhile would only get narrower permissions.
        old = os.umask(0o177)
        try:
            sock.bind(str(path))
        finally:
            os.umask(old)
        bound = True
        if gid is not None and mode == 0o660:
            # Narrowest first: the group, then the group's access. A service running with
            # that group (the shipped unit's Group=) creates it with the group already, and
            # needs no chown (which its system call filter forbids).
            if os.lstat(path).st_gid != gid:
                try:
                    os.chown(path, -1, gid)
                except PermissionError as exc:
                    raise ControlSocketError(
                        f"cannot give the control socket {path} the group {gid}: "
                        f"{exc.strerror}; run the service with that group (Group= in the "
                        "unit) or as a member of it", "group") from None
            os.chmod(path, 0o660)
        else:
            os.chmod(path, 0o600)
        sock.listen(64)
    except ControlSocketError:
        sock.close()
        if bound:
            _remove_quietly(path)
        raise
    except OSError as exc:
        sock.close()
        if bound:
            _remove_quietly(path)
        raise ControlSocketError(f"cannot create the control socket {path}: "
                                 f"{exc.strerror or exc}") from exc
    return sock


def _remove_quietly(path: Path) -> None:
    try:
        if stat.S_ISSOCK(os.lstat(path).st_mode):
            os.unlink(path)
    except OSError:
        pass


def _remove_if_ours(path: Path, ident: tuple[int, int]) -> None:
    try:
        st = os.lstat(path)
        if (st.st_dev, st.st_ino) == ident and stat.S_ISSOCK(st.st_mode):
            os.unlink(path)
    except OSError:
        pass


# --- the server ---------------------------------------------------------------------------------


def _redacted(text: str) -> str:
    return str(redact_secrets(None, "", {"message": text})["message"])


Dispatch = Callable[[p.Request], Awaitable[Any]]


class ControlServer:
    """Serves control requests on streams; `dispatch` turns a request into a reply."""

    def __init__(self, dispatch: Dispatch, *, max_request_bytes: int = 65536,
                 read_timeout: float = 5.0, access: Access | None = None) -> None:
        self.dispatch = dispatch
        self.max_request_bytes = max_request_bytes
        self.read_timeout = read_timeout
        self.access = access or Access(os.getuid())
        self.path: Path | None = None
        self.active = 0
        self.requests = 0
        self.refused = 0
        self.errors = 0

    async def _send(self, stream: trio.abc.SendStream, reply: Any) -> bool:
        try:
            with trio.fail_after(WRITE_TIMEOUT):
                await stream.send_all(p.encode(reply))
            return True
        except (trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError):
            return False

    async def _refuse(self, stream: trio.abc.Stream, reply: p.ErrorReply) -> None:
        """Send a last error reply and close gently: our side first, then whatever the client
        still sends is read and dropped (briefly), so that closing with unread data does not
        reset the connection before the client has read why."""
        if not await self._send(stream, reply):
            return
        try:
            if isinstance(stream, trio.abc.HalfCloseableStream):
                await stream.send_eof()
            with trio.move_on_after(LINGER_SECONDS):
                drained = 0
                while drained < LINGER_BYTES:
                    chunk = await stream.receive_some(RECEIVE_CHUNK)
                    if not chunk:
                        break
                    drained += len(chunk)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass

    async def answer(self, line: bytes, peer: Peer | None = None) -> Any:
        """The reply to one request line; never raises (but for cancellation)."""
        started = time.perf_counter()
        op = "?"
        try:
            req = p.decode_request(line)
            op = p.op_of(req)
            reply = await self.dispatch(req)
        except p.ProtocolError as exc:
            reply = p.ErrorReply(code=exc.code, message=exc.message)
        except ops.OperationError as exc:
            reply = p.ErrorReply(code=exc.code, message=exc.message)
        except Exception as exc:
            log.exception("control request failed", op=op)
            reply = p.ErrorReply(code="internal", message=f"{type(exc).__name__}: {exc} "
                                                          "(see the daemon's log)")
        if isinstance(reply, p.ErrorReply):
            # Messages may quote errors from the APIs: no secret leaves through them either.
            reply = p.ErrorReply(code=reply.code, message=_redacted(reply.message))
        self.requests += 1
        fields: dict[str, Any] = {
            "op": op, "duration_ms": round((time.perf_counter() - started) * 1000, 1)}
        if peer is not None:
            fields.update(peer_pid=peer.pid, peer_uid=peer.uid)
        if isinstance(reply, p.ErrorReply):
            self.errors += 1
            log.warning("control request refused", code=reply.code, message=reply.message,
                        **fields)
        elif op in QUIET_OPS:
            log.debug("control request", **fields)
        else:
            log.info("control request", **fields)
        return reply

    async def handle_stream(self, stream: trio.abc.Stream, peer: Peer | None = None) -> None:
        """Serve requests on `stream` until the client closes it (or breaks a limit); closes
        the stream."""
        buf = bytearray()
        async with stream:
            while True:
                try:
                    with trio.fail_after(self.read_timeout):
                        line = await receive_line(stream, buf, self.max_request_bytes)
                except trio.TooSlowError:
                    partial_request = bool(buf.strip())
                    if partial_request:
                        log.warning("control request too slow", timeout_s=self.read_timeout)
                    await self._refuse(stream, p.ErrorReply(
                        code="timeout",
                        message=f"no complete request line within {self.read_timeout:g} s"))
                    return
                except LineTooLong:
                    log.warning("control request too large", limit=self.max_request_bytes)
                    await self._refuse(stream, p.ErrorReply(
                        code="too_large",
                        message=f"request longer than {self.max_request_bytes} bytes"))
                    return
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    return
                if line is None:
                    return
                if not line.strip():
                    continue
                if not await self._send(stream, await self.answer(line, peer)):
                    return

    async def _connection(self, stream: trio.SocketStream) -> None:
        try:
            peer = peer_credentials(stream.socket)
            if not self.access.allows(peer):
                self.refused += 1
                log.warning("control connection refused", peer_pid=peer.pid, peer_uid=peer.uid,
                            peer_gid=peer.gid)
                async with stream:
                    with trio.move_on_after(2 * LINGER_SECONDS):  # a stranger gets no more
                        await self._refuse(stream, p.ErrorReply(
                            code="permission_denied",
                            message="only root, the crmsync service user and the admin "
                                    "group may use the control socket"))
                return
            if self.active >= MAX_CONNECTIONS:
                async with stream:
                    with trio.move_on_after(2 * LINGER_SECONDS):
                        await self._refuse(stream, p.ErrorReply(
                            code="busy", message=f"{MAX_CONNECTIONS} control connections are "
                                                 "open already; try again"))
                return
            self.active += 1
            try:
                await self.handle_stream(stream, peer)
            finally:
                self.active -= 1
        except Exception:  # one client's trouble never reaches the daemon's nursery
            log.exception("control connection failed")

    async def serve_listener(self, listener: trio.SocketListener, *,
                             task_status: trio.TaskStatus[ControlServer]
                             = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            task_status.started(self)
            while True:
                try:
                    stream = await listener.accept()
                except OSError as exc:
                    if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS):
                        log.error("control socket cannot accept", error=os.strerror(exc.errno))
                        await trio.sleep(0.1)
                        continue
                    raise
                nursery.start_soon(self._connection, stream)

    async def serve_path(self, path: Path, *, mode: int = 0o600, group: str = "",
                         on_ready: Callable[[Path], None] | None = None,
                         task_status: trio.TaskStatus[ControlServer]
                         = trio.TASK_STATUS_IGNORED) -> None:
        """Bind `path` and serve until cancelled; the socket file is removed on the way out."""
        gid = resolve_group(group) if group and mode == 0o660 else None
        if mode == 0o660 and gid is None:
            log.warning("control socket mode 0o660 without a group: using 0o600")
        if gid is not None and self.access.admin_gid is None:
            self.access = Access(self.access.service_uid, gid)
        sock = bind_socket(path, mode, gid)
        st = os.lstat(path)
        ident = (st.st_dev, st.st_ino)
        listener = trio.SocketListener(trio.socket.from_stdlib_socket(sock))
        try:
            self.path = path
            if on_ready is not None:
                on_ready(path)
            log.info("control socket listening", path=str(path),
                     mode=f"{0o660 if gid is not None else 0o600:#o}",
                     group=group if gid is not None else "")
            await self.serve_listener(listener, task_status=task_status)
        finally:
            self.path = None
            _remove_if_ours(path, ident)
            with trio.CancelScope(shield=True):
                await listener.aclose()


# --- the daemon's control server ------------------------------------------------------------------


async def dispatch(daemon: Daemon, req: p.Request) -> Any:
    """Carry out one request on the daemon; raises ops.OperationError for the operator."""
    match req:
        case p.Ping():
            return p.PingReply(version=__version__, pid=os.getpid())
        case p.Status(connection=c):
            return p.reply_from(p.StatusReply, await status.status(daemon, c))
        case p.Records(connection=c, object=o, state=s, category=cat, limit=n, after=a,
                       values=v):
            return p.reply_from(p.RecordsReply,
                                await records.records(daemon, c, o, s, cat, n, a, v))
        case p.History(connection=c, object=o, record=r, side=side, limit=n):
            return p.reply_from(p.HistoryReply, await records.history(daemon, c, o, r, side, n))
        case p.Preview(connection=c, object=o, limit=n):
            return p.reply_from(p.PreviewReply, await preview.preview(daemon, c, o, n))
        case p.Approve(connection=c, object=o):
            return p.reply_from(p.ApproveReply, await preview.approve(daemon, c, o))
        case p.Resync(connection=c, object=o, failed=f, record=r, side=side):
            return p.reply_from(p.ResyncReply, await repair.resync(daemon, c, o, f, r, side))
        case p.RestoreDeleted(connection=c, object=o, to=to, record=r, side=side, yes=y,
                              limit=n):
            return p.reply_from(p.RestoreReply,
                                await repair.restore_deleted(daemon, c, o, to, r, side, y, n))
        case p.Deletes(connection=c, object=o, limit=n):
            return p.reply_from(p.DeletesReply, await repair.deletes(daemon, c, o, n))
        case p.ResolveDeletes(connection=c, object=o, action=act, record=r, side=side,
                              all=every):
            return p.reply_from(p.ResolveDeletesReply,
                                await repair.resolve_deletes(daemon, c, o, act, r, side, every))
        case p.Disable(connection=c, reason=why):
            return p.reply_from(p.DisableReply, await connections.disable(daemon, c, why))
        case p.Enable(connection=c):
            return p.reply_from(p.EnableReply, await connections.enable(daemon, c))
        case p.DeleteSync(connection=c, yes=y):
            return p.reply_from(p.DeleteSyncReply, await connections.delete_sync(daemon, c, y))
        case p.Reload():
            return p.reply_from(p.ReloadReply, await connections.reload(daemon))
        case p.PollNow(connection=c, object=o):
            return p.reply_from(p.PollNowReply, await connections.poll_now(daemon, c, o))
        case p.Webhooks(connection=c, action=act):
            return p.reply_from(p.WebhooksReply, await webhooks.webhooks(daemon, c, act))
        case p.Backup(out=out):
            return p.reply_from(p.BackupReply, await backup.backup(daemon, out))
    raise ops.OperationError("invalid", f"unsupported request {p.op_of(req)!r}")


def server_for(daemon: Daemon) -> ControlServer:
    settings = daemon.cfg.daemon.control
    return ControlServer(partial(dispatch, daemon), max_request_bytes=settings.max_request_bytes,
                         read_timeout=settings.read_timeout_seconds, access=Access(os.getuid()))


async def serve(daemon: Daemon, *,
                task_status: trio.TaskStatus[ControlServer] = trio.TASK_STATUS_IGNORED) -> None:
    """The daemon's control server: binds the configured socket (see control/paths.py), sets
    `daemon.control_path`, reports readiness with the server, and serves until cancelled.
    Set-up errors (path taken, unknown group) come out of `nursery.start` as a ConfigError
    naming the setting to fix."""
    settings = daemon.cfg.daemon.control
    path = server_socket_path(settings, daemon.state_dir)
    server = server_for(daemon)

    def ready(bound: Path) -> None:
        daemon.control_path = str(bound)

    try:
        await server.serve_path(path, mode=settings.mode, group=settings.group, on_ready=ready,
                                task_status=task_status)
    except ControlSocketError as exc:
        raise ConfigError([Problem(f"$.daemon.control.{exc.setting}", str(exc))]) from None
    finally:
        daemon.control_path = None
