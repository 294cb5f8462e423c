import pytest
import trio.testing


@pytest.fixture
def slow_autojump():
    """Virtual time that jumps once every task has been blocked for 20 ms of real time: the
    rig's store and app run in worker threads (see tests/daemon/harness.py)."""
    return trio.testing.MockClock(autojump_threshold=0.02)
