"""Python values as the store keeps them: datetimes as ISO-ms UTC text, containers as JSON."""

from __future__ import annotations

import json
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any

from audit.engine.model import format_iso_ms
from audit.errors import StoreError

__all__ = ["PLAIN", "bound", "iso", "now_iso", "to_db_value", "to_json"]

#: values sqlite3 binds as they are (bool is an int: stored as 0/1)
PLAIN = (str, int, float, type(None), bytes)


def iso(value: datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return format_iso_ms(value)


def now_iso() -> str:
    return iso(datetime.now(timezone.utc))


def bound(value: datetime | str | None) -> str | None:
    """A window bound as stored text (a string is taken as already stored text)."""
    return iso(value) if isinstance(value, datetime) else value


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if isinstance(value, Decimal):
        return float(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def to_json(value: Any) -> str:
    return json.dumps(value, default=_json_default, ensure_ascii=False, separators=(",", ":"))


def to_db_value(value: Any) -> Any:
    """A Python value as the store keeps it: datetimes as ISO-ms UTC text, containers as JSON."""
    if isinstance(value, PLAIN):
        return value
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, (dict, list, tuple, set, frozenset)):
        return to_json(value)
    if isinstance(value, Decimal):
        return float(value)
    raise StoreError(f"cannot store a value of type {type(value).__name__}")
