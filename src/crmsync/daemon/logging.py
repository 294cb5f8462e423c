"""structlog configured once at start: merged contextvars, level, ISO UTC timestamps, exception
info, JSON lines on stdout (journald stores them) or the console renderer on a TTY.

Secrets never reach a log: a processor redacts values under secret-looking keys, Authorization
headers, and any registered secret value wherever it appears in a string.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any, TextIO

import structlog

_SECRET_KEY = re.compile(
    r"(?i)(^|_)(token|secret|password|passwd|authorization|api_?key|refresh_token|"
    r"access_token|client_secret|signature|cookie)s?$")
_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{6,}")
REDACTED = "[redacted]"

_known_secrets: set[str] = set()


def register_secret(value: str) -> None:
    """Make `value` be redacted wherever it would appear in a log line."""
    if value and len(value) >= 6:
        _known_secrets.add(value)


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        for s in _known_secrets:
            if s in value:
                value = value.replace(s, REDACTED)
        return _BEARER.sub(lambda m: f"{m.group(1)} {REDACTED}", value)
    if isinstance(value, dict):
        return {k: (REDACTED if isinstance(k, str) and _SECRET_KEY.search(k) else _scrub(v))
                for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_scrub(v) for v in value)
    return value


def redact_secrets(_logger: Any, _name: str, event: MutableMapping[str, Any]
                   ) -> MutableMapping[str, Any]:
    for key in list(event):
        if _SECRET_KEY.search(key):
            event[key] = REDACTED
        else:
            event[key] = _scrub(event[key])
    return event


def configure(level: str = "info", fmt: str = "json", stream: TextIO | None = None,
              extra_processors: Iterable[Any] = ()) -> None:
    out = stream or sys.stdout
    renderer: Any
    if fmt == "console" and out.isatty():
        renderer = structlog.dev.ConsoleRenderer()
    else:
        renderer = structlog.processors.JSONRenderer()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            *extra_processors,
            redact_secrets,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            getattr(logging, level.upper(), logging.INFO)),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )
