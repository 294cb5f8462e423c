"""The emulator's own API under `/_emulator/` — clearly not HubSpot's: seed, dump, reset, faults,
recorded behavioural events, owners, credentials and OAuth consent."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from starlette.requests import Request
from starlette.responses import Response

from ..errors import validation_error
from ..faults import Faults
from ..oauth import AuthorizeError, Credential
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


# --- owners (HubSpot's owners API is read-only; the account's owners are managed here) ---


async def list_owners(request: Request) -> Response:
    return json_response({"results": [o.to_json() for o in emulator(request).state.owners.all()]})


async def add_owner(request: Request) -> Response:
    owner = emulator(request).state.owners.add(await read_json(request))
    return json_response(owner.to_json(), 201)


async def update_owner(request: Request) -> Response:
    owners = emulator(request).state.owners
    owner = owners.update(request.path_params["owner_id"], await read_json(request))
    return json_response(owner.to_json())


async def archive_owner(request: Request) -> Response:
    """Archives the owner (its user leaves the account): `userId` becomes null."""
    owner = emulator(request).state.owners.archive(request.path_params["owner_id"])
    return json_response(owner.to_json())


# --- credentials and OAuth ---


async def list_credentials(request: Request) -> Response:
    auth = emulator(request).auth
    return json_response({"results": [c.to_json() for c in auth.credentials.values()]})


async def add_credential(request: Request) -> Response:
    """`{token, kind: service_key|static_token|private_app, scopes?: [...]}`; scopes absent
    grants every scope."""
    credential = Credential.from_json(await read_json(request))
    emulator(request).auth.add_credential(credential)
    return json_response(credential.to_json(), 201)


async def approve_authorization(request: Request) -> Response:
    """Consents to an authorize request without a browser: the body holds the authorize
    query's parameters (`client_id, redirect_uri, scope, optional_scope?, state?`); the answer
    is the redirect HubSpot would send, `{redirect, code?, state?, error?}`."""
    body = await read_json(request)
    if not isinstance(body, dict):
        raise validation_error("The body is the authorize request's parameters")
    try:
        target = emulator(request).auth.authorize({k: str(v) for k, v in body.items()})
    except AuthorizeError as err:
        raise validation_error(str(err)) from err
    query = {k: v[-1] for k, v in parse_qs(urlsplit(target).query).items()}
    return json_response({"redirect": target, **query})
