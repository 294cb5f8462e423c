"""`crmsync ctl webhooks list|register|remove CONN`: the webhooks crmsync keeps in an app that
registers them through its API (Pipedrive), handled through the connection's open connector."""

from __future__ import annotations

from typing import TYPE_CHECKING

from crmsync.connectors.base import ConnectorError
from crmsync.control.ops.lookup import OperationError, check_connection
from crmsync.control.ops.running import app_connector
from crmsync.control.views import WebhookEntry, WebhooksView

if TYPE_CHECKING:  # types only: the control server passes the daemon in
    from crmsync.daemon.main import Daemon

# What each action calls on a connector that manages its app's webhooks.
CALLS = {"list": "list_webhooks", "register": "register_webhooks", "remove": "remove_webhooks"}


async def webhooks(daemon: Daemon, connection: str, action: str = "list") -> WebhooksView:
    """The webhooks crmsync keeps in the app for this connection, through the app's API:
    list them, register them (one per object, pointing at this daemon, replacing ones that
    point elsewhere) or remove them. Only for connectors that manage webhooks (Pipedrive);
    `not_running` while the connection is not connected, `failed` when the app refuses."""
    check_connection(daemon, connection)
    if action not in CALLS:
        raise OperationError("invalid", f"webhooks action must be list, register or remove, "
                                        f"not {action!r}")
    kind, app = app_connector(daemon, connection)
    call = getattr(app, CALLS[action], None)
    if call is None:
        raise OperationError("invalid", f"connection {connection!r} ({kind}) does not "
                                        "register webhooks through an API")
    try:
        hooks = await call()
    except ConnectorError as exc:
        raise OperationError("failed", f"{action} webhooks of {connection!r}: "
                                       f"{exc.message}") from exc
    entries = [WebhookEntry(id=h.id, entity=h.entity, url=h.url, user=h.user, active=h.active)
               for h in hooks]
    done = {"list": "registered", "register": "registered now", "remove": "removed"}[action]
    return WebhooksView(connection=connection, action=action, webhooks=entries,
                        message=f"{len(entries)} webhook(s) {done}")
