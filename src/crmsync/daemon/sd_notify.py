"""systemd's sd_notify protocol: one datagram of KEY=VALUE lines to $NOTIFY_SOCKET.

No library: the protocol is one sendto() (a leading "@" names the abstract namespace).
The watchdog is fed by `Watchdog`, whose `beat()` only the progress task calls, so a stuck
daemon stops feeding it and systemd restarts it.
"""

from __future__ import annotations

import os
import socket

import trio


class Notifier:
    def __init__(self, path: str | None = None) -> None:
        self.path = path if path is not None else os.environ.get("NOTIFY_SOCKET", "")
        self.sent: list[str] = []

    @property
    def enabled(self) -> bool:
        return bool(self.path)

    def notify(self, **fields: str | int) -> bool:
        """Send KEY=VALUE lines (keys upper-cased); False when not under systemd."""
        if not self.path:
            return False
        message = "\n".join(f"{k.upper()}={v}" for k, v in fields.items())
        address = self.path
        if address.startswith("@"):
            address = "\0" + address[1:]
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.connect(address)
            s.sendall(message.encode("utf-8"))
        self.sent.append(message)
        return True

    def ready(self, status: str = "") -> None:
        self.notify(ready=1, **({"status": status} if status else {}))

    def status(self, text: str) -> None:
        self.notify(status=text)

    def stopping(self) -> None:
        self.notify(stopping=1)

    def watchdog(self) -> None:
        self.notify(watchdog=1)


def watchdog_interval() -> float | None:
    """Half of WATCHDOG_USEC (seconds), if systemd asked for a watchdog for this process."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return int(usec) / 1_000_000 / 2
    except ValueError:
        return None


async def feed_watchdog(notifier: Notifier, interval: float, heartbeat) -> None:  # type: ignore[no-untyped-def]
    """Every `interval`, prove progress with `await heartbeat()` (a round trip through the
    store's thread), then tell systemd we are alive. If the heartbeat hangs, no WATCHDOG=1."""
    while True:
        await heartbeat()
        notifier.watchdog()
        await trio.sleep(interval)
