"""kill -9 at any moment leaves the state database whole and at a committed prefix.

A writer subprocess commits numbered batches in a loop through crmsync.store — each batch one
transaction of index rows, inbox events and the cursor naming the batch — and announces
`begin N` once inside the transaction and `commit N` after it. The test kills it with SIGKILL
and then checks: the database opens, `PRAGMA integrity_check` is ok, the committed state is
exactly batches 1..B with every batch complete, no batch the writer acknowledged is lost, and
the next writer resumes from B. Ten seeded rounds per store API (the sync
`connect`/`transaction` one and `Store` under Trio), real processes and the real clock, bounded
by `fail_after`.

Half the rounds kill the writer right after a seeded number of `begin` lines, wherever it has
got to by then — mid-write, mid-commit or already past the commit: where a real-time kill lands
depends on how busy the machine is. The other half stop the writer at a seeded step inside a
seeded batch's transaction (it says `inside N` and waits) and kill it there, so that every
such round is certainly a kill in the middle of a transaction, however the processes are
scheduled.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from crmsync.store import connect

WRITER = r'''
import os
import sys

from crmsync.store import Store, connect, transaction
from crmsync.store import cursors, inbox
from crmsync.store.items import IndexRow, index_records

SYNC = "crash/contacts"
mode, db = sys.argv[1], sys.argv[2]
# Stop inside batch `stop_at`'s transaction after `stop_step` of its writes (0: none yet,
# 4: all of them, the commit not begun); 0: never stop.
stop_at, stop_step = int(sys.argv[3]), int(sys.argv[4])


def size(n):
    return 150 + (n * 7919) % 250


def say(line):
    os.write(1, (line + "\n").encode())


def last(conn):
    v = cursors.get_cursor(conn, SYNC, "batch")
    return int(v) if v else 0


def stop_here(n, step):
    if n == stop_at and step == stop_step:
        say(f"inside {n}")
        os.read(0, 1)  # until the test kills us (or goes away: end of file)
        sys.exit("the test went away")


def write_batch(conn, n):
    say(f"begin {n}")
    rows = [IndexRow(f"b{n}-r{i}", (f"k{n}-{i}",), str(n)) for i in range(size(n))]
    half = len(rows) // 2
    stop_here(n, 0)
    index_records(conn, SYNC, "hub", rows[:half])
    stop_here(n, 1)
    inbox.add_events(conn, "crash", [(f"{n}-{j}", os.urandom(2048)) for j in range(8)])
    stop_here(n, 2)
    index_records(conn, SYNC, "hub", rows[half:])
    stop_here(n, 3)
    cursors.set_cursor(conn, SYNC, "batch", str(n))
    stop_here(n, 4)


if mode == "sync":
    conn = connect(db)
    with transaction(conn, write=False):
        n = last(conn)
    say(f"ready {n}")
    while True:
        n += 1
        with transaction(conn):
            write_batch(conn, n)
        say(f"commit {n}")
else:
    import trio

    async def main():
        async with Store.open(db) as store:
            n = await store.read(last)
            say(f"ready {n}")
            while True:
                n += 1
                await store.call(write_batch, n)
                say(f"commit {n}")

    trio.run(main)
'''

ROUNDS = 10


def size(n: int) -> int:
    return 150 + (n * 7919) % 250


def verify(db: Path) -> int:
    """Open the database after a crash, check it, and return the last committed batch."""
    conn = connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        cursor = conn.execute("SELECT value FROM cursors WHERE sync_id = 'crash/contacts' "
                              "AND name = 'batch'").fetchone()
        last = int(cursor[0]) if cursor else 0
        items = dict(conn.execute(
            "SELECT CAST(substr(hub_id, 2, instr(hub_id, '-') - 2) AS INTEGER) AS b, count(*) "
            "FROM items WHERE sync_id = 'crash/contacts' GROUP BY b").fetchall())
        keys = conn.execute("SELECT count(*) FROM match_keys "
                            "WHERE sync_id = 'crash/contacts'").fetchone()[0]
        events = dict(conn.execute(
            "SELECT CAST(substr(event_key, 1, instr(event_key, '-') - 1) AS INTEGER) AS b, "
            "count(*) FROM inbox WHERE source = 'crash' GROUP BY b").fetchall())
    finally:
        conn.close()
    # Exactly batches 1..last, each complete: no partial batch, nothing after the cursor.
    assert items == {n: size(n) for n in range(1, last + 1)}, (last, items)
    assert events == dict.fromkeys(range(1, last + 1), 8), (last, events)
    assert keys == sum(items.values())
    return last


async def kill_writer(script: Path, mode: str, db: Path, after: bytes,
                      stop: tuple[int, int] = (0, 0)) -> list[str]:
    """Run a writer (stopping inside batch `stop[0]` after `stop[1]` writes, if `stop[0]`),
    SIGKILL it as soon as it has printed `after`; return all it printed."""
    proc = await trio.lowlevel.open_process(
        [sys.executable, str(script), mode, str(db), *map(str, stop)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None
    out = b""
    try:
        while b"\n" + after not in out:
            chunk = await proc.stdout.receive_some(65536)
            assert chunk, f"writer exited early: {out.decode()!r}"
            out += chunk
        proc.send_signal(signal.SIGKILL)
        assert await proc.wait() == -signal.SIGKILL
        while chunk := await proc.stdout.receive_some(65536):
            out += chunk
    finally:
        if proc.returncode is None:
            proc.kill()
            with trio.CancelScope(shield=True):
                await proc.wait()
        await proc.stdin.aclose()
        await proc.stdout.aclose()
    return out.decode().splitlines()


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["sync", "trio"])
async def test_sigkill_mid_transaction_leaves_a_committed_prefix(tmp_path, mode):
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    db = tmp_path / "state.db"
    rng = random.Random(f"crash-{mode}")
    committed = 0
    for round_ in range(ROUNDS):
        stopped = round_ % 2 == 1
        if stopped:
            stop = (committed + rng.randint(1, 12), rng.randint(0, 4))
            after = f"inside {stop[0]}\n".encode()
        else:
            stop = (0, 0)
            after = f"begin {committed + rng.randint(1, 12)}\n".encode()
        # A hang guard only: starting Python on a busy machine takes seconds.
        with trio.fail_after(60):
            lines = await kill_writer(script, mode, db, after, stop)
            last = await trio.to_thread.run_sync(verify, db)
        assert lines[0] == f"ready {committed}"  # resumed from the last committed batch
        acked = [int(ln.split()[1]) for ln in lines if ln.startswith("commit ")]
        begun = [int(ln.split()[1]) for ln in lines if ln.startswith("begin ")]
        # No acknowledged commit is lost, and nothing is there that never began.
        assert max(acked, default=committed) <= last <= max(begun)
        if stopped:
            # Killed inside batch stop[0]'s transaction: none of it is there, all before is.
            assert last == stop[0] - 1 == max(begun) - 1, (stop, last, begun)
        committed = last
    assert committed > 0

