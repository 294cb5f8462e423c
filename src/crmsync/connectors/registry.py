"""App connectors found by their configuration `type`.

A new app connector is one package under `crmsync.connectors` plus one line in `_APP_CONNECTORS`.
Modules are imported on first use, so a daemon that syncs only SQLite never loads a PostgreSQL
driver or another connector's dependencies.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from importlib import import_module
from typing import Any

from crmsync.connectors.base import Connector

# config `type` -> "module:class"; the class takes the connection's settings struct and has
# `open()`, an async context manager yielding the open connector.
_APP_CONNECTORS: dict[str, str] = {
    "sqlite": "crmsync.connectors.sqlite:SqliteAppConnector",
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


def open_app_connector(settings: Any) -> AbstractAsyncContextManager[Connector]:
    """Open the app connector of one connection's settings (`settings.connector_type`)."""
    cls = app_connector_class(settings.connector_type)
    opener: AbstractAsyncContextManager[Connector] = cls(settings).open()
    return opener
