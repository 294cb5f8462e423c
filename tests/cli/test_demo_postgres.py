"""`crmsync demo --app postgres --until-synced --json`: the whole demo against a throwaway
PostgreSQL server exits 0 with every check true, and leaves no server behind."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def test_demo_with_a_postgres_app(tmp_path, pg_server):
    # pg_server: the tests' own server proves the binaries are here (or skips loudly).
    # The demo's server directory goes under a temporary directory of this test's own (the
    # server runs as `postgres` when we are root, so it must be traversable: tmp_path is not),
    # so that other servers on the machine — the suite's own, other runs' — are not counted.
    parent = Path(tempfile.mkdtemp(prefix="crmsync-demo-test-"))
    parent.chmod(0o755)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "crmsync", "demo", "--app", "postgres", "--until-synced",
             "--json", "--state-dir", str(tmp_path / "demo")],
            capture_output=True, text=True, timeout=240, stdin=subprocess.DEVNULL,
            env={**os.environ, "TMPDIR": str(parent)})
        left = sorted(p.name for p in parent.glob("crmsync-pg-*"))
    finally:
        shutil.rmtree(parent, ignore_errors=True)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout)
    assert summary["ok"] and all(summary["checks"].values()), summary["checks"]
    assert "app database      PostgreSQL" in done.stderr
    assert left == [], f"the demo's server directory was left behind: {left}"
