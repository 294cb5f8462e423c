"""Shared set-up for the configuration tests.

Every test starts from a known environment: no `$CREDENTIALS_DIRECTORY` (the machine running
the tests might be a systemd service), the token variable the base document refers to, and a
working directory (tmp_path) holding the app databases the documents name, since the
configuration checks that they exist.
"""

from __future__ import annotations

import grp
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from crmsync.config import ConfigError, Problem, load_config

TOKEN_VAR = "CRMSYNC_TEST_HUB_TOKEN"


# The app databases the documents of these tests name (relative: to the working directory).
APP_DATABASES = ("shop.db", "other.db", "copy.db")


@pytest.fixture(autouse=True)
def _known_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    monkeypatch.delenv("RUNTIME_DIRECTORY", raising=False)
    monkeypatch.setenv(TOKEN_VAR, "pat-test-token")
    for name in APP_DATABASES:
        (tmp_path / name).touch()
    monkeypatch.chdir(tmp_path)


ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config" / "crmsync.example.toml"
EXAMPLE_SECRETS = ("hubspot-token", "hubspot-webhook-secret", "shop-webhook-secret",
                   "pipedrive-token", "pipedrive-webhook-password")


@pytest.fixture
def example_config(tmp_path: Path) -> Path:
    """The example configuration made true of this machine, in `tmp_path/etc`: its secret
    files beside it (mode 0600, as a clone cannot keep it), its app database created under
    tmp_path, and the control socket's group one that exists here (the example's
    `crmsync-admin` comes with the systemd unit's sysusers file)."""
    etc = tmp_path / "etc"
    etc.mkdir()
    for name in EXAMPLE_SECRETS:
        shutil.copy(EXAMPLE.parent / name, etc / name)
        (etc / name).chmod(0o600)
    (tmp_path / "shop.db").touch()
    text = EXAMPLE.read_text()
    for old, new in (('database = "/var/lib/shop/shop.db"', f'database = "{tmp_path / "shop.db"}"'),
                     ('group = "crmsync-admin"', f'group = "{grp.getgrgid(os.getgid()).gr_name}"')):
        assert old in text, old
        text = text.replace(old, new)
    config = etc / "crmsync.toml"
    config.write_text(text)
    return config


# A small valid document touching every level the validations look at. Tests edit it with
# `with_lines` (add keys to a table) or `str.replace`.
BASE = f"""\
[daemon]
state_dir = "/var/lib/crmsync"

[daemon.control]
mode = 0o600

[daemon.webhooks]
listen = "127.0.0.1:8080"

[hub]
tier = "professional"

[hub.auth]
kind = "private_app"
token_env = "{TOKEN_VAR}"

[[connections]]
name = "shop"
type = "sqlite"
database = "shop.db"

[[connections.tables]]
object = "customers"
table = "customers"

[[connections.tables]]
object = "opportunities"
table = "opportunities"

[[syncs]]
connection = "shop"
hub_object = "contacts"
app_object = "customers"

[[syncs.mappings]]
hub = "customer_tier"
app = "tier"

[[syncs.filters]]
side = "app"
property = "tier"
operator = "EQ"
value = "gold"
"""

DEALS_SYNC = """
[[syncs]]
connection = "shop"
hub_object = "deals"
app_object = "opportunities"
unique_property = "dealname"
"""


def with_lines(text: str, header: str, *lines: str) -> str:
    """`text` with `lines` added at the top of the first table headed `header`."""
    marker = header + "\n"
    assert marker in text, header
    return text.replace(marker, marker + "".join(line + "\n" for line in lines), 1)


def set_key(text: str, header: str, key: str, value: str) -> str:
    """`text` with `key = value` in the first table headed `header`, replacing any old value."""
    lines = text.split("\n")
    start = lines.index(header)
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("[")), len(lines))
    body = [ln for ln in lines[start + 1:end] if not ln.startswith(f"{key} =")]
    return "\n".join([*lines[:start + 1], f"{key} = {value}", *body, *lines[end:]])


@pytest.fixture
def setkey() -> Callable[..., str]:
    return set_key


@pytest.fixture
def base() -> str:
    return BASE


@pytest.fixture
def deals_sync() -> str:
    return DEALS_SYNC


@pytest.fixture
def edit() -> Callable[..., str]:
    return with_lines


@pytest.fixture
def problems_of(tmp_path: Path) -> Callable[[str], list[Problem]]:
    """Write the document next to nothing else, load it; every problem (empty when valid)."""

    def run(text: str) -> list[Problem]:
        path = tmp_path / "crmsync.toml"
        path.write_text(text, encoding="utf-8")
        try:
            _cfg, warnings = load_config(path)
        except ConfigError as exc:
            assert exc.problems, "a ConfigError must carry its problems"
            return exc.problems
        return warnings

    return run


def errors(problems: list[Problem]) -> list[Problem]:
    return [p for p in problems if p.severity == "error"]


@pytest.fixture
def error_paths() -> Callable[[list[Problem]], set[str]]:
    return lambda problems: {p.path for p in errors(problems)}


@pytest.fixture
def find() -> Callable[..., Problem]:
    """The one error at `path`, whose message contains every fragment."""

    def find(problems: list[Problem], path: str, *fragments: str) -> Problem:
        at = [p for p in errors(problems) if p.path == path]
        assert at, f"no error at {path}; got: " + "; ".join(str(p) for p in problems)
        for p in at:
            if all(f in p.message for f in fragments):
                return p
        raise AssertionError(f"no error at {path} says {fragments}; got: "
                             + "; ".join(str(p) for p in at))

    return find
