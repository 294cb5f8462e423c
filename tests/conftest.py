"""Shared fixtures: the hypothesis profile, and PostgreSQL for the tests that need one.

PostgreSQL: one throwaway server for the session, a fresh database per test (`pg_db`), and a
server of its own for tests that stop or kill it (`own_pg_server`). Without the server binaries
those tests skip with a loud message — except under CI (`CI` set), where `.ci/run` installs the
server package, so a missing server is a failure.
"""

from __future__ import annotations

import itertools
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
import pytest
from hypothesis import HealthCheck, settings

from crmsync.cli.throwaway_postgres import NoPostgres, ThrowawayPostgres

_counter = itertools.count(1)


def start_server(durable: bool = False) -> ThrowawayPostgres:
    try:
        return ThrowawayPostgres.create(durable=durable)
    except NoPostgres as exc:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL tests cannot run under CI: {exc}")
        message = f"PostgreSQL TESTS SKIPPED: {exc}"
        warnings.warn(message, stacklevel=1)
        pytest.skip(message)


@dataclass
class Database:
    """A database of its own on a test server."""

    server: ThrowawayPostgres
    name: str

    @property
    def dsn(self) -> str:
        return self.server.dsn(self.name)

    def connect(self, **kw: object) -> psycopg.Connection:
        return psycopg.connect(self.dsn, autocommit=True, **kw)  # type: ignore[arg-type]

    def execute(self, sql: str, params: object = None) -> list[tuple]:
        with self.connect() as conn:
            cur = conn.execute(sql, params)  # type: ignore[arg-type]
            return cur.fetchall() if cur.description else []


def new_database(server: ThrowawayPostgres) -> Database:
    name = f"t{os.getpid()}_{next(_counter)}"
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return Database(server, name)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[ThrowawayPostgres]:
    server = start_server()
    try:
        yield server
    finally:
        server.destroy()


@pytest.fixture
def pg_db(pg_server: ThrowawayPostgres) -> Database:
    return new_database(pg_server)


@pytest.fixture
def own_pg_db(own_pg_server: ThrowawayPostgres) -> Database:
    """A database on a server this test may stop, kill and start again (`.server`)."""
    return new_database(own_pg_server)


@pytest.fixture
def own_pg_server() -> Iterator[ThrowawayPostgres]:
    """A server this test may stop, kill and start again: durable, so that a transaction it
    acknowledged survives being killed."""
    server = start_server(durable=True)
    try:
        yield server
    finally:
        server.destroy()


# CI runs the property tests with at least 500 examples each (issue #2); locally fewer.
settings.register_profile(
    "ci", max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("dev", max_examples=100, deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")
