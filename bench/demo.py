"""`crmsync demo --until-synced --json` at several sizes: wall time, exit status and checks.
Prints JSON, one object per size.

    python bench/demo.py [--records 200 2000 20000]

Each size runs the demo as a user would (a subprocess, its default timeout, the real clock and
loopback sockets) and reports its wall time next to that default timeout, so the margin the
default leaves is visible (issue 10, item 15).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

from crmsync.cli.demo_checks import default_timeout


def run(records: int) -> dict[str, object]:
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "crmsync", "demo", "--records", str(records),
                           "--until-synced", "--json"], capture_output=True, text=True,
                          check=False)
    wall = time.monotonic() - started
    out: dict[str, object] = {"records": records, "exit": done.returncode,
                              "wall_seconds": round(wall, 1),
                              "default_timeout_seconds": default_timeout(records)}
    try:
        summary = json.loads(done.stdout)
    except ValueError:
        out["stderr_tail"] = done.stderr[-2000:]
        return out
    out["demo_seconds"] = summary.get("seconds")
    out["ok"] = summary.get("ok")
    out["failed_checks"] = sorted(k for k, v in summary.get("checks", {}).items() if not v)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, nargs="+", default=[200, 2000, 20000])
    args = parser.parse_args()
    for n in args.records:
        print(json.dumps(run(n)), flush=True)


if __name__ == "__main__":
    main()
