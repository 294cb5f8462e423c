"""App connectors are found by their configuration `type`."""

from __future__ import annotations

import pytest

from crmsync.config.model import SqliteConnection
from crmsync.connectors.registry import (
    UnknownConnectorType,
    app_connector_class,
    app_connector_types,
)
from crmsync.connectors.sqlite import SqliteAppConnector


def test_every_connection_type_of_the_config_has_a_connector() -> None:
    from crmsync.config.model import PostgresConnection
    from crmsync.connectors.postgres import PostgresAppConnector

    assert SqliteConnection.connector_type in app_connector_types()
    assert app_connector_class("sqlite") is SqliteAppConnector
    assert app_connector_class(PostgresConnection.connector_type) is PostgresAppConnector


def test_an_unknown_type_names_the_known_ones() -> None:
    with pytest.raises(UnknownConnectorType, match=r"known: .*sqlite"):
        app_connector_class("oracle")
