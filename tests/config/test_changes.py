"""`[hub] changes = "webhooks" | "journal" | "poll"`: what each intake mode needs, checked with
its `$.path`; settings another mode ignores are warned about."""

from __future__ import annotations

import pytest

from crmsync.config import parse_config
from crmsync.config.model import JOURNAL_SCOPES

JOURNAL = """
[hub.journal]
client_id = "0000-app"
client_secret_env = "CRMSYNC_TEST_JOURNAL_SECRET"
"""


def with_changes(base: str, mode: str, journal: str = "") -> str:
    text = base.replace('[hub]\ntier = "professional"\n',
                        f'[hub]\ntier = "professional"\nchanges = "{mode}"\n')
    return text.replace("[[connections]]", journal + "\n[[connections]]", 1)


def warnings(problems):
    return [p for p in problems if p.severity == "warning"]


def test_webhooks_is_the_default(base):
    cfg, _ = parse_config(base, check_host=False)
    assert cfg.hub.changes == "webhooks" and cfg.hub.journal is None


def test_journal_with_its_client_credentials(base, problems_of, error_paths, monkeypatch):
    monkeypatch.setenv("CRMSYNC_TEST_JOURNAL_SECRET", "journal-secret")
    text = with_changes(base, "journal", JOURNAL)
    assert error_paths(problems_of(text)) == set()
    cfg, _ = parse_config(text, check_host=False)
    assert cfg.hub.changes == "journal"
    assert cfg.hub.journal is not None and cfg.hub.journal.client_id == "0000-app"
    # The spec's scope names by default (hubspot-onboarding.md §3: spec and docs differ).
    assert cfg.hub.journal.scopes == list(JOURNAL_SCOPES)
    assert "webhooks-journal-data-access" in cfg.hub.journal.scopes


def test_journal_without_its_table(base, problems_of, find, error_paths):
    problems = problems_of(with_changes(base, "journal"))
    find(problems, "$.hub.journal", "[hub.journal]", "client_id", "client_secret")
    assert error_paths(problems) == {"$.hub.journal"}


def test_journal_secret_not_set(base, problems_of, find, error_paths):
    problems = problems_of(with_changes(base, "journal", JOURNAL))
    find(problems, "$.hub.journal.client_secret_env", "CRMSYNC_TEST_JOURNAL_SECRET", "not set")
    assert error_paths(problems) == {"$.hub.journal.client_secret_env"}


def test_journal_secret_missing(base, problems_of, find):
    journal = JOURNAL.replace('client_secret_env = "CRMSYNC_TEST_JOURNAL_SECRET"\n', "")
    find(problems_of(with_changes(base, "journal", journal)),
         "$.hub.journal.client_secret_env", "missing secret")


def test_journal_secret_missing_even_without_checking_the_host(base):
    journal = JOURNAL.replace('client_secret_env = "CRMSYNC_TEST_JOURNAL_SECRET"\n', "")
    with pytest.raises(Exception, match=r"\$\.hub\.journal\.client_secret_env"):
        parse_config(with_changes(base, "journal", journal), check_host=False)


def test_journal_without_client_id(base, problems_of, find, monkeypatch):
    monkeypatch.setenv("CRMSYNC_TEST_JOURNAL_SECRET", "journal-secret")
    journal = JOURNAL.replace('client_id = "0000-app"\n', "")
    find(problems_of(with_changes(base, "journal", journal)), "$.hub.journal.client_id",
         "missing")


@pytest.mark.parametrize(("line", "path"), [
    ("batch_size = 101", "$.hub.journal.batch_size"),
    ("poll_interval_seconds = 0", "$.hub.journal.poll_interval_seconds"),
    ("portal_id = -1", "$.hub.journal.portal_id"),
    ("scopes = []", "$.hub.journal.scopes"),
    ("max_file_bytes = 0", "$.hub.journal.max_file_bytes"),
    ("target_url = \"https://x\"", "$.hub.journal.target_url"),
])
def test_journal_settings_are_checked(base, problems_of, error_paths, monkeypatch, line, path):
    monkeypatch.setenv("CRMSYNC_TEST_JOURNAL_SECRET", "journal-secret")
    problems = problems_of(with_changes(base, "journal", JOURNAL + line + "\n"))
    assert error_paths(problems) == ({path} if path else set())


def test_an_unknown_mode_is_named(base, problems_of, find, error_paths):
    problems = problems_of(with_changes(base, "push"))
    find(problems, "$.hub.changes", "'push'", "'journal'", "'poll'", "'webhooks'")
    assert error_paths(problems) == {"$.hub.changes"}


def test_poll_needs_nothing_and_ignores_a_webhook_secret(base, problems_of, error_paths, edit):
    assert error_paths(problems_of(with_changes(base, "poll"))) == set()
    text = edit(with_changes(base, "poll"), "[hub]",
                'webhook_client_secret_env = "CRMSYNC_TEST_HUB_TOKEN"')
    problems = problems_of(text)
    assert error_paths(problems) == set()
    assert [p.path for p in warnings(problems)] == ["$.hub.changes"]
    assert "ignored" in warnings(problems)[0].message


def test_a_journal_table_in_another_mode_is_ignored_with_a_warning(base, problems_of,
                                                                   error_paths):
    problems = problems_of(with_changes(base, "webhooks", JOURNAL))
    assert error_paths(problems) == set()
    assert [p.path for p in warnings(problems)] == ["$.hub.journal"]
