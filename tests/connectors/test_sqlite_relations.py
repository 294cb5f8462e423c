"""Pipelines and stages, associations (foreign key and join table, both directions) and events
of the SQLite app connector, against a real SQLite file."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from crmsync.config.model import (
    SqliteAssociation,
    SqliteConnection,
    SqliteEvents,
    SqlitePipelines,
    SqliteTable,
)
from crmsync.connectors.base import (
    AppEvent,
    AssociationChange,
    ConnectorError,
    SupportsAssociations,
    SupportsEventSource,
    SupportsPipelines,
)
from crmsync.connectors.sqlite import SqliteAppConnector
from crmsync.records import PipelineInfo, StageInfo

LIMIT = 10
NOW = 1_700_000_000.0


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "app.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=wal")
    conn.executescript("""
        CREATE TABLE organisations (id INTEGER PRIMARY KEY, name TEXT, updated_at TEXT);
        CREATE TABLE customers (
            id INTEGER PRIMARY KEY,
            email TEXT,
            company_id INTEGER REFERENCES organisations(id),
            updated_at TEXT
        );
        CREATE TABLE opportunities (
            id TEXT PRIMARY KEY, title TEXT, pipeline TEXT, stage TEXT, updated_at TEXT
        );
        -- No unique constraint on purpose: crmsync must still never add a pair twice.
        CREATE TABLE opportunity_customers (
            opportunity_id TEXT NOT NULL, customer_id INTEGER NOT NULL
        );
        CREATE TABLE pipelines (id TEXT PRIMARY KEY, label TEXT);
        CREATE TABLE stages (
            id TEXT PRIMARY KEY, pipeline_id TEXT, label TEXT, display_order INTEGER
        );
        CREATE TABLE events (
            event_id TEXT, contact_email TEXT, name TEXT, occurred_at, properties TEXT
        );

        INSERT INTO organisations (id, name) VALUES (10, 'Acme'), (11, 'Globex');
        INSERT INTO customers (id, email, company_id) VALUES
            (1, 'a@acme.com', 10), (2, 'b@acme.com', 10), (3, 'c@nowhere.com', NULL);
        INSERT INTO opportunities (id, title, pipeline, stage) VALUES
            ('o1', 'Big', 'sales', 'won'), ('o2', 'Small', 'sales', 'new');
        INSERT INTO opportunity_customers VALUES ('o1', 1), ('o1', 2), ('o2', 2);
        INSERT INTO pipelines VALUES ('sales', 'Sales'), ('renewals', 'Renewals');
        INSERT INTO stages VALUES
            ('won', 'sales', 'Closed Won', 3), ('new', 'sales', 'New', 1),
            ('demo', 'sales', 'Demo', 2), ('r1', 'renewals', 'Due', 1),
            ('orphan', 'gone', 'Orphan', 1);
    """)
    conn.close()
    return path


def app(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None)


def settings(db: Path, **overrides: Any) -> SqliteConnection:
    fields: dict[str, Any] = {
        "name": "shop",
        "database": str(db),
        "tables": [
            SqliteTable(object="customers", table="customers"),
            SqliteTable(object="organisations", table="organisations"),
            SqliteTable(object="opportunities", table="opportunities",
                        pipeline_column="pipeline", stage_column="stage"),
        ],
        "associations": [
            SqliteAssociation(from_object="customers", to_object="organisations",
                              column="company_id"),
            SqliteAssociation(from_object="opportunities", to_object="customers",
                              join_table="opportunity_customers",
                              from_column="opportunity_id", to_column="customer_id"),
        ],
        "pipelines": SqlitePipelines(),
        "events": SqliteEvents(),
    }
    fields.update(overrides)
    return SqliteConnection(**fields)


@asynccontextmanager
async def opened(s: SqliteConnection) -> AsyncIterator[SqliteAppConnector]:
    async with SqliteAppConnector(s, clock=lambda: NOW).open() as c:
        yield c


async def changed_records(c: SqliteAppConnector, start: dict[str, str]) -> dict[str, set[str]]:
    out = {}
    for obj, cursor in start.items():
        ch = await c.changes_since(obj, cursor, [])
        out[obj] = {r.id for r in ch.records}
    return out


async def cursors(c: SqliteAppConnector) -> dict[str, str]:
    return {obj: (await c.changes_since(obj, None, [])).cursor
            for obj in ("customers", "organisations", "opportunities")}


# --- pipelines -----------------------------------------------------------------------------


async def test_pipelines_with_stages_in_display_order(db: Path) -> None:
    with trio.fail_after(LIMIT):
        async with opened(settings(db)) as c:
            assert isinstance(c, SupportsPipelines) and c.capabilities.pipelines
            got = await c.pipelines("opportunities")
    assert got == [
        PipelineInfo("renewals", "Renewals", (StageInfo("r1", "Due"),)),
        PipelineInfo("sales", "Sales", (StageInfo("new", "New"), StageInfo("demo", "Demo"),
                                        StageInfo("won", "Closed Won"))),
    ]


async def test_pipelines_not_configured_or_tables_missing(db: Path) -> None:
    with trio.fail_after(LIMIT):
        async with opened(settings(db, pipelines=None)) as c:
            assert not c.capabilities.pipelines
            with pytest.raises(ConnectorError) as info:
                await c.pipelines("opportunities")
            assert info.value.kind == "config"
        bad = settings(db, pipelines=SqlitePipelines(stages_table="phases"))
        with pytest.raises(ConnectorError, match="phases"):
            await SqliteAppConnector(bad).open()


# --- associations through a foreign key ----------------------------------------------------


async def test_foreign_key_associations_read_both_ways(db: Path) -> None:
    with trio.fail_after(LIMIT):
        async with opened(settings(db)) as c:
            assert isinstance(c, SupportsAssociations) and c.capabilities.associations
            forward = await c.read_associations("customers", "organisations",
                                                ["1", "3", "99", "x"])
            back = await c.read_associations("organisations", "customers", ["10", "11"])
    assert forward == {"1": ["10"], "3": [], "99": [], "x": []}
    assert back == {"10": ["1", "2"], "11": []}


async def test_foreign_key_associations_written_both_ways(db: Path) -> None:
    with trio.fail_after(LIMIT):
        async with opened(settings(db)) as c:
            start = await cursors(c)
            results = await c.write_associations("customers", "organisations", [
                AssociationChange("3", "11"),                 # set
                AssociationChange("1", "11", removed=True),   # 1 points at 10: left alone
                AssociationChange("2", "10", removed=True),   # cleared
                AssociationChange("1", "99"),                 # no such organisation
                AssociationChange("98", "10"),                # no such customer
                AssociationChange("1", "10"),                 # already so: nothing written
            ])
            assert [r.ok for r in results] == [True, True, True, False, False, True]
            assert {r.error.category for r in results if r.error} == {"association_failed"}
            assert results[3].error is not None and "99" in results[3].error.message
            # The other way round: organisation 11 gets customer 1.
            [back] = await c.write_associations("organisations", "customers",
                                                [AssociationChange("11", "1")])
            assert back.ok
            assert await c.read_associations("organisations", "customers",
                                             ["10", "11"]) == {"10": [], "11": ["1", "3"]}
            changed = await changed_records(c, start)
    rows = dict(app(db).execute("SELECT id, updated_at FROM customers").fetchall())
    assert rows == {1: "2023-11-14T22:13:20.000Z", 2: "2023-11-14T22:13:20.000Z",
                    3: "2023-11-14T22:13:20.000Z"}
    # Both ends of every changed association are logged for re-reading.
    assert changed == {"customers": {"1", "2", "3"}, "organisations": {"10", "11"},
                       "opportunities": set()}


async def test_an_association_meant_for_a_record_whose_id_was_reused_is_not_written(
        db: Path) -> None:
    # Issue 17 item 1, found by the randomized e2e test: a company's association to a
    # contact was decided while the app deleted that contact and gave its id to a new one;
    # written, it set the new contact's company (and crmsync's hub side never had it).
    with trio.fail_after(LIMIT):
        async with opened(settings(db)) as c:
            [made] = await c.create("customers", [{"email": "m@x.com"}])
            [org] = await c.create("organisations", [{"name": "Initech"}])
            assert made.record is not None and org.record is not None
            meant, org_inc = made.record.incarnation, org.record.incarnation
            cid, oid = made.record.id, org.record.id
            a = app(db)
            a.execute("DELETE FROM customers WHERE id = ?", (cid,))
            a.execute("INSERT INTO customers (email) VALUES ('new@x.com')")  # same id
            new = (await c.read("customers", [cid], []))[cid]
            assert new.incarnation != meant
            results = await c.write_associations("organisations", "customers", [
                AssociationChange(oid, cid, from_incarnation=org_inc, to_incarnation=meant)])
            from_side = await c.write_associations("customers", "organisations", [
                AssociationChange(cid, oid, from_incarnation=meant, to_incarnation=org_inc)])
            assert await c.read_associations("customers", "organisations",
                                             [cid]) == {cid: []}
            # The record it is now takes it; a removal meant for the one gone leaves it.
            [now] = await c.write_associations("customers", "organisations", [
                AssociationChange(cid, oid, from_incarnation=new.incarnation)])
            [removal] = await c.write_associations("customers", "organisations", [
                AssociationChange(cid, oid, removed=True, from_incarnation=meant)])
            held = await c.read_associations("customers", "organisations", [cid])
    for r in (*results, *from_side):
        assert not r.ok and r.error is not None
        assert r.error.category == "association_failed"
        assert f"customers {cid} is another record now" in r.error.message
    assert now.ok and removal.ok
    assert held == {cid: [oid]}


async def test_an_app_setting_a_foreign_key_logs_both_partners(db: Path) -> None:
    with trio.fail_after(LIMIT):
        async with opened(settings(db)) as c:
            start = await cursors(c)
            app(db).execute("UPDATE customers SET company_id = 11 WHERE id = 1")
            changed = await changed_records(c, start)
    assert changed == {"customers": {"1"}, "organisations": {"10", "11"},
                       "opportunities": set()}


async def test_association_entries_are_no_evidence_of_a_field_write_landing(db: Path) -> None:
    # Issue 17 (randomized e2e seed 17): after a crash, the change log tells whether
    # crmsync's update of a record landed before the record changed again. Setting a
    # contact's foreign key logs its company too ("associate"), but neither crmsync's nor the
    # app's does that say anything about a write of the company's fields: a company whose
    # field write never landed was taken for one whose write landed, its old value for a
    # newer app edit, and that value written over the hub's edit.
    with trio.fail_after(LIMIT):
        async with opened(settings(db)) as c:
            position = await c.log_position()
            # crmsync moves contact 3 to Globex (an association write), then the app's user
            # moves contact 1 there: both log Globex (11) as "associate".
            (moved,) = await c.write_associations(
                "customers", "organisations", [AssociationChange("3", "11")])
            assert moved.ok
            app(db).execute("UPDATE customers SET company_id = 11 WHERE id = 1")
            assert await c.written_then_changed("organisations", ["11"], position) == set()
            # A field write of crmsync's to Globex that landed, then an edit by the app's user.
            (landed,) = await c.update("organisations", [("11", {"name": "Globex Inc"})])
            assert landed.ok
            app(db).execute("UPDATE organisations SET name = 'Globex Ltd' WHERE id = 11")
            assert await c.written_then_changed("organisations", ["11"], position) == {"11"}


# --- associations through a join table -----------------------------------------------------


async def test_join_table_associations_read_both_ways(db: Path) -> None:
    with trio.fail_after(LIMIT):
        async with opened(settings(db)) as c:
            forward = await c.read_associations("opportunities", "customers", ["o1", "o2", "o9"])
            back = await c.read_associations("customers", "opportunities", ["1", "2", "3"])
    assert forward == {"o1": ["1", "2"], "o2": ["2"], "o9": []}
    assert back == {"1": ["o1"], "2": ["o1", "o2"], "3": []}


async def test_join_table_associations_written_both_ways(db: Path) -> None:
    with trio.fail_after(LIMIT):
        async with opened(settings(db)) as c:
            start = await cursors(c)
            results = await c.write_associations("opportunities", "customers", [
                AssociationChange("o2", "3"),
                AssociationChange("o2", "3"),                 # twice: still one row
                AssociationChange("o1", "1", removed=True),
                AssociationChange("o1", "3", removed=True),   # not there: fine
                AssociationChange("o9", "1"),                 # no such opportunity
            ])
            assert [r.ok for r in results] == [True, True, True, True, False]
            [back] = await c.write_associations("customers", "opportunities",
                                                [AssociationChange("1", "o2")])
            assert back.ok
            changed = await changed_records(c, start)
    pairs = app(db).execute("SELECT opportunity_id, customer_id FROM opportunity_customers "
                            "ORDER BY 1, 2").fetchall()
    assert pairs == [("o1", 2), ("o2", 1), ("o2", 2), ("o2", 3)]
    assert changed == {"customers": {"1", "3"}, "organisations": set(),
                       "opportunities": {"o1", "o2"}}


async def test_unconfigured_association_is_a_config_error(db: Path) -> None:
    with trio.fail_after(LIMIT):
        async with opened(settings(db)) as c:
            with pytest.raises(ConnectorError) as info:
                await c.read_associations("organisations", "opportunities", ["10"])
    assert info.value.kind == "config"
    assert info.value.category == "association_failed"


# --- events --------------------------------------------------------------------------------


async def test_events_since_a_rowid_cursor(db: Path) -> None:
    app(db).executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?)", [
        ("e1", " a@acme.com ", "viewed", "2024-05-01T12:00:00Z", '{"page": "/pricing"}'),
        ("e2", "b@acme.com", "clicked", 1714564800, '{"n": 3, "ok": true, "x": null}'),
        (None, "b@acme.com", "clicked", 1714564800123, "not json"),
        ("e4", None, "bought", "2024-05-01 12:00:00", '["a list"]'),
    ])
    with trio.fail_after(LIMIT):
        async with opened(settings(db)) as c:
            assert isinstance(c, SupportsEventSource) and c.capabilities.events
            first, cursor = await c.events_since(None, 2)
            rest, cursor2 = await c.events_since(cursor, 10)
            none, cursor3 = await c.events_since(cursor2, 10)
            app(db).execute("INSERT INTO events (event_id, contact_email, name, occurred_at) "
                            "VALUES ('e5', 'c@x.com', 'left', NULL)")
            late, _ = await c.events_since(cursor3, 10)
    assert first == [
        AppEvent("e1", "a@acme.com", "viewed", 1714564800000, {"page": "/pricing"}),
        AppEvent("e2", "b@acme.com", "clicked", 1714564800000, {"n": "3", "ok": "true"}),
    ]
    assert cursor == "2"
    assert rest == [
        AppEvent("rowid:3", "b@acme.com", "clicked", 1714564800123, {}),
        AppEvent("e4", "", "bought", 1714564800000, {}),
    ]
    assert (none, cursor3) == ([], "4")
    assert late == [AppEvent("e5", "c@x.com", "left", 0, {})]


async def test_events_not_configured(db: Path) -> None:
    with trio.fail_after(LIMIT):
        async with opened(settings(db, events=None)) as c:
            assert not c.capabilities.events
            with pytest.raises(ConnectorError):
                await c.events_since(None, 10)
