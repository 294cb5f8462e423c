"""Wire values of API v2: RFC 3339 timestamps and the strict type checks v2 applies to input
(no 1/0 for booleans, no numbers from strings [PD-v2mig])."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from functools import lru_cache
from typing import Any

_RFC3339 = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$"
)
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_TIME = re.compile(r"^\d{2}:\d{2}(:\d{2})?$")


@lru_cache(maxsize=1 << 16)
def rfc3339(ms: int) -> str:
    """v2 timestamps: RFC 3339 in UTC to the second, `2024-01-01T00:00:00Z` [PD-v2mig]."""
    return datetime.fromtimestamp(ms // 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def rfc3339_ms(ms: int) -> str:
    """Webhook `meta.timestamp`: milliseconds and `Z`, `2023-01-01T00:00:00.000Z` [PD-wh2]."""
    return datetime.fromtimestamp(ms // 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.") + (
        f"{ms % 1000:03d}Z"
    )


def parse_rfc3339_ms(text: str) -> int | None:
    """Epoch ms of an RFC 3339 date-time, None if `text` is not one."""
    if not _RFC3339.match(text):
        return None
    try:
        dt = datetime.fromisoformat(text.replace("z", "Z").replace("Z", "+00:00"))
    except ValueError:
        return None
    return round(dt.timestamp() * 1000)


def is_date(text: Any) -> bool:
    """`YYYY-MM-DD` naming a real day."""
    if not isinstance(text, str) or not _DATE.match(text):
        return False
    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return True


def is_time(text: Any) -> bool:
    return isinstance(text, str) and bool(_TIME.match(text))


def is_int(value: Any) -> bool:
    """An integer in JSON: `True` is not one, nor is `"3"` or `3.0` [PD-v2mig]."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def day_of(ms: int) -> int:
    """The UTC day number of an epoch-ms instant: the daily budget resets at midnight of the
    server's time zone, which Pipedrive does not name [PD-rate]; UTC here [INF]."""
    return ms // 86_400_000
