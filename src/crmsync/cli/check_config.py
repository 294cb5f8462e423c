"""`crmsync check-config [--offline] PATH`: every problem with its `$.path`, or a short summary.

By default the configuration is checked against this machine too, as `crmsync run` will need
it: secrets readable (and not readable by others), the control group, the control socket's
path, the app databases. `--offline` checks the document alone (a configuration written for
another machine, or in a repository).
"""

from __future__ import annotations

import sys
from typing import TextIO

from crmsync.config import ConfigError, load_config


def run(path: str, out: TextIO = sys.stdout, err: TextIO = sys.stderr, *,
        offline: bool = False) -> int:
    try:
        cfg, warnings = load_config(path, check_host=not offline)
    except ConfigError as exc:
        errors = [p for p in exc.problems if p.severity == "error"]
        print(f"{path}: {len(errors)} error(s)", file=err)
        for p in exc.problems:
            print(f"  {p}", file=err)
        return 2
    for w in warnings:
        print(f"  {w}", file=err)
    syncs_by_conn: dict[str, list[str]] = {}
    for s in cfg.syncs:
        state = "" if s.enabled else ", disabled"
        preview = ", starts in preview" if s.start_in_preview else ""
        syncs_by_conn.setdefault(s.connection, []).append(
            f"{s.hub_object} ⇄ {s.app_object} ({s.direction}, winner {s.conflict_winner}"
            f"{preview}{state})"
        )
    print(f"{path}: OK" + (" (offline: secrets, the control group and socket path and the app "
                           "databases were not checked)" if offline else ""), file=out)
    print(f"hub: {cfg.hub.base_url} ({cfg.hub.tier} tier, {cfg.hub.auth.__struct_config__.tag} auth, "
          f"poll every {cfg.hub.poll_interval_seconds:g} s)", file=out)
    print(f"connections: {len(cfg.connections)}, object syncs: {len(cfg.syncs)}", file=out)
    for conn in cfg.connections:
        print(f"  {conn.name} ({conn.connector_type}: {conn.describe()})", file=out)
        for line in syncs_by_conn.get(conn.name, []):
            print(f"    {line}", file=out)
    return 0
