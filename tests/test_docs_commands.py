"""The `crmsync` command lines the operator docs show in their shell blocks are ones the CLI
accepts: a renamed option or command fails here, not in an operator's terminal during a
restore."""

import re
import shlex
from pathlib import Path

import pytest

from crmsync.cli.main import build_parser

ROOT = Path(__file__).resolve().parent
DOCS = ["README.md", "docs/backup-and-restore.md", "docs/scaling.md",
        "docs/running-as-a-service.md"]
BLOCK = re.compile(r"```(sh|console)\n(.*?)```", re.S)
# `crmsync` as a command word: at the start (in a console block after the `$ ` prompt; its
# other lines are output), after `sudo` or VAR=value assignments.
COMMAND = {
    "sh": re.compile(r"^(?:sudo\s+)?(?:[A-Z_]+=\S+\s+)*crmsync\s+(.*)$"),
    "console": re.compile(r"^\$\s+(?:sudo\s+)?(?:[A-Z_]+=\S+\s+)*crmsync\s+(.*)$"),
}


def shown_commands(doc: str) -> list[str]:
    text = (ROOT.parent / doc).read_text()
    out = []
    for kind, block in BLOCK.findall(text):
        for line in block.splitlines():
            m = COMMAND[kind].match(line.strip())
            if m:
                # What follows a pipe or a comment is another program's, or prose.
                args = re.split(r"\s[|#]|\s\\$", m.group(1))[0]
                out.append(args.strip())
    return out


@pytest.mark.parametrize("doc", DOCS)
def test_every_crmsync_command_shown_parses(doc):
    commands = shown_commands(doc)
    assert commands, f"{doc} shows no crmsync command: the pattern no longer finds them"
    parser = build_parser()
    for args in commands:
        try:
            parser.parse_args(shlex.split(args))
        except SystemExit:
            pytest.fail(f"{doc}: `crmsync {args}` is not a command line crmsync accepts")


def test_the_restore_docs_show_backup_and_restore_commands():
    shown = shown_commands("docs/backup-and-restore.md") + shown_commands("docs/scaling.md")
    assert any(c.startswith("ctl backup --out ") for c in shown)
    assert any(c.startswith("restore-state --config ") for c in shown)
