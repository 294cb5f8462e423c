"""The ASGI application: HubSpot's routes behind a gate that does what HubSpot does before a
request reaches an endpoint — authentication, rate limits — and what the fault settings ask
(latency, 5xx, 429 storms, answers lost after the write was applied)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import msgspec
import trio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from ..gate import forward, header, held_answer, send_answer, wait_for_disconnect
from .errors import ApiError
from .ratelimit import rate_limit_body
from .routes import (
    admin,
    associations,
    events,
    journal,
    oauth,
    objects,
    owners,
    pipelines,
    properties,
    schemas,
)
from .routes.wire import json_response
from .scopes import missing_scopes, requirement

if TYPE_CHECKING:
    from .emulator import HubSpotEmulator

_SEARCH = re.compile(r"^/crm/v3/objects/[^/]+/search/?$")
# Exempt from the daily and ten-secondly limits (SPEC `x-hubspot-rate-limit-exemptions` on every
# webhooks-journal operation); a journal-specific limit exists but its numbers are not known.
_RATE_EXEMPT = ("/webhooks-journal/",)
# The longest request target (path and query) the emulator serves. HubSpot documents no limit;
# third parties saw 414 URI Too Long from about 16.2k characters (PostHog) or ~8 KB (airweave)
# (hubspot-onboarding.md §7): [INF] 16,384.
MAX_REQUEST_TARGET = 16_384
# What a server in front of the app must let through (hypercorn's `h11_max_incomplete_size`,
# 16 KiB by default, answers 431 with an empty body past it) so that the app sees over-long
# request lines and answers them itself.
SERVER_REQUEST_ROOM = 1 << 20
_WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_SERVER_ERROR_MESSAGES = {
    500: "Internal error",
    502: "Bad gateway",
    503: "Service unavailable",
    504: "Gateway timeout",
}


def _routes() -> list[Route]:
    o = "/crm/v3/objects/{object_type}"
    p = "/crm/v3/pipelines/{object_type}"
    a4 = "/crm/v4/associations/{from_type}/{to_type}"
    r4 = "/crm/v4/objects/{object_type}/{object_id}/associations"
    js = "/webhooks-journal/subscriptions/2026-03"
    return [
        # the emulator's own API
        Route("/_emulator/seed", admin.seed, methods=["POST"]),
        Route("/_emulator/dump", admin.dump, methods=["GET"]),
        Route("/_emulator/reset", admin.reset, methods=["POST"]),
        Route("/_emulator/faults", admin.get_faults, methods=["GET"]),
        Route("/_emulator/faults", admin.set_faults, methods=["POST"]),
        Route("/_emulator/events", admin.events, methods=["GET"]),
        Route("/_emulator/expire-tokens", admin.expire_tokens, methods=["POST"]),
        Route("/_emulator/webhooks", admin.webhook_deliveries, methods=["GET"]),
        Route("/_emulator/owners", admin.list_owners, methods=["GET"]),
        Route("/_emulator/owners", admin.add_owner, methods=["POST"]),
        Route("/_emulator/owners/{owner_id}", admin.update_owner, methods=["PATCH"]),
        Route("/_emulator/owners/{owner_id}", admin.archive_owner, methods=["DELETE"]),
        Route("/_emulator/credentials", admin.list_credentials, methods=["GET"]),
        Route("/_emulator/credentials", admin.add_credential, methods=["POST"]),
        Route("/_emulator/oauth/authorize", admin.approve_authorization, methods=["POST"]),
        # auth (hubspot-onboarding.md §1–§2); the dated path is the v3 one's twin
        Route("/oauth/authorize", oauth.authorize, methods=["GET"]),
        Route("/oauth/{account_id}/authorize", oauth.authorize, methods=["GET"]),
        Route("/oauth/v1/token", oauth.token, methods=["POST"]),
        Route("/oauth/v3/token", oauth.token, methods=["POST"]),
        Route("/oauth/2026-03/token", oauth.token, methods=["POST"]),
        Route("/oauth/v3/token/introspect", oauth.introspect, methods=["POST"]),
        Route("/oauth/2026-03/token/introspect", oauth.introspect, methods=["POST"]),
        Route("/oauth/v3/token/revoke", oauth.revoke, methods=["POST"]),
        Route("/oauth/2026-03/token/revoke", oauth.revoke, methods=["POST"]),
        Route("/oauth/v1/access-tokens/{token}", oauth.access_token_info, methods=["GET"]),
        Route("/oauth/v1/refresh-tokens/{token}", oauth.refresh_token_info, methods=["GET"]),
        Route(
            "/oauth/v1/refresh-tokens/{token}", oauth.delete_refresh_token, methods=["DELETE"]
        ),
        Route(
            "/oauth/v2/private-apps/get/access-token-info",
            oauth.private_app_token_info,
            methods=["POST"],
        ),
        Route("/account-info/v3/details", oauth.account_details, methods=["GET"]),
        # owners and users (read-only); the SDK calls the collection paths with a trailing /
        Route("/crm/v3/owners", owners.list_owners, methods=["GET"]),
        Route("/crm/v3/owners/", owners.list_owners, methods=["GET"]),
        Route("/crm/v3/owners/{owner_id}", owners.get_owner, methods=["GET"]),
        Route("/settings/v3/users", owners.list_users, methods=["GET"]),
        Route("/settings/v3/users/", owners.list_users, methods=["GET"]),
        Route("/settings/v3/users/{user_id}", owners.get_user, methods=["GET"]),
        # custom object schemas (none)
        Route("/crm/v3/schemas", schemas.list_schemas, methods=["GET"]),
        Route("/crm/v3/schemas/{object_type}", schemas.get_schema, methods=["GET"]),
        Route("/crm-object-schemas/v3/schemas", schemas.list_schemas, methods=["GET"]),
        Route(
            "/crm-object-schemas/v3/schemas/{object_type}", schemas.get_schema, methods=["GET"]
        ),
        # objects
        Route(o, objects.list_objects, methods=["GET"]),
        Route(o, objects.create_object, methods=["POST"]),
        Route(o + "/search", objects.search, methods=["POST"]),
        Route(o + "/batch/{operation}", objects.batch, methods=["POST"]),
        Route(o + "/{object_id}", objects.get_object, methods=["GET"]),
        Route(o + "/{object_id}", objects.update_object, methods=["PATCH"]),
        Route(o + "/{object_id}", objects.archive_object, methods=["DELETE"]),
        # properties
        Route("/crm/v3/properties/{object_type}", properties.list_properties, methods=["GET"]),
        Route("/crm/v3/properties/{object_type}", properties.create_property, methods=["POST"]),
        Route("/crm/v3/properties/{object_type}/{name}", properties.get_property, methods=["GET"]),
        Route(
            "/crm/v3/properties/{object_type}/{name}", properties.update_property, methods=["PATCH"]
        ),
        Route(
            "/crm/v3/properties/{object_type}/{name}",
            properties.archive_property,
            methods=["DELETE"],
        ),
        # pipelines
        Route(p, pipelines.list_pipelines, methods=["GET"]),
        Route(p, pipelines.create_pipeline, methods=["POST"]),
        Route(p + "/{pipeline_id}", pipelines.get_pipeline, methods=["GET"]),
        Route(p + "/{pipeline_id}", pipelines.update_pipeline, methods=["PATCH", "PUT"]),
        Route(p + "/{pipeline_id}", pipelines.delete_pipeline, methods=["DELETE"]),
        Route(p + "/{pipeline_id}/stages", pipelines.list_stages, methods=["GET"]),
        Route(p + "/{pipeline_id}/stages", pipelines.create_stage, methods=["POST"]),
        Route(p + "/{pipeline_id}/stages/{stage_id}", pipelines.get_stage, methods=["GET"]),
        Route(
            p + "/{pipeline_id}/stages/{stage_id}", pipelines.update_stage, methods=["PATCH", "PUT"]
        ),
        Route(p + "/{pipeline_id}/stages/{stage_id}", pipelines.delete_stage, methods=["DELETE"]),
        Route(
            "/crm-pipelines/v1/pipelines/{object_type}",
            pipelines.list_pipelines_v1,
            methods=["GET"],
        ),
        # associations v4
        Route(a4 + "/batch/create", associations.batch_create, methods=["POST"]),
        Route(
            a4 + "/batch/associate/default", associations.batch_associate_default, methods=["POST"]
        ),
        Route(a4 + "/batch/read", associations.batch_read, methods=["POST"]),
        Route(a4 + "/batch/archive", associations.batch_archive, methods=["POST"]),
        Route(a4 + "/batch/labels/archive", associations.batch_archive_labels, methods=["POST"]),
        Route(a4 + "/labels", associations.list_labels, methods=["GET"]),
        Route(r4 + "/default/{to_type}/{to_id}", associations.put_default, methods=["PUT"]),
        Route(r4 + "/{to_type}/{to_id}", associations.put_labelled, methods=["PUT"]),
        Route(r4 + "/{to_type}/{to_id}", associations.delete_between, methods=["DELETE"]),
        Route(r4 + "/{to_type}", associations.list_for_record, methods=["GET"]),
        # behavioural events
        Route("/events/v3/send", events.send_event, methods=["POST"]),
        # the webhooks journal (hubspot-onboarding.md §6) and the files its urls point at
        *(
            route
            for j in ("/webhooks-journal/journal/2026-03", "/webhooks-journal/journal-local/2026-03")
            for route in (
                Route(j + "/earliest", journal.earliest, methods=["GET"]),
                Route(j + "/latest", journal.latest, methods=["GET"]),
                Route(j + "/offset/{offset}/next", journal.next_entry, methods=["GET"]),
                Route(j + "/batch/earliest/{count}", journal.batch_earliest, methods=["GET"]),
                Route(j + "/batch/latest/{count}", journal.batch_latest, methods=["GET"]),
                Route(j + "/batch/{offset}/next/{count}", journal.batch_next, methods=["GET"]),
                Route(j + "/batch/read", journal.batch_read, methods=["POST"]),
            )
        ),
        Route(js, journal.list_subscriptions, methods=["GET"]),
        Route(js, journal.upsert_subscription, methods=["POST"]),
        Route(js + "/portals/{portal_id}", journal.delete_portal_subscriptions, methods=["DELETE"]),
        Route(js + "/{subscription_id}", journal.get_subscription, methods=["GET"]),
        Route(js + "/{subscription_id}", journal.delete_subscription, methods=["DELETE"]),
        Route("/_emulator/journal-files/{offset}", journal.journal_file, methods=["GET"]),
    ]


def build_app(emu: HubSpotEmulator) -> ASGIApp:
    async def on_api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return json_response(exc.body(emu.correlation_id()), exc.status_code)

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        category = "OBJECT_NOT_FOUND" if exc.status_code == 404 else "VALIDATION_ERROR"
        body = ApiError(exc.status_code, category, exc.detail or "resource not found").body(
            emu.correlation_id()
        )
        return json_response(body, exc.status_code)

    routes = Starlette(
        routes=_routes(),
        exception_handlers={ApiError: on_api_error, HTTPException: on_http_error},
    )
    routes.state.emulator = emu
    return ApiGate(routes, emu)


class ApiGate:
    """Pure ASGI middleware in front of the routes (pure, so it can hold a finished answer back
    when a fault says the connection drops after the write)."""

    def __init__(self, app: ASGIApp, emu: HubSpotEmulator) -> None:
        self.app = app
        self.emu = emu

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method, path = scope["method"], scope["path"]
        status = await self._handle(scope, receive, send, method, path)
        if status is not None:
            self.emu.request_log.append((method, path, status))

    async def _handle(
        self, scope: Scope, receive: Receive, send: Send, method: str, path: str
    ) -> int | None:
        """Answers one request; returns its status for the request log (None: already logged)."""
        emu = self.emu
        query = scope.get("query_string", b"")
        target = len(scope.get("raw_path") or path.encode()) + (len(query) + 1 if query else 0)
        if target > MAX_REQUEST_TARGET:
            # Refused at HubSpot's edge before anything else looks at the request; the body is
            # HubSpot's general error shape [INF].
            too_long = ApiError(
                414,
                "URI_TOO_LONG",
                f"URI Too Long: the request target has {target} characters; "
                f"the limit is {MAX_REQUEST_TARGET}",
            )
            return await _respond(send, 414, too_long.body(emu.correlation_id()), {})
        if path.startswith("/_emulator/") or path.startswith("/oauth/"):
            # Not HubSpot's CRM API: neither authenticated nor rate limited.
            return await forward(self.app, scope, receive, send)

        injector = emu.injector
        if injector.faults.latency > 0:
            await trio.sleep(injector.faults.latency)
        try:
            caller = emu.auth.authenticate(header(scope, b"authorization"))
        except ApiError as err:
            return await _respond(send, err.status_code, err.body(emu.correlation_id()), {})
        needed = requirement(method, path)
        if needed is not None and not needed.met_by(caller.scopes):
            denied = missing_scopes(needed)
            return await _respond(send, 403, denied.body(emu.correlation_id()), {})
        if path.startswith(_RATE_EXEMPT):
            return await forward(self.app, scope, receive, send)

        is_search = bool(_SEARCH.match(path))
        now, now_ms = emu.clock(), emu.now_ms()
        if injector.storm_active(now):
            policy = "SECONDLY" if is_search else "TEN_SECONDLY_ROLLING"
            headers = {} if is_search else emu.rate_limiter.exhausted_headers(oauth=caller.oauth)
            body = rate_limit_body(policy, emu.correlation_id(), emu.request_id())
            return await _respond(send, 429, body, headers)
        if is_search:
            verdict = emu.rate_limiter.check_search(now=now, now_ms=now_ms)
        else:
            verdict = emu.rate_limiter.check(
                caller.rate_key, oauth=caller.oauth, now=now, now_ms=now_ms
            )
        if not verdict.allowed:
            assert verdict.policy is not None
            body = rate_limit_body(verdict.policy, emu.correlation_id(), emu.request_id())
            return await _respond(send, 429, body, verdict.headers)

        failure = injector.server_error()
        if failure is not None:
            outage = ApiError(failure, "INTERNAL_ERROR", _SERVER_ERROR_MESSAGES[failure])
            return await _respond(send, failure, outage.body(emu.correlation_id()), verdict.headers)

        messages = await held_answer(self.app, scope, receive)
        start = messages[0]
        status = int(start["status"])
        start["headers"] = list(start.get("headers", [])) + [
            (k.lower().encode(), v.encode()) for k, v in verdict.headers.items()
        ]
        applied_write = (
            method in _WRITE_METHODS
            and not is_search
            and not path.endswith("/batch/read")
            and 200 <= status < 300
        )
        if applied_write and injector.hang_after_apply():
            # The write is applied, but its answer never arrives: the request stays open until
            # the client gives up (in process its cancel scope fires; over loopback it closes
            # the connection and the server sees http.disconnect).
            # Logged now: in process the wait ends in cancellation.
            emu.request_log.append((method, path, status))
            await wait_for_disconnect(receive)
            return None
        for message in messages:
            await send(message)
        return status


async def _respond(send: Send, status: int, body: dict[str, Any], headers: dict[str, str]) -> int:
    return await send_answer(send, status, msgspec.json.encode(body),
                             b"application/json;charset=utf-8",
                             [(k.lower().encode(), v.encode()) for k, v in headers.items()])


