"""`crmsync emulator pipedrive` (src/crmsync/cli/emulator.py), parsed and run as a process."""

from __future__ import annotations

import argparse
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import trio

from crmsync.cli import emulator as cli


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli.add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["emulator", "pipedrive", *argv])


def test_parser_defaults_and_options() -> None:
    args = _parse()
    assert (args.port, args.plan, args.seed, args.records, args.seats) == (
        8766,
        "unlimited",
        0,
        200,
        1,
    )
    args = _parse(
        "--port", "9", "--token", "a", "--token", "b", "--plan", "essential",
        "--webhook-url", "http://x/h", "--webhook-user", "u", "--webhook-password-file", "/f",
    )  # fmt: skip
    assert args.tokens == ["a", "b"] and args.plan == "essential" and args.webhook_user == "u"


def test_webhook_credentials_need_a_url_and_a_readable_file(tmp_path: Path) -> None:
    assert cli.run(_parse("--webhook-user", "u")) == 2
    assert (
        cli.run(
            _parse("--webhook-url", "http://x", "--webhook-password-file", str(tmp_path / "no"))
        )
        == 2
    )


@pytest.mark.slow
async def test_serves_a_seeded_company(tmp_path: Path) -> None:
    password = tmp_path / "pw"
    password.write_text("s3cret\n")
    command = [
        sys.executable, "-m", "crmsync.cli.emulator", "pipedrive", "--port", "0",
        "--records", "40", "--seed", "5", "--token", "t", "--plan", "essential",
        "--webhook-url", "http://127.0.0.1:9/none", "--webhook-user", "u",
        "--webhook-password-file", str(password),
    ]  # fmt: skip
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            process = await nursery.start(
                lambda task_status: trio.run_process(
                    command, stderr=subprocess.PIPE, check=False, task_status=task_status
                )
            )
            assert process.stderr is not None
            seen = b""
            while (match := re.search(rb"Pipedrive emulator on (http://[\d.:]+)", seen)) is None:
                chunk = await process.stderr.receive_some()
                assert chunk, seen
                seen += chunk
            async with httpx.AsyncClient(
                base_url=match.group(1).decode(), headers={"x-api-token": "t"}
            ) as client:
                persons = await client.get("/api/v2/persons", params={"limit": 500})
                hooks = await client.get("/v1/webhooks")
            process.send_signal(signal.SIGTERM)
    assert persons.status_code == 200 and len(persons.json()["data"]) == 40
    assert persons.headers["x-ratelimit-limit"] == "20"
    [hook] = hooks.json()["data"]
    assert hook["http_auth_user"] == "u" and hook["http_auth_password"] == "s3cret"
    assert process.returncode == 0
    assert b"seeded company 7654321: 10 organizations, 40 persons, 20 deals" in seen
