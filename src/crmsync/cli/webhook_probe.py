"""`crmsync doctor`'s webhook check: a signed test delivery to ourselves.

An empty delivery (`[]`), signed as HubSpot signs (v3: HMAC-SHA256 of method + URL + body +
timestamp with the app's client secret, hubspot-api.md §8.3), is POSTed to
`{public_base_url}/webhooks/hubspot`, the URL HubSpot is told to call. It goes through
whatever stands in between (DNS, TLS, the reverse proxy) to `daemon.webhooks.listen`:

- where the daemon runs, its webhook server answers (an empty delivery stores nothing);
- where nothing listens yet, the doctor serves the daemon's own webhook application there
  for the length of the probe.

A 204 means the URL reaches crmsync and the signature it computes over `public_base_url`
matches the secret; anything else is explained with its fix.
"""

from __future__ import annotations

import errno
import time
from dataclasses import dataclass
from typing import Any, cast

import httpx
import trio

from crmsync.config.secrets import Secret
from crmsync.connectors.hubspot.webhooks import (
    SIGNATURE_V3_HEADER,
    TIMESTAMP_HEADER,
    signature_v3,
)
from crmsync.daemon.webhook_server import WebhookRoutes, WebhookServer
from crmsync.store import Store, StoreError

PROBE_SECONDS = 10.0
EMPTY_DELIVERY = b"[]"


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    message: str
    fix: str = ""


class _NoStore:
    """The probe's webhook application stores nothing: an empty delivery never asks."""

    async def call(self, fn: Any, *args: Any) -> Any:
        raise StoreError("the doctor's webhook probe stores nothing")


def signed_empty_delivery(secret: Secret, url: str, now_ms: int) -> dict[str, str]:
    """The headers of an empty delivery to `url`, signed as HubSpot signs (v3)."""
    ts = str(now_ms)
    sig = signature_v3(secret.reveal(), "POST", url, EMPTY_DELIVERY, ts)
    return {SIGNATURE_V3_HEADER: sig, TIMESTAMP_HEADER: ts,
            "Content-Type": "application/json", "User-Agent": "crmsync-doctor"}


async def probe(public_base_url: str, listen: str, secret: Secret, *,
                max_body_bytes: int = 1024 * 1024) -> ProbeResult:
    """Send the signed empty delivery; serve the webhook application on `listen` meanwhile if
    nothing listens there."""
    url = public_base_url.rstrip("/") + "/webhooks/hubspot"
    server = WebhookServer(cast(Store, _NoStore()), WebhookRoutes(hub_secret=secret),
                           public_base_url=public_base_url, max_body_bytes=max_body_bytes)
    async with trio.open_nursery() as nursery:
        who = "the running crmsync"
        try:
            await nursery.start(_serve, server, listen)
            who = f"crmsync's webhook application (served on {listen} for this check)"
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                return ProbeResult(False, f"cannot listen on daemon.webhooks.listen = {listen}: "
                                          f"{exc.strerror}",
                                   "give an address of this machine and a free port")
        try:
            return await _send(url, secret, who)
        finally:
            nursery.cancel_scope.cancel()


async def _serve(server: WebhookServer, listen: str, *,
                 task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    from hypercorn.config import Config as HyperConfig
    from hypercorn.trio import serve

    hc = HyperConfig()
    hc.bind = [listen]
    hc.accesslog = None
    hc.errorlog = None
    hc.graceful_timeout = 0.5
    await serve(server.app, hc, task_status=task_status)  # type: ignore[arg-type]


async def _send(url: str, secret: Secret, who: str) -> ProbeResult:
    headers = signed_empty_delivery(secret, url, int(time.time() * 1000))
    reach = ("public_base_url must reach daemon.webhooks.listen: check DNS, the TLS "
             "certificate, the reverse proxy (it forwards /webhooks/ unchanged) and the firewall")
    try:
        async with httpx.AsyncClient(timeout=httpx.Timeout(PROBE_SECONDS),
                                     follow_redirects=False) as client:
            with trio.fail_after(PROBE_SECONDS):
                response = await client.post(url, content=EMPTY_DELIVERY, headers=headers)
    except (httpx.HTTPError, trio.TooSlowError) as exc:
        return ProbeResult(False, f"a signed test delivery to {url} did not arrive: "
                                  f"{str(exc) or type(exc).__name__}", reach)
    if response.status_code == 204:
        return ProbeResult(True, f"a signed test delivery to {url} reached {who} and passed "
                                 "its signature check")
    if response.status_code == 401:
        return ProbeResult(False, f"{url} refused a signed test delivery (401): the signature "
                                  "does not match",
                           "hub.webhook_client_secret_* must hold the app's client secret, and "
                           "public_base_url be exactly the URL HubSpot calls (scheme, host, "
                           "port, path prefix)")
    if response.status_code == 404:
        return ProbeResult(False, f"{url} answered 404 to a signed test delivery",
                           "the running daemon has no HubSpot webhooks configured (restart "
                           "it after setting hub.webhook_client_secret_*), or " + reach)
    return ProbeResult(False, f"{url} answered {response.status_code} to a signed test "
                              "delivery", reach)
