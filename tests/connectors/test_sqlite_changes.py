"""Change capture of the SQLite app connector: triggers fed by another connection (standing for
the app), collapsing, paging, cursors across reopening, echoes, pruning, removal."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from crmsync.config.model import SqliteConnection, SqliteTable
from crmsync.connectors.base import Changes, ConnectorError
from crmsync.connectors.sqlite import SqliteAppConnector, remove_change_capture

LIMIT = 10
LOG = "crmsync_changelog"


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "app.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=wal")
    conn.executescript("""
        CREATE TABLE customers (
            id INTEGER PRIMARY KEY,
            email TEXT UNIQUE,
            name TEXT,
            notes TEXT,
            updated_at TEXT
        );
        CREATE TABLE organisations (id INTEGER PRIMARY KEY, name TEXT, updated_at INTEGER);
        INSERT INTO customers (email, name) VALUES ('old@example.com', 'Old');
    """)
    conn.close()
    return path


def app(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None)


def settings(db: Path, batch_size: int = 500, columns: list[str] | None = None,
             ) -> SqliteConnection:
    return SqliteConnection(
        name="shop", database=str(db), batch_size=batch_size,
        tables=[SqliteTable(object="customers", table="customers", columns=columns or []),
                SqliteTable(object="organisations", table="organisations")])


@asynccontextmanager
async def opened(s: SqliteConnection, **kw: Any) -> AsyncIterator[SqliteAppConnector]:
    async with SqliteAppConnector(s, clock=lambda: 1_700_000_000.0, **kw).open() as c:
        yield c


def summary(ch: Changes) -> dict[str, Any]:
    return {r.id: ("deleted" if r.archived else r.properties.get("name"))
            for r in ch.records}


async def test_none_starts_from_the_current_end(db: Path) -> None:
    with trio.fail_after(LIMIT):
        async with opened(settings(db)) as c:
            app(db).execute("INSERT INTO customers (email, name) VALUES ('a@x.com', 'A')")
            start = await c.changes_since("customers", None, [])
            assert start.records == [] and start.cursor == "1" and not start.more
            again = await c.changes_since("customers", start.cursor, [])
            assert again.records == [] and again.cursor == "1"


async def test_triggers_capture_the_apps_inserts_updates_and_deletes(db: Path) -> None:
    with trio.fail_after(LIMIT):
        async with opened(settings(db)) as c:
            start = (await c.changes_since("customers", None, [])).cursor
            a = app(db)
            a.execute("INSERT INTO customers (email, name) VALUES ('a@x.com', 'A')")  # id 2
            a.execute("UPDATE customers SET name = 'A2' WHERE id = 2")
            a.execute("UPDATE customers SET name = 'A3' WHERE id = 2")
            a.execute("UPDATE customers SET name = 'Older' WHERE id = 1")
            a.execute("INSERT INTO customers (email, name) VALUES ('b@x.com', 'B')")  # id 3
            a.execute("DELETE FROM customers WHERE id = 3")
            a.execute("INSERT INTO organisations (name) VALUES ('Acme')")
            ch = await c.changes_since("customers", start, ["name", "email"])
            # One record per id, in the order of each one's last change; current values.
            assert summary(ch) == {"2": "A3", "1": "Older", "3": "deleted"}
            assert [r.id for r in ch.records] == ["2", "1", "3"]
            assert ch.records[0].properties == {"name": "A3", "email": "a@x.com"}
            deleted = ch.records[2]
            assert deleted.properties == {} and deleted.updated_at > 0
            assert not ch.more
            # The cursor covers the organisations entry too: nothing for customers up to it.
            assert ch.cursor == "7"
            orgs = await c.changes_since("organisations", start, [])
            assert [r.properties["name"] for r in orgs.records] == ["Acme"]
            assert (await c.changes_since("customers", ch.cursor, [])).records == []


async def test_a_delete_then_reinsert_of_the_same_id_is_the_current_row(db: Path) -> None:
    with trio.fail_after(LIMIT):
        async with opened(settings(db)) as c:
            start = (await c.changes_since("customers", None, [])).cursor
            a = app(db)
            a.execute("DELETE FROM customers WHERE id = 1")
            a.execute("INSERT INTO customers (id, email, name) VALUES (1, 'n@x.com', 'New')")
            ch = await c.changes_since("customers", start, [])
    assert summary(ch) == {"1": "New"}


async def test_a_reused_id_is_a_new_incarnation_in_every_read(db: Path) -> None:
    # Issue 17 item 1: SQLite gives a deleted row's id to the next insert (no AUTOINCREMENT);
    # the row that takes it must not pass for the one deleted.
    with trio.fail_after(LIMIT):
        async with opened(settings(db)) as c:
            start = (await c.changes_since("customers", None, [])).cursor
            a = app(db)
            old = (await c.read("customers", ["1"], []))["1"]
            assert old.incarnation == "0"  # older than change capture
            [made] = await c.create("customers", [{"email": "m@x.com", "name": "Made"}])
            assert made.record is not None and made.record.incarnation not in ("", "0")
            mid = made.record.id
            a.execute("UPDATE customers SET name = 'Edited' WHERE id = ?", (mid,))
            got = await c.read("customers", [mid], [])
            assert got[mid].incarnation == made.record.incarnation  # an update keeps it
            a.execute("DELETE FROM customers WHERE id = ?", (mid,))
            a.execute("INSERT INTO customers (email, name) VALUES ('r@x.com', 'Edited')")
            a.execute("DELETE FROM customers WHERE id = 1")
            a.execute("INSERT INTO customers (id, email, name) VALUES (1, 'n@x.com', 'New')")
            reads = await c.read("customers", ["1", mid], [])
            scanned = {r.id: r for r in (await c.scan("customers", None, [])).records}
            found = await c.find("customers", "email", "r@x.com", [])
            changed = {r.id: r for r in
                       (await c.changes_since("customers", start, [])).records}
            [refused] = await c.update("customers", [(mid, {"name": "Old values"})],
                                       expected=[got[mid]])
    assert reads[mid].properties["email"] == "r@x.com"
    assert reads[mid].incarnation not in ("0", made.record.incarnation)
    assert reads["1"].incarnation not in ("0", reads[mid].incarnation)
    for rid in ("1", mid):
        assert scanned[rid].incarnation == changed[rid].incarnation == reads[rid].incarnation
    assert [r.incarnation for r in found] == [reads[mid].incarnation]
    # A conditional update made for the deleted record does not touch the new one, even
    # though the column it checks holds the same value.
    assert refused.error is not None and refused.error.stale
    assert app(db).execute("SELECT name FROM customers WHERE id = ?", (mid,)).fetchone() == \
        ("Edited",)


async def test_a_changed_primary_key_deletes_the_old_id(db: Path) -> None:
    with trio.fail_after(LIMIT):
        async with opened(settings(db)) as c:
            start = (await c.changes_since("customers", None, [])).cursor
            app(db).execute("UPDATE customers SET id = 50 WHERE id = 1")
            ch = await c.changes_since("customers", start, [])
    assert summary(ch) == {"1": "deleted", "50": "Old"}


async def test_changes_to_columns_crmsync_does_not_read_are_not_logged(db: Path) -> None:
    with trio.fail_after(LIMIT):
        async with opened(settings(db, columns=["email", "name"])) as c:
            start = (await c.changes_since("customers", None, [])).cursor
            a = app(db)
            a.execute("UPDATE customers SET notes = 'private' WHERE id = 1")
            a.execute("UPDATE customers SET name = name WHERE id = 1")
            assert (await c.changes_since("customers", start, [])).records == []
            a.execute("UPDATE customers SET name = 'Renamed' WHERE id = 1")
            ch = await c.changes_since("customers", start, [])
    assert summary(ch) == {"1": "Renamed"}
    assert set(ch.records[0].properties) == {"email", "name"}


async def test_pages_hit_the_limit_with_more(db: Path) -> None:
    with trio.fail_after(LIMIT):
        async with opened(settings(db, batch_size=2)) as c:
            cursor = (await c.changes_since("customers", None, [])).cursor
            a = app(db)
            for i in range(5):
                a.execute("INSERT INTO customers (email, name) VALUES (?, ?)",
                          (f"p{i}@x.com", f"P{i}"))
            seen: list[str] = []
            pages = 0
            while True:
                ch = await c.changes_since("customers", cursor, ["name"])
                pages += 1
                seen += [r.properties["name"] for r in ch.records]
                cursor = ch.cursor
                if not ch.more:
                    break
    assert seen == ["P0", "P1", "P2", "P3", "P4"]
    assert pages == 3


async def test_the_cursor_resumes_after_reopening(db: Path) -> None:
    with trio.fail_after(LIMIT):
        async with opened(settings(db)) as c:
            cursor = (await c.changes_since("customers", None, [])).cursor
            app(db).execute("INSERT INTO customers (email, name) VALUES ('a@x.com', 'A')")
            first = await c.changes_since("customers", cursor, [])
            assert summary(first) == {"2": "A"}
            committed = first.cursor
        # crmsync is down; the app keeps writing and the triggers keep logging.
        a = app(db)
        a.execute("INSERT INTO customers (email, name) VALUES ('b@x.com', 'B')")
        a.execute("UPDATE customers SET name = 'A2' WHERE id = 2")
        async with opened(settings(db)) as c:
            later = await c.changes_since("customers", committed, [])
    assert summary(later) == {"3": "B", "2": "A2"}


async def test_own_writes_come_back_as_echoes_by_default(db: Path) -> None:
    with trio.fail_after(LIMIT):
        async with opened(settings(db)) as c:
            start = (await c.changes_since("customers", None, [])).cursor
            await c.create("customers", [{"email": "mine@x.com", "name": "Mine"}])
            app(db).execute("UPDATE customers SET name = 'Theirs' WHERE id = 1")
            ch = await c.changes_since("customers", start, [])
    assert summary(ch) == {"2": "Mine", "1": "Theirs"}
    origins = app(db).execute(f"SELECT record_id, origin FROM {LOG} ORDER BY seq").fetchall()
    assert origins == [("2", "crmsync"), ("1", None)]


async def test_echo_suppression_keeps_records_the_app_also_changed(db: Path) -> None:
    with trio.fail_after(LIMIT):
        async with opened(settings(db), suppress_echoes=True) as c:
            start = (await c.changes_since("customers", None, [])).cursor
            await c.create("customers", [{"email": "mine@x.com", "name": "Mine"},
                                         {"email": "both@x.com", "name": "Both"}])
            await c.update("customers", [("1", {"name": "Ours"})])
            app(db).execute("UPDATE customers SET name = 'App' WHERE id = 3")
            ch = await c.changes_since("customers", start, [])
            assert summary(ch) == {"3": "App"}
            assert ch.cursor == "4"


async def test_the_log_tells_an_edit_after_our_write_from_one_before_it(db: Path) -> None:
    # After a crash, a record holding neither what crmsync read nor what it wrote was changed
    # either before crmsync's conditional update (refused) or after it landed: the log says.
    with trio.fail_after(LIMIT):
        async with opened(settings(db)) as c:
            await c.create("customers", [{"email": "two@x.com", "name": "Two"}])
            rows = await c.read("customers", ["1", "2"], [])
            position = await c.log_position()
            # Row 1: the app edits it first; our update, conditional on the old value, is
            # refused; then crmsync writes the row again (say, its foreign key).
            app(db).execute("UPDATE customers SET name = 'App first' WHERE id = 1")
            (refused,) = await c.update("customers", [("1", {"name": "Ours"})], [rows["1"]])
            assert refused.error is not None and refused.error.stale
            await c.update("customers", [("1", {"notes": "ours too"})])
            # Row 2: our update lands, then the app edits the row.
            (landed,) = await c.update("customers", [("2", {"name": "Ours"})], [rows["2"]])
            assert landed.ok
            app(db).execute("UPDATE customers SET name = 'App after' WHERE id = 2")
            assert await c.written_then_changed("customers", ["1", "2"], position) == {"2"}
            # Nothing of ours after a later position.
            later = await c.log_position()
            assert await c.written_then_changed("customers", ["1", "2"], later) == set()


async def test_prune_deletes_what_every_reader_passed(db: Path) -> None:
    with trio.fail_after(LIMIT):
        async with opened(settings(db)) as c:
            start = (await c.changes_since("customers", None, [])).cursor
            a = app(db)
            for i in range(4):
                a.execute("INSERT INTO customers (email) VALUES (?)", (f"p{i}@x.com",))
            ch = await c.changes_since("customers", start, [])
            assert await c.prune_changelog("2") == 2
            assert a.execute(f"SELECT min(seq), count(*) FROM {LOG}").fetchone() == (3, 2)
            assert await c.prune_changelog(ch.cursor) == 2
            assert await c.prune_changelog(ch.cursor) == 0
            # The sequence goes on after an empty log; cursors stay valid.
            a.execute("INSERT INTO customers (email) VALUES ('after@x.com')")
            after = await c.changes_since("customers", ch.cursor, ["email"])
            assert [r.properties["email"] for r in after.records] == ["after@x.com"]
            assert after.cursor == "5"


async def test_bad_cursors_are_refused(db: Path) -> None:
    with trio.fail_after(LIMIT):
        async with opened(settings(db)) as c:
            for bad in ("abc", "-1", "999"):
                with pytest.raises(ConnectorError) as info:
                    await c.changes_since("customers", bad, [])
                assert info.value.kind == "config"
            with pytest.raises(ConnectorError):
                await c.prune_changelog("later")


async def test_a_log_entry_naming_an_impossible_id_reads_as_a_deleted_record(db: Path) -> None:
    """Anyone may write to the change log; an entry whose id no integer key can hold (beyond
    SQLite's 64 bits) must not fail the page the other changes are in."""
    with trio.fail_after(LIMIT):
        async with opened(settings(db)) as c:
            start = await c.changes_since("customers", None, [])
            a = app(db)
            a.execute(f"INSERT INTO {LOG} (object, record_id, op, at) "
                      "VALUES ('customers', '9223372036854775808', 'update', 0)")
            a.execute("UPDATE customers SET name = 'Changed' WHERE email = 'old@example.com'")
            a.execute("UPDATE customers SET notes = CAST(x'ff' AS TEXT) "
                      "WHERE email = 'old@example.com'")
            ch = await c.changes_since("customers", start.cursor, [])
    assert summary(ch) == {"9223372036854775808": "deleted", "1": "Changed"}
    assert [r.properties.get("notes") for r in ch.records if not r.archived] == ["\ufffd"]


async def test_removing_change_capture_stops_logging(db: Path) -> None:
    with trio.fail_after(LIMIT):
        async with opened(settings(db)):
            pass
    a = app(db)
    a.execute("BEGIN IMMEDIATE")
    assert remove_change_capture(a, LOG, drop_log=True) == 6
    a.execute("COMMIT")
    a.execute("INSERT INTO customers (email) VALUES ('free@x.com')")
    assert a.execute("SELECT count(*) FROM sqlite_master WHERE name LIKE 'crmsync%'"
                     ).fetchone()[0] == 0
