"""systemd/crmsync.service passes `systemd-analyze verify` and rates 2.0 or better with
`systemd-analyze security --offline=yes`; the sysusers and tmpfiles files do what they say.

Skipped only where systemd's tools are not installed (`apt-get install -y systemd`)."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "systemd" / "crmsync.service"
ANALYZE = shutil.which("systemd-analyze")

needs_analyze = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed")


def unit_with_existing_binary(tmp_path: Path) -> Path:
    """The unit, its ExecStart pointing at this environment's crmsync (verify checks that the
    program exists; installations put it at /usr/local/bin/crmsync)."""
    crmsync = Path(sys.executable).with_name("crmsync")
    if not crmsync.exists():
        crmsync = Path(shutil.which("crmsync") or "/usr/local/bin/crmsync")
    text = UNIT.read_text().replace("/usr/local/bin/crmsync", str(crmsync))
    out = tmp_path / "crmsync.service"
    out.write_text(text)
    return out


def directives(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith(("#", "[")) and "=" in line:
            k, v = line.split("=", 1)
            out.setdefault(k, []).append(v)
    return out


def test_the_unit_has_what_the_daemon_relies_on():
    d = directives(UNIT.read_text())
    assert d["Type"] == ["notify"] and d["NotifyAccess"] == ["main"]
    assert d["Restart"] == ["on-failure"] and int(d["WatchdogSec"][0]) > 0
    assert d["DynamicUser"] == ["yes"]
    assert d["StateDirectory"] == ["crmsync"] and d["StateDirectoryMode"] == ["0700"]
    assert d["RuntimeDirectory"] == ["crmsync"] and d["ConfigurationDirectory"] == ["crmsync"]
    assert d["UMask"] == ["0077"]
    assert "IPAddressDeny" not in d  # the daemon must reach the APIs
    creds = dict(x.split(":", 1) for x in d["LoadCredential"])
    # The names match the example configuration's relative *_file settings.
    example = (ROOT / "config" / "crmsync.example.toml").read_text()
    for name in creds:
        assert f'"{name}"' in example
    assert all(p.startswith("/etc/crmsync/credentials/") for p in creds.values())
    assert "${CONFIGURATION_DIRECTORY}/crmsync.toml" in d["ExecStart"][0]
    # The group the unit runs with is the one the sysusers file creates.
    sysusers = (ROOT / "systemd" / "crmsync.sysusers").read_text()
    assert f"g {d['Group'][0]} -" in sysusers


@needs_analyze
def test_systemd_analyze_verify_passes(tmp_path):
    unit = unit_with_existing_binary(tmp_path)
    proc = subprocess.run([ANALYZE, "verify", str(unit)], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "crmsync.service" not in proc.stderr, proc.stderr  # no warning about our unit


@needs_analyze
def test_systemd_analyze_security_rates_it_ok(tmp_path):
    unit = unit_with_existing_binary(tmp_path)
    proc = subprocess.run([ANALYZE, "security", "--offline=yes", str(unit)],
                          capture_output=True, text=True, timeout=60)
    m = re.search(r"Overall exposure level for crmsync\.service: (\d+\.\d+) (\w+)",
                  proc.stdout)
    assert m, proc.stdout + proc.stderr
    assert float(m.group(1)) <= 2.0, proc.stdout
    # The same bound as systemd's own gate (0-100 scale: 2.0 is 20).
    gate = subprocess.run([ANALYZE, "security", "--offline=yes", "--threshold=20", str(unit)],
                          capture_output=True, text=True, timeout=60)
    assert gate.returncode == 0, gate.stdout


@pytest.mark.skipif(shutil.which("systemd-sysusers") is None, reason="no systemd-sysusers")
def test_sysusers_creates_the_admin_group(tmp_path):
    (tmp_path / "etc").mkdir()
    subprocess.run(["systemd-sysusers", f"--root={tmp_path}",
                    str(ROOT / "systemd" / "crmsync.sysusers")], check=True, timeout=60,
                   capture_output=True)
    assert re.search(r"^crmsync-admin:x:\d+:", (tmp_path / "etc" / "group").read_text(), re.M)


@pytest.mark.skipif(shutil.which("systemd-tmpfiles") is None, reason="no systemd-tmpfiles")
def test_tmpfiles_creates_the_credentials_directory(tmp_path):
    subprocess.run(["systemd-tmpfiles", f"--root={tmp_path}", "--create",
                    str(ROOT / "systemd" / "crmsync.tmpfiles")], check=True, timeout=60,
                   capture_output=True)
    creds = tmp_path / "etc" / "crmsync" / "credentials"
    assert creds.is_dir() and (creds.stat().st_mode & 0o777) == 0o700
