"""What check-config once passed and `run` then died on (issue 10, items 12 and 13): listen
addresses, URLs, intervals, the control group and socket path, the app database, and TOML
nested too deeply. Each is an error with its `$.path`; valid spellings stay valid."""

from __future__ import annotations

import grp
import os

import pytest


@pytest.mark.parametrize(("listen", "words"), [
    ("127.0.0.1:99999", "port 99999 is out of range (0-65535)"),
    ("999.1.1.1:8080", "999.1.1.1 is not an IPv4 address"),
    ("::1:8080", "an IPv6 address goes in brackets: [::1]"),
    ("[::zz]:8080", "[::zz] is not an IPv6 address"),
    (":8080", "the host is missing"),
    ("my_host:8080", "is not a host name"),
    ("localhost", "expected HOST:PORT"),
    ("127.0.0.1:http", "expected HOST:PORT"),
])
def test_a_listen_address_that_cannot_be_bound(base, setkey, problems_of, find, listen, words):
    problems = problems_of(setkey(base, "[daemon.webhooks]", "listen", f'"{listen}"'))
    find(problems, "$.daemon.webhooks.listen", words)


@pytest.mark.parametrize("listen", ["127.0.0.1:8080", "0.0.0.0:443", "[::1]:8080", "[::]:80",
                                    "localhost:8080", "crmsync.internal.example:9000",
                                    "127.0.0.1:0"])
def test_listen_addresses_that_work(base, setkey, problems_of, listen):
    assert problems_of(setkey(base, "[daemon.webhooks]", "listen", f'"{listen}"')) == []


@pytest.mark.parametrize(("header", "key", "path"), [
    ("[hub]", "base_url", "$.hub.base_url"),
    ("[daemon.webhooks]", "public_base_url", "$.daemon.webhooks.public_base_url"),
])
@pytest.mark.parametrize(("url", "words"), [
    ("http://", "has no host"),
    ("https://:443", "has no host"),
    ("api.hubapi.com", "must start with http:// or https://"),
    ("ftp://api.hubapi.com", "must start with http:// or https://"),
    ("http://127.0.0.1:99999", "has a port out of range"),
    ("http://999.1.1.1", "999.1.1.1 is not an IPv4 address"),
    ("http://api hubapi.com", "must not contain spaces"),
    ("https://user:pw@api.hubapi.com", "must not carry a user or password"),
])
def test_a_url_crmsync_could_not_use(base, setkey, problems_of, find, header, key, path, url,
                                     words):
    find(problems_of(setkey(base, header, key, f'"{url}"')), path, words)


@pytest.mark.parametrize("url", ["https://api.hubapi.com", "http://127.0.0.1:8765",
                                 "http://[::1]:8765/", "https://crmsync.example.com/hooks"])
def test_urls_that_work(base, setkey, problems_of, url):
    assert problems_of(setkey(base, "[hub]", "base_url", f'"{url}"')) == []


@pytest.mark.parametrize(("header", "key", "path"), [
    ("[hub]", "poll_interval_seconds", "$.hub.poll_interval_seconds"),
    ("[hub]", "reconcile_interval_seconds", "$.hub.reconcile_interval_seconds"),
    ("[[connections]]", "poll_interval_seconds", "$.connections[0].poll_interval_seconds"),
])
@pytest.mark.parametrize("value", ["inf", "1e-9", "0.01", "nan"])
def test_an_interval_that_would_spin_or_never_come(base, setkey, problems_of, find, header, key,
                                                   path, value):
    """BUG: `poll_interval_seconds = 1e-9` passed, and the daemon spun a whole core."""
    find(problems_of(setkey(base, header, key, value)), path, "out of range")


@pytest.mark.parametrize(("header", "key", "path"), [
    ("[daemon]", "shutdown_grace_seconds", "$.daemon.shutdown_grace_seconds"),
    ("[daemon.control]", "read_timeout_seconds", "$.daemon.control.read_timeout_seconds"),
    ("[daemon.webhooks]", "body_deadline_seconds", "$.daemon.webhooks.body_deadline_seconds"),
    ("[hub]", "request_timeout_seconds", "$.hub.request_timeout_seconds"),
    ("[hub]", "search_index_lag_seconds", "$.hub.search_index_lag_seconds"),
])
def test_an_infinite_timeout_is_no_bound(base, setkey, problems_of, find, header, key, path):
    find(problems_of(setkey(base, header, key, "inf")), path, "out of range")


def test_a_control_group_that_does_not_exist(base, problems_of, find):
    text = base.replace("mode = 0o600", 'mode = 0o660\ngroup = "crmsync-no-such-group"')
    find(problems_of(text), "$.daemon.control.group",
         "group 'crmsync-no-such-group' does not exist")
    here = grp.getgrgid(os.getgid()).gr_name
    assert problems_of(base.replace("mode = 0o600", f'mode = 0o660\ngroup = "{here}"')) == []


def test_a_control_socket_path_longer_than_a_unix_socket_allows(base, setkey, problems_of,
                                                                find):
    long = "/run/" + "c" * 102  # 107 bytes: the most sun_path holds
    assert problems_of(setkey(base, "[daemon.control]", "socket_path", f'"{long}"')) == []
    p = find(problems_of(setkey(base, "[daemon.control]", "socket_path", f'"{long}x"')),
             "$.daemon.control.socket_path", "108 bytes", "may have 107")
    assert "set a shorter [daemon.control] socket_path" in p.message


def test_a_default_socket_path_too_long_for_its_state_dir(base, setkey, problems_of, find):
    deep = "/var/lib/" + "d" * 100
    find(problems_of(setkey(base, "[daemon]", "state_dir", f'"{deep}"')),
         "$.daemon.control.socket_path", f"{deep}/control.sock")


def test_an_app_database_that_does_not_exist(base, problems_of, find, tmp_path):
    find(problems_of(base.replace('database = "shop.db"', 'database = "shpo.db"')),
         "$.connections[0].database", f"app database {tmp_path / 'shpo.db'} does not exist")
    find(problems_of(base.replace('database = "shop.db"', f'database = "{tmp_path}"')),
         "$.connections[0].database", "is not a regular file")


@pytest.mark.parametrize("doc", [
    "x = " + "[" * 1000 + "]" * 1000,
    "x = " + "{ a = " * 1000 + "1" + " }" * 1000,
    "[hub]\nlimits = " + "[" * 5000,
], ids=["arrays", "inline-tables", "unclosed"])
def test_toml_nested_hundreds_deep_is_a_clear_error(base, problems_of, doc):
    """BUG: a RecursionError traceback out of tomllib in check-config and run."""
    problems = problems_of(doc + "\n" + base)
    assert [(p.path, p.severity) for p in problems] == [("$", "error")], problems
    assert "nested too deeply" in problems[0].message or "not valid TOML" in problems[0].message
