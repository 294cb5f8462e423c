"""App connectors found by their configuration `type`.

A new app connector is one package under `crmsync.connectors` plus one line in `_APP_CONNECTORS`.
Modules are imported on first use, so a daemon that syncs only SQLite never loads a PostgreSQL
driver or another connector's dependencies.

A registered class takes `(settings, *, base_dir=None)` — `base_dir` is the configuration
file's directory, where relative secret files are found — and has `open()`, an async context
manager yielding the open connector. For the daemon and `crmsync app uninstall` it also has
three static methods taking `(settings, base_dir)`: `secrets` (values a log line must never
show), `removal_plan` and `remove` (what the connector installed in the app, one line each;
`remove` removes it). The last two block: they are for the command line.

It may also have

- `from_env(settings, env)`: built with the `AppConnectorEnv` the daemon keeps for the
  connection (what must outlive a restart of the connection, such as the account's rate
  budget; a transport for tests; where to have webhooks delivered);
- `webhook_receiver(settings, base_dir)`: the receiver of `POST /webhooks/<connection>` when
  its app pushes its own format (Pipedrive); without it, a connection with a
  `webhook_secret_env` / `webhook_secret_file` takes the generic signed push.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from importlib import import_module
from pathlib import Path
from typing import Any

from crmsync.config.secrets import read_secret
from crmsync.connectors.app_webhooks import AppReceiver, HmacReceiver
from crmsync.connectors.base import Connector

# config `type` -> "module:class"
_APP_CONNECTORS: dict[str, str] = {
    "sqlite": "crmsync.connectors.sqlite:SqliteAppConnector",
    "postgres": "crmsync.connectors.postgres:PostgresAppConnector",
    "pipedrive": "crmsync.connectors.pipedrive:PipedriveConnector",
}


class UnknownConnectorType(LookupError):
    """No app connector is registered for a configuration `type`."""


@dataclass
class AppConnectorEnv:
    """What the daemon keeps for one connection and hands to each connector it opens."""

    base_dir: Path | None = None  # relative `*_file` secrets are looked up here
    # Survives re-opens of the connection (a restart after a failure, a pause): the
    # connector keeps its account's rate budget under "budget" (shown by `ctl status`).
    shared: dict[str, Any] = field(default_factory=dict)
    transport: Any = None  # an httpx transport underneath the connector's client (tests)
    refresh_token: str | None = None  # the newest rotated OAuth refresh token, if any
    on_refresh_token: Callable[[str], Awaitable[None]] | None = None
    webhook_url: str = ""  # where the app should deliver webhooks, when it registers them
    receiver: AppReceiver | None = None  # this connection's webhook receiver


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


def make_app_connector(settings: Any, base_dir: Path | None = None,
                       env: AppConnectorEnv | None = None) -> Any:
    """The (unopened) app connector of one connection's settings."""
    cls = app_connector_class(settings.connector_type)
    make = getattr(cls, "from_env", None)
    if make is not None and env is not None:
        if env.base_dir is None:
            env.base_dir = base_dir
        return make(settings, env)
    return cls(settings, base_dir=base_dir)


def open_app_connector(settings: Any, base_dir: Path | None = None,
                       env: AppConnectorEnv | None = None
                       ) -> AbstractAsyncContextManager[Connector]:
    """Open the app connector of one connection's settings (`settings.connector_type`)."""
    opener: AbstractAsyncContextManager[Connector] = make_app_connector(
        settings, base_dir, env).open()
    return opener


def app_connector_secrets(settings: Any, base_dir: Path | None = None) -> list[str]:
    """Secret values of a connection's settings (read from their sources), for redaction."""
    return list(app_connector_class(settings.connector_type).secrets(settings, base_dir))


def app_removal_plan(settings: Any, base_dir: Path | None = None) -> list[str]:
    """What `app_remove` would remove from the connection's app (blocking)."""
    return list(app_connector_class(settings.connector_type).removal_plan(settings, base_dir))


def app_remove(settings: Any, base_dir: Path | None = None) -> list[str]:
    """Remove what crmsync installed in the connection's app (blocking)."""
    return list(app_connector_class(settings.connector_type).remove(settings, base_dir))


def webhook_receiver(settings: Any, base_dir: Path | None = None) -> AppReceiver | None:
    """The receiver of the connection's webhooks, or None when it takes none. Raises
    SecretError when a secret it needs cannot be read."""
    make = getattr(app_connector_class(settings.connector_type), "webhook_receiver", None)
    if make is not None:
        receiver: AppReceiver | None = make(settings, base_dir)
        return receiver
    env = getattr(settings, "webhook_secret_env", None)
    file = getattr(settings, "webhook_secret_file", None)
    if not env and not file:
        return None
    return HmacReceiver(read_secret(env, file, base_dir))
