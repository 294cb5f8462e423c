"""The PostgreSQL app connector against a real server: opening, reading, writing, types and
keys, row errors naming their column, privileges, failures of the connection."""

from __future__ import annotations

import uuid

import psycopg
import pytest
import trio

from crmsync.config.model import AppTable
from crmsync.connectors.base import Connector, ConnectorError
from crmsync.records import Record

from .pg_app import SCHEMA, opened, settings


@pytest.fixture
def app(pg_db):
    pg_db.execute(SCHEMA)
    return pg_db


async def test_open_installs_triggers_once_and_is_a_connector(app) -> None:
    async with opened(app.dsn) as c:
        assert isinstance(c, Connector)
        first = c.statistics().triggers_changed
        assert first == 4  # insert-or-delete and update, on each of the two tables
    async with opened(app.dsn) as c:
        assert c.statistics().triggers_changed == 0  # re-opening changes nothing
    triggers = app.execute("SELECT tgrelid::regclass::text, count(*) FROM pg_trigger "
                           "WHERE NOT tgisinternal GROUP BY 1 ORDER BY 1")
    assert triggers == [("customers", 2), ("organisations", 2)]


async def test_a_changed_configuration_brings_the_triggers_in_line(app) -> None:
    async with opened(app.dsn):
        pass
    fewer = settings(tables=[AppTable(object="customers", table="customers",
                                      columns=["email"])])
    async with opened(app.dsn, fewer) as c:
        # organisations' two dropped; customers' update trigger watches other columns now.
        assert c.statistics().triggers_changed == 4
    assert app.execute("SELECT count(*) FROM pg_trigger t JOIN pg_class c ON c.oid = tgrelid "
                       "WHERE NOT tgisinternal AND c.relname = 'organisations'") == [(0,)]
    assert app.execute("SELECT count(*) FROM pg_proc p JOIN pg_namespace n "
                       "ON n.oid = p.pronamespace WHERE n.nspname = 'crmsync'") == [(1,)]


@pytest.mark.parametrize(("overrides", "fragment"), [
    ({"tables": [AppTable(object="x", table="nope")]}, "no such table"),
    ({"tables": [AppTable(object="x", table="customers", columns=["email", "mail"])]},
     "no such column(s): mail"),
    ({"tables": [AppTable(object="x", table="customers", updated_at_column="changed")]},
     "updated_at_column 'changed'"),
    ({"tables": [AppTable(object="x", table="customers", primary_key="first_name")]},
     "neither the table's primary key nor a column with a unique index"),
    ({"schema": "elsewhere"}, "schema 'elsewhere' does not exist"),
])
async def test_open_refuses_a_configuration_that_does_not_fit(app, overrides, fragment) -> None:
    with pytest.raises(ConnectorError) as exc:
        async with opened(app.dsn, settings(**overrides)):
            pass
    assert exc.value.kind == "config"
    assert fragment in exc.value.message


async def test_describe_maps_postgres_types(app) -> None:
    async with opened(app.dsn) as c:
        info = await c.describe("customers")
    types = {f.name: f.type for f in info.fields}
    assert types == {"email": "string", "first_name": "string", "last_name": "string",
                     "age": "number", "tier": "enumeration", "interests": "string",
                     "signed_up": "date", "balance": "number", "vip": "bool",
                     "company_id": "number"}
    tier = next(f for f in info.fields if f.name == "tier")
    assert tier.options == ("gold", "silver", "bronze")
    assert next(f for f in info.fields if f.name == "email").unique
    # Every column by default, but jsonb only when listed ("left alone unless mapped").
    async with opened(app.dsn, settings(tables=[AppTable(object="customers",
                                                         table="customers")])) as c:
        names = {f.name for f in (await c.describe("customers")).fields}
    assert "profile" not in names and "notes" in names


async def test_values_cross_over_in_both_directions(app) -> None:
    async with opened(app.dsn) as c:
        (res,) = await c.create("customers", [{
            "email": "ann@example.com", "first_name": "Ann", "age": "41", "tier": "gold",
            "interests": "golf;chess", "signed_up": "2024-02-29", "balance": "1234.50",
            "vip": True}])
        assert res.ok, res.error
        rec = res.record
        assert rec.properties == {
            "email": "ann@example.com", "first_name": "Ann", "last_name": None, "age": 41,
            "tier": "gold", "interests": ["golf", "chess"], "signed_up": "2024-02-29",
            "balance": "1234.50", "vip": True, "company_id": None}
        assert rec.updated_at > 0
        # What the app stored, in its own types.
        row = app.execute("SELECT age, tier::text, interests, signed_up::text, balance::text, "
                          "vip FROM customers WHERE id = %s", (int(rec.id),))
        assert row == [(41, "gold", ["golf", "chess"], "2024-02-29", "1234.50", True)]
        (upd,) = await c.update("customers", [(rec.id, {"interests": ["tennis"], "age": 42,
                                                        "vip": "false"})])
        assert upd.ok and upd.record.properties["interests"] == ["tennis"]
        assert upd.record.properties["vip"] is False
        got = await c.read("customers", [rec.id, "999", "not-a-number"], [])
        assert list(got) == [rec.id]


async def test_row_errors_fail_only_their_input_and_name_the_column(app) -> None:
    app.execute("INSERT INTO customers (email) VALUES ('taken@example.com')")
    async with opened(app.dsn) as c:
        inputs = [{"email": f"ok{i}@example.com"} for i in range(20)]
        inputs[3] = {"email": "taken@example.com"}
        inputs[7] = {"email": "x@example.com", "age": -1}
        inputs[11] = {"email": "y@example.com", "tier": "platinum"}
        inputs[12] = {"email": "z@example.com", "signed_up": "2024-13-45"}
        inputs[15] = {"email": "w@example.com", "company_id": 999}
        results = await c.create("customers", inputs)
        bad = {i: (r.error.category, r.error.message) for i, r in enumerate(results)
               if not r.ok}
        assert set(bad) == {3, 7, 11, 12, 15}
        assert bad[3][0] == "duplicate" and "'email'" in bad[3][1]
        assert results[3].error.existing_id == str(app.execute(
            "SELECT id FROM customers WHERE email = 'taken@example.com'")[0][0])
        assert bad[7][0] == "invalid_value" and "'age'" in bad[7][1]
        assert bad[11][0] == "invalid_value" and "'tier'" in bad[11][1]
        assert bad[12][0] == "invalid_value" and "'signed_up'" in bad[12][1]
        assert bad[15][0] == "invalid_value" and "'company_id'" in bad[15][1]
        # The others committed, in one transaction per batch.
        assert app.execute("SELECT count(*) FROM customers") == [(16,)]


async def test_writes_take_one_transaction_per_batch(app) -> None:
    async with opened(app.dsn, settings(batch_size=10)) as c:
        before = app.execute("SELECT xact_commit FROM pg_stat_database "
                             "WHERE datname = current_database()")[0][0]
        results = await c.create("customers", [{"email": f"b{i}@example.com"} for i in range(30)])
        assert all(r.ok for r in results)
        ids = sorted({r.record.id for r in results})
        assert len(ids) == 30
    # The rows of one batch share a transaction id; three batches, three transactions.
    xids = app.execute("SELECT count(DISTINCT xmin::text) FROM customers")
    assert xids == [(3,)]
    assert before  # the statistics view exists


async def test_keys_of_any_type(app) -> None:
    app.execute("""
        CREATE TABLE people_uuid (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), email text,
                                  updated_at timestamptz DEFAULT now());
        CREATE TABLE people_text (code text PRIMARY KEY, email text,
                                  updated_at bigint NOT NULL DEFAULT 0);
        INSERT INTO people_text VALUES ('b-2', 'b@example.com', 1700000000000),
                                       ('a-1', 'a@example.com', 1700000000000);
    """)
    s = settings(tables=[AppTable(object="u", table="people_uuid"),
                         AppTable(object="t", table="people_text", primary_key="code")])
    async with opened(app.dsn, s) as c:
        (made,) = await c.create("u", [{"email": "u@example.com"}])
        uid = made.record.id
        assert str(uuid.UUID(uid)) == uid
        assert list(await c.read("u", [uid, uid.upper(), "nope"], [])) == [uid, uid.upper()]
        page = await c.scan("t", None, [])
        assert [r.id for r in page.records] == ["a-1", "b-2"]
        (given,) = await c.create("t", [{"code": "c-3", "email": "c@example.com"}])
        assert given.ok and given.record.id == "c-3"
        # The app writes epoch milliseconds: so does crmsync.
        stamp = app.execute("SELECT updated_at FROM people_text WHERE code = 'c-3'")[0][0]
        assert stamp > 1e12
        (archived,) = await c.archive("u", [uid])
        assert archived.ok and archived.record.archived
        assert app.execute("SELECT count(*) FROM people_uuid") == [(0,)]


async def test_scan_pages_in_primary_key_order(app) -> None:
    app.execute("INSERT INTO customers (email) SELECT 'p' || g || '@example.com' "
                "FROM generate_series(1, 120) g")
    async with opened(app.dsn) as c:
        seen, cursor = [], None
        while True:
            page = await c.scan("customers", cursor, ["email"])
            seen += [int(r.id) for r in page.records]
            assert all(set(r.properties) == {"email"} for r in page.records)
            cursor = page.next_cursor
            if cursor is None:
                break
    assert seen == list(range(1, 121))


async def test_find_matches_case_insensitively(app) -> None:
    app.execute("INSERT INTO customers (email, age) VALUES ('Ann@Example.com', 30), "
                "('bob@example.com', 30)")
    async with opened(app.dsn) as c:
        found = await c.find("customers", "email", "ann@example.COM", ["email"])
        assert [r.properties["email"] for r in found] == ["Ann@Example.com"]
        assert len(await c.find("customers", "age", "30", [])) == 2
        assert await c.find("customers", "age", "thirty", []) == []


async def test_conditional_updates_apply_only_to_what_was_read(app) -> None:
    # connectors/base.py Connector.update: `expected` is the record as read; only the
    # columns written are compared.
    app.execute("INSERT INTO customers (id, email, first_name) VALUES (1, 'a@example.com', 'A')")
    async with opened(app.dsn) as c:
        assert c.capabilities.conditional_update
        read = Record("1", {"first_name": "A", "email": "old@example.com"})
        (ok,) = await c.update("customers", [("1", {"first_name": "B"})], expected=[read])
        assert ok.ok and ok.record.properties["first_name"] == "B"
        (refused,) = await c.update("customers", [("1", {"first_name": "C"})],
                                    expected=[read])
        assert not refused.ok and refused.error.category == "conflict"
        assert refused.error.stale
        (gone,) = await c.update("customers", [("2", {"first_name": "C"})], expected=[read])
        assert gone.error.category == "not_found"
    assert app.execute("SELECT first_name FROM customers") == [("B",)]


async def test_a_missing_grant_is_a_config_error_naming_it(app) -> None:
    app.execute("CREATE ROLE clerk LOGIN; GRANT SELECT, INSERT, UPDATE, DELETE ON customers, "
                "organisations TO clerk; GRANT CREATE ON DATABASE " + app.name + " TO clerk")
    dsn = app.server.dsn(app.name, user="clerk")
    with pytest.raises(ConnectorError) as exc:
        async with opened(dsn):
            pass
    assert exc.value.kind == "config" and exc.value.category == "permission_denied"
    assert "GRANT TRIGGER ON \"public\".\"customers\" TO \"clerk\"" in exc.value.message
    app.execute("GRANT TRIGGER ON customers, organisations TO clerk")
    async with opened(dsn) as c:
        assert (await c.create("customers", [{"email": "c@example.com"}]))[0].ok
    # Without CREATE on the database, a schema made for crmsync by its owner is enough.
    other = app.server
    db2 = app.name + "b"
    with psycopg.connect(other.dsn(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db2}"')
    with psycopg.connect(other.dsn(db2), autocommit=True) as conn:
        conn.execute(SCHEMA + "GRANT SELECT, INSERT, UPDATE, DELETE, TRIGGER ON customers, "
                     "organisations TO clerk")
    with pytest.raises(ConnectorError) as exc:
        async with opened(other.dsn(db2, user="clerk")):
            pass
    assert "CREATE SCHEMA \"crmsync\" AUTHORIZATION \"clerk\"" in exc.value.message
    with psycopg.connect(other.dsn(db2), autocommit=True) as conn:
        conn.execute("CREATE SCHEMA crmsync AUTHORIZATION clerk")
    async with opened(other.dsn(db2, user="clerk")):
        pass


async def test_the_apps_roles_need_no_grant_on_crmsyncs_schema(app) -> None:
    # The triggers' functions run as their owner (SECURITY DEFINER).
    app.execute("CREATE ROLE shopapp LOGIN; GRANT SELECT, INSERT, UPDATE, DELETE ON customers "
                "TO shopapp; GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO shopapp")
    async with opened(app.dsn) as c:
        with psycopg.connect(app.server.dsn(app.name, user="shopapp"), autocommit=True) as conn:
            conn.execute("INSERT INTO customers (email) VALUES ('app@example.com')")
        start = await c.changes_since("customers", "0", [])
        assert [r.properties["email"] for r in start.records] == ["app@example.com"]


async def test_a_table_renamed_under_the_connector_is_a_config_error(app) -> None:
    async with opened(app.dsn) as c:
        app.execute("ALTER TABLE customers RENAME TO clients")
        with pytest.raises(ConnectorError) as exc:
            await c.scan("customers", None, [])
        assert exc.value.kind == "config" and "no longer exists" in exc.value.message


async def test_a_lock_wait_is_bounded_and_transient(app) -> None:
    app.execute("INSERT INTO customers (id, email) VALUES (1, 'a@example.com')")
    async with opened(app.dsn, settings(lock_timeout_seconds=0.3)) as c:
        with app.connect() as holder:
            holder.execute("BEGIN")
            holder.execute("SELECT * FROM customers WHERE id = 1 FOR UPDATE")
            with trio.fail_after(30), pytest.raises(ConnectorError) as exc:
                await c.update("customers", [("1", {"first_name": "X"})])
            holder.execute("ROLLBACK")
        assert exc.value.kind == "transient" and "lock_timeout" in exc.value.message
        (ok,) = await c.update("customers", [("1", {"first_name": "X"})])
        assert ok.ok


async def test_a_statement_timeout_is_transient(app) -> None:
    async with opened(app.dsn, settings(statement_timeout_seconds=0.2)) as c:
        app.execute("CREATE FUNCTION slow() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                    "PERFORM pg_sleep(2); RETURN NEW; END $$; CREATE TRIGGER slow BEFORE "
                    "INSERT ON customers FOR EACH ROW EXECUTE FUNCTION slow()")
        with trio.fail_after(30), pytest.raises(ConnectorError) as exc:
            await c.create("customers", [{"email": "slow@example.com"}])
        assert exc.value.kind == "transient" and "statement_timeout" in exc.value.message
        app.execute("DROP TRIGGER slow ON customers")
        assert (await c.create("customers", [{"email": "slow@example.com"}]))[0].ok


async def test_a_dropped_connection_is_transient_and_the_next_call_reconnects(app) -> None:
    async with opened(app.dsn) as c:
        app.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE application_name = 'crmsync' AND datname = current_database()")
        with trio.fail_after(30), pytest.raises(ConnectorError) as exc:
            await c.scan("customers", None, [])
        assert exc.value.kind == "transient"
        page = await c.scan("customers", None, [])
        assert page.records == []
        assert c.statistics().reconnects == 1


async def test_the_password_never_shows(app) -> None:
    app.execute("CREATE ROLE secretive LOGIN PASSWORD 'hunter2-very-secret'")
    from crmsync.connectors.postgres import parse_dsn

    dsn = parse_dsn(f"{app.server.dsn(app.name, user='secretive')} password=hunter2-very-secret")
    assert "hunter2" not in repr(dsn) and "hunter2" not in dsn.describe()
    assert dsn.secrets() == ["hunter2-very-secret"]
