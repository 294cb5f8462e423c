"""The few v1 paths still in use [PD-spec-v1]: the webhooks API (connectors register and remove
their own webhooks) and `/users/me`. The spec's webhook examples add `status: "ok"` to the
envelope; its schemas and the official client's types do not, and they are followed here."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from ..errors import V1FieldError
from .wire import caller, emulator, json_response, read_json


async def list_webhooks(request: Request) -> Response:
    emu = emulator(request)
    hooks = [h.to_json(emu.company_id) for h in emu.webhooks.hooks.values()]
    return json_response({"success": True, "data": hooks})


async def add_webhook(request: Request) -> Response:
    emu = emulator(request)
    hook = emu.webhooks.register(
        await read_json(request), caller(request).user_id, emu.state.user_exists
    )
    return json_response({"success": True, "data": hook.to_json(emu.company_id)}, 201)


async def delete_webhook(request: Request) -> Response:
    emu = emulator(request)
    try:
        hook_id = int(request.path_params["id"])
    except ValueError:
        raise V1FieldError(404, "id", "not found") from None
    if hook_id not in emu.webhooks.hooks:
        raise V1FieldError(404, "id", "not found")
    emu.webhooks.remove(hook_id)
    return json_response({"success": True})


async def users_me(request: Request) -> Response:
    emu = emulator(request)
    user = emu.state.users[caller(request).user_id]
    return json_response(
        {
            "success": True,
            "data": {
                "id": user.id,
                "name": user.name,
                "email": user.email,
                "default_currency": "USD",
                "locale": "en_US",
                "lang": 1,
                "activated": True,
                "is_you": True,
                "is_deleted": False,
                "active_flag": True,
                "timezone_name": "UTC",
                "timezone_offset": "+00:00",
                "company_id": emu.company_id,
                "company_name": emu.company_name,
                "company_domain": emu.company_domain,
                "access": [
                    {
                        "app": "global" if user.is_admin else "sales",
                        "admin": user.is_admin,
                        "permission_set_id": "1",
                    }
                ],
            },
        }
    )
