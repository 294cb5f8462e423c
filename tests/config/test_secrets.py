"""Secrets: where they are read from, and that their values never reach any output."""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from crmsync.cli import check_config
from crmsync.config import ConfigError, Secret, SecretError, load_config, read_secret
from crmsync.config.secrets import credentials_path

CANARY = "canary-7f3e9c1d-secret-value-must-never-print"


# --- the Secret object ---------------------------------------------------------------------


def test_a_secret_never_shows_its_value():
    s = Secret(CANARY, "env:HUBSPOT_TOKEN")
    renderings = [
        repr(s), str(s), f"{s}", f"{s!r}", f"{s!s}", f"{s:>80}", "{}".format(s),  # noqa: UP032
        "%s" % s, "%r" % (s,),  # noqa: UP031
        str([s]), repr({"token": s}), str((s,)),
    ]
    for text in renderings:
        assert CANARY not in text, text
        assert "redacted" in text, text
    assert "env:HUBSPOT_TOKEN" in repr(s)
    assert s.reveal() == CANARY


def test_a_secret_in_a_log_record_or_exception_stays_hidden():
    s = Secret(CANARY, "file:/run/credentials/crmsync.service/hubspot-token")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger("crmsync.test.secret")
    logger.addHandler(handler)
    try:
        logger.warning("token is %s / %r", s, s)
    finally:
        logger.removeHandler(handler)
    assert CANARY not in stream.getvalue()
    assert CANARY not in str(ValueError("bad token", s))
    assert CANARY not in repr(ValueError("bad token", s))


def test_secrets_compare_by_value_without_showing_it():
    assert Secret(CANARY, "env:A") == Secret(CANARY, "file:/b")
    assert Secret(CANARY, "env:A") != Secret("other", "env:A")
    assert Secret(CANARY, "env:A") != CANARY


# --- reading a secret ------------------------------------------------------------------------


def test_read_from_an_environment_variable(monkeypatch):
    monkeypatch.setenv("CRMSYNC_TEST_SECRET", f"  {CANARY}\n")
    s = read_secret("CRMSYNC_TEST_SECRET", None)
    assert s.reveal() == CANARY
    assert s.source == "env:CRMSYNC_TEST_SECRET"


def test_read_from_a_file_strips_the_trailing_newline(tmp_path):
    (tmp_path / "token").write_text(CANARY + "\n")
    assert read_secret(None, "token", tmp_path).reveal() == CANARY
    assert read_secret(None, str(tmp_path / "token")).reveal() == CANARY


@pytest.mark.parametrize(
    ("env", "file", "reason"),
    [
        ("CRMSYNC_TEST_UNSET", None, "not set"),
        (None, "missing", "does not exist"),
        ("CRMSYNC_TEST_SECRET", "token", "not both"),
        (None, None, "no secret"),
        ("CRMSYNC_TEST_EMPTY", None, "empty"),
        (None, "empty", "empty"),
    ],
)
def test_read_secret_errors_name_the_source_never_a_value(tmp_path, monkeypatch, env, file,
                                                          reason):
    monkeypatch.delenv("CRMSYNC_TEST_UNSET", raising=False)
    monkeypatch.setenv("CRMSYNC_TEST_SECRET", CANARY)
    monkeypatch.setenv("CRMSYNC_TEST_EMPTY", " ")
    (tmp_path / "token").write_text(CANARY)
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(SecretError, match=reason) as info:
        read_secret(env, file, tmp_path)
    assert CANARY not in str(info.value)


# --- relative *_file paths -----------------------------------------------------------------


def test_relative_path_is_read_from_credentials_directory_when_set(tmp_path, monkeypatch):
    creds, confdir = tmp_path / "creds", tmp_path / "etc"
    creds.mkdir()
    confdir.mkdir()
    (creds / "hubspot-token").write_text("from-credentials-directory\n")
    (confdir / "hubspot-token").write_text("from-next-to-the-config\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    assert credentials_path("hubspot-token", confdir) == creds / "hubspot-token"
    assert read_secret(None, "hubspot-token", confdir).reveal() == "from-credentials-directory"


def test_relative_path_is_read_next_to_the_config_file_otherwise(tmp_path, monkeypatch):
    confdir = tmp_path / "etc"
    confdir.mkdir()
    (confdir / "hubspot-token").write_text("from-next-to-the-config\n")
    monkeypatch.chdir(tmp_path)  # not the working directory
    assert read_secret(None, "hubspot-token", confdir).reveal() == "from-next-to-the-config"
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", "")  # empty counts as unset
    assert read_secret(None, "hubspot-token", confdir).reveal() == "from-next-to-the-config"


def test_an_absolute_path_ignores_credentials_directory(tmp_path, monkeypatch):
    (tmp_path / "abs-token").write_text("absolute\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path / "nowhere"))
    assert read_secret(None, str(tmp_path / "abs-token")).reveal() == "absolute"


def _config_with_token_file(directory: Path, token_file: str) -> Path:
    path = directory / "crmsync.toml"
    path.write_text(f'[hub.auth]\nkind = "private_app"\ntoken_file = "{token_file}"\n')
    return path


def test_load_config_reads_relative_files_from_credentials_directory(tmp_path, monkeypatch):
    creds, confdir = tmp_path / "creds", tmp_path / "etc"
    creds.mkdir()
    confdir.mkdir()
    config = _config_with_token_file(confdir, "hubspot-token")
    (creds / "hubspot-token").write_text(CANARY)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    load_config(config)  # no error: found in $CREDENTIALS_DIRECTORY

    (creds / "hubspot-token").unlink()
    (confdir / "hubspot-token").write_text(CANARY)
    with pytest.raises(ConfigError) as info:
        load_config(config)  # not next to the config file while systemd gave a directory
    (p,) = info.value.problems
    assert p.path == "$.hub.auth.token_file"
    assert str(creds / "hubspot-token") in p.message


def test_load_config_reads_relative_files_next_to_the_config_file(tmp_path, monkeypatch):
    confdir = tmp_path / "etc"
    confdir.mkdir()
    _config_with_token_file(confdir, "secrets/hubspot-token")
    (confdir / "secrets").mkdir()
    (confdir / "secrets" / "hubspot-token").write_text(CANARY)
    monkeypatch.chdir(tmp_path)
    load_config(Path("etc") / "crmsync.toml")  # a relative config path works too


# --- bugs: secret files that cannot be decoded or named ----------------------------------------


def test_a_secret_file_that_is_not_utf8_is_a_config_error(tmp_path):
    """BUG: read_secret catches OSError only; a binary file raises UnicodeDecodeError out of
    load_config (and check-config dies with a traceback instead of naming the file)."""
    (tmp_path / "hubspot-token").write_bytes(b"\xff\xfe\x00binary")
    config = _config_with_token_file(tmp_path, "hubspot-token")
    with pytest.raises(ConfigError) as info:
        load_config(config)
    (p,) = info.value.problems
    assert p.path == "$.hub.auth.token_file"
    assert "hubspot-token" in p.message


def test_a_secret_file_name_with_a_nul_byte_is_a_config_error(tmp_path):
    r"""BUG: `token_file = "a\u0000b"` is valid TOML; opening it raises ValueError ("embedded
    null byte"), which read_secret does not catch."""
    config = _config_with_token_file(tmp_path, "hubspot\\u0000token")
    with pytest.raises(ConfigError) as info:
        load_config(config)
    assert [p.path for p in info.value.problems] == ["$.hub.auth.token_file"]


# --- canary: check-config never prints a secret ----------------------------------------------------

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config" / "crmsync.example.toml"


def _canary_configs(tmp_path: Path) -> tuple[Path, Path, dict[str, str]]:
    """The example config with every secret carrying the canary: the hub token from an
    environment variable, the other secrets from files; and a broken variant of it."""
    for name in ("hubspot-webhook-secret", "shop-webhook-secret"):
        (tmp_path / name).write_text(f"{CANARY}-{name}\n")
    text = EXAMPLE.read_text()
    text = text.replace('token_file = "hubspot-token"', 'token_env = "CRMSYNC_CANARY_TOKEN"')
    assert 'token_env = "CRMSYNC_CANARY_TOKEN"' in text
    good = tmp_path / "good.toml"
    good.write_text(text)
    bad_text = text.replace('tier = "professional"', 'tier = "custom"\ntoken = "x"')
    bad_text = bad_text.replace('connection = "shop"', 'connection = "shopp"', 1)
    bad = tmp_path / "bad.toml"
    bad.write_text(bad_text)
    env = {"CRMSYNC_CANARY_TOKEN": f"{CANARY}-token"}
    return good, bad, env


def test_check_config_in_process_never_prints_a_secret(tmp_path, monkeypatch):
    good, bad, env = _canary_configs(tmp_path)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    out, err = io.StringIO(), io.StringIO()
    assert check_config.run(str(good), out, err) == 0, err.getvalue()
    assert check_config.run(str(bad), out, err) == 2
    assert "$.syncs[0].connection" in err.getvalue()
    assert CANARY not in out.getvalue() + err.getvalue()
    with pytest.raises(ConfigError) as info:
        load_config(bad)
    assert CANARY not in str(info.value) + repr(info.value.problems)


def test_check_config_command_never_prints_a_secret(tmp_path):
    good, bad, env = _canary_configs(tmp_path)
    run_env = {k: v for k, v in os.environ.items() if k != "CREDENTIALS_DIRECTORY"} | env
    for path, code in ((good, 0), (bad, 2)):
        r = subprocess.run([sys.executable, "-m", "crmsync", "check-config", str(path)],
                           capture_output=True, text=True, timeout=60, env=run_env)
        assert r.returncode == code, r.stderr
        assert CANARY not in r.stdout + r.stderr
