"""App connectors found by their configuration `type`.

A new app connector is one package under `crmsync.connectors` plus one line in `_APP_CONNECTORS`.
Modules are imported on first use, so a daemon that syncs only SQLite never loads a PostgreSQL
driver or another connector's dependencies.

A registered class takes `(settings, *, base_dir=None)` — `base_dir` is the configuration
file's directory, where relative secret files are found — and has `open()`, an async context
manager yielding the open connector. For the daemon and `crmsync app uninstall` it also has
three static methods taking `(settings, base_dir)`: `secrets` (values a log line must never
show), `removal_plan` and `remove` (what the connector installed in the app's database, one
line each; `remove` removes it). The last two block: they are for the command line.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from importlib import import_module
from pathlib import Path
from typing import Any

from crmsync.connectors.base import Connector

# config `type` -> "module:class"
_APP_CONNECTORS: dict[str, str] = {
    "sqlite": "crmsync.connectors.sqlite:SqliteAppConnector",
    "postgres": "crmsync.connectors.postgres:PostgresAppConnector",
}


class UnknownConnectorType(LookupError):
    """No app connector is registered for a configuration `type`."""


def app_connector_types() -> list[str]:
    return sorted(_APP_CONNECTORS)


def app_connector_class(connector_type: str) -> Any:
    """The connector class registered for `connector_type` (imported now)."""
    try:
        target = _APP_CONNECTORS[connector_type]
    except KeyError:
        raise UnknownConnectorType(
            f"no app connector for type {connector_type!r} "
            f"(known: {', '.join(app_connector_types())})") from None
    module, _, name = target.partition(":")
    return getattr(import_module(module), name)


def open_app_connector(settings: Any, base_dir: Path | None = None
                       ) -> AbstractAsyncContextManager[Connector]:
    """Open the app connector of one connection's settings (`settings.connector_type`)."""
    cls = app_connector_class(settings.connector_type)
    opener: AbstractAsyncContextManager[Connector] = cls(settings, base_dir=base_dir).open()
    return opener


def app_connector_secrets(settings: Any, base_dir: Path | None = None) -> list[str]:
    """Secret values of a connection's settings (read from their sources), for redaction."""
    return list(app_connector_class(settings.connector_type).secrets(settings, base_dir))


def app_removal_plan(settings: Any, base_dir: Path | None = None) -> list[str]:
    """What `app_remove` would remove from the connection's app database (blocking)."""
    return list(app_connector_class(settings.connector_type).removal_plan(settings, base_dir))


def app_remove(settings: Any, base_dir: Path | None = None) -> list[str]:
    """Remove what crmsync installed in the connection's app database (blocking)."""
    return list(app_connector_class(settings.connector_type).remove(settings, base_dir))
