"""Creates in PostgreSQL: one multi-row INSERT per batch, each returned row matched to its
input by a key drawn beforehand (PostgreSQL does not promise RETURNING's order for a multi-row
INSERT: https://www.postgresql.org/docs/current/sql-insert.html documents RETURNING per row
inserted, not their order), a statement per row where that is not certain, and row errors
failing alone either way."""

from __future__ import annotations

import uuid

import pytest

from crmsync.config.model import AppTable

from .pg_app import SCHEMA, opened, settings

# An app-side statement-level trigger counting INSERT statements on customers.
COUNT_STATEMENTS = """
CREATE TABLE insert_statements (n int);
CREATE FUNCTION count_insert() RETURNS trigger LANGUAGE plpgsql AS
  $$ BEGIN INSERT INTO insert_statements VALUES (1); RETURN NULL; END $$;
CREATE TRIGGER count_insert AFTER INSERT ON customers FOR EACH STATEMENT
  EXECUTE FUNCTION count_insert();
"""


@pytest.fixture
def app(pg_db):
    pg_db.execute(SCHEMA)
    pg_db.execute(COUNT_STATEMENTS)
    return pg_db


def statements(app) -> int:
    return int(app.execute("SELECT count(*) FROM insert_statements")[0][0])


def rows_by_id(app) -> dict[str, tuple]:
    return {str(r[0]): r[1:] for r in app.execute(
        "SELECT id, email, first_name FROM customers")}


def assert_matched(app, inputs, results) -> None:
    """Each result names the row holding its own input's values."""
    held = rows_by_id(app)
    for given, r in zip(inputs, results, strict=True):
        assert r.ok
        assert r.record.properties["email"] == given["email"]
        assert held[r.record.id] == (given["email"], given.get("first_name"))


async def test_a_batch_is_one_statement_and_each_row_meets_its_input(app) -> None:
    # Inputs with different columns: a column an input leaves out takes its DEFAULT.
    inputs = [{"email": f"c{i}@example.com", **({"first_name": f"F{i}"} if i % 3 else {})}
              for i in range(25)]
    async with opened(app.dsn, settings(batch_size=10)) as c:
        results = await c.create("customers", inputs)
    assert statements(app) == 3  # 10 + 10 + 5
    assert_matched(app, inputs, results)
    assert len({r.record.incarnation for r in results} - {""}) == 25


async def test_row_errors_bisect_a_multi_row_batch(app) -> None:
    app.execute("INSERT INTO customers (email) VALUES ('taken@example.com')")
    inputs = [{"email": f"ok{i}@example.com"} for i in range(16)]
    inputs[5] = {"email": "taken@example.com"}
    async with opened(app.dsn, settings(batch_size=16)) as c:
        results = await c.create("customers", inputs)
    assert [i for i, r in enumerate(results) if not r.ok] == [5]
    assert results[5].error.category == "duplicate"
    assert_matched(app, inputs[:5] + inputs[6:], results[:5] + results[6:])
    # Committed statements (a refused one is rolled back with its count): the row before,
    # then the halves without the bad input — [8:16], [0:4], [4] alone, [6:8].
    assert statements(app) == 5


async def test_keys_changed_by_an_app_trigger_fall_back_to_a_statement_per_row(app) -> None:
    # The app renumbers rows: the keys drawn prove nothing, so each row is its own statement.
    app.execute("""
        CREATE FUNCTION renumber() RETURNS trigger LANGUAGE plpgsql AS
          $$ BEGIN NEW.id := NEW.id + 100000; RETURN NEW; END $$;
        CREATE TRIGGER renumber BEFORE INSERT ON customers FOR EACH ROW
          EXECUTE FUNCTION renumber();
    """)
    inputs = [{"email": f"r{i}@example.com", "first_name": f"R{i}"} for i in range(6)]
    async with opened(app.dsn, settings(batch_size=10)) as c:
        results = await c.create("customers", inputs)
    assert_matched(app, inputs, results)
    assert statements(app) == 6
    assert all(int(r.record.id) > 100000 for r in results)


@pytest.mark.parametrize("key", [
    "id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
    "id serial PRIMARY KEY",
    "id uuid PRIMARY KEY DEFAULT gen_random_uuid()",
])
async def test_keys_drawn_from_each_kind_of_default(app, key) -> None:
    app.execute(f"CREATE TABLE people ({key}, email text, updated_at timestamptz)")
    app.execute("CREATE TABLE people_statements (n int); "
                "CREATE FUNCTION count_people() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN INSERT INTO people_statements VALUES (1); RETURN NULL; END $$; "
                "CREATE TRIGGER count_people AFTER INSERT ON people FOR EACH STATEMENT "
                "EXECUTE FUNCTION count_people()")
    s = settings(tables=[AppTable(object="p", table="people")])
    inputs = [{"email": f"p{i}@example.com"} for i in range(7)]
    async with opened(app.dsn, s) as c:
        results = await c.create("p", inputs)
    held = {str(r[0]): r[1] for r in app.execute("SELECT id, email FROM people")}
    assert [held[r.record.id] for r in results] == [i["email"] for i in inputs]
    assert app.execute("SELECT count(*) FROM people_statements") == [(1,)]
    if "uuid" in key:
        assert all(str(uuid.UUID(r.record.id)) == r.record.id for r in results)


async def test_a_role_that_may_not_draw_keys_creates_row_by_row(app) -> None:
    # An identity column's sequence needs no grant for INSERT, but drawing from it does.
    # (https://www.postgresql.org/docs/current/sql-createtable.html, GENERATED ... AS IDENTITY;
    # nextval needs USAGE or UPDATE: https://www.postgresql.org/docs/current/functions-sequence.html)
    app.execute("CREATE ROLE undrawing LOGIN; GRANT SELECT, INSERT, UPDATE, DELETE, TRIGGER ON "
                "customers, organisations TO undrawing; "
                "GRANT INSERT ON insert_statements TO undrawing; "
                "GRANT CREATE ON DATABASE " + app.name + " TO undrawing")
    # (Roles belong to the whole server: a name no other test uses.)
    dsn = app.server.dsn(app.name, user="undrawing")
    inputs = [{"email": f"k{i}@example.com"} for i in range(4)]
    async with opened(dsn) as c:
        results = await c.create("customers", inputs)
    assert_matched(app, inputs, results)
    assert statements(app) == 4


async def test_inputs_giving_their_key_are_written_row_by_row(app) -> None:
    inputs = [{"email": f"g{i}@example.com"} for i in range(3)]
    s = settings(tables=[AppTable(object="customers", table="customers",
                                  columns=["id", "email", "first_name"])])
    async with opened(app.dsn, s) as c:
        results = await c.create("customers", [{"id": 50 + i, **v}
                                               for i, v in enumerate(inputs)])
    assert [r.record.id for r in results] == ["50", "51", "52"]
    assert_matched(app, inputs, results)
