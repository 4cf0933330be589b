"""Human names for what the report shows, and how it writes numbers, money and times."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from audit.engine.findings import KIND_LABELS  # one map, shared with the run summary
from audit.engine.model import parse_sf_datetime

__all__ = [
    "KIND_COLOURS",
    "KIND_LABELS",
    "PRICING_LABELS",
    "SEVERITY_LABELS",
    "awu",
    "credits",
    "local_time",
    "usd",
]

KIND_COLOURS: dict[str, str] = {
    "CEILING_BREACH": "#c2413a",
    "NEAR_CEILING": "#e0a339",
    "RETRY": "#e07b39",
    "RETRY_LOOP": "#8c2f2a",
    "REDUNDANT_RETRIEVAL": "#2f6db5",
    "AWU_MISMATCH": "#8467b8",
    "SOURCE_GAP": "#6b6b6b",
    "LONG_CONVERSATION": "#3a9d5d",
}
PRICING_LABELS: dict[str, str] = {
    "flex": "Flex Credits",
    "per_conversation": "Per conversation",
    "per_user": "Per user",
}
SEVERITY_LABELS: dict[str, str] = {"high": "High", "warning": "Warning", "info": "Info"}


def usd(value: float | None, sign: bool = False) -> str:
    """$1,234.56 (−$0.40 when negative; +$ with `sign`)."""
    if value is None:
        return "—"
    v = round(float(value), 2) + 0.0
    text = f"${abs(v):,.2f}"
    if v < 0:
        return "−" + text
    return ("+" + text) if sign and v > 0 else text


def awu(value: float | None) -> str:
    return "—" if value is None else f"{float(value):,.1f}"


def credits(value: float | None) -> str:
    return "—" if value is None else f"{float(value):,.0f}"


def local_time(value: str | None, tz: str) -> str:
    """An ISO instant as `2026-10-08 02:00 CEST` in the configured timezone."""
    if not value:
        return "—"
    try:
        zone = ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        zone = ZoneInfo("UTC")
    when: datetime = parse_sf_datetime(value).astimezone(zone)
    return when.strftime("%Y-%m-%d %H:%M %Z")
