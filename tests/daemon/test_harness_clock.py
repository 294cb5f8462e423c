"""The daemon tests' clock (`slow_autojump`): virtual time never passes while a worker thread —
the store's, the SQLite app's — is still working, however slow a busy machine makes it."""

import time

import pytest
import trio

from .conftest import AUTOJUMP_THRESHOLD


async def test_virtual_time_stands_still_while_a_worker_thread_runs(slow_autojump):
    fired: list[float] = []

    async def timer() -> None:
        await trio.sleep(1)
        fired.append(trio.current_time())

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(timer)
            start = trio.current_time()
            # A thread ten times slower than the autojump threshold, as a store write is
            # when the machine's cores are busy elsewhere.
            await trio.to_thread.run_sync(time.sleep, 10 * AUTOJUMP_THRESHOLD)
            assert trio.current_time() == start and fired == []
            # Once nothing runs, time jumps again: the timer fires on its own deadline.
            await trio.sleep(2)
            assert fired == [pytest.approx(start + 1)]
