"""The notification sent when an object sync completes its initial sync: a log event, a POST
to the configured webhook URL and/or the configured command (no shell)."""

from __future__ import annotations

import time

import httpx
import msgspec
import structlog
import trio

from crmsync.config.model import NotifySettings

log = structlog.get_logger("crmsync.notify")


class InitialSyncComplete(msgspec.Struct, frozen=True):
    event: str
    connection: str
    hub_object: str
    app_object: str
    counts: dict[str, int]
    completed_at: float


async def send(settings: NotifySettings, connection: str, hub_object: str, app_object: str,
               counts: dict[str, int], client: httpx.AsyncClient | None = None) -> None:
    note = InitialSyncComplete("initial_sync_complete", connection, hub_object, app_object,
                               counts, time.time())
    body = msgspec.json.encode(note)
    if settings.webhook_url:
        try:
            with trio.fail_after(15):
                if client is None:
                    async with httpx.AsyncClient(timeout=10) as c:
                        r = await c.post(settings.webhook_url, content=body,
                                         headers={"content-type": "application/json"})
                else:
                    r = await client.post(settings.webhook_url, content=body,
                                          headers={"content-type": "application/json"})
            log.info("notification sent", target="webhook", status=r.status_code,
                     connection=connection, object=hub_object)
        except (httpx.HTTPError, trio.TooSlowError) as exc:
            log.warning("notification failed", target="webhook", error=str(exc),
                        connection=connection, object=hub_object)
    if settings.command:
        try:
            with trio.fail_after(60):
                proc = await trio.run_process(settings.command, stdin=body, check=False,
                                              capture_stdout=True, capture_stderr=True)
            log.info("notification sent", target="command", returncode=proc.returncode,
                     connection=connection, object=hub_object)
        except (OSError, trio.TooSlowError) as exc:
            log.warning("notification failed", target="command", error=str(exc),
                        connection=connection, object=hub_object)
