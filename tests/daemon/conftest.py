import pytest
import trio.testing


@pytest.fixture
def slow_autojump():
    """Virtual time that jumps once every task has been blocked for 20 ms of real time (see
    harness.py for why not 0)."""
    return trio.testing.MockClock(autojump_threshold=0.02)
