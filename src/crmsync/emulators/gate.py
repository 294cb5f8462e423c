"""ASGI plumbing the emulators' API gates share (each gate, in its emulator's `app`, decides
what its API does before a request reaches a route; these pass the request on, answer it, or
hold the answer back)."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send


async def forward(app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> int:
    """Pass the request to `app` as it is; returns the answer's status."""
    status = 0

    async def record(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = int(message["status"])
        await send(message)

    await app(scope, receive, record)
    return status


async def held_answer(app: ASGIApp, scope: Scope, receive: Receive) -> list[Message]:
    """Run the request through `app` and keep its answer's messages instead of sending them,
    so the gate can add headers to it, or never send it (a fault)."""
    messages: list[Message] = []

    async def capture(message: Message) -> None:
        messages.append(message)

    await app(scope, receive, capture)
    return messages


async def send_answer(send: Send, status: int, body: bytes, content_type: bytes,
                      headers: list[tuple[bytes, bytes]]) -> int:
    """Send a whole answer: `body` with its content type and length, then `headers`; returns
    `status`."""
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", content_type),
                            (b"content-length", str(len(body)).encode()), *headers]})
    await send({"type": "http.response.body", "body": body})
    return status


async def wait_for_disconnect(receive: Receive) -> None:
    """Until the client goes away (an answer that never comes)."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


def header(scope: Scope, name: bytes) -> str | None:
    """The request header `name` (lower case), or None."""
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None
