"""Building SOQL from validated identifiers and escaped literals only — never by
formatting user input into a query."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

__all__ = ["ident", "string_literal", "datetime_literal", "in_list"]

_ESCAPES = {"\\": "\\\\", "'": "\\'", "\n": "\\n", "\r": "\\r", "\t": "\\t", '"': '\\"'}


def ident(name: str) -> str:
    """A field or object API name; anything else is a programming or config error."""
    if not name or not (name[0].isalpha()) or not all(c.isalnum() or c == "_" for c in name):
        raise ValueError(f"not a Salesforce API name: {name!r}")
    return name


def string_literal(value: str) -> str:
    return "'" + "".join(_ESCAPES.get(ch, ch) for ch in value) + "'"


def datetime_literal(dt: datetime, *, round_up: bool = False) -> str:
    """Unquoted, UTC, whole seconds (`2026-10-05T00:00:00Z`). Upper bounds round up so a
    sub-second bound never drops a row (callers filter exactly afterwards)."""
    dt = dt.astimezone(timezone.utc)
    if round_up and dt.microsecond:
        dt = dt.replace(microsecond=0) + timedelta(seconds=1)
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def in_list(values: list[str]) -> str:
    return "(" + ", ".join(string_literal(v) for v in values) + ")"
