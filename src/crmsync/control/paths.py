"""Where the control socket lives.

The daemon binds `[daemon.control] socket_path` when set (a relative path is taken under the
state directory); otherwise `$RUNTIME_DIRECTORY/control.sock` under systemd
(`RuntimeDirectory=crmsync` makes it `/run/crmsync/control.sock`), else
`<state_dir>/control.sock`. The CLI, which does not run under the unit, tries the same places,
and for a configuration other than crmsync.toml the instance's `/run/crmsync-NAME` first
(systemd/crmsync@.service).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from crmsync.config.host import MAX_SOCKET_PATH_BYTES, SOCKET_NAME, control_socket_path
from crmsync.config.model import Config, ControlSettings

__all__ = ["DEFAULT_CONFIG", "MAX_PATH_BYTES", "SOCKET_NAME", "client_socket_paths",
           "server_socket_path"]

# Where systemd puts RuntimeDirectory=crmsync (the shipped unit).
SYSTEMD_RUNTIME_DIR = Path("/run/crmsync")
DEFAULT_CONFIG = Path("/etc/crmsync/crmsync.toml")
MAX_PATH_BYTES = MAX_SOCKET_PATH_BYTES


def server_socket_path(settings: ControlSettings, state_dir: str | Path,
                       env: Mapping[str, str] | None = None) -> Path:
    """The path the daemon binds (the configuration checks its length with the same rule)."""
    return control_socket_path(settings, state_dir, env)


def instance_runtime_dir(config_path: str | Path) -> Path | None:
    """The runtime directory of the systemd instance that runs `config_path`:
    crmsync@NAME.service (systemd/crmsync@.service) runs /etc/crmsync/NAME.toml in
    /run/crmsync-NAME. None for the single unit's crmsync.toml."""
    stem = Path(config_path).stem
    return None if stem == DEFAULT_CONFIG.stem else Path(f"/run/crmsync-{stem}")


def client_socket_paths(cfg: Config | None, env: Mapping[str, str] | None = None,
                        config_path: str | Path | None = None) -> list[Path]:
    """Where `crmsync ctl` looks for the socket, in order (the first that exists wins).
    `config_path`: the configuration file named on the command line, if any."""
    env = os.environ if env is None else env
    if cfg is not None and cfg.daemon.control.socket_path:
        return [server_socket_path(cfg.daemon.control, cfg.daemon.state_dir, env)]
    out: list[Path] = []
    runtime = env.get("RUNTIME_DIRECTORY", "")
    if runtime:
        out.append(Path(runtime.split(":")[0]) / SOCKET_NAME)
    instance = instance_runtime_dir(config_path) if config_path is not None else None
    if instance is not None:
        out.append(instance / SOCKET_NAME)
    out.append(SYSTEMD_RUNTIME_DIR / SOCKET_NAME)
    if cfg is not None:
        out.append(Path(cfg.daemon.state_dir) / SOCKET_NAME)
    return list(dict.fromkeys(out))
