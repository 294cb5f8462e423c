"""What the configuration needs of the machine the daemon runs on, beyond its secrets.

The admin group of the control socket must exist, the socket's path must fit in a Unix socket
address, and each app database must exist (crmsync never creates one). `check-config`, `run`
and a reload check these before anything starts, so that none of them is first met as a
traceback. They describe this machine at this moment: `check-config` run elsewhere (or by
another user) may see another answer.
"""

from __future__ import annotations

import grp
import os
import stat
from collections.abc import Mapping
from pathlib import Path

from crmsync.config.model import Config, ControlSettings, SqliteConnection
from crmsync.config.problems import Problem

SOCKET_NAME = "control.sock"
# sun_path holds 108 bytes on Linux, the terminating NUL included.
MAX_SOCKET_PATH_BYTES = 107


def control_socket_path(settings: ControlSettings, state_dir: str | Path,
                        env: Mapping[str, str] | None = None) -> Path:
    """The path the daemon binds for its control socket: `socket_path` when set (a relative
    one under the state directory); else `$RUNTIME_DIRECTORY/control.sock` under systemd;
    else `<state_dir>/control.sock`."""
    env = os.environ if env is None else env
    if settings.socket_path:
        p = Path(settings.socket_path)
        return p if p.is_absolute() else Path(state_dir) / p
    runtime = env.get("RUNTIME_DIRECTORY", "")
    if runtime:
        # Several RuntimeDirectory= entries arrive colon-separated: the first is ours.
        return Path(runtime.split(":")[0]) / SOCKET_NAME
    return Path(state_dir) / SOCKET_NAME


def group_problem(group: str) -> str | None:
    """What is wrong with the control socket's admin group (a name or a number)."""
    if not group or group.isdigit():
        return None
    try:
        grp.getgrnam(group)
    except KeyError:
        return (f"group {group!r} does not exist: create it (see systemd/crmsync.sysusers) or "
                "name an existing group")
    return None


def socket_path_problem(path: Path) -> str | None:
    size = len(os.fsencode(path))
    if size > MAX_SOCKET_PATH_BYTES:
        return (f"the control socket path {path} is {size} bytes; a Unix socket's path may "
                f"have {MAX_SOCKET_PATH_BYTES}: set a shorter [daemon.control] socket_path")
    return None


def database_problem(database: str) -> str | None:
    """What is wrong with an app's SQLite database path (relative: to the working directory,
    as the connector opens it)."""
    path = os.path.abspath(database)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return f"app database {path} does not exist (crmsync never creates an app's database)"
    except (OSError, ValueError) as exc:
        return f"app database {path} cannot be looked at: {getattr(exc, 'strerror', exc)}"
    if not stat.S_ISREG(st.st_mode):
        return f"app database {path} is not a regular file"
    return None


def host_problems(cfg: Config, env: Mapping[str, str] | None = None) -> list[Problem]:
    """Every problem of this machine with the configuration (secrets aside)."""
    out: list[Problem] = []
    ctl = cfg.daemon.control
    if (msg := group_problem(ctl.group)) is not None:
        out.append(Problem("$.daemon.control.group", msg))
    path = control_socket_path(ctl, cfg.daemon.state_dir, env)
    if (msg := socket_path_problem(path)) is not None:
        # Derived from state_dir or $RUNTIME_DIRECTORY when unset: the fix is still to set it.
        out.append(Problem("$.daemon.control.socket_path", msg))
    for i, conn in enumerate(cfg.connections):
        if not isinstance(conn, SqliteConnection):
            continue
        if (msg := database_problem(conn.database)) is not None:
            out.append(Problem(f"$.connections[{i}].database", msg))
    return out
