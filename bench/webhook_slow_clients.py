"""Webhook latency while slow clients hold connections open. Prints JSON.

    python bench/webhook_slow_clients.py [--slow-clients 200] [--deliveries 50]

`--slow-clients` TCP clients send the headers of a POST /webhooks/hubspot, then one body byte
a second (a slowloris); then `--deliveries` valid, signed HubSpot deliveries are sent one
after the other and the time to each 204 is measured. The webhook application runs behind
hypercorn on loopback over a real state database, configured as the daemon configures it
(64 processing slots, a 10-second body deadline); the slow clients are still connected when
the last delivery is answered. Issue 10 measured 26.9 s for one delivery here before bodies
were read outside the processing slots; HubSpot gives up on a delivery after 5 s.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import statistics
import tempfile
import time
from pathlib import Path

import httpx
import trio
from hypercorn.config import Config as HyperConfig
from hypercorn.trio import serve

from crmsync.config.secrets import Secret
from crmsync.daemon import logging as daemon_logging
from crmsync.daemon.webhook_server import WebhookRoutes, WebhookServer
from crmsync.store import Store
from crmsync.store.inbox import hub_source

SECRET = "bench-hub-client-secret-0123456789"
PUBLIC = "https://crmsync.bench"
PATH = "/webhooks/hubspot"


def signed(body: bytes) -> dict[str, str]:
    """HubSpot's v3 signature: base64(HMAC-SHA256(secret, method + uri + body + timestamp))."""
    ts = str(int(time.time() * 1000))
    message = b"POST" + (PUBLIC + PATH).encode() + body + ts.encode()
    sig = base64.b64encode(hmac.new(SECRET.encode(), message, hashlib.sha256).digest())
    return {"X-HubSpot-Signature-v3": sig.decode(), "X-HubSpot-Request-Timestamp": ts,
            "Content-Type": "application/json"}


def delivery(i: int) -> bytes:
    return json.dumps([{"eventId": i, "subscriptionId": 1, "portalId": 1, "appId": 1,
                        "occurredAt": int(time.time() * 1000), "attemptNumber": 0,
                        "subscriptionType": "contact.propertyChange", "objectId": 1000 + i,
                        "propertyName": "lastname", "propertyValue": "Lee",
                        "changeSource": "CRM_UI"}]).encode()


async def bench(state: Path, slow_clients: int, deliveries: int) -> dict[str, object]:
    latencies: list[float] = []
    async with Store.open(state / "crmsync.db") as store:
        routes = WebhookRoutes(hub={"contacts": [hub_source("shop", "contacts")]},
                               hub_secret=Secret(SECRET, "bench"))
        server = WebhookServer(store, routes, public_base_url=PUBLIC)  # the daemon's defaults
        hc = HyperConfig()
        hc.bind = ["127.0.0.1:0"]
        hc.accesslog = None
        hc.errorlog = None
        hc.keep_alive_timeout = 5  # as the daemon sets it
        connected = 0
        async with trio.open_nursery() as nursery:
            binds = await nursery.start(serve, server.app, hc)
            port = int(binds[0].rsplit(":", 1)[1])

            async def slowloris() -> None:
                nonlocal connected
                async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
                    await stream.send_all(f"POST {PATH} HTTP/1.1\r\nHost: bench\r\n"
                                          "Content-Length: 100000\r\n\r\n".encode())
                    connected += 1
                    try:
                        while True:
                            await trio.sleep(1)
                            await stream.send_all(b" ")
                    except trio.BrokenResourceError:  # answered 408 and closed
                        connected -= 1

            for _ in range(slow_clients):
                nursery.start_soon(slowloris)
            while connected < slow_clients:
                await trio.sleep(0.01)
            await trio.sleep(1.5)  # every slow request is in its body by now
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}",
                                         timeout=60) as client:
                for i in range(deliveries):
                    body = delivery(i)
                    started = time.perf_counter()
                    r = await client.post(PATH, content=body, headers=signed(body))
                    latencies.append(time.perf_counter() - started)
                    if r.status_code != 204:
                        raise SystemExit(f"delivery {i}: {r.status_code} {r.text}")
            still_connected = connected
            nursery.cancel_scope.cancel()
    latencies.sort()
    ms = [round(x * 1000, 1) for x in latencies]
    return {"slow_clients": slow_clients, "slow_clients_connected_at_the_end": still_connected,
            "deliveries": deliveries, "p50_ms": round(statistics.median(latencies) * 1000, 1),
            "p99_ms": ms[min(len(ms) - 1, int(len(ms) * 0.99))], "max_ms": ms[-1]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--slow-clients", type=int, default=200)
    parser.add_argument("--deliveries", type=int, default=50)
    args = parser.parse_args()
    daemon_logging.configure("warning", "json")
    with tempfile.TemporaryDirectory() as tmp:
        result = trio.run(bench, Path(tmp), args.slow_clients, args.deliveries)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
