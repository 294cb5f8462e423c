"""The emulator's own API under `/_emulator/` — clearly not Pipedrive's: seed, state, reset,
faults, clock, rate-limit budget and webhook delivery status."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ..errors import bad_request
from ..faults import Faults
from ..values import is_number, rfc3339
from .wire import emulator, json_response, read_json


async def seed(request: Request) -> Response:
    return json_response(emulator(request).seed(await read_json(request)), 201)


async def state(request: Request) -> Response:
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


def _clock_json(request: Request) -> dict[str, Any]:
    emu = emulator(request)
    return {
        "now": rfc3339(emu.clock.now_ms()),
        "now_ms": emu.clock.now_ms(),
        "offset_seconds": emu.clock.offset,
    }


async def get_clock(request: Request) -> Response:
    return json_response(_clock_json(request))


async def advance_clock(request: Request) -> Response:
    """`{"advance_seconds": N}` moves the emulator's clocks forward (budget day, bans,
    retries, token expiry, record timestamps)."""
    body = await read_json(request)
    seconds: Any = body.get("advance_seconds") if isinstance(body, dict) else None
    if not is_number(seconds) or seconds < 0:
        raise bad_request("advance_seconds must be a number ≥ 0")
    emulator(request).clock.advance(float(seconds))
    return json_response(_clock_json(request))


async def budget(request: Request) -> Response:
    emu = emulator(request)
    stats = emu.rate_limiter.statistics(emu.clock.now_ms())
    stats["plan"] = emu.rate_limiter.plan  # type: ignore[assignment]
    return json_response(stats)


async def expire_tokens(request: Request) -> Response:
    emulator(request).auth.expire_access_tokens()
    return json_response({"status": "expired"})


async def webhook_status(request: Request) -> Response:
    emu = emulator(request)
    hooks = emu.webhooks
    now = emu.clock.now()
    return json_response(
        {
            "webhooks": [
                {
                    "id": h.id,
                    "subscription_url": h.subscription_url,
                    "ban_counter": h.ban_counter,
                    "banned_for_seconds": (
                        max(0.0, h.banned_until - now) if h.banned_until is not None else 0.0
                    ),
                }
                for h in hooks.hooks.values()
            ],
            "deliveries": [
                {
                    "event_id": d.event_id,
                    "webhook_id": d.webhook_id,
                    "action": d.action,
                    "entity": d.entity,
                    "entity_id": d.entity_id,
                    "attempt": d.attempt,
                    "status": d.status,
                    "duplicate": d.duplicate,
                }
                for d in hooks.log.deliveries
            ],
            "pending": hooks.pending,
            "in_flight": hooks.in_flight,
            "lost": len(hooks.log.lost),
            "given_up": len(hooks.log.given_up),
            "removed_webhooks": list(hooks.log.removed),
        }
    )
