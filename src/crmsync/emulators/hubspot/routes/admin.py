"""The emulator's own API under `/_emulator/` — clearly not HubSpot's: seed, dump, reset, faults,
recorded behavioural events."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from ..faults import Faults
from .wire import emulator, json_response, read_json


async def seed(request: Request) -> Response:
    emu = emulator(request)
    return json_response(emu.seed(await read_json(request)), 201)


async def dump(request: Request) -> Response:
    return json_response(emulator(request).dump())


async def reset(request: Request) -> Response:
    emulator(request).reset()
    return json_response({"status": "reset"})


async def get_faults(request: Request) -> Response:
    return json_response(emulator(request).faults.to_json())


async def set_faults(request: Request) -> Response:
    emu = emulator(request)
    emu.faults = Faults.from_json(await read_json(request))
    return json_response(emu.faults.to_json())


async def events(request: Request) -> Response:
    return json_response({"results": emulator(request).events})


async def expire_tokens(request: Request) -> Response:
    emulator(request).auth.expire_access_tokens()
    return json_response({"status": "expired"})


async def webhook_deliveries(request: Request) -> Response:
    dispatcher = emulator(request).dispatcher
    deliveries = dispatcher.deliveries if dispatcher else []
    return json_response(
        {
            "results": [
                {
                    "eventIds": list(d.event_ids),
                    "attempt": d.attempt,
                    "status": d.status,
                    "duplicate": d.duplicate,
                }
                for d in deliveries
            ],
            "pending": len(dispatcher.pending) if dispatcher else 0,
            "inFlight": dispatcher.in_flight if dispatcher else 0,
        }
    )
