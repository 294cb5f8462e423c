"""HubSpot's error bodies (fact sheet §4) and the exception handlers raise to produce them."""

from __future__ import annotations

import json
from typing import Any


class ApiError(Exception):
    """An error answer in HubSpot's general shape: `{status, message, correlationId, category,
    subCategory?, errors?, context?, links?}`. Raised anywhere below a route; the app turns it
    into the response."""

    def __init__(
        self,
        status_code: int,
        category: str,
        message: str,
        *,
        errors: list[dict[str, Any]] | None = None,
        context: dict[str, list[str]] | None = None,
        sub_category: str | None = None,
        links: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.category = category
        self.message = message
        self.errors = errors
        self.context = context
        self.sub_category = sub_category
        self.links = links

    def body(self, correlation_id: str) -> dict[str, Any]:
        out: dict[str, Any] = {
            "status": "error",
            "message": self.message,
            "correlationId": correlation_id,
        }
        if self.errors is not None:
            out["errors"] = self.errors
        if self.context is not None:
            out["context"] = self.context
        out["category"] = self.category
        if self.sub_category is not None:
            out["subCategory"] = self.sub_category
        if self.links is not None:
            out["links"] = self.links
        return out

    def standard_error(self, context: dict[str, list[str]] | None = None) -> dict[str, Any]:
        """The same failure as one entry of a 207's `errors[]` (the SDK's StandardError requires
        status, category, message, context, errors and links)."""
        merged = dict(self.context or {})
        merged.update(context or {})
        out: dict[str, Any] = {
            "status": "error",
            "category": self.category,
            "message": self.message,
            "context": merged,
            "errors": self.errors or [],
            "links": {},
        }
        if self.sub_category is not None:
            out["subCategory"] = self.sub_category
        return out


def validation_error(message: str, **context: list[str]) -> ApiError:
    return ApiError(400, "VALIDATION_ERROR", message, context=context or None)


def not_found(message: str = "resource not found") -> ApiError:
    # The exact 404 body is an open item of the fact sheet (§11); its §4 says OBJECT_NOT_FOUND
    # with a message like "resource not found".
    return ApiError(404, "OBJECT_NOT_FOUND", message)


class PropertyProblem:
    """One invalid property value, in the two forms HubSpot reports it: an entry of the JSON list
    embedded in the message text, and an entry of `errors[]` (DOC-OBJ "Error handling")."""

    def __init__(self, name: str, code: str, message: str) -> None:
        self.name = name
        self.code = code
        self.message = message

    def detail(self) -> dict[str, Any]:
        return {
            "message": self.message,
            "code": self.code,
            "context": {"propertyName": [self.name]},
        }


def property_values_error(problems: list[PropertyProblem], portal_id: int) -> ApiError:
    """400 VALIDATION_ERROR "Property values were not valid: [...]" as in DOC-OBJ's example."""
    embedded = [
        {
            "isValid": False,
            "message": p.message,
            "error": p.code,
            "name": p.name,
            "localizedErrorMessage": p.message,
            "portalId": portal_id,
        }
        for p in problems
    ]
    return ApiError(
        400,
        "VALIDATION_ERROR",
        "Property values were not valid: " + json.dumps(embedded, separators=(",", ":")),
        errors=[p.detail() for p in problems],
    )
