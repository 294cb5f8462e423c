"""`crmsync emulator hubspot` (src/crmsync/cli/emulator.py), run as a process."""

from __future__ import annotations

import argparse
import re
import signal
import subprocess
import sys

import httpx
import pytest
import trio

from crmsync.cli import emulator as cli


def test_parser_defaults_and_options() -> None:
    parser = argparse.ArgumentParser()
    cli.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["emulator", "hubspot"])
    assert (args.host, args.port, args.tier, args.seed, args.records) == (
        "127.0.0.1",
        8765,
        "unlimited",
        0,
        200,
    )
    args = parser.parse_args(
        [
            "emulator",
            "hubspot",
            "--port",
            "9",
            "--token",
            "a",
            "--token",
            "b",
            "--tier",
            "starter",
            "--webhook-url",
            "http://x/h",
            "--webhook-secret",
            "s",
            "--seed",
            "3",
            "--records",
            "10",
        ]
    )
    assert args.tokens == ["a", "b"] and args.tier == "starter" and args.records == 10


def test_webhook_url_needs_a_secret(capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    cli.add_parser(parser.add_subparsers(dest="command"))
    assert cli.run(parser.parse_args(["emulator", "hubspot", "--webhook-url", "http://x/h"])) == 2


@pytest.mark.slow
async def test_serves_a_seeded_account() -> None:
    command = [
        sys.executable,
        "-m",
        "crmsync.cli.emulator",
        "hubspot",
        "--port",
        "0",
        "--records",
        "40",
        "--seed",
        "5",
        "--token",
        "t",
    ]
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            process = await nursery.start(
                lambda task_status: trio.run_process(
                    command, stderr=subprocess.PIPE, check=False, task_status=task_status
                )
            )
            assert process.stderr is not None
            seen = b""
            while (match := re.search(rb"HubSpot emulator on (http://[\d.:]+)", seen)) is None:
                chunk = await process.stderr.receive_some()
                assert chunk, seen
                seen += chunk
            async with httpx.AsyncClient(
                base_url=match.group(1).decode(), headers={"Authorization": "Bearer t"}
            ) as client:
                r = await client.post("/crm/v3/objects/contacts/search", json={"limit": 1})
            process.send_signal(signal.SIGTERM)
    assert r.status_code == 200 and r.json()["total"] == 40
    assert process.returncode == 0
    assert b"seeded account 62515: 1 owners, 10 companies, 40 contacts, 20 deals" in seen
