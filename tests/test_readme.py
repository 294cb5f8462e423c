"""The README's two set-up commands are what a fresh machine runs; CI must run the same tests."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    head = text.split("## ", 1)[0]
    return re.findall(r"```sh\n(.+?)\n```", head, flags=re.S)


def test_readme_starts_with_exactly_two_commands():
    cmds = _commands()
    assert len(cmds) == 2, cmds
    assert "crmsync" in cmds[0]
    assert "pytest" in cmds[1]


def test_ci_runs_the_readme_test_command():
    test_cmd = _commands()[1]
    ci = (ROOT / ".ci" / "run").read_text()
    # The README creates .venv and installs the test extra, then runs pytest from it.
    assert "pip install -q -e '.[test]'" in test_cmd and "pip install -q -e '.[test]'" in ci
    run_part = test_cmd.split("&&")[-1].strip()
    assert run_part in ci
