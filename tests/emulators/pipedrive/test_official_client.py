"""Conformance with a client nobody here wrote: Pipedrive's official Node client (`pipedrive` on
npm, generated from Pipedrive's OpenAPI files, pinned in tests/emulators/pipedrive_client/)
drives the emulator over loopback through its v2 namespace (and v1 for webhooks and the current
user, and its own OAuth refresh). `conformance.js` checks every answer against the TypeScript
type the client declares for it; this test asserts that nothing failed that check and that the
answers mean what Pipedrive documents.

`.ci/run` installs the client with `npm ci --prefix tests/emulators/pipedrive_client`."""

from __future__ import annotations

import json
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio
from hypercorn.config import Config
from hypercorn.trio import serve

from crmsync.emulators.pipedrive import PipedriveEmulator

CLIENT_DIR = Path(__file__).resolve().parent.parent / "pipedrive_client"


@asynccontextmanager
async def _serving(emu: PipedriveEmulator) -> AsyncIterator[str]:
    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.alpn_protocols = ["http/1.1"]
    config.graceful_timeout = 0.5
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(serve, emu.app, config)
        yield binds[0]
        nursery.cancel_scope.cancel()


async def _run_client(base: str) -> dict[str, Any]:
    node = shutil.which("node")
    assert node, "node (v20+) is needed for the official-client conformance test"
    assert (CLIENT_DIR / "node_modules" / "pipedrive").is_dir(), (
        "the official client is not installed: npm ci --prefix tests/emulators/pipedrive_client"
    )
    result = await trio.run_process(
        [node, str(CLIENT_DIR / "conformance.js"), base, "test-token", "cid", "csecret", "rt-1"],
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode()
    out: dict[str, Any] = json.loads(result.stdout)
    return out


async def test_official_node_client_against_the_emulator() -> None:
    emu = PipedriveEmulator(plan="enterprise", oauth_clients={"cid": ("csecret", "rt-1")})
    emu.seed({"generate": {"organizations": 3, "persons": 24, "deals": 5}, "seed": 1})
    with trio.fail_after(120):
        async with _serving(emu) as base:
            report = await _run_client(base)
    facts = report["facts"]
    # Every answer matched the type the client declares for it.
    assert report["problems"] == []
    assert len(report["calls"]) >= 50
    person = facts["person"]
    assert person["emails"] == [{"value": "node@example.com", "primary": True, "label": "work"}]
    assert person["phones"][0]["label"] == "work"  # label defaults to work (A.3)
    assert facts["updatedPerson"]["name"] == "Node Updated"
    # 25 persons paged 10 at a time with cursors, in id order (A.2).
    assert facts["personPages"] == 3 and facts["personIds"] == list(range(1, 26))
    assert facts["idsList"] == [person["id"]]  # a missing id is left out (A.1)
    assert person["id"] in facts["updatedSince"]
    assert facts["personSearch"] == [person["id"]]
    assert len(facts["orgSearch"]) == 1
    assert facts["pipelineNames"] == ["Pipeline"] and len(facts["stageIds"]) == 1
    assert len(facts["fieldCode"]) == 40 and facts["options"] == ["Gold", "Silver"]
    assert facts["fieldPages"] >= 2
    assert isinstance(facts["customValue"], int)
    deal = facts["deal"]
    assert deal["pipeline_id"] != 1 and deal["stage_id"] == facts["stageIds"][0]
    assert facts["wonDeal"]["status"] == "won" and facts["wonDeal"]["won_time"]
    assert facts["dealSearch"] == [deal["id"]]
    assert facts["archived"] == [deal["id"]] and deal["id"] not in facts["afterArchive"]
    # Errors reach the client as the v2 error envelope (A.7).
    assert facts["notFound"]["success"] is False and facts["notFound"]["data"] is None
    assert facts["strict"]["error"] == "visible_to must be an integer"  # no numbers from strings
    assert facts["webhookIds"] == [1] and facts["me"] == 1
    assert facts["deletedPerson"] is True
    # The client's OAuth refresh adopts api_domain as its base (A.5).
    assert facts["oauthBasePath"] == f"{base}/api/v2"
    assert facts["oauthExpiresIn"] == 3599 and facts["oauthPersons"] == 1
    assert emu.auth.refresh_count == 1
