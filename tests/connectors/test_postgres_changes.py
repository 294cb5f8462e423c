"""Change capture in PostgreSQL: triggers fill crmsync's change log, readers claim entries
and acknowledge them with their next cursor, notifications wake the reader, and uninstalling
removes it all."""

from __future__ import annotations

import pytest
import trio

from crmsync.connectors.base import ConnectorError
from crmsync.connectors.postgres import capture

from .pg_app import SCHEMA, opened, settings


@pytest.fixture
def app(pg_db):
    pg_db.execute(SCHEMA)
    return pg_db


def log_rows(app, kind="record"):
    return app.execute("SELECT object, op, record_id, old_id, origin FROM crmsync.changelog "
                       "WHERE kind = %s ORDER BY id", (kind,))


async def test_none_starts_from_now(app) -> None:
    async with opened(app.dsn) as c:
        app.execute("INSERT INTO customers (email) VALUES ('before@example.com')")
        start = await c.changes_since("customers", None, [])
        assert start.records == [] and log_rows(app) == []
        app.execute("INSERT INTO customers (email) VALUES ('after@example.com')")
        got = await c.changes_since("customers", start.cursor, [])
        assert [r.properties["email"] for r in got.records] == ["after@example.com"]


async def test_inserts_updates_and_deletes_are_logged_with_op_and_old_key(app) -> None:
    async with opened(app.dsn) as c:
        start = await c.changes_since("customers", None, [])
        app.execute("INSERT INTO customers (id, email) VALUES (1, 'a@example.com'), "
                    "(2, 'b@example.com')")
        app.execute("UPDATE customers SET first_name = 'A' WHERE id = 1")
        app.execute("UPDATE customers SET id = 20 WHERE id = 2")  # a changed primary key
        app.execute("DELETE FROM customers WHERE id = 1")
        app.execute("INSERT INTO customers (id, email) VALUES (1, 'again@example.com')")
        assert log_rows(app) == [
            ("customers", "insert", "1", None, None),
            ("customers", "insert", "2", None, None),
            ("customers", "update", "1", "1", None),
            ("customers", "update", "20", "2", None),
            ("customers", "delete", "1", "1", None),
            ("customers", "insert", "1", None, None),
        ]
        got = await c.changes_since("customers", start.cursor, [])
        by_id = {r.id: r for r in got.records}
        assert set(by_id) == {"1", "2", "20"}
        assert by_id["2"].archived  # the old key is gone
        assert by_id["20"].properties["email"] == "b@example.com"
        assert by_id["1"].properties["email"] == "again@example.com"


async def test_changes_to_columns_crmsync_does_not_read_are_not_logged(app) -> None:
    app.execute("INSERT INTO customers (id, email) VALUES (1, 'a@example.com')")
    async with opened(app.dsn) as c:
        start = await c.changes_since("customers", None, [])
        app.execute("UPDATE customers SET notes = 'internal', updated_at = now() WHERE id = 1")
        assert log_rows(app) == []
        app.execute("UPDATE customers SET last_name = 'L' WHERE id = 1")
        assert len((await c.changes_since("customers", start.cursor, [])).records) == 1


async def test_a_transaction_committing_out_of_order_is_not_lost(app) -> None:
    """An entry id is taken when a transaction writes, not when it commits: the early writer
    that commits late lands *behind* entries already read. A reader keeping the last id
    seen would skip it for ever; claiming and acknowledging does not."""
    async with opened(app.dsn) as c:
        cursor = (await c.changes_since("customers", None, [])).cursor
        with app.connect() as early, app.connect() as late:
            early.execute("BEGIN")
            early.execute("INSERT INTO customers (email) VALUES ('early@example.com')")
            late.execute("INSERT INTO customers (email) VALUES ('late@example.com')")
            first = await c.changes_since("customers", cursor, [])
            assert [r.properties["email"] for r in first.records] == ["late@example.com"]
            cursor = first.cursor  # the runtime committed what `first` caused
            early.execute("COMMIT")
        ids = dict(app.execute("SELECT c.email, l.id FROM crmsync.changelog l "
                               "JOIN customers c ON c.id::text = l.record_id"))
        assert ids["early@example.com"] < ids["late@example.com"], \
            "the early transaction's entry sits behind one already read"
        second = await c.changes_since("customers", cursor, [])
        assert [r.properties["email"] for r in second.records] == ["early@example.com"]
        assert (await c.changes_since("customers", second.cursor, [])).records == []
    assert log_rows(app) == []  # everything acknowledged is gone


async def test_what_was_read_but_not_committed_is_read_again(app) -> None:
    async with opened(app.dsn) as c:
        start = (await c.changes_since("customers", None, [])).cursor
        app.execute("INSERT INTO customers (email) VALUES ('a@example.com')")
        got = await c.changes_since("customers", start, [])
        assert len(got.records) == 1
        # The runtime crashed before committing got.cursor: it asks again from `start`.
    async with opened(app.dsn) as c:
        again = await c.changes_since("customers", start, [])
        assert [r.properties["email"] for r in again.records] == ["a@example.com"]
        assert int(again.cursor) > int(got.cursor)
        assert (await c.changes_since("customers", again.cursor, [])).records == []


async def test_pages_hit_the_limit_with_more(app) -> None:
    async with opened(app.dsn, settings(batch_size=10)) as c:
        cursor = (await c.changes_since("customers", None, [])).cursor
        app.execute("INSERT INTO customers (email) SELECT 'p' || g || '@example.com' "
                    "FROM generate_series(1, 25) g")
        seen = []
        while True:
            got = await c.changes_since("customers", cursor, ["email"])
            seen += [r.properties["email"] for r in got.records]
            cursor = got.cursor
            if not got.more:
                break
        assert sorted(seen) == sorted(f"p{g}@example.com" for g in range(1, 26))


async def test_own_writes_are_tagged_and_come_back_as_echoes_by_default(app) -> None:
    async with opened(app.dsn) as c:
        cursor = (await c.changes_since("customers", None, [])).cursor
        (made,) = await c.create("customers", [{"email": "ours@example.com"}])
        assert log_rows(app) == [("customers", "insert", made.record.id, None, "crmsync")]
        got = await c.changes_since("customers", cursor, [])
        assert [r.id for r in got.records] == [made.record.id]
    async with opened(app.dsn, suppress_echoes=True) as c:
        cursor = (await c.changes_since("customers", None, [])).cursor
        await c.create("customers", [{"email": "mine@example.com"}])
        (both,) = await c.create("customers", [{"email": "both@example.com"}])
        app.execute("UPDATE customers SET first_name = 'App' WHERE id = %s",
                    (int(both.record.id),))
        got = await c.changes_since("customers", cursor, [])
        assert [r.id for r in got.records] == [both.record.id]


async def test_bad_cursors_are_refused(app) -> None:
    async with opened(app.dsn) as c:
        for bad in ("-1", "x"):
            with pytest.raises(ConnectorError) as exc:
                await c.changes_since("customers", bad, [])
            assert exc.value.kind == "config"
        with pytest.raises(ConnectorError) as exc:
            await c.changes_since("customers", "99999", [])
        assert "removed and installed again" in exc.value.message


async def test_notifications_wake_the_reader(app) -> None:
    async with opened(app.dsn) as c:
        woken: list[tuple[str, str]] = []
        got = trio.Event()

        def wake(kind: str, name: str) -> None:
            woken.append((kind, name))
            if kind == "record":
                got.set()

        async with trio.open_nursery() as nursery:
            await nursery.start(c.watch_changes, wake)
            with trio.fail_after(30):
                while ("any", "") not in woken:  # connected (and told to look)
                    await trio.sleep(0.01)
                with app.connect() as conn:
                    conn.execute("BEGIN")
                    conn.execute("INSERT INTO customers (email) VALUES ('n@example.com')")
                    conn.execute("INSERT INTO organisations (name) VALUES ('Org')")
                    await trio.sleep(0.2)
                    assert not got.is_set(), "nothing is announced before the commit"
                    conn.execute("COMMIT")
                await got.wait()
                while ("record", "organisations") not in woken:
                    await trio.sleep(0.01)
                # The listening connection is cut: it comes back and says "look again".
                woken.clear()
                app.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                            "WHERE application_name = 'crmsync listener'")
                while ("any", "") not in woken:
                    await trio.sleep(0.05)
            nursery.cancel_scope.cancel()


async def test_foreign_keys_and_join_tables_log_both_partners(app) -> None:
    from .pg_app import AppAssociation, AppTable

    app.execute("""
        CREATE TABLE deals (id bigint PRIMARY KEY, name text,
                            updated_at timestamptz DEFAULT now());
        CREATE TABLE deal_customers (deal_id bigint, customer_id bigint);
        INSERT INTO organisations (id, name) VALUES (1, 'Acme'), (2, 'Globex');
        INSERT INTO customers (id, email, company_id) VALUES (1, 'a@example.com', 1);
        INSERT INTO deals VALUES (5, 'Big');
    """)
    s = settings(
        tables=[*settings().tables, AppTable(object="deals", table="deals")],
        associations=[AppAssociation(from_object="customers", to_object="organisations",
                                     column="company_id"),
                      AppAssociation(from_object="deals", to_object="customers",
                                     join_table="deal_customers", from_column="deal_id",
                                     to_column="customer_id")])
    async with opened(app.dsn, s):
        app.execute("UPDATE customers SET company_id = 2 WHERE id = 1")
        app.execute("INSERT INTO deal_customers VALUES (5, 1)")
    assert [r[:3] for r in log_rows(app)] == [
        ("customers", "update", "1"),
        ("organisations", "associate", "1"),
        ("organisations", "associate", "2"),
        ("deals", "associate", "5"),
        ("customers", "associate", "1"),
    ]


async def test_uninstall_removes_everything_crmsync_added(app) -> None:
    async with opened(app.dsn):
        pass
    app.execute("INSERT INTO customers (email) VALUES ('pending@example.com')")
    with app.connect() as conn:
        plan = capture.removal_plan(conn, "crmsync")
        lines = plan.lines()
        assert sum(line.startswith("trigger ") for line in lines) == 4
        assert "table crmsync.changelog (1 unread entries)" in lines
        assert lines[-1] == "schema crmsync"
        with conn.transaction():
            capture.remove(conn, "crmsync")
    assert app.execute("SELECT count(*) FROM pg_trigger WHERE NOT tgisinternal") == [(0,)]
    assert app.execute("SELECT count(*) FROM pg_namespace WHERE nspname = 'crmsync'") == [(0,)]
    # The app writes on without crmsync.
    app.execute("INSERT INTO customers (email) VALUES ('after@example.com')")
    with app.connect() as conn:
        assert capture.removal_plan(conn, "crmsync").lines() == [
            "nothing to remove: schema 'crmsync' does not exist"]


async def test_uninstall_keeps_a_schema_holding_other_objects(app) -> None:
    async with opened(app.dsn):
        pass
    app.execute("CREATE TABLE crmsync.notes (x int)")
    with app.connect() as conn, conn.transaction():
        plan = capture.remove(conn, "crmsync")
    assert "schema crmsync stays: it also holds table notes" in plan.lines()
    assert app.execute("SELECT count(*) FROM pg_trigger WHERE NOT tgisinternal") == [(0,)]
    assert app.execute("SELECT relname FROM pg_class c JOIN pg_namespace n "
                       "ON n.oid = relnamespace WHERE nspname = 'crmsync'") == [("notes",)]


async def test_reads_and_acknowledgements_never_block_the_apps_writers(app) -> None:
    # The app's transaction holds its log entry's row while crmsync claims and deletes others.
    async with opened(app.dsn) as c:
        cursor = (await c.changes_since("customers", None, [])).cursor
        app.execute("INSERT INTO customers (email) VALUES ('x@example.com')")
        with app.connect() as conn:
            conn.execute("BEGIN")
            conn.execute("INSERT INTO customers (email) VALUES ('y@example.com')")
            with trio.fail_after(10):
                got = await c.changes_since("customers", cursor, [])
                await c.changes_since("customers", got.cursor, [])
            conn.execute("COMMIT")
