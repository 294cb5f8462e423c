"""An open Store per test, in the test's temporary directory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from crmsync.store import Store


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    with trio.fail_after(10):
        async with Store.open(tmp_path / "state" / "crmsync.db") as s:
            yield s
