"""Property values on the wire: parsing and formatting per property type.

HubSpot sends every value as a string (fact sheet §1.1); dates are midnight-UTC epoch ms or ISO
dates, datetimes ISO 8601 or epoch ms (§7). These helpers turn those strings into comparable
Python values for validation and search, and format the emulator's own timestamps.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from functools import lru_cache

_EPOCH_MS = re.compile(r"^-?\d{1,15}$")
_DAY_MS = 86_400_000


# Every read of a record formats its timestamps again; the same few values come back often.
@lru_cache(maxsize=1 << 16)
def iso_from_ms(ms: int) -> str:
    """HubSpot's timestamp format: `2024-06-24T14:01:02.345Z`."""
    dt = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


@lru_cache(maxsize=1 << 16)
def parse_instant_ms(text: str) -> int | None:
    """Epoch ms from an epoch-ms string or an ISO 8601 date/datetime; None if neither."""
    text = text.strip()
    if _EPOCH_MS.match(text):
        return int(text)
    try:
        if len(text) == 10:
            d = date.fromisoformat(text)
            return int(datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp() * 1000)
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return round(dt.timestamp() * 1000)


def is_midnight(ms: int) -> bool:
    return ms % _DAY_MS == 0


def date_from_ms(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d")


def parse_number(text: str) -> Decimal | None:
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        return None
    return value if value.is_finite() else None


def format_number(value: Decimal) -> str:
    """A computed number the way HubSpot prints it: no exponent, no trailing zeros."""
    text = format(value.normalize(), "f")
    return text
