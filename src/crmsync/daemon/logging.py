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
from typing import Any, BinaryIO, TextIO, cast

import msgspec
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


_SAFE_KEYS: set[str] = set()


def _secret_key(key: str) -> bool:
    if key in _SAFE_KEYS:
        return False
    if _SECRET_KEY.search(key):
        return True
    if len(_SAFE_KEYS) < 4096:
        _SAFE_KEYS.add(key)
    return False


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        for s in _known_secrets:
            if s in value:
                value = value.replace(s, REDACTED)
        # Only text naming an auth scheme can hold a credential header value.
        if " " in value:
            low = value.lower()
            if "bearer" in low or "basic" in low:
                value = _BEARER.sub(lambda m: f"{m.group(1)} {REDACTED}", value)
        return value
    if isinstance(value, int | float | bool) or value is None:
        return value
    if isinstance(value, dict):
        return {k: (REDACTED if isinstance(k, str) and _secret_key(k) else _scrub(v))
                for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_scrub(v) for v in value)
    return _scrub(str(value)) if not isinstance(value, bytes) else value


# Keys whose values crmsync itself makes (ids, counts, names of fields, timings): they carry
# no user text, so they need no scan. Everything else is scanned.
_PLAIN_KEYS = frozenset({"event", "level", "timestamp", "connection", "object", "hub_id",
                         "app_id", "action", "fields", "duration_ms", "phase", "side",
                         "changed", "records", "pid", "version"})


def redact_secrets(_logger: Any, _name: str, event: MutableMapping[str, Any]
                   ) -> MutableMapping[str, Any]:
    for key in list(event):
        if key in _PLAIN_KEYS:
            continue
        if _secret_key(key):
            event[key] = REDACTED
        else:
            event[key] = _scrub(event[key])
    return event


_json = msgspec.json.Encoder(enc_hook=str)


def _render_json(logger: Any, name: str, event: MutableMapping[str, Any]) -> bytes:
    # msgspec renders a line several times faster than the stdlib json module; anything it
    # does not know (a Path, an exception) is logged as its str().
    return _json.encode(event)


def configure(level: str = "info", fmt: str = "json", stream: TextIO | BinaryIO | None = None,
              extra_processors: Iterable[Any] = ()) -> None:
    out = stream or sys.stdout
    renderer: Any
    factory: Any
    if fmt == "console" and getattr(out, "isatty", lambda: False)():
        renderer = structlog.dev.ConsoleRenderer()
        factory = structlog.PrintLoggerFactory(file=out)  # type: ignore[arg-type]
    else:
        renderer = _render_json
        binary = cast(BinaryIO, out.buffer if hasattr(out, "buffer") else out)
        factory = structlog.BytesLoggerFactory(file=binary)
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
        logger_factory=factory,
        # Not cached: tests swap processors (structlog.testing.capture_logs) at run time.
        cache_logger_on_first_use=False,
    )
