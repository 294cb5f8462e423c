# The daemon tests' virtual clock: it jumps once every task has been blocked for 20 ms of
# real time and no worker thread (the store, the SQLite app) is running.
from ..daemon.conftest import slow_autojump

__all__ = ["slow_autojump"]
