"""A configuration that cannot work is refused by `crmsync check-config` and by `crmsync run`
alike: exit 2, every problem with its `$.path`, the same words, never a traceback (issue 10,
items 9, 12 and 13). Under systemd a traceback is exit 1 and `Restart=on-failure` restarts it
for ever; exit 2 is in the unit's RestartPreventExitStatus.

What only starting can reveal (an address in use, a socket path taken by a file, a state
directory that cannot be made) is a configuration error of `run` too, naming the setting.

Real processes on the real clock, each bounded by a timeout.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import trio

from .procs import CANARIES, child_env, crmsync, system

pytestmark = pytest.mark.slow

Edit = Callable[[str, Path], str]


def _sub(pattern: str, replacement: str) -> Edit:
    def edit(text: str, tmp: Path) -> str:
        new, n = re.subn(pattern, replacement, text, count=1, flags=re.MULTILINE)
        assert n == 1, pattern
        return new
    return edit


def _fifo_token(text: str, tmp: Path) -> str:
    (tmp / "token").unlink()
    os.mkfifo(tmp / "token")  # nobody ever writes to it
    return text


def _deep(text: str, tmp: Path) -> str:
    return "deep = " + "[" * 600 + "]" * 600 + "\n" + text


CHECKED = [
    ("listen-port", _sub(r'^listen = ".*"$', 'listen = "127.0.0.1:99999"'),
     "$.daemon.webhooks.listen", "port 99999 is out of range"),
    ("listen-address", _sub(r'^listen = ".*"$', 'listen = "999.1.1.1:8080"'),
     "$.daemon.webhooks.listen", "999.1.1.1 is not an IPv4 address"),
    ("control-group", _sub(r"^\[daemon\.control\]$",
                           '[daemon.control]\nmode = 0o660\ngroup = "crmsync-no-such-group"'),
     "$.daemon.control.group", "group 'crmsync-no-such-group' does not exist"),
    ("socket-path", _sub(r'^socket_path = ".*"$', f'socket_path = "/tmp/{"s" * 120}.sock"'),
     "$.daemon.control.socket_path", "a Unix socket's path may have 107"),
    ("poll-inf", _sub(r"^poll_interval_seconds = 5$", "poll_interval_seconds = inf"),
     "$.hub.poll_interval_seconds", "out of range"),
    ("poll-tiny", _sub(r"^poll_interval_seconds = 0.5$", "poll_interval_seconds = 1e-9"),
     "$.connections[0].poll_interval_seconds", "out of range: must be >= 0.1"),
    ("base-url", _sub(r'^base_url = ".*"$', 'base_url = "http://"'),
     "$.hub.base_url", "has no host"),
    ("no-database", _sub(r'^database = ".*"$', 'database = "/nonexistent/shop.db"'),
     "$.connections[0].database", "app database /nonexistent/shop.db does not exist"),
    ("deep-toml", _deep, "$", "nested too deeply"),
    ("fifo-secret", _fifo_token, "$.hub.auth.token_file", "is a FIFO (named pipe)"),
]


def _problems(stderr: str) -> list[str]:
    return [ln.strip() for ln in stderr.splitlines() if ln.strip().startswith("error: ")]


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    # A bound on a hang (the FIFO once froze everything), not a timing.
    return subprocess.run(crmsync(*args), capture_output=True, text=True, timeout=60, cwd=cwd,
                          env=child_env())


@pytest.mark.parametrize(("edit", "path", "words"), [c[1:] for c in CHECKED],
                         ids=[c[0] for c in CHECKED])
async def test_check_config_and_run_refuse_it_alike(tmp_path, edit, path, words):
    async with system(tmp_path) as s:
        s.make_app_db()
        cfg = s.write_config()
        cfg.write_text(edit(cfg.read_text(), tmp_path))
        checked = _run("check-config", str(cfg), cwd=tmp_path)
        ran = _run("run", "--config", str(cfg), cwd=tmp_path)
    for r in (checked, ran):
        assert r.returncode == 2, (r.returncode, r.stderr)
        assert "Traceback" not in r.stderr + r.stdout, r.stderr
        assert any(p.startswith(f"error: {path}: ") and words in p
                   for p in _problems(r.stderr)), r.stderr
        for canary in CANARIES:
            assert canary not in r.stdout + r.stderr
    assert _problems(ran.stderr) == _problems(checked.stderr)
    assert not (tmp_path / "state" / "crmsync.db").exists()  # refused before anything started


def _listen_taken(tmp: Path, text: str) -> tuple[str, socket.socket]:
    taken = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    return re.sub(r'^listen = ".*"$', f'listen = "127.0.0.1:{port}"', text,
                  flags=re.MULTILINE), taken


STARTING = [
    ("listen-in-use", "$.daemon.webhooks.listen", "Address already in use"),
    ("socket-path-is-a-file", "$.daemon.control.socket_path", "exists and is not a socket"),
    ("state-dir-is-a-file", "$.daemon.state_dir", "cannot create"),
]


@pytest.mark.parametrize(("case", "path", "words"), STARTING, ids=[c[0] for c in STARTING])
async def test_run_reports_what_only_starting_reveals_as_a_configuration_error(
        tmp_path, case, path, words):
    """check-config cannot know these (another process, a file put there later); `run`
    refuses with exit 2 naming the setting, and leaves nobody's file behind or removed."""
    held: socket.socket | None = None
    async with system(tmp_path) as s:
        s.make_app_db()
        cfg = s.write_config()
        text = cfg.read_text()
        if case == "listen-in-use":
            text, held = _listen_taken(tmp_path, text)
        elif case == "socket-path-is-a-file":
            (s.short_dir / "ctl.sock").write_text("not a socket\n")
        else:
            text = re.sub(r'^state_dir = ".*"$', f'state_dir = "{tmp_path / "a-file"}"', text,
                          flags=re.MULTILINE)
            (tmp_path / "a-file").write_text("not a directory\n")
        cfg.write_text(text)
        try:
            assert _run("check-config", str(cfg), cwd=tmp_path).returncode == 0
            r = _run("run", "--config", str(cfg), cwd=tmp_path)
        finally:
            if held is not None:
                held.close()
        if case == "socket-path-is-a-file":
            assert (s.short_dir / "ctl.sock").read_text() == "not a socket\n"
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr + r.stdout, r.stderr
    assert any(p.startswith(f"error: {path}: ") and words in p
               for p in _problems(r.stderr)), r.stderr


async def test_the_start_up_log_warns_of_a_secret_file_others_may_read(tmp_path):
    """Issue 10, item 10: as ssh does for a private key, the daemon names the file and the
    fix (`chmod 600`) in its start-up log; it still starts."""
    with trio.fail_after(60):
        async with system(tmp_path) as s:
            s.make_app_db()
            s.write_config()
            for name in ("token", "hub-secret", "app-secret"):
                (tmp_path / name).chmod(0o600)
            (tmp_path / "hub-secret").chmod(0o644)
            d = await s.start_daemon()
            await s.wait_running()
            (warning,) = d.events("configuration warning")
            secret = tmp_path / "hub-secret"
            assert warning["path"] == "$.hub.webhook_client_secret_file"
            assert warning["message"] == (
                f"secret file {secret} is accessible by group or others (mode 0644): "
                f"run `chmod 600 {secret}`")
            assert warning["level"] == "warning"
