"""docs/hubspot-setup.md walks a person through the set-up with a real account: what it tells
them to type must be what crmsync takes, and the scopes it tells them to grant must be what
crmsync asks for and checks."""

from __future__ import annotations

import re
import shlex
import textwrap
from pathlib import Path

import pytest

from crmsync.cli.main import build_parser
from crmsync.config import parse_config
from crmsync.config.model import FieldMapping, ObjectSync
from crmsync.connectors.hubspot.scopes import authorize_scopes, sync_needs

ROOT = Path(__file__).resolve().parent.parent
DOC = (ROOT / "docs" / "hubspot-setup.md").read_text()

# What stands before `crmsync` in the page's command lines: root with the unit's credentials
# directory (step 4), or the worked example's shorthand for it.
_PREFIX = re.compile(r"^(?:\$\s+)?(?:sudo\s+)?(?:CREDENTIALS_DIRECTORY=\S+\s+)?(?:CREDS\s+)?")


def _section(title: str) -> str:
    start = DOC.index(f"## {title}")
    end = DOC.find("\n## ", start + 1)
    return DOC[start:end if end != -1 else None]


def _blocks(text: str) -> list[tuple[str, str]]:
    """The fenced blocks of `text` (indented ones too), as (language, dedented content)."""
    out: list[tuple[str, str]] = []
    lang: str | None = None
    lines: list[str] = []
    for line in text.splitlines():
        fence = line.strip()
        if not fence.startswith("```"):
            if lang is not None:
                lines.append(line)
        elif lang is None:
            lang, lines = fence[3:], []
        else:
            out.append((lang, textwrap.dedent("\n".join(lines))))
            lang = None
    return out


def _command_lines() -> list[str]:
    """Every `crmsync …` the page gives: in shell blocks (continuation lines joined, comments
    dropped), after `$ ` in transcripts, and in inline code outside the blocks."""
    found: list[str] = []
    for lang, block in _blocks(DOC):
        if lang not in ("sh", ""):
            continue
        for line in block.replace("\\\n", " ").splitlines():
            if lang == "" and not line.startswith("$ "):
                continue  # the output of a command
            line = _PREFIX.sub("", line.split(" #", 1)[0].strip())
            if line.startswith("crmsync "):
                found.append(line)
    prose = re.sub(r"```.*?```", "", DOC, flags=re.S)
    for span in re.findall(r"`([^`\n]+)`", prose):
        span = _PREFIX.sub("", span.strip())
        if span.startswith("crmsync ") and span not in found:
            found.append(span)
    return found


def test_the_page_gives_commands():
    commands = _command_lines()
    for wanted in ("crmsync connect hubspot", "crmsync doctor", "crmsync ctl",
                   "crmsync emulator hubspot"):
        assert any(c.startswith(wanted) for c in commands), (wanted, commands)


@pytest.mark.parametrize("command", _command_lines())
def test_every_command_of_the_page_is_one_crmsync_takes(command: str):
    try:
        build_parser().parse_args(shlex.split(command)[1:])
    except SystemExit as exc:
        pytest.fail(f"docs/hubspot-setup.md: `{command}` is refused (exit {exc.code})")


def test_the_worked_example_is_a_valid_configuration_asking_the_scopes_it_lists():
    example = _section("7. Worked example")
    [toml] = [block for lang, block in _blocks(example) if lang == "toml"]
    cfg, _warnings = parse_config(toml, check_host=False)
    # Step 2 tells the person which scopes to give the app; step 4 connects with
    # --create-properties, which asks for exactly these (an authorize URL whose scope lists
    # one the app lacks is refused: hubspot-onboarding.md §1).
    listed = re.search(r"the scopes `([^`]+)`", example)
    assert listed is not None
    assert listed.group(1).split() == authorize_scopes(cfg.syncs, create_properties=True)


@pytest.mark.parametrize("obj", ["contacts", "companies", "deals", "invoices", "line_items"])
def test_the_scope_table_names_what_an_object_sync_needs(obj: str):
    table = _section("2. The scopes to grant")
    [row] = [line for line in table.splitlines()
             if line.startswith("|") and f"`{obj}`" in line.split("|")[1]]
    both = ObjectSync(connection="shop", hub_object=obj, app_object="x")
    for need in sync_needs([both]):
        # The row spells the write scope as "(+ `.write` …)" after the read scope.
        short = need.scope.removeprefix(f"crm.objects.{obj}")
        assert f"`{need.scope}`" in row or f"`{short}`" in row, (need.scope, row)


def test_the_scope_table_names_the_owner_scope():
    table = _section("2. The scopes to grant")
    owners = ObjectSync(connection="shop", hub_object="contacts", app_object="x", mappings=[
        FieldMapping(hub="hubspot_owner_id", app="rep_email", transform="owner")])
    [row] = [line for line in table.splitlines() if "owner mapping" in line]
    extra = {n.scope for n in sync_needs([owners])} - {
        n.scope for n in sync_needs([ObjectSync(connection="shop", hub_object="contacts",
                                                app_object="x")])}
    assert extra and all(f"`{s}`" in row for s in extra), (extra, row)
