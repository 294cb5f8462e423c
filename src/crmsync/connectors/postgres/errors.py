"""PostgreSQL failures classified by table (CONVENTIONS.md: outcomes come from a table).

Two levels, as the Connector protocol has them: an error about one input row (a constraint it
violates, a value its column cannot hold) becomes a `RecordError` for that input only; an
error about the database or the connection becomes a `ConnectorError` for the whole call.
SQLSTATE codes: https://www.postgresql.org/docs/current/errcodes-appendix.html
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

import psycopg

from crmsync.connectors.base import ConnectorError, ErrorKind

T = TypeVar("T")

# SQLSTATE (exact, then its two-character class) -> what the whole call's failure means.
_CALL_ERRORS: dict[str, tuple[ErrorKind, str, str]] = {
    "08": ("transient", "api_unavailable", "the connection to PostgreSQL failed"),
    "57P01": ("transient", "api_unavailable", "PostgreSQL is shutting down"),
    "57P02": ("transient", "api_unavailable", "PostgreSQL crashed"),
    "57P03": ("transient", "api_unavailable", "PostgreSQL is starting up"),
    "57014": ("transient", "api_unavailable",
              "a statement ran past statement_timeout_seconds"),
    "55P03": ("transient", "api_unavailable",
              "a row or table stayed locked by another transaction past lock_timeout_seconds"),
    "40": ("transient", "api_unavailable", "the transaction was rolled back (deadlock or "
                                            "serialization failure)"),
    "53": ("transient", "api_unavailable", "PostgreSQL is out of a resource (disk, memory, "
                                            "connections)"),
    "58": ("transient", "api_unavailable", "PostgreSQL had a system error"),
    "XX": ("transient", "api_unavailable", "PostgreSQL had an internal error"),
    # "cached plan must not change result type": the app altered a table; a new connection
    # prepares again.
    "0A000": ("transient", "api_unavailable", "a feature is not supported"),
    "42P01": ("config", "not_found", "a configured table no longer exists (renamed or "
                                     "dropped?)"),
    "42703": ("config", "not_found", "a configured column no longer exists"),
    "3F000": ("config", "not_found", "a configured schema does not exist"),
    "3D000": ("config", "not_found", "the database does not exist"),
    "42501": ("config", "permission_denied", "crmsync's role lacks a privilege"),
    "28": ("config", "permission_denied", "PostgreSQL refused crmsync's credentials"),
    "25006": ("config", "permission_denied",
              "the database is read-only (a standby?): point the connection at the primary"),
}

# SQLSTATE (exact, then class) -> the failed input's category.
_ROW_ERRORS: dict[str, str] = {
    "23505": "duplicate",
    "23502": "missing_required_field",
    "23514": "invalid_value",  # check constraint
    "23503": "invalid_value",  # foreign key
    "23P01": "invalid_value",  # exclusion constraint
    "22": "invalid_value",  # data exception: bad syntax for the type, out of range, too long
    "42804": "invalid_value",  # datatype mismatch
    "42846": "invalid_value",  # cannot coerce
    "P0001": "invalid_value",  # RAISE EXCEPTION in an app trigger
    "23": "invalid_value",
}


def _lookup(table: Mapping[str, T], state: str | None) -> T | None:
    if not state:
        return None
    return table.get(state) or table.get(state[:2])


def is_row_error(exc: BaseException) -> bool:
    """Does this failure concern the row being written rather than the database?"""
    return isinstance(exc, psycopg.Error) and _lookup(_ROW_ERRORS, exc.sqlstate) is not None


def row_category(exc: psycopg.Error, *, deleting: bool = False) -> str:
    category = _lookup(_ROW_ERRORS, exc.sqlstate) or "invalid_value"
    if deleting and exc.sqlstate == "23503":
        return "conflict"  # other app rows still reference this one
    return category


def _connect_failure(message: str) -> tuple[ErrorKind, str, str] | None:
    # libpq reports a refused login before any SQLSTATE exists: classify by its wording.
    m = message.lower()
    if "password authentication failed" in m or "no password supplied" in m \
            or "authentication failed" in m:
        return ("config", "permission_denied",
                "PostgreSQL refused the login (check the password or the passfile)")
    if "does not exist" in m and ("role" in m or "database" in m):
        return ("config", "not_found", "the role or the database does not exist")
    if "no pg_hba.conf entry" in m:
        return ("config", "permission_denied",
                "pg_hba.conf has no entry allowing crmsync's connection")
    return None


def call_error(exc: psycopg.Error, what: str) -> ConnectorError:
    """The ConnectorError for a failed call; `what` says what was being done. The message
    carries PostgreSQL's primary message (never the connection string)."""
    detail = (exc.diag.message_primary if exc.sqlstate else None) or str(exc).strip()
    found = _lookup(_CALL_ERRORS, exc.sqlstate)
    if found is None and not exc.sqlstate and isinstance(exc, psycopg.OperationalError):
        found = _connect_failure(str(exc)) or _CALL_ERRORS["08"]
    kind, category, summary = found or ("transient", "api_unavailable", "PostgreSQL failed")
    return ConnectorError(kind, category, f"{what}: {summary} ({detail})")
