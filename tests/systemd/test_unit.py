"""systemd/crmsync.service and the per-account template systemd/crmsync@.service pass
`systemd-analyze verify` and rate 2.0 or better with `systemd-analyze security --offline=yes`,
the template at the same exposure as the single unit; the backup timer and its service verify
and run a command the CLI accepts, on the instance's socket and state directory; the sysusers
and tmpfiles files do what they say.

Skipped only where systemd's tools are not installed (`apt-get install -y systemd`)."""

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SYSTEMD = ROOT / "systemd"
UNIT = SYSTEMD / "crmsync.service"
TEMPLATE = SYSTEMD / "crmsync@.service"
BACKUP = SYSTEMD / "crmsync-backup@.service"
TIMER = SYSTEMD / "crmsync-backup@.timer"
ANALYZE = shutil.which("systemd-analyze")
# The service units analysed: the single one, and an instance of the template.
SERVICES = {"crmsync.service": UNIT, "crmsync@acme.service": TEMPLATE}

needs_analyze = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed")


def with_existing_binary(tmp_path: Path, *units: Path) -> None:
    """Copy the units to `tmp_path`, their commands pointing at this environment's crmsync
    (verify checks that the program exists; installations put it at /usr/local/bin/crmsync)."""
    crmsync = Path(sys.executable).with_name("crmsync")
    if not crmsync.exists():
        crmsync = Path(shutil.which("crmsync") or "/usr/local/bin/crmsync")
    for unit in units:
        (tmp_path / unit.name).write_text(
            unit.read_text().replace("/usr/local/bin/crmsync", str(crmsync)))


def unit_with_existing_binary(tmp_path: Path, name: str = "crmsync.service") -> Path:
    """The unit `name` (an instance name for the template) ready for systemd-analyze."""
    with_existing_binary(tmp_path, SERVICES[name])
    return tmp_path / name


def exposure(unit: Path) -> float:
    proc = subprocess.run([ANALYZE, "security", "--offline=yes", str(unit)],
                          capture_output=True, text=True, timeout=60)
    m = re.search(rf"Overall exposure level for {re.escape(unit.name)}: (\d+\.\d+) (\w+)",
                  proc.stdout)
    assert m, proc.stdout + proc.stderr
    return float(m.group(1))


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
@pytest.mark.parametrize("name", SERVICES)
def test_systemd_analyze_verify_passes(tmp_path, name):
    unit = unit_with_existing_binary(tmp_path, name)
    proc = subprocess.run([ANALYZE, "verify", str(unit)], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "crmsync" not in proc.stderr, proc.stderr  # no warning about our unit


@needs_analyze
@pytest.mark.parametrize("name", SERVICES)
def test_systemd_analyze_security_rates_it_ok(tmp_path, name):
    unit = unit_with_existing_binary(tmp_path, name)
    assert exposure(unit) <= 2.0
    # The same bound as systemd's own gate (0-100 scale: 2.0 is 20).
    gate = subprocess.run([ANALYZE, "security", "--offline=yes", "--threshold=20", str(unit)],
                          capture_output=True, text=True, timeout=60)
    assert gate.returncode == 0, gate.stdout


@needs_analyze
def test_an_instance_is_exactly_as_exposed_as_the_single_unit(tmp_path):
    (tmp_path / "one").mkdir()
    (tmp_path / "many").mkdir()
    single = unit_with_existing_binary(tmp_path / "one", "crmsync.service")
    instance = unit_with_existing_binary(tmp_path / "many", "crmsync@acme.service")
    assert exposure(instance) == exposure(single)


def test_the_template_keeps_each_instance_apart():
    """Everything an instance writes or reads is its own: configuration, credentials, state,
    runtime directory and user; the rest is the single unit's, line for line."""
    d = directives(TEMPLATE.read_text())
    assert "${CONFIGURATION_DIRECTORY}/%i.toml" in d["ExecStart"][0]
    assert d["StateDirectory"] == ["crmsync-%i"] and d["RuntimeDirectory"] == ["crmsync-%i"]
    assert d["User"] == ["crmsync-%i"] and d["DynamicUser"] == ["yes"]
    creds = dict(x.split(":", 1) for x in d["LoadCredential"])
    assert all(p.startswith("/etc/crmsync/credentials/%i/") for p in creds.values())
    single = directives(UNIT.read_text())
    assert set(creds) == {x.split(":", 1)[0] for x in single["LoadCredential"]}
    assert d["LogExtraFields"] == ["CRMSYNC_INSTANCE=%i"]
    per_instance = {"ExecStart", "StateDirectory", "RuntimeDirectory", "User",
                    "LoadCredential", "Description", "Documentation", "LogExtraFields"}
    assert {k: v for k, v in d.items() if k not in per_instance} == \
        {k: v for k, v in single.items() if k not in per_instance}


def test_the_backup_service_backs_up_its_instance():
    """The timer's service asks the instance's daemon, over the instance's socket, for a
    backup in the instance's state directory (the one directory the daemon may write), with a
    command line the CLI accepts."""
    from crmsync.cli.main import build_parser

    template = directives(TEMPLATE.read_text())
    d = directives(BACKUP.read_text())
    assert d["Type"] == ["oneshot"] and d["After"] == ["crmsync@%i.service"]
    argv = shlex.split(d["ExecStart"][0])
    assert argv[0] == "/usr/local/bin/crmsync"
    args = build_parser().parse_args(argv[1:])
    assert (args.command, args.ctl_command) == ("ctl", "backup")
    (runtime,) = template["RuntimeDirectory"]
    (state,) = template["StateDirectory"]
    assert args.socket == f"/run/{runtime}/control.sock"
    assert Path(args.out).parent == Path(f"/var/lib/{state}/backups")
    timer = directives(TIMER.read_text())
    assert timer["OnCalendar"] and timer["Persistent"] == ["yes"]
    assert timer["WantedBy"] == ["timers.target"]


@needs_analyze
def test_the_backup_timer_and_service_verify(tmp_path):
    with_existing_binary(tmp_path, TEMPLATE, BACKUP, TIMER)
    proc = subprocess.run([ANALYZE, "verify", str(tmp_path / "crmsync-backup@acme.timer"),
                           str(tmp_path / "crmsync-backup@acme.service")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "crmsync" not in proc.stderr, proc.stderr


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
