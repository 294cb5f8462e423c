"""The connection string: read from the configured file or environment variable, turned into
libpq parameters, and described for people without its password.

The string is a secret (it may carry a password), so it is never logged, never put in an error
message and never kept in a `repr`. Without a password in it, libpq finds one the usual way:
`passfile=` in the string, `$PGPASSFILE`, `~/.pgpass`, or `$PGPASSWORD`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg.conninfo

from crmsync.config.model import PostgresConnection
from crmsync.config.secrets import SecretError, read_secret
from crmsync.connectors.base import ConnectorError

# libpq parameters that are never shown (the connection string's secrets).
_HIDDEN = frozenset({"password", "sslpassword"})


@dataclass(frozen=True, slots=True)
class Dsn:
    """libpq connection parameters; `repr` shows only what `describe()` shows."""

    params: dict[str, str] = field(repr=False)

    def describe(self) -> str:
        """user@host:port/dbname, with no secret: for status lines and error messages."""
        p = self.params
        host = p.get("host") or p.get("hostaddr") or "localhost"
        where = f"{host}:{p['port']}" if p.get("port") else host
        user = f"{p['user']}@" if p.get("user") else ""
        return f"{user}{where}/{p.get('dbname', '')}"

    def secrets(self) -> list[str]:
        """The values a log line must never show: the whole string's secret parts."""
        return [v for k, v in self.params.items() if k in _HIDDEN and v]


def parse_dsn(text: str) -> Dsn:
    """libpq parameters of a connection string or URI. Raises ConnectorError(kind="config")
    that says what is wrong without quoting the string."""
    try:
        params = psycopg.conninfo.conninfo_to_dict(text.strip())
    except psycopg.ProgrammingError:
        raise ConnectorError("config", "invalid_value",
                             "the PostgreSQL connection string is not valid libpq syntax "
                             "(key=value pairs or a postgresql:// URI)") from None
    return Dsn({k: str(v) for k, v in params.items() if v is not None})


def read_dsn(settings: PostgresConnection, base_dir: Path | None) -> Dsn:
    """The connection's parameters from its dsn_file / dsn_env."""
    try:
        secret = read_secret(settings.dsn_env, settings.dsn_file, base_dir)
    except SecretError as exc:
        raise ConnectorError("config", "invalid_value",
                             f"connection {settings.name!r}: {exc}") from None
    return parse_dsn(secret.reveal())


def connect_kwargs(dsn: Dsn, settings: PostgresConnection, application: str) -> dict[str, Any]:
    """Keyword arguments for `psycopg.connect`: the DSN's parameters, a connect timeout
    unless the DSN sets one, and `application_name` so that the DBA sees who is connected."""
    out: dict[str, Any] = dict(dsn.params)
    out.setdefault("connect_timeout", str(settings.connect_timeout_seconds))
    out.setdefault("application_name", application)
    return out
