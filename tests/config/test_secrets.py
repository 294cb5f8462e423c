"""Secrets: where they are read from, and that their values never reach any output."""

from __future__ import annotations

import io
import logging
import os
import resource
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from crmsync.cli import check_config
from crmsync.config import ConfigError, Secret, SecretError, load_config, read_secret
from crmsync.config.secrets import MAX_SECRET_BYTES, credentials_path

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


def _canary_configs(example: Path) -> tuple[Path, Path, dict[str, str]]:
    """The example config (made true of this machine) with every secret carrying the canary:
    the hub token from an environment variable, the other secrets from files; and a broken
    variant of it."""
    directory = example.parent
    for name in ("hubspot-webhook-secret", "shop-webhook-secret", "pipedrive-token",
                 "pipedrive-webhook-password"):
        (directory / name).write_text(f"{CANARY}-{name}\n")
    text = example.read_text()
    text = text.replace('token_file = "hubspot-token"', 'token_env = "CRMSYNC_CANARY_TOKEN"')
    assert 'token_env = "CRMSYNC_CANARY_TOKEN"' in text
    good = directory / "good.toml"
    good.write_text(text)
    bad_text = text.replace('tier = "professional"', 'tier = "custom"\ntoken = "x"')
    bad_text = bad_text.replace('connection = "shop"', 'connection = "shopp"', 1)
    bad = directory / "bad.toml"
    bad.write_text(bad_text)
    env = {"CRMSYNC_CANARY_TOKEN": f"{CANARY}-token"}
    return good, bad, env


def test_check_config_in_process_never_prints_a_secret(example_config, monkeypatch):
    good, bad, env = _canary_configs(example_config)
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


def test_check_config_command_never_prints_a_secret(example_config):
    good, bad, env = _canary_configs(example_config)
    run_env = {k: v for k, v in os.environ.items() if k != "CREDENTIALS_DIRECTORY"} | env
    for path, code in ((good, 0), (bad, 2)):
        r = subprocess.run([sys.executable, "-m", "crmsync", "check-config", str(path)],
                           capture_output=True, text=True, timeout=60, env=run_env)
        assert r.returncode == code, r.stderr
        assert CANARY not in r.stdout + r.stderr


# --- a secret pasted into a *_file / *_env setting is never echoed (issue 10, item 11) ----------

# What an operator pastes by mistake: a HubSpot private app token where a file name belongs, and
# a secret that happens to be spelled like a variable name where a variable name belongs.
PASTED_TOKEN = f"pat-na1-{CANARY}"
ENV_LIKE_CANARY = "Zq7vK2mX9pL4wR8tCanary0"
SECRET_SETTINGS = [
    ("[hub.auth]", "token_env", "token_file", "$.hub.auth.token_file"),
    ("[hub]", None, "webhook_client_secret_file", "$.hub.webhook_client_secret_file"),
    ("[hub]", None, "webhook_client_secret_env", "$.hub.webhook_client_secret_env"),
    ("[[connections]]", None, "webhook_secret_file", "$.connections[0].webhook_secret_file"),
    ("[[connections]]", None, "webhook_secret_env", "$.connections[0].webhook_secret_env"),
    ("[hub.auth]", "token_file", "token_env", "$.hub.auth.token_env"),
]


def _pasted(base: str, setkey, header: str, drop: str | None, key: str, value: str) -> str:
    text = base
    if drop is not None:
        text = "\n".join(ln for ln in text.split("\n") if not ln.startswith(f"{drop} ="))
    return setkey(text, header, key, f'"{value}"')


@pytest.mark.parametrize("value", [PASTED_TOKEN, ENV_LIKE_CANARY], ids=["token", "name-like"])
@pytest.mark.parametrize(("header", "drop", "key", "path"), SECRET_SETTINGS,
                         ids=[k for _, _, k, _ in SECRET_SETTINGS])
def test_a_secret_pasted_into_a_secret_setting_is_never_echoed(base, setkey, problems_of,
                                                              tmp_path, header, drop, key,
                                                              path, value):
    """BUG: `token_file = "pat-na1-…"` printed `secret file …/pat-na1-… does not exist`, and
    an `*_env` value spelled like a variable name was printed as one."""
    problems = problems_of(_pasted(base, setkey, header, drop, key, value))
    at = [p for p in problems if p.path == path]
    assert at and all(p.severity == "error" for p in at), problems
    text = "\n".join(str(p) for p in problems)
    assert value not in text and CANARY not in text and "Zq7vK2mX9pL4wR8t" not in text, text
    # Still says which setting and what to do, and where a relative file was looked for.
    assert "looks like a secret" in text or "not an environment variable name" in text, text
    if key.endswith("_file"):
        assert f"looks like a secret rather than a file name or variable name) in {tmp_path} " \
               "does not exist" in text, text


def test_plain_paths_and_variable_names_are_still_shown(base, setkey, problems_of, find,
                                                         tmp_path):
    problems = problems_of(_pasted(base, setkey, "[hub]", None, "webhook_client_secret_file",
                                   "secrets/hubspot-webhook.secret"))
    find(problems, "$.hub.webhook_client_secret_file",
         f"{tmp_path / 'secrets' / 'hubspot-webhook.secret'} does not exist")
    problems = problems_of(_pasted(base, setkey, "[hub]", None, "webhook_client_secret_env",
                                   "HUBSPOT_CLIENT_SECRET_2"))
    find(problems, "$.hub.webhook_client_secret_env",
         "environment variable HUBSPOT_CLIENT_SECRET_2 is not set")


@pytest.mark.slow
def test_run_never_echoes_a_pasted_secret_on_its_way_out(base, setkey, tmp_path):
    """`crmsync run`'s start-up error (the journal, under systemd) is as careful as
    check-config: exit 2, the paths of the problems, no canary, no traceback."""
    text = _pasted(base, setkey, "[hub.auth]", "token_env", "token_file", PASTED_TOKEN)
    text = _pasted(text, setkey, "[hub]", None, "webhook_client_secret_env", ENV_LIKE_CANARY)
    config = tmp_path / "crmsync.toml"
    config.write_text(text)
    r = subprocess.run([sys.executable, "-m", "crmsync", "run", "--config", str(config)],
                       capture_output=True, text=True, timeout=60, cwd=tmp_path,
                       env={k: v for k, v in os.environ.items()
                            if k not in ("CREDENTIALS_DIRECTORY", "RUNTIME_DIRECTORY")})
    assert r.returncode == 2, r.stderr
    out = r.stdout + r.stderr
    assert "$.hub.auth.token_file" in out and "$.hub.webhook_client_secret_env" in out, out
    assert CANARY not in out and "Zq7vK2mX9pL4wR8t" not in out, out
    assert "Traceback" not in out, out


# --- secret files: regular files only, bounded, permissions (issue 10, items 9 and 10) -----------


def _with_token_file(base: str, name: str) -> str:
    return base.replace('token_env = "CRMSYNC_TEST_HUB_TOKEN"', f'token_file = "{name}"')


def test_a_fifo_is_refused_without_waiting_for_a_writer(base, problems_of, find, tmp_path):
    """BUG: a FIFO as token_file blocked check-config, run and reload until someone wrote to
    it. Nobody writes to this one unless the check hangs on it (then the test frees it, and
    fails)."""
    fifo = tmp_path / "token-fifo"
    os.mkfifo(fifo)
    result: dict[str, Any] = {}
    loader = threading.Thread(target=lambda: result.update(
        problems=problems_of(_with_token_file(base, "token-fifo"))), daemon=True)
    loader.start()
    loader.join(30)  # a bound on a hang, not a timing: the check takes milliseconds
    if loader.is_alive():
        with open(fifo, "w"):  # a writer: the blocked reader goes on (and reads nothing)
            pass
        loader.join(10)
        pytest.fail("reading the secret file waited for a writer on the FIFO")
    find(result["problems"], "$.hub.auth.token_file", "is a FIFO (named pipe), not a regular file")


@pytest.mark.parametrize(("path", "kind"), [("/dev/null", "character device"),
                                            ("/tmp", "directory")])
def test_special_files_are_refused(base, problems_of, find, path, kind):
    find(problems_of(_with_token_file(base, path)), "$.hub.auth.token_file",
         f"secret file {path} is a {kind}, not a regular file")


def test_a_secret_file_larger_than_the_bound_is_refused(base, problems_of, find, tmp_path):
    (tmp_path / "big").write_text("x" * (MAX_SECRET_BYTES + 1))
    find(problems_of(_with_token_file(base, "big")), "$.hub.auth.token_file",
         f"larger than {MAX_SECRET_BYTES} bytes")
    (tmp_path / "just-fits").write_text("x" * MAX_SECRET_BYTES)
    (tmp_path / "just-fits").chmod(0o600)
    assert problems_of(_with_token_file(base, "just-fits")) == []


def _limited_memory() -> None:
    # The child may use 1 GiB of address space: reading without a bound fails fast there
    # rather than taking the machine's memory.
    resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))


@pytest.mark.slow
@pytest.mark.parametrize("token_file", ["/dev/zero", "huge"])
def test_check_config_refuses_an_endless_or_huge_secret_file(base, tmp_path, token_file):
    """BUG: `token_file = "/dev/zero"` grew the daemon to 24 GB until the kernel killed it; a
    2 GB sparse file gave check-config a MemoryError traceback. Refused with exit 2 and the
    path, having read at most the bound."""
    with open(tmp_path / "huge", "wb") as f:
        f.truncate(2 * 1024 ** 3)  # sparse: costs no disk
    config = tmp_path / "crmsync.toml"
    config.write_text(_with_token_file(base, token_file))
    r = subprocess.run([sys.executable, "-m", "crmsync", "check-config", str(config)],
                       capture_output=True, text=True, timeout=60, cwd=tmp_path,
                       preexec_fn=_limited_memory,
                       env={k: v for k, v in os.environ.items() if k != "CREDENTIALS_DIRECTORY"})
    assert r.returncode == 2, r.stderr
    assert "$.hub.auth.token_file: secret file" in r.stderr, r.stderr
    assert ("is a character device, not a regular file" if token_file == "/dev/zero"
            else f"larger than {MAX_SECRET_BYTES} bytes") in r.stderr, r.stderr
    assert "Traceback" not in r.stderr, r.stderr


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o666])
def test_a_secret_file_others_may_read_is_warned_about(base, problems_of, tmp_path, mode):
    (tmp_path / "hubspot-token").write_text("pat-na1-x\n")
    (tmp_path / "hubspot-token").chmod(mode)
    problems = problems_of(_with_token_file(base, "hubspot-token"))
    assert [(p.path, p.severity) for p in problems] == [("$.hub.auth.token_file", "warning")]
    path = tmp_path / "hubspot-token"
    assert f"secret file {path} is accessible by group or others (mode {mode:04o})" in (
        problems[0].message)
    assert f"chmod 600 {path}" in problems[0].message


@pytest.mark.parametrize("mode", [0o600, 0o400])
def test_a_secret_file_only_its_owner_may_read_gets_no_warning(base, problems_of, tmp_path,
                                                               mode):
    (tmp_path / "hubspot-token").write_text("pat-na1-x\n")
    (tmp_path / "hubspot-token").chmod(mode)
    assert problems_of(_with_token_file(base, "hubspot-token")) == []


def test_check_config_prints_the_permission_warning_and_passes(example_config):
    (example_config.parent / "hubspot-token").chmod(0o644)
    out, err = io.StringIO(), io.StringIO()
    assert check_config.run(str(example_config), out, err) == 0, err.getvalue()
    token = example_config.parent / "hubspot-token"
    assert err.getvalue() == (
        f"  warning: $.hub.auth.token_file: secret file {token} is accessible by group or "
        f"others (mode 0644): run `chmod 600 {token}`\n")
