"""The control server on a real Unix socket (real clock, `fail_after` bounds): the socket's
mode and group, stale / foreign paths, clean-up, and the SO_PEERCRED peer check against other
users (a subprocess that drops to `nobody`; those tests need root)."""

import grp
import json
import os
import shutil
import socket
import stat
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

import pytest
import trio
from structlog.testing import capture_logs

from crmsync.config.model import (
    Config,
    ControlSettings,
    DaemonSettings,
    HubSettings,
    PrivateAppAuth,
)
from crmsync.control import protocol as p
from crmsync.control import server as srv
from crmsync.control.client import ControlClient, ControlUnavailable, TrioControlClient
from crmsync.control.paths import client_socket_paths, server_socket_path
from crmsync.control.server import ControlServer, ControlSocketError

ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="needs root (drops to nobody, chowns)")
NOBODY = 65534


def admin_group() -> grp.struct_group | None:
    for name in ("daemon", "bin", "sys", "adm"):
        try:
            g = grp.getgrnam(name)
        except KeyError:
            continue
        if g.gr_gid not in (0, NOBODY):
            return g
    return None


async def ping_dispatch(req):
    return p.PingReply(version="test", pid=os.getpid())


@pytest.fixture
def sock_dir():
    # Short (sun_path is 107 bytes) and traversable by `nobody`.
    d = Path(tempfile.mkdtemp(prefix="crmsync-sock-", dir="/tmp"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


async def start(nursery, path, **kw):
    s = ControlServer(ping_dispatch, read_timeout=kw.pop("read_timeout", 5.0))
    return await nursery.start(lambda task_status: s.serve_path(path, task_status=task_status,
                                                                **kw))


async def ping(path):
    async with await TrioControlClient.connect(path) as c:
        return await c.request(p.Ping())


async def test_socket_is_0600_and_answers(sock_dir):
    path = sock_dir / "control.sock"
    umask = os.umask(0o022)
    os.umask(umask)
    with trio.fail_after(10):
        async with trio.open_nursery() as n:
            s = await start(n, path)
            st = os.lstat(path)
            assert stat.S_ISSOCK(st.st_mode)
            assert stat.S_IMODE(st.st_mode) == 0o600
            assert os.umask(umask) == umask  # the process umask was put back
            assert s.path == path
            assert isinstance(await ping(path), p.PingReply)
            # The blocking client (the CLI's), from a thread.
            reply = await trio.to_thread.run_sync(
                lambda: ControlClient(path, timeout=5).request(p.Ping()))
            assert isinstance(reply, p.PingReply)
            n.cancel_scope.cancel()
    assert not path.exists()  # removed on the way out


async def test_several_requests_and_clients_at_once(sock_dir):
    path = sock_dir / "control.sock"
    with trio.fail_after(10):
        async with trio.open_nursery() as n:
            await start(n, path)
            results = []

            async def client():
                async with await TrioControlClient.connect(path) as c:
                    for _ in range(5):
                        results.append(await c.request(p.Ping()))

            async with trio.open_nursery() as clients:
                for _ in range(10):
                    clients.start_soon(client)
            assert len(results) == 50 and all(isinstance(r, p.PingReply) for r in results)
            n.cancel_scope.cancel()


async def test_malformed_oversized_and_slow_requests_over_the_socket(sock_dir):
    path = sock_dir / "control.sock"
    with trio.fail_after(15):
        async with trio.open_nursery() as n:
            s = ControlServer(ping_dispatch, max_request_bytes=200, read_timeout=0.5)
            await n.start(lambda task_status: s.serve_path(path, task_status=task_status))
            async with await TrioControlClient.connect(path) as c:
                await c.send_raw(b"{not json\n")
                assert p.decode_reply(await c.receive_line()).code == "bad_request"
                assert isinstance(await c.request(p.Ping()), p.PingReply)
            async with await TrioControlClient.connect(path) as c:
                await c.send_raw(b"x" * 5000)
                assert p.decode_reply(await c.receive_line()).code == "too_large"
            async with await TrioControlClient.connect(path) as c:
                await c.send_raw(b'{"op":')
                assert p.decode_reply(await c.receive_line()).code == "timeout"
                with pytest.raises(ControlUnavailable):
                    await c.receive_line()  # closed after the error
            assert isinstance(await ping(path), p.PingReply)  # still serving
            n.cancel_scope.cancel()


async def test_busy_beyond_the_connection_cap(sock_dir, monkeypatch):
    monkeypatch.setattr(srv, "MAX_CONNECTIONS", 3)
    path = sock_dir / "control.sock"
    with trio.fail_after(10):
        async with trio.open_nursery() as n:
            s = await start(n, path, read_timeout=30)
            held = [await TrioControlClient.connect(path) for _ in range(3)]
            for c in held:
                assert isinstance(await c.request(p.Ping()), p.PingReply)
            async with await TrioControlClient.connect(path) as c:
                assert p.decode_reply(await c.receive_line()).code == "busy"
            for c in held:
                await c.stream.aclose()
            with trio.fail_after(5):
                while s.active:
                    await trio.sleep(0.01)
            assert isinstance(await ping(path), p.PingReply)
            n.cancel_scope.cancel()


@needs_root
async def test_group_socket_is_0660_owned_by_the_group(sock_dir):
    g = admin_group()
    if g is None:
        pytest.skip("no suitable group")
    path = sock_dir / "control.sock"
    with trio.fail_after(10):
        async with trio.open_nursery() as n:
            await start(n, path, mode=0o660, group=g.gr_name)
            st = os.lstat(path)
            assert stat.S_IMODE(st.st_mode) == 0o660 and st.st_gid == g.gr_gid
            n.cancel_scope.cancel()


async def test_unknown_group_is_a_clear_start_up_error(sock_dir):
    with trio.fail_after(10):
        async with trio.open_nursery() as n:
            with pytest.raises(ControlSocketError, match="does not exist"):
                await start(n, sock_dir / "c.sock", mode=0o660, group="no-such-group-xyz")
    assert not (sock_dir / "c.sock").exists()


async def test_a_stale_socket_is_replaced(sock_dir):
    path = sock_dir / "control.sock"
    old = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old.bind(str(path))
    old.close()  # a crash leaves the file behind, nobody listening
    with trio.fail_after(10), capture_logs() as logs:
        async with trio.open_nursery() as n:
            await start(n, path)
            assert isinstance(await ping(path), p.PingReply)
            n.cancel_scope.cancel()
    assert any(e["event"] == "removing a stale control socket" for e in logs)


async def test_a_live_socket_is_not_taken_over(sock_dir):
    path = sock_dir / "control.sock"
    with trio.fail_after(10):
        async with trio.open_nursery() as n:
            await start(n, path)
            with pytest.raises(ControlSocketError, match="already running"):
                await start(n, path)
            assert isinstance(await ping(path), p.PingReply)  # the first one is untouched
            n.cancel_scope.cancel()


@pytest.mark.parametrize("kind", ["file", "dir", "symlink"])
async def test_a_path_that_is_not_a_socket_is_refused_and_left_alone(sock_dir, kind):
    path = sock_dir / "control.sock"
    if kind == "file":
        path.write_text("precious")
    elif kind == "dir":
        path.mkdir()
    else:
        (sock_dir / "target").write_text("precious")
        path.symlink_to(sock_dir / "target")
    with trio.fail_after(10):
        async with trio.open_nursery() as n:
            with pytest.raises(ControlSocketError, match="not a socket"):
                await start(n, path)
    assert path.exists() or path.is_symlink()
    if kind != "dir":
        assert path.read_text() == "precious"


async def test_a_path_too_long_for_a_unix_socket_is_refused(sock_dir):
    path = sock_dir / ("x" * 120) / "control.sock"
    with trio.fail_after(10):
        async with trio.open_nursery() as n:
            with pytest.raises(ControlSocketError, match="107"):
                await start(n, path)


def test_default_socket_paths():
    settings = ControlSettings()
    assert server_socket_path(settings, "/var/lib/crmsync", {"RUNTIME_DIRECTORY":
                                                             "/run/crmsync"}) == \
        Path("/run/crmsync/control.sock")
    assert server_socket_path(settings, "/var/lib/crmsync", {"RUNTIME_DIRECTORY":
                                                             "/run/a:/run/b"}) == \
        Path("/run/a/control.sock")
    assert server_socket_path(settings, "/var/lib/crmsync", {}) == \
        Path("/var/lib/crmsync/control.sock")
    assert server_socket_path(ControlSettings(socket_path="ctl.sock"), "/s", {}) == \
        Path("/s/ctl.sock")
    assert server_socket_path(ControlSettings(socket_path="/x/y.sock"), "/s", {}) == \
        Path("/x/y.sock")


def test_the_cli_finds_an_instance_socket_from_its_configuration():
    """crmsync@acme.service (systemd/crmsync@.service) runs /etc/crmsync/acme.toml with
    RuntimeDirectory=crmsync-acme: `crmsync ctl --config /etc/crmsync/acme.toml` looks there
    first; the single unit's crmsync.toml keeps its /run/crmsync."""
    cfg = Config(hub=HubSettings(auth=PrivateAppAuth(token_env="T")),
                 daemon=DaemonSettings(state_dir="/var/lib/crmsync-acme"))
    assert client_socket_paths(cfg, {}, "/etc/crmsync/acme.toml") == [
        Path("/run/crmsync-acme/control.sock"), Path("/run/crmsync/control.sock"),
        Path("/var/lib/crmsync-acme/control.sock")]
    assert client_socket_paths(cfg, {}, "/etc/crmsync/crmsync.toml")[0] == \
        Path("/run/crmsync/control.sock")
    assert client_socket_paths(cfg, {})[0] == Path("/run/crmsync/control.sock")


async def test_serve_sets_the_daemons_control_path(sock_dir, monkeypatch):
    monkeypatch.setenv("RUNTIME_DIRECTORY", str(sock_dir))
    daemon = SimpleNamespace(
        cfg=SimpleNamespace(daemon=SimpleNamespace(control=ControlSettings())),
        state_dir=sock_dir / "state", control_path=None)
    with trio.fail_after(10):
        async with trio.open_nursery() as n:
            server = await n.start(srv.serve, daemon)
            assert daemon.control_path == str(sock_dir / "control.sock") == str(server.path)
            assert isinstance(await ping(daemon.control_path), p.PingReply)
            n.cancel_scope.cancel()
    assert daemon.control_path is None
    assert not (sock_dir / "control.sock").exists()


# --- other users ---------------------------------------------------------------------------------

# Runs as root, imports what it needs, then drops to nobody (the interpreter itself lives
# where nobody may not read) and talks to the socket.
CLIENT = r"""
import os, socket, sys, json
path, gid, groups = sys.argv[1], int(sys.argv[2]), [int(g) for g in sys.argv[3].split(",") if g]
os.setgroups(groups)
os.setgid(gid)
os.setuid(65534)
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(5)
try:
    s.connect(path)
except OSError as e:
    print(json.dumps({"connect_error": type(e).__name__}))
    sys.exit(0)
try:
    s.sendall(b'{"op":"ping"}\n')
except OSError:
    pass  # refused at once: the reply is still there to read
buf = b""
try:
    while not buf.endswith(b"\n"):
        chunk = s.recv(65536)
        if not chunk:
            break
        buf += chunk
except OSError as e:
    print(json.dumps({"recv_error": type(e).__name__, "got": buf.decode()}))
    sys.exit(0)
print(buf.decode().strip() or json.dumps({"closed": True}))
"""


async def as_nobody(path, gid=NOBODY, groups=()):
    proc = await trio.run_process(
        [sys.executable, "-I", "-c", CLIENT, str(path), str(gid),
         ",".join(str(g) for g in groups)], capture_stdout=True, capture_stderr=True)
    return json.loads(proc.stdout.decode().strip().splitlines()[-1])


@needs_root
async def test_another_user_is_refused_by_the_peer_check(sock_dir):
    path = sock_dir / "control.sock"
    with trio.fail_after(20):
        async with trio.open_nursery() as n:
            s = await start(n, path)
            # Open the file wide so only the SO_PEERCRED check stands in the way.
            os.chmod(path, 0o666)
            with capture_logs() as logs:
                got = await as_nobody(path)
            assert got["op"] == "error" and got["code"] == "permission_denied"
            refusals = [e for e in logs if e["event"] == "control connection refused"]
            assert refusals and refusals[0]["peer_uid"] == NOBODY
            assert refusals[0]["peer_gid"] == NOBODY and refusals[0]["peer_pid"] > 0
            assert s.refused == 1
            assert isinstance(await ping(path), p.PingReply)  # root still served
            n.cancel_scope.cancel()


@needs_root
async def test_a_0600_socket_keeps_other_users_out_before_any_check(sock_dir):
    path = sock_dir / "control.sock"
    with trio.fail_after(20):
        async with trio.open_nursery() as n:
            s = await start(n, path)
            assert await as_nobody(path) == {"connect_error": "PermissionError"}
            assert s.refused == 0
            n.cancel_scope.cancel()


@needs_root
@pytest.mark.parametrize("how", ["primary", "supplementary"])
async def test_a_member_of_the_admin_group_is_allowed(sock_dir, how):
    g = admin_group()
    if g is None:
        pytest.skip("no suitable group")
    path = sock_dir / "control.sock"
    with trio.fail_after(20):
        async with trio.open_nursery() as n:
            await start(n, path, mode=0o660, group=g.gr_name)
            if how == "primary":
                got = await as_nobody(path, gid=g.gr_gid)
            else:
                got = await as_nobody(path, gid=NOBODY, groups=[g.gr_gid])
            assert got["op"] == "ping", got
            # Not in the group: the socket's mode keeps them out.
            assert await as_nobody(path) == {"connect_error": "PermissionError"}
            n.cancel_scope.cancel()


def test_access_rules():
    a = srv.Access(service_uid=1234, admin_gid=None)
    assert a.allows(srv.Peer(1, 0, 0))
    assert a.allows(srv.Peer(1, 1234, 999))
    assert not a.allows(srv.Peer(os.getpid(), 4321, 999))
    b = srv.Access(service_uid=1234, admin_gid=777)
    assert b.allows(srv.Peer(1, 4321, 777))
    assert not b.allows(srv.Peer(999_999_999, 4321, 778))


async def test_a_socket_created_with_the_group_already_needs_no_chown(sock_dir, monkeypatch):
    # Under the shipped unit the service runs with Group= the admin group and its system
    # call filter forbids chown: the socket must come out right without it.
    def forbidden(*args):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "chown", forbidden)
    own = grp.getgrgid(os.getegid()).gr_name
    path = sock_dir / "control.sock"
    with trio.fail_after(10):
        async with trio.open_nursery() as n:
            await start(n, path, mode=0o660, group=own)
            st = os.lstat(path)
            assert stat.S_IMODE(st.st_mode) == 0o660 and st.st_gid == os.getegid()
            n.cancel_scope.cancel()
        g = admin_group()
        if g is not None and g.gr_gid != os.getegid():
            async with trio.open_nursery() as n:
                with pytest.raises(ControlSocketError, match="Group= in the unit"):
                    await start(n, path, mode=0o660, group=g.gr_name)
            assert not path.exists()  # nothing half-made left behind
