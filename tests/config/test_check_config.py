"""`crmsync check-config`: the example passes, a broken config names every problem."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config" / "crmsync.example.toml"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "crmsync", *args], capture_output=True,
                          text=True, timeout=60)


def test_the_example_as_checked_out_is_a_valid_document():
    """On a fresh checkout (no crmsync-admin group, no /var/lib/shop/shop.db, secrets 0644),
    `--offline` checks the document alone, as the example's first comment says."""
    r = run("check-config", "--offline", str(EXAMPLE))
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    assert r.stdout.startswith(f"{EXAMPLE}: OK (offline: secrets, the control group")
    assert "check-config --offline config/crmsync.example.toml" in EXAMPLE.read_text()


def test_example_config_is_valid(example_config: Path):
    r = run("check-config", str(example_config))
    assert r.returncode == 0, r.stderr
    assert "connections: 2, object syncs: 6" in r.stdout
    assert "contacts ⇄ customers (both" in r.stdout
    assert "contacts ⇄ persons (both" in r.stdout


def test_broken_config_names_each_problem_with_its_path(tmp_path: Path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(
        """
[daemon]
state_dri = "/tmp/x"

[hub]
poll_interval_seconds = "often"
[hub.auth]
kind = "private_app"
token_file = "missing-token"

[[connections]]
name = "shop"
type = "sqlite"
database = "shop.db"
[[connections.tables]]
object = "customers"
table = "customers"

[[syncs]]
connection = "shopp"
hub_object = "contacts"
app_object = "customers"
"""
    )
    r = run("check-config", str(cfg))
    assert r.returncode == 2
    err = r.stderr
    assert "$.daemon.state_dri: unknown key" in err
    assert "$.hub.poll_interval_seconds: wrong type: expected number, got string" in err
    assert "$.syncs[0].connection: unknown connection 'shopp'" in err
    assert f"$.hub.auth.token_file: secret file {tmp_path / 'missing-token'} does not exist" in err
