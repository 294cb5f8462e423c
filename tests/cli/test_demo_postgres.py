"""`crmsync demo --app postgres --until-synced --json`: the whole demo against a throwaway
PostgreSQL server exits 0 with every check true, and leaves no server behind."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def test_demo_with_a_postgres_app(tmp_path, pg_server):
    # pg_server: the tests' own server proves the binaries are here (or skips loudly).
    before = {p.name for p in Path("/tmp").glob("crmsync-pg-*")}
    done = subprocess.run(
        [sys.executable, "-m", "crmsync", "demo", "--app", "postgres", "--until-synced",
         "--json", "--state-dir", str(tmp_path / "demo")],
        capture_output=True, text=True, timeout=240, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout)
    assert summary["ok"] and all(summary["checks"].values()), summary["checks"]
    assert "app database      PostgreSQL" in done.stderr
    after = {p.name for p in Path("/tmp").glob("crmsync-pg-*")}
    assert after <= before, "the demo's server directory was left behind"
