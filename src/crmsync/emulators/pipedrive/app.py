"""The ASGI application: Pipedrive's routes, each with its token cost from the specs'
`x-token-cost` [PD-spec-v2][PD-spec-v1], behind a gate doing what Pipedrive does before a
request reaches an endpoint — authentication, the daily token budget, the burst window, the
block after hammering — and what the fault settings ask (latency, 5xx, 429 storms, answers lost
after the write was applied)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

import msgspec
import trio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from ..gate import forward, header, held_answer, send_answer, wait_for_disconnect
from .errors import BLOCKED_HTML, ApiError
from .routes import admin, fields, oauth, objects, v1
from .routes.wire import json_response

if TYPE_CHECKING:
    from .emulator import PipedriveEmulator

_WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_DAILY_HEADERS = ("x-daily-ratelimit-token-limit", "x-daily-ratelimit-token-remaining")


@dataclass(frozen=True)
class ApiRoute:
    route: Route
    cost: int  # tokens [PD-spec-v2 x-token-cost]
    search: bool = False


def _api_routes() -> list[ApiRoute]:
    v2 = "/api/v2"
    out: list[ApiRoute] = []

    def add(path: str, method: str, endpoint: Any, cost: int, *, search: bool = False) -> None:
        out.append(ApiRoute(Route(path, endpoint, methods=[method]), cost, search))

    for entity in ("persons", "organizations", "deals"):
        base = f"{v2}/{entity}"
        add(f"{base}/search", "GET", objects.search_handler(entity), 20, search=True)
        if entity == "deals":
            add(f"{base}/archived", "GET", objects.list_handler(entity, archived=True), 20)
        add(base, "GET", objects.list_handler(entity), 10)
        add(base, "POST", objects.create_handler(entity), 5)
        add(base + "/{id}", "GET", objects.get_handler(entity), 1)
        add(base + "/{id}", "PATCH", objects.update_handler(entity), 5)
        add(base + "/{id}", "DELETE", objects.delete_handler(entity), 3)
    for entity in ("pipelines", "stages"):
        base = f"{v2}/{entity}"
        add(base, "GET", objects.list_handler(entity), 5)
        add(base, "POST", objects.create_handler(entity), 5)
        add(base + "/{id}", "GET", objects.get_handler(entity), 1)
        add(base + "/{id}", "PATCH", objects.update_handler(entity), 5)
        add(base + "/{id}", "DELETE", objects.delete_handler(entity), 3)
    for segment, entity in fields.ENTITY_OF.items():
        base = f"{v2}/{segment}"
        add(base, "GET", fields.list_fields(entity), 10)
        add(base, "POST", fields.add_field(entity), 5)
        add(base + "/{field_code}", "GET", fields.get_field(entity), 1)
        add(base + "/{field_code}", "PATCH", fields.update_field(entity), 5)
        add(base + "/{field_code}", "DELETE", fields.delete_field(entity), 3)
        add(base + "/{field_code}/options", "POST", fields.add_options(entity), 5)
        add(base + "/{field_code}/options", "PATCH", fields.update_options(entity), 5)
        add(base + "/{field_code}/options", "DELETE", fields.delete_options(entity), 3)
    # v1 accepted both prefixes [PD-v2mig].
    for prefix in ("/v1", "/api/v1"):
        add(f"{prefix}/webhooks", "GET", v1.list_webhooks, 10)
        add(f"{prefix}/webhooks", "POST", v1.add_webhook, 10)
        add(prefix + "/webhooks/{id}", "DELETE", v1.delete_webhook, 6)
        add(f"{prefix}/users/me", "GET", v1.users_me, 2)
    return out


def _own_routes() -> list[Route]:
    e = "/_emulator"
    return [
        Route(f"{e}/seed", admin.seed, methods=["POST"]),
        Route(f"{e}/state", admin.state, methods=["GET"]),
        Route(f"{e}/reset", admin.reset, methods=["POST"]),
        Route(f"{e}/faults", admin.get_faults, methods=["GET"]),
        Route(f"{e}/faults", admin.set_faults, methods=["POST"]),
        Route(f"{e}/clock", admin.get_clock, methods=["GET"]),
        Route(f"{e}/clock", admin.advance_clock, methods=["POST"]),
        Route(f"{e}/budget", admin.budget, methods=["GET"]),
        Route(f"{e}/expire-tokens", admin.expire_tokens, methods=["POST"]),
        Route(f"{e}/webhooks", admin.webhook_status, methods=["GET"]),
        # Pipedrive's OAuth server is another host (oauth.pipedrive.com); here, the same one.
        Route("/oauth/token", oauth.token, methods=["POST"]),
    ]


def build_app(emu: PipedriveEmulator) -> ASGIApp:
    async def on_api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return json_response(exc.body(), exc.status_code)

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return json_response(ApiError(exc.status_code, str(exc.detail)).body(), exc.status_code)

    api_routes = _api_routes()
    app = Starlette(
        routes=[*_own_routes(), *(r.route for r in api_routes)],
        exception_handlers={ApiError: on_api_error, HTTPException: on_http_error},
    )
    app.state.emulator = emu
    return ApiGate(app, emu, api_routes)


class ApiGate:
    """Pure ASGI middleware in front of the routes (pure, so it can hold a finished answer back
    when a fault says the connection drops after the write)."""

    def __init__(self, app: ASGIApp, emu: PipedriveEmulator, routes: list[ApiRoute]) -> None:
        self.app = app
        self.emu = emu
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method, path = scope["method"], scope["path"]
        cost = 0
        status: int | None
        if path.startswith("/_emulator/") or path == "/oauth/token":
            # Not Pipedrive's company API: neither authenticated nor rate limited.
            status = await forward(self.app, scope, receive, send)
        else:
            status, cost = await self._handle(scope, receive, send, method)
        if status is not None:
            self.emu.request_log.append((method, path, status, cost))

    def _match(self, scope: Scope) -> tuple[ApiRoute | None, bool]:
        method_mismatch = False
        for api_route in self.routes:
            match, _ = api_route.route.matches(scope)
            if match == Match.FULL:
                return api_route, False
            method_mismatch = method_mismatch or match == Match.PARTIAL
        return None, method_mismatch

    async def _handle(
        self, scope: Scope, receive: Receive, send: Send, method: str
    ) -> tuple[int | None, int]:
        """Answers one API request; returns its status for the request log (None: already
        logged) and the tokens it cost."""
        emu = self.emu
        injector = emu.injector
        if injector.faults.latency > 0:
            await trio.sleep(injector.faults.latency)
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        try:
            who = emu.auth.authenticate(
                header(scope, b"x-api-token"),
                (query.get("api_token") or [None])[-1],
                header(scope, b"authorization"),
            )
        except ApiError as err:
            return await _respond(send, err.status_code, err.body(), {}), 0
        api_route, method_mismatch = self._match(scope)
        if api_route is None:
            missing = (
                ApiError(405, "Method not allowed")
                if method_mismatch
                else ApiError(404, "Not found")
            )
            return await _respond(send, missing.status_code, missing.body(), {}), 0
        scope["pipedrive.caller"] = who
        now, now_ms = emu.clock.now(), emu.clock.now_ms()
        limiter = emu.rate_limiter
        if injector.storm_active(now):
            limiter.note_refusal(who.rate_key, oauth=who.oauth, now=now)
            headers = limiter.storm_headers(
                who.rate_key, oauth=who.oauth, search=api_route.search, now=now
            )
            return await _respond(send, 429, _too_many("burst").body(), headers), 0
        verdict = limiter.admit(
            who.rate_key,
            oauth=who.oauth,
            search=api_route.search,
            cost=api_route.cost,
            now=now,
            now_ms=now_ms,
        )
        headers = dict(verdict.headers)
        if headers and injector.drop_daily_headers():
            for name in _DAILY_HEADERS:
                headers.pop(name, None)
        if verdict.status == 403:
            return await _respond_html(send, 403, BLOCKED_HTML), 0
        if verdict.status == 429:
            return await _respond(send, 429, _too_many(verdict.reason).body(), headers), 0
        failure = injector.server_error()
        if failure is not None:
            outage = ApiError(failure, "Service is temporarily unavailable")
            return await _respond(send, failure, outage.body(), headers), api_route.cost

        messages = await held_answer(self.app, scope, receive)
        start = messages[0]
        status = int(start["status"])
        start["headers"] = list(start.get("headers", [])) + [
            (k.encode(), v.encode()) for k, v in headers.items()
        ]
        if method in _WRITE_METHODS and 200 <= status < 300 and injector.hang_after_apply():
            # The write is applied, but its answer never arrives: the request stays open until
            # the client gives up (in process its cancel scope fires; over loopback it closes
            # the connection and the server sees http.disconnect). Logged now: in process the
            # wait ends in cancellation.
            emu.request_log.append((method, scope["path"], status, api_route.cost))
            await wait_for_disconnect(receive)
            return None, api_route.cost
        for message in messages:
            await send(message)
        return status, api_route.cost


def _too_many(reason: str) -> ApiError:
    # Pipedrive's 429 body is not documented [UNVERIFIED]; the v2 error envelope here.
    if reason == "daily":
        return ApiError(429, "Daily API token budget exceeded", code="daily_token_limit")
    return ApiError(429, "Request over limit", code="rate_limit")


async def _respond(send: Send, status: int, body: dict[str, Any], headers: dict[str, str]) -> int:
    return await send_answer(send, status, msgspec.json.encode(body), b"application/json",
                             [(k.encode(), v.encode()) for k, v in headers.items()])


async def _respond_html(send: Send, status: int, body: bytes) -> int:
    return await send_answer(send, status, body, b"text/html; charset=UTF-8",
                             [(b"server", b"cloudflare")])


