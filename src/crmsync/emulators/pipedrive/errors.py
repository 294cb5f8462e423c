"""Pipedrive's error answers and the exceptions handlers raise to produce them.

Every v2 answer is the envelope `{success, data, additional_data}`; an error is
`{success: false, error, error_info, data: null, additional_data: null}` plus an optional `code`
[PD-resp]. A missing or wrong token answers the v1 spec's 401 body
`{success: false, error: "unauthorized access", errorCode: 401}` [PD-spec-v1]; the v1 webhooks
API reports field problems as `{status: "error", success: false, errors: {field: [message]}}`
[PD-spec-v1]."""

from __future__ import annotations

from typing import Any

# The hint Pipedrive puts in `error_info` when it has nothing more specific [INF].
ERROR_INFO = "Please check developers.pipedrive.com for more information about Pipedrive API."


class ApiError(Exception):
    """An error answer in the v2 envelope; raised anywhere below a route, turned into the
    response by the app."""

    def __init__(
        self,
        status_code: int,
        error: str,
        *,
        error_info: str = ERROR_INFO,
        code: str | None = None,
    ) -> None:
        super().__init__(error)
        self.status_code = status_code
        self.error = error
        self.error_info = error_info
        self.code = code

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "success": False,
            "error": self.error,
            "error_info": self.error_info,
            "data": None,
            "additional_data": None,
        }
        if self.code is not None:
            out["code"] = self.code
        return out


class UnauthorizedError(ApiError):
    """401: no token, an unknown one, or an expired OAuth access token."""

    def __init__(self) -> None:
        super().__init__(401, "unauthorized access")

    def body(self) -> dict[str, Any]:
        return {"success": False, "error": self.error, "errorCode": 401}


class V1FieldError(ApiError):
    """The v1 webhooks API's error shape: which field, what is wrong with it."""

    def __init__(self, status_code: int, field: str, message: str) -> None:
        super().__init__(status_code, message)
        self.field = field

    def body(self) -> dict[str, Any]:
        return {"status": "error", "success": False, "errors": {self.field: [self.message]}}

    @property
    def message(self) -> str:
        return self.error


def bad_request(message: str) -> ApiError:
    """400 for input v2's validation refuses [PD-v2mig]."""
    return ApiError(400, message)


def not_found(what: str) -> ApiError:
    return ApiError(404, f"{what} not found")


# What a client that keeps calling after 429s gets: Cloudflare's block page, not JSON [PD-rate].
BLOCKED_HTML = (
    b"<!DOCTYPE html>\n<html><head><title>Attention Required! | Cloudflare</title></head>"
    b"<body><h1>Sorry, you have been blocked</h1>"
    b"<p>You are unable to access api.pipedrive.com</p></body></html>\n"
)
