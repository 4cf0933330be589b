"""Salesforce's datetime wire formats and the one text form the connector hands on.

Records carry `2026-10-06T14:03:22.000+0000`, log files `2026-10-06T14:03:22.123Z`; both
become `2026-10-06T14:03:22.123Z` (UTC, milliseconds), which sorts like the instant.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

__all__ = ["canonical_iso_ms", "format_iso_ms", "iso_or_none", "parse_sf_datetime"]


def parse_sf_datetime(value: str) -> datetime:
    """Any ISO 8601 datetime Salesforce sends (`Z`, `+0000`, `+00:00`), as aware UTC; a
    naive one is taken as UTC. ValueError when it is not a datetime."""
    dt = datetime.fromisoformat(value.strip())
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.astimezone(timezone.utc)


def format_iso_ms(dt: datetime) -> str:
    """`2026-10-06T14:03:22.123Z`."""
    # isoformat is implemented in C; strftime was a measurable share of a large sync
    return dt.astimezone(timezone.utc).isoformat(timespec="milliseconds")[:-6] + "Z"


def canonical_iso_ms(value: str) -> str:
    """A wire datetime in the canonical form; the two common shapes take a fast path."""
    if len(value) == 24 and value[-1] == "Z" and value[10] == "T" and value[19] == ".":
        return value  # 2026-10-06T14:03:22.123Z (log files)
    if len(value) == 28 and value.endswith("+0000") and value[10] == "T" and value[19] == ".":
        return value[:23] + "Z"  # 2026-10-06T14:03:22.000+0000 (records)
    return format_iso_ms(parse_sf_datetime(value))


def iso_or_none(value: Any) -> str | None:
    """An optional wire datetime in the canonical form; empty means absent."""
    if value in (None, ""):
        return None
    return canonical_iso_ms(str(value))
