"""The refresh token file: replaced atomically, mode 0600, and a crash at any instant of a
write loses nothing (connectors/hubspot/token_file.py)."""

from __future__ import annotations

import os
import random
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from crmsync.config.model import OAuthAuth
from crmsync.connectors.hubspot import token_file
from crmsync.connectors.hubspot.token_file import (
    read_token_file,
    writable_token_file,
    write_token_file,
)


def test_write_replaces_the_token_with_mode_0600(tmp_path: Path):
    path = tmp_path / "hubspot-refresh-token"
    path.write_text("old\n")
    path.chmod(0o644)
    old_umask = os.umask(0)  # even a permissive umask gives 0600
    try:
        write_token_file(path, "rt-new")
    finally:
        os.umask(old_umask)
    assert path.read_text() == "rt-new\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_token_file(path) == "rt-new"
    assert [p.name for p in tmp_path.iterdir()] == ["hubspot-refresh-token"]


def test_a_replaced_token_keeps_the_owner_of_the_file(tmp_path: Path):
    """Root replacing the service's token file (`crmsync doctor` rotating it while the daemon
    runs as its own user) leaves it the service's. As root the old file is given to another
    user first; as anyone else only the file's own owner can be kept."""
    path = tmp_path / "hubspot-refresh-token"
    path.write_text("rt-old\n")
    owner = (4242, 4243) if os.geteuid() == 0 else (os.geteuid(), os.getegid())
    os.chown(path, *owner)
    write_token_file(path, "rt-new")
    st = path.stat()
    assert (st.st_uid, st.st_gid) == owner
    assert stat.S_IMODE(st.st_mode) == 0o600 and path.read_text() == "rt-new\n"
    # A new file belongs to whoever writes it.
    fresh = tmp_path / "another-token"
    write_token_file(fresh, "rt-1")
    assert fresh.stat().st_uid == os.geteuid()


def test_a_failed_write_leaves_the_old_token_and_no_leftover(tmp_path: Path, monkeypatch):
    path = tmp_path / "hubspot-refresh-token"
    write_token_file(path, "rt-1")

    def disk_full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(token_file.os, "fsync", disk_full)
    with pytest.raises(OSError):
        write_token_file(path, "rt-2")
    assert path.read_text() == "rt-1\n"
    assert [p.name for p in tmp_path.iterdir()] == ["hubspot-refresh-token"]


def test_leftovers_of_a_crash_are_removed_by_the_next_write(tmp_path: Path):
    path = tmp_path / "hubspot-refresh-token"
    (tmp_path / ".hubspot-refresh-token.abc123.tmp").write_text("rt-torn")
    write_token_file(path, "rt-3")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hubspot-refresh-token"]


@pytest.mark.parametrize("bad", ["", "two\nlines", "cr\r"])
def test_a_token_is_one_line(tmp_path: Path, bad: str):
    with pytest.raises(ValueError):
        write_token_file(tmp_path / "t", bad)


_WRITER = """
import sys
from pathlib import Path
from crmsync.connectors.hubspot.token_file import write_token_file
path = Path(sys.argv[1])
for n in range(1, 10**9):
    write_token_file(path, f"rt-{n:09d}")
    print(n, flush=True)
"""


@pytest.mark.slow
def test_sigkill_at_any_instant_of_a_write_loses_nothing(tmp_path: Path):
    """A process rewriting the token as fast as it can is killed (SIGKILL) at random instants:
    afterwards the file holds the last token whose write returned, or the one after it (the
    write in flight landed), never a torn, empty or older one."""
    path = tmp_path / "hubspot-refresh-token"
    write_token_file(path, "rt-000000000")
    rng = random.Random(7)
    deadline = time.monotonic() + 120
    for _round in range(12):
        assert time.monotonic() < deadline
        proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(path)],
                                stdout=subprocess.PIPE, text=True)
        try:
            assert proc.stdout is not None
            first = proc.stdout.readline()  # it is writing
            assert first.strip().isdigit()
            time.sleep(rng.uniform(0.0, 0.05))
            proc.send_signal(signal.SIGKILL)
            out, _ = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)
        done = [int(x) for x in (first + out).split()]
        last = done[-1]
        held = path.read_text()
        assert held in (f"rt-{last:09d}\n", f"rt-{last + 1:09d}\n"), (held, last)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_only_a_writable_file_outside_the_credentials_directory_takes_rotations(
        tmp_path: Path, monkeypatch):
    state = tmp_path / "state"
    state.mkdir()
    auth = OAuthAuth(client_id="c", client_secret_env="X",
                     refresh_token_file=str(state / "rt"))
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    assert writable_token_file(auth, tmp_path) == state / "rt"
    # A systemd credential is immutable while the service runs.
    creds = tmp_path / "creds"
    creds.mkdir()
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    relative = OAuthAuth(client_id="c", client_secret_env="X", refresh_token_file="rt")
    assert writable_token_file(relative, tmp_path) is None
    from_env = OAuthAuth(client_id="c", client_secret_env="X", refresh_token_env="RT")
    assert writable_token_file(from_env, tmp_path) is None
    if os.geteuid() != 0:  # root may write anywhere
        state.chmod(0o500)
        try:
            assert writable_token_file(auth, tmp_path) is None
        finally:
            state.chmod(0o700)
