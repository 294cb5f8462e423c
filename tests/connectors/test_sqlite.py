"""The SQLite app connector against real SQLite files: opening, describe, scan / read, writes
with per-row failures, find. Change capture is in test_sqlite_changes.py, pipelines,
associations and events in test_sqlite_relations.py.

The "app" is a plain sqlite3 connection to the same file, as the app's own process would be.
Every test that touches the database runs under `trio.fail_after`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from crmsync.config.model import SqliteAssociation, SqliteConnection, SqliteTable
from crmsync.connectors.base import Connector, ConnectorError
from crmsync.connectors.sqlite import SqliteAppConnector, parse_timestamp
from crmsync.connectors.sqlite.schema import TimestampStyle

NOW = 1_700_000_000.25  # 2023-11-14T22:13:20.250Z
LIMIT = 10  # seconds; every database test finishes in milliseconds

SCHEMA = """
CREATE TABLE organisations (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    domain TEXT,
    updated_at INTEGER
);
CREATE TABLE customers (
    id INTEGER PRIMARY KEY,
    email TEXT UNIQUE,
    first_name TEXT,
    last_name TEXT NOT NULL DEFAULT '',
    age INTEGER CHECK (age IS NULL OR age >= 0),
    company_id INTEGER REFERENCES organisations(id),
    full_name TEXT GENERATED ALWAYS AS (first_name || ' ' || last_name) VIRTUAL,
    updated_at TEXT
);
CREATE TABLE opportunities (
    id TEXT PRIMARY KEY,
    title TEXT,
    amount REAL,
    updated_at REAL
);
"""


def make_db(path: Path, journal: str = "wal") -> Path:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(f"PRAGMA journal_mode={journal}")
    conn.executescript(SCHEMA)
    conn.close()
    return path


def app(path: Path) -> sqlite3.Connection:
    """The app's own connection (autocommit)."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA foreign_keys=ON")
    return conn


def settings(db: Path, batch_size: int = 500, **overrides: Any) -> SqliteConnection:
    fields: dict[str, Any] = {
        "name": "shop",
        "database": str(db),
        "batch_size": batch_size,
        "tables": [
            SqliteTable(object="customers", table="customers"),
            SqliteTable(object="organisations", table="organisations"),
            SqliteTable(object="opportunities", table="opportunities"),
        ],
    }
    fields.update(overrides)
    return SqliteConnection(**fields)


@asynccontextmanager
async def opened(s: SqliteConnection, **kw: Any) -> AsyncIterator[SqliteAppConnector]:
    async with SqliteAppConnector(s, clock=lambda: NOW, **kw).open() as c:
        yield c


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return make_db(tmp_path / "app.db")


def seed_customers(path: Path, n: int) -> None:
    a = app(path)
    a.executemany(
        "INSERT INTO customers (id, email, first_name, last_name, updated_at) "
        "VALUES (?, ?, ?, ?, ?)",
        [(i, f"c{i}@example.com", f"First{i}", f"Last{i}", "2024-05-01T12:00:00.000Z")
         for i in range(1, n + 1)])
    a.close()


# --- opening -------------------------------------------------------------------------------


async def test_open_installs_triggers_once_and_is_a_connector(db: Path) -> None:
    with trio.fail_after(LIMIT):
        async with opened(settings(db)) as c:
            assert isinstance(c, Connector)
            stats = c.statistics()
            assert stats.open and stats.journal_mode == "wal"
            assert stats.triggers_changed == 9  # insert/update/delete on three tables
            assert c.capabilities.change_log and c.capabilities.polling
            assert not c.capabilities.webhooks
            assert c.capabilities.write_batch_size == 500
        assert not c.statistics().open
        version = app(db).execute("PRAGMA schema_version").fetchone()[0]
        async with opened(settings(db)) as c:
            assert c.statistics().triggers_changed == 0
        # Re-opening left the app's schema untouched.
        assert app(db).execute("PRAGMA schema_version").fetchone()[0] == version


async def test_open_brings_triggers_in_line_with_a_changed_configuration(db: Path) -> None:
    with trio.fail_after(LIMIT):
        async with opened(settings(db)):
            pass
        fewer = settings(db, tables=[SqliteTable(object="customers", table="customers",
                                                 columns=["email"])])
        async with opened(fewer) as c:
            # customers' update trigger replaced, six triggers of two dropped tables gone
            assert c.statistics().triggers_changed == 2 + 6
        names = {r[0] for r in app(db).execute(
            "SELECT name FROM sqlite_master WHERE type = 'trigger'")}
        assert names == {f"crmsync_changelog:object:customers:{op}"
                         for op in ("insert", "update", "delete")}


async def test_webhook_capability_follows_the_secret(db: Path) -> None:
    c = SqliteAppConnector(settings(db, webhook_secret_env="SHOP_SECRET"))
    assert c.capabilities.webhooks


async def test_journal_mode_is_left_alone(tmp_path: Path) -> None:
    path = make_db(tmp_path / "rollback.db", journal="delete")
    with trio.fail_after(LIMIT):
        async with opened(settings(path)) as c:
            assert c.statistics().journal_mode == "delete"
            [res] = await c.create("customers", [{"email": "a@example.com"}])
            assert res.ok
            app(path).execute("INSERT INTO customers (email) VALUES ('b@example.com')")
            page = await c.scan("customers", None, ["email"])
            assert [r.properties["email"] for r in page.records] == ["a@example.com",
                                                                     "b@example.com"]
    assert app(path).execute("PRAGMA journal_mode").fetchone()[0] == "delete"


@pytest.mark.parametrize(("change", "expected"), [
    ({"database": "missing.db"}, "cannot be opened"),
    ({"tables": [SqliteTable(object="x", table="nope")]}, "no such table"),
    ({"tables": [SqliteTable(object="x", table="customers", columns=["email", "mail"])]},
     "mail"),
    ({"tables": [SqliteTable(object="x", table="customers", updated_at_column="changed")]},
     "changed"),
    ({"tables": [SqliteTable(object="x", table="customers", primary_key="first_name")]},
     "unique"),
    ({"associations": [SqliteAssociation(from_object="customers", to_object="deals",
                                         column="company_id")]}, "deals"),
    ({"associations": [SqliteAssociation(from_object="customers", to_object="organisations",
                                         column="org")]}, "org"),
])
async def test_open_refuses_a_configuration_that_does_not_fit(
        db: Path, change: dict[str, Any], expected: str) -> None:
    if "database" in change:
        change = {"database": str(db.parent / change["database"])}
    c = SqliteAppConnector(settings(db, **change))
    with trio.fail_after(LIMIT), pytest.raises(ConnectorError) as info:
        await c.open()
    assert info.value.kind == "config"
    assert expected in info.value.message
    assert not (db.parent / "missing.db").exists()  # never creates the app's database


async def test_calls_need_an_open_connector(db: Path) -> None:
    c = SqliteAppConnector(settings(db))
    with pytest.raises(RuntimeError, match="not open"):
        await c.scan("customers", None, [])
    with trio.fail_after(LIMIT):
        await c.open()
        await c.aclose()
        await c.aclose()
    with pytest.raises(RuntimeError, match="not open"):
        await c.read("customers", ["1"], [])


async def test_unknown_object_is_a_config_error(db: Path) -> None:
    with trio.fail_after(LIMIT):
        async with opened(settings(db)) as c:
            with pytest.raises(ConnectorError) as info:
                await c.scan("invoices", None, [])
            assert info.value.kind == "config"


async def test_a_table_dropped_under_the_connector_is_a_config_error(db: Path) -> None:
    with trio.fail_after(LIMIT):
        async with opened(settings(db)) as c:
            app(db).execute("DROP TABLE opportunities")
            with pytest.raises(ConnectorError) as info:
                await c.read("opportunities", ["a"], [])
            assert info.value.kind == "config"
            assert "no such table" in info.value.message


# --- describe, scan, read ------------------------------------------------------------------


async def test_describe(db: Path) -> None:
    with trio.fail_after(LIMIT):
        async with opened(settings(db)) as c:
            info = await c.describe("customers")
    fields = {f.name: f for f in info.fields}
    assert list(fields) == ["id", "email", "first_name", "last_name", "age", "company_id",
                            "full_name", "updated_at"]
    assert info.updated_at_field == "updated_at"
    assert fields["email"].unique and not fields["first_name"].unique
    assert fields["age"].type == "number" and fields["email"].type == "string"
    assert fields["id"].read_only and fields["updated_at"].read_only
    assert fields["full_name"].read_only and not fields["email"].read_only


async def test_scan_pages_in_primary_key_order(db: Path) -> None:
    seed_customers(db, 7)
    with trio.fail_after(LIMIT):
        async with opened(settings(db, batch_size=3)) as c:
            pages = []
            cursor = None
            while True:
                page = await c.scan("customers", cursor, ["email", "nonexistent"])
                pages.append(page)
                cursor = page.next_cursor
                if cursor is None:
                    break
    assert [len(p.records) for p in pages] == [3, 3, 1]
    assert [p.next_cursor for p in pages] == ["3", "6", None]
    first = pages[0].records[0]
    assert first.id == "1"
    assert first.properties == {"email": "c1@example.com"}  # unknown names are ignored
    assert first.updated_at == parse_timestamp("2024-05-01T12:00:00Z") == 1714564800000
    assert not first.archived


async def test_scan_of_an_exact_page_multiple_ends_without_an_empty_page(db: Path) -> None:
    seed_customers(db, 4)
    with trio.fail_after(LIMIT):
        async with opened(settings(db, batch_size=2)) as c:
            one = await c.scan("customers", None, [])
            two = await c.scan("customers", one.next_cursor, [])
    assert one.next_cursor == "2" and two.next_cursor is None
    assert [r.id for r in two.records] == ["3", "4"]
    assert set(two.records[0].properties) == {"id", "email", "first_name", "last_name", "age",
                                              "company_id", "full_name", "updated_at"}
    assert two.records[0].properties["full_name"] == "First3 Last3"


async def test_read_returns_only_existing_records(db: Path) -> None:
    seed_customers(db, 3)
    with trio.fail_after(LIMIT):
        async with opened(settings(db)) as c:
            got = await c.read("customers", ["3", "1", "99", "abc", "1"], ["first_name"])
    assert set(got) == {"1", "3"}
    assert got["3"].properties == {"first_name": "First3"}


async def test_ids_no_row_can_have_are_not_found_whatever_their_size(db: Path) -> None:
    """An integer key is a signed 64-bit integer (https://sqlite.org/datatype3.html §2): an
    id beyond that names no row, and a write to it fails that input only."""
    seed_customers(db, 2)
    huge = ["9223372036854775808", "-9223372036854775809", "1" + "0" * 40]
    with trio.fail_after(LIMIT):
        async with opened(settings(db)) as c:
            got = await c.read("customers", ["1", *huge], ["first_name"])
            updated = await c.update("customers", [(huge[0], {"first_name": "X"}),
                                                   ("2", {"first_name": "Two"})])
            gone = await c.archive("customers", huge[:1])
            edge = await c.read("customers", ["9223372036854775807"], [])
    assert set(got) == {"1"}
    assert [r.ok for r in updated] == [False, True]
    assert updated[0].error is not None and updated[0].error.category == "not_found"
    assert [r.ok for r in gone] == [True]
    assert edge == {}


async def test_id_problem_says_which_ids_cannot_name_a_row(db: Path) -> None:
    """What webhook intake asks before storing an event: an id a key cannot hold, or not
    written as the connector writes it (it would be read back under another id)."""
    with trio.fail_after(LIMIT):
        async with opened(settings(db)) as c:
            assert c.id_problem("customers", "42") is None
            assert c.id_problem("customers", "9223372036854775807") is None
            assert "cannot be a key" in (c.id_problem("customers", "9223372036854775808")
                                         or "")
            assert "cannot be a key" in (c.id_problem("customers", "abc") or "")
            assert "would be '5'" in (c.id_problem("customers", "05") or "")
            assert c.id_problem("opportunities", "opp-1") is None
            assert c.id_problem("unknown", "x") is None


async def test_text_that_is_not_utf8_is_read_with_replacement_characters(db: Path) -> None:
    """An app may store any bytes as TEXT; one such value must not fail a whole page."""
    seed_customers(db, 3)
    app(db).execute("UPDATE customers SET first_name = CAST(x'41ff42' AS TEXT) WHERE id = 2")
    with trio.fail_after(LIMIT):
        async with opened(settings(db)) as c:
            page = await c.scan("customers", None, ["first_name"])
            got = await c.read("customers", ["1", "2"], ["first_name"])
            found = await c.find("customers", "email", "c2@example.com", ["first_name"])
            after = await c.read("customers", ["3"], ["first_name"])
    assert [r.properties["first_name"] for r in page.records] == [
        "First1", "A\ufffdB", "First3"]
    assert got["2"].properties["first_name"] == "A\ufffdB"
    assert got["1"].properties["first_name"] == "First1"
    assert found[0].properties["first_name"] == "A\ufffdB"
    assert after["3"].properties["first_name"] == "First3"


# --- timestamps ----------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "ms"), [
    ("2024-05-01T12:00:00Z", 1714564800000),
    ("2024-05-01 12:00:00", 1714564800000),  # SQLite's CURRENT_TIMESTAMP: UTC
    ("2024-05-01T14:00:00.250+02:00", 1714564800250),
    ("2024-05-01", 1714521600000),
    (1714564800, 1714564800000),
    (1714564800.5, 1714564800500),
    (1714564800123, 1714564800123),
    ("1714564800", 1714564800000),
    (None, 0),
    ("yesterday", 0),
    (True, 0),
    (float("nan"), 0),
])
def test_parse_timestamp(value: object, ms: int) -> None:
    assert parse_timestamp(value) == ms


@pytest.mark.parametrize(("declared", "sample", "written"), [
    ("TEXT", "2024-05-01T12:00:00.000Z", "2023-11-14T22:13:20.250Z"),
    ("TEXT", "2024-05-01 12:00:00", "2023-11-14 22:13:20"),
    ("TEXT", "2024-05-01T12:00:00+00:00", "2023-11-14T22:13:20+00:00"),
    ("INTEGER", 1714564800, 1700000000),
    ("INTEGER", 1714564800123, 1700000000250),
    ("INTEGER", None, 1700000000),
    ("REAL", None, NOW),
    ("", None, "2023-11-14T22:13:20.250Z"),
])
def test_updated_at_is_written_the_way_the_app_writes_it(
        declared: str, sample: object, written: object) -> None:
    assert TimestampStyle.detect(declared, sample).format(NOW) == written


# --- writes --------------------------------------------------------------------------------


async def test_create_update_archive(db: Path) -> None:
    seed_customers(db, 1)
    with trio.fail_after(LIMIT):
        async with opened(settings(db)) as c:
            created = await c.create("customers", [
                {"email": "new@example.com", "first_name": "Ada", "age": 36,
                 "updated_at": "ignored"}])
            assert created[0].ok and created[0].record is not None
            rec = created[0].record
            assert rec.id == "2"
            assert rec.properties["email"] == "new@example.com"
            assert rec.properties["full_name"] == "Ada "  # read back from the database
            assert rec.properties["updated_at"] == "2023-11-14T22:13:20.250Z"
            assert rec.updated_at == 1700000000250

            [upd] = await c.update("customers", [("2", {"first_name": "Grace", "id": 2})])
            assert upd.ok and upd.record is not None
            assert upd.record.properties["first_name"] == "Grace"

            [same] = await c.update("customers", [("2", {})])
            assert same.ok and same.record == upd.record

            [missing] = await c.update("customers", [("404", {"first_name": "X"})])
            assert not missing.ok and missing.error is not None
            assert missing.error.category == "not_found"

            [moved] = await c.update("customers", [("2", {"id": 3})])
            assert not moved.ok and moved.error is not None
            assert moved.error.category == "invalid_value"

            results = await c.archive("customers", ["2", "2", "404", "x"])
            assert all(r.ok and r.record is not None and r.record.archived for r in results)
            assert c.statistics().rows_written == 7
    rows = app(db).execute("SELECT id, first_name FROM customers").fetchall()
    assert rows == [(1, "First1")]


async def test_one_bad_row_fails_only_that_row(db: Path) -> None:
    seed_customers(db, 1)
    inputs: list[dict[str, Any]] = [
        {"email": "ok1@example.com"},
        {"email": "C1@example.com"},                       # fine: UNIQUE is case-sensitive
        {"email": "c1@example.com", "first_name": "Dup"},  # UNIQUE
        {"email": "nn@example.com", "last_name": None},    # NOT NULL
        {"email": "neg@example.com", "age": -1},           # CHECK
        {"email": "fk@example.com", "company_id": 77},     # FOREIGN KEY (enforced by crmsync)
        {"email": "col@example.com", "shoe_size": 44},     # no such column
        {"email": "gen@example.com", "full_name": "x"},    # generated column
        {"email": "type@example.com", "first_name": {"a": 1}},  # not storable
        {"email": "ok2@example.com"},
    ]
    with trio.fail_after(LIMIT):
        async with opened(settings(db, batch_size=3)) as c:
            results = await c.create("customers", inputs)
            stats = c.statistics()
    assert [r.ok for r in results] == [True, True, False, False, False, False, False, False,
                                       False, True]
    errors = [r.error for r in results if r.error is not None]
    assert [e.category for e in errors] == ["duplicate", "missing_required_field",
                                            "invalid_value", "invalid_value", "invalid_value",
                                            "invalid_value", "invalid_value"]
    assert errors[0].existing_id == "1"
    assert "shoe_size" in errors[4].message
    assert (stats.rows_written, stats.rows_failed) == (3, 7)
    emails = [r[0] for r in app(db).execute("SELECT email FROM customers ORDER BY id")]
    assert emails == ["c1@example.com", "ok1@example.com", "C1@example.com", "ok2@example.com"]


async def test_an_app_trigger_that_rolls_back_fails_only_its_row(db: Path) -> None:
    app(db).execute("CREATE TRIGGER app_guard BEFORE INSERT ON customers "
                    "WHEN NEW.first_name = 'blocked' "
                    "BEGIN SELECT RAISE(ROLLBACK, 'blocked by the app'); END")
    with trio.fail_after(LIMIT):
        async with opened(settings(db)) as c:
            results = await c.create("customers", [
                {"email": "a@example.com"},
                {"email": "b@example.com", "first_name": "blocked"},
                {"email": "c@example.com", "age": -5},
                {"email": "d@example.com"},
            ])
    assert [r.ok for r in results] == [True, False, False, True]
    assert results[1].error is not None and "blocked by the app" in results[1].error.message
    emails = [r[0] for r in app(db).execute("SELECT email FROM customers ORDER BY id")]
    assert emails == ["a@example.com", "d@example.com"]


async def test_update_conflict_fails_only_that_row(db: Path) -> None:
    seed_customers(db, 3)
    with trio.fail_after(LIMIT):
        async with opened(settings(db)) as c:
            results = await c.update("customers", [
                ("1", {"first_name": "One"}),
                ("2", {"email": "c3@example.com"}),
                ("3", {"first_name": "Three"}),
            ])
    assert [r.ok for r in results] == [True, False, True]
    assert results[1].error is not None and results[1].error.category == "duplicate"
    assert results[1].error.existing_id == "3"
    assert app(db).execute("SELECT email FROM customers WHERE id = 2").fetchone()[0] == \
        "c2@example.com"


async def test_a_conditional_update_is_refused_when_the_row_changed_since_it_was_read(
        db: Path) -> None:
    # Issue 17 item 3: an update holds only while the row has the values the decision read;
    # a row the app changed meanwhile is left alone and the input is reported as stale.
    seed_customers(db, 3)
    a = app(db)
    a.execute("UPDATE customers SET age = NULL")
    with trio.fail_after(LIMIT):
        async with opened(settings(db)) as c:
            read = await c.read("customers", ["1", "2", "3"], ["first_name", "age"])
            a.execute("UPDATE customers SET first_name = 'App edit' WHERE id = 2")
            a.execute("UPDATE customers SET age = 7 WHERE id = 3")
            a.execute("DELETE FROM customers WHERE id = 1")
            a.execute("INSERT INTO customers (id, email, first_name) "
                      "VALUES (4, 'c4@example.com', 'Four')")
            read4 = (await c.read("customers", ["4"], ["first_name"]))["4"]
            results = await c.update("customers", [
                ("1", {"first_name": "Hub"}),  # gone: not found
                ("2", {"first_name": "Hub"}),  # the written column changed: stale
                ("3", {"first_name": "Hub", "age": 9}),  # NULL read, 7 now: stale
                ("4", {"last_name": "Hub"}),  # the written column was not read: applies
            ], expected=[read["1"], read["2"], read["3"], read4])
            [ok] = await c.update("customers", [("2", {"first_name": "Hub"})],
                                  expected=[(await c.read("customers", ["2"], []))["2"]])
    assert c.capabilities.conditional_update
    errors = [r.error for r in results]
    assert [e.category if e else None for e in errors] == ["not_found", "conflict",
                                                          "conflict", None]
    assert [bool(e and e.stale) for e in errors] == [False, True, True, False]
    assert ok.ok and ok.record is not None and ok.record.properties["first_name"] == "Hub"
    rows = a.execute("SELECT id, first_name, last_name, age FROM customers ORDER BY id")
    assert rows.fetchall() == [(2, "Hub", "Last2", None), (3, "First3", "Last3", 7),
                               (4, "Four", "Hub", None)]


async def test_deleting_a_referenced_row_is_a_conflict(db: Path) -> None:
    a = app(db)
    a.execute("INSERT INTO organisations (id, name) VALUES (1, 'Acme'), (2, 'Globex')")
    a.execute("INSERT INTO customers (email, company_id) VALUES ('x@acme.com', 1)")
    with trio.fail_after(LIMIT):
        async with opened(settings(db)) as c:
            results = await c.archive("organisations", ["1", "2"])
    assert [r.ok for r in results] == [False, True]
    assert results[0].error is not None and results[0].error.category == "conflict"


async def test_text_keys_and_real_timestamps(db: Path) -> None:
    app(db).execute("INSERT INTO opportunities VALUES ('opp-1', 'Old', 1.5, 1714564800.5)")
    with trio.fail_after(LIMIT):
        async with opened(settings(db)) as c:
            results = await c.create("opportunities", [
                {"title": "Generated id"}, {"id": "opp-9", "title": "Given id"},
                {"id": "opp-1", "title": "Taken"}])
            page = await c.scan("opportunities", None, ["title"])
    generated = results[0].record
    assert generated is not None and len(generated.id) == 32
    assert generated.properties["updated_at"] == NOW
    assert results[1].record is not None and results[1].record.id == "opp-9"
    assert results[2].error is not None and results[2].error.existing_id == "opp-1"
    ids = [r.id for r in page.records]
    assert ids == sorted(ids) and set(ids) == {generated.id, "opp-1", "opp-9"}


async def test_writes_are_batched_per_transaction(db: Path) -> None:
    with trio.fail_after(LIMIT):
        async with opened(settings(db, batch_size=4)) as c:
            before = c.statistics().calls
            results = await c.create("customers",
                                     [{"email": f"b{i}@example.com"} for i in range(10)])
            assert c.statistics().calls - before == 3  # 4 + 4 + 2
    assert [r.record.id for r in results if r.record] == [str(i) for i in range(1, 11)]


# --- find ----------------------------------------------------------------------------------


async def test_find_matches_case_insensitively(db: Path) -> None:
    a = app(db)
    a.execute("INSERT INTO customers (email, age, first_name) VALUES "
              "('Alice@Example.com', 42, 'Ärger'), ('bob@example.com', 7, 'ß')")
    with trio.fail_after(LIMIT):
        async with opened(settings(db)) as c:
            [alice] = await c.find("customers", "email", "alice@EXAMPLE.com", ["email"])
            assert alice.id == "1" and alice.properties == {"email": "Alice@Example.com"}
            assert [r.id for r in await c.find("customers", "first_name", "äRGER", [])] == ["1"]
            # ASCII values go through NOCASE (index-friendly), which folds ASCII letters only.
            assert [r.id for r in await c.find("customers", "first_name", "SS", [])] == []
            assert [r.id for r in await c.find("customers", "age", "7", [])] == ["2"]
            assert await c.find("customers", "email", "carol@example.com", []) == []
            with pytest.raises(ConnectorError) as info:
                await c.find("customers", "mail", "x", [])
            assert info.value.kind == "config"


async def test_a_create_whose_answer_was_lost_is_found_not_repeated(db: Path) -> None:
    """The crash-between-create-and-link story: the row carries the match key, so the
    runtime finds it by that key; a blind retry is refused with the existing id."""
    with trio.fail_after(LIMIT):
        async with opened(settings(db)) as c:
            await c.create("customers", [{"email": "Dana@Example.com", "first_name": "Dana"}])
        # ... the daemon died before committing the link; after the restart:
        async with opened(settings(db)) as c:
            found = await c.find("customers", "email", "dana@example.com", ["first_name"])
            assert [(r.id, r.properties) for r in found] == [("1", {"first_name": "Dana"})]
            [retry] = await c.create("customers", [{"email": "Dana@Example.com"}])
    assert retry.error is not None
    assert (retry.error.category, retry.error.existing_id) == ("duplicate", "1")
    assert app(db).execute("SELECT count(*) FROM customers").fetchone()[0] == 1


async def test_busy_database_is_transient(db: Path) -> None:
    with trio.fail_after(LIMIT):
        async with opened(settings(db)) as c:
            c_conn = c._conn
            assert c_conn is not None
            # Shorten the wait so the test stays fast; the real busy timeout is 5 s.
            c_conn.execute("PRAGMA busy_timeout=10")
            blocker = app(db)
            blocker.execute("BEGIN IMMEDIATE")
            blocker.execute("INSERT INTO organisations (name) VALUES ('held')")
            try:
                with pytest.raises(ConnectorError) as info:
                    await c.create("organisations", [{"name": "Initech"}])
            finally:
                blocker.execute("ROLLBACK")
            assert info.value.kind == "transient"
            [ok] = await c.create("organisations", [{"name": "Initech"}])
            assert ok.ok


async def test_a_commit_refused_by_a_reader_rolls_back_cleanly(tmp_path: Path) -> None:
    """Rollback-journal mode: an app reader holding its shared lock makes COMMIT busy. The
    batch must be rolled back (not left open) and the call fail as transient."""
    path = make_db(tmp_path / "rollback.db", journal="delete")
    with trio.fail_after(LIMIT):
        async with opened(settings(path)) as c:
            c_conn = c._conn
            assert c_conn is not None
            c_conn.execute("PRAGMA busy_timeout=10")
            reader = app(path)
            reader.execute("BEGIN")
            reader.execute("SELECT count(*) FROM customers").fetchone()
            try:
                with pytest.raises(ConnectorError) as info:
                    await c.create("customers", [{"email": "held@example.com"}])
            finally:
                reader.execute("COMMIT")
            assert info.value.kind == "transient"
            assert not c_conn.in_transaction
            [ok] = await c.create("customers", [{"email": "later@example.com"}])
            assert ok.ok
    emails = [r[0] for r in app(path).execute("SELECT email FROM customers")]
    assert emails == ["later@example.com"]
