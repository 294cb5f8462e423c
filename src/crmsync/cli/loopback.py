"""A one-purpose HTTP listener on `localhost` that receives HubSpot's OAuth redirect.

`localhost` is listened on at every address it resolves to (127.0.0.1 and ::1 where there is
one): a browser may try either. Each connection gets one request, read within
`REQUEST_SECONDS` and at most `MAX_REQUEST_BYTES` (h11 refuses a longer head), and one answer;
only `GET <path>` is looked at, anything else gets 404.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import h11
import trio

REQUEST_SECONDS = 10.0
MAX_REQUEST_BYTES = 16 * 1024


@dataclass(frozen=True)
class Answer:
    """What the browser is shown: an HTTP status and a sentence."""

    status: int
    text: str


async def open_listeners(port: int) -> list[trio.SocketListener]:
    """Listeners on localhost:`port`. Raises OSError when the port is taken."""
    return await trio.open_tcp_listeners(port, host="localhost")


async def serve_redirect(listeners: list[trio.SocketListener], path: str,
                         judge: Callable[[str], Answer], *,
                         task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                         ) -> None:
    """Answer every `GET path?query` with `judge(query)` until cancelled."""

    async def handle(stream: trio.SocketStream) -> None:
        async with stream:
            with trio.move_on_after(REQUEST_SECONDS):
                await _one_request(stream, path, judge)

    async with trio.open_nursery() as nursery:
        await nursery.start(trio.serve_listeners, handle, listeners)
        task_status.started()


async def _one_request(stream: trio.SocketStream, path: str,
                       judge: Callable[[str], Answer]) -> None:
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_REQUEST_BYTES)
    try:
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await stream.receive_some(4096))
                continue
            if isinstance(event, h11.Request):
                break
            return  # the peer closed (or paused) before sending a request
        target = urlsplit(event.target.decode("ascii", "replace"))
        if event.method == b"GET" and target.path == path:
            answer = judge(target.query)
        else:
            answer = Answer(404, "Nothing here: this listener only takes HubSpot's redirect.")
    except h11.RemoteProtocolError:
        answer = Answer(400, "Not an HTTP request this listener understands.")
    page = (f"<!doctype html><html><head><meta charset=utf-8><title>crmsync</title></head>"
            f"<body><p>{html.escape(answer.text)}</p></body></html>").encode()
    out = [h11.Response(status_code=answer.status, headers=[
               ("Content-Type", "text/html; charset=utf-8"),
               ("Content-Length", str(len(page))),
               ("Cache-Control", "no-store"),
               ("Connection", "close")]),
           h11.Data(data=page), h11.EndOfMessage()]
    # The answer is sent even when the wait just ended (the redirect this page confirms is
    # what ends it), within its own bound.
    with trio.move_on_after(REQUEST_SECONDS) as sending:
        sending.shield = True
        try:
            for ev in out:
                data = conn.send(ev)
                if data:
                    await stream.send_all(data)
        except (h11.LocalProtocolError, trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the browser went away: nothing to tell it
