"""SQLite failures classified by table (CONVENTIONS.md: outcomes come from a table, not `if`s).

Two levels, as the Connector protocol has them: an error about one input row (a constraint the
row violates) becomes a `RecordError` for that input only; an error about the database (locked,
missing table, read-only, corrupt) becomes a `ConnectorError` for the whole call.
"""

from __future__ import annotations

import sqlite3

from crmsync.connectors.base import ConnectorError, ErrorKind, RecordError

# Primary result code (extended code & 0xff) -> what the whole call's failure means.
_CALL_ERRORS: dict[int, tuple[ErrorKind, str, str]] = {
    sqlite3.SQLITE_BUSY: ("transient", "api_unavailable", "the app database is busy"),
    sqlite3.SQLITE_LOCKED: ("transient", "api_unavailable", "the app database is locked"),
    sqlite3.SQLITE_IOERR: ("transient", "api_unavailable", "I/O error on the app database"),
    sqlite3.SQLITE_FULL: ("transient", "api_unavailable", "the app database's disk is full"),
    sqlite3.SQLITE_NOMEM: ("transient", "api_unavailable", "out of memory"),
    sqlite3.SQLITE_INTERRUPT: ("transient", "api_unavailable", "interrupted"),
    sqlite3.SQLITE_SCHEMA: ("transient", "api_unavailable", "the app's schema changed"),
    sqlite3.SQLITE_PROTOCOL: ("transient", "api_unavailable", "locking protocol error"),
    sqlite3.SQLITE_READONLY: ("config", "permission_denied",
                              "the app database is read-only for crmsync"),
    sqlite3.SQLITE_PERM: ("config", "permission_denied", "access to the app database denied"),
    sqlite3.SQLITE_AUTH: ("config", "permission_denied", "access to the app database denied"),
    sqlite3.SQLITE_CANTOPEN: ("config", "not_found", "the app database cannot be opened"),
    sqlite3.SQLITE_NOTADB: ("config", "invalid_value", "the file is not a SQLite database"),
    sqlite3.SQLITE_CORRUPT: ("config", "internal", "the app database is corrupt"),
    # "no such table / column", syntax: the app's schema no longer fits the configuration.
    sqlite3.SQLITE_ERROR: ("config", "not_found",
                           "the app database does not match the configuration"),
}

# Extended constraint codes (names, since Python 3.11) -> the failed input's category.
_ROW_ERRORS: dict[str, str] = {
    "SQLITE_CONSTRAINT_UNIQUE": "duplicate",
    "SQLITE_CONSTRAINT_PRIMARYKEY": "duplicate",
    "SQLITE_CONSTRAINT_NOTNULL": "missing_required_field",
    "SQLITE_CONSTRAINT_CHECK": "invalid_value",
    "SQLITE_CONSTRAINT_FOREIGNKEY": "invalid_value",
    "SQLITE_CONSTRAINT_DATATYPE": "invalid_value",  # STRICT tables
    "SQLITE_CONSTRAINT_TRIGGER": "invalid_value",  # RAISE(ABORT|FAIL, ...) in an app trigger
    "SQLITE_MISMATCH": "invalid_value",  # a non-integer into an INTEGER PRIMARY KEY
    "SQLITE_TOOBIG": "invalid_value",
    "SQLITE_RANGE": "invalid_value",
}


def is_row_error(exc: BaseException) -> bool:
    """Does this failure concern the row being written rather than the database?"""
    if isinstance(exc, sqlite3.IntegrityError):
        return True
    if isinstance(exc, sqlite3.Error):
        return getattr(exc, "sqlite_errorname", "") in _ROW_ERRORS
    return isinstance(exc, TypeError | OverflowError | sqlite3.InterfaceError)


def row_error(exc: BaseException, *, deleting: bool = False) -> RecordError:
    """The RecordError for an input whose statement failed with `exc`."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    category = _ROW_ERRORS.get(name, "invalid_value")
    if deleting and name == "SQLITE_CONSTRAINT_FOREIGNKEY":
        # Other app rows still reference this one.
        category = "conflict"
    return RecordError(category=category, message=str(exc))


def call_error(exc: sqlite3.Error, what: str) -> ConnectorError:
    """The ConnectorError for a failed call; `what` says what was being done."""
    code = getattr(exc, "sqlite_errorcode", None)
    primary = code & 0xFF if isinstance(code, int) else sqlite3.SQLITE_ERROR
    kind, category, summary = _CALL_ERRORS.get(
        primary, ("transient", "api_unavailable", "the app database failed"))
    return ConnectorError(kind, category, f"{what}: {summary} ({exc})")
