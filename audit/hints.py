"""What to say when an audited window holds no action: where the usage is instead — in the
store, or (asked only then, two one-row queries) in the org's AgentWorkItem records."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from audit.config import Config
from audit.engine.model import parse_sf_datetime
from audit.store import Store
from connector.client import SalesforceClient
from connector.errors import ConnectorError

__all__ = ["empty_window_hint", "span_text"]

Window = tuple[datetime, datetime]


def _days(first: str, last: str) -> tuple[str, str]:
    """The first day, and the day after the last (the exclusive --until that covers it)."""
    a = parse_sf_datetime(first).date()
    b = parse_sf_datetime(last).date() + timedelta(days=1)
    return a.isoformat(), b.isoformat()


def span_text(window: Window) -> str:
    """`2026-11-24..12-01`: a window's days, the end's year and month left out when equal."""
    start, end = window[0].date().isoformat(), window[1].date().isoformat()
    if start[:4] == end[:4]:
        return f"{start}..{end[5:]}"
    return f"{start}..{end}"


def empty_window_hint(
    store: Store, cfg: Config, client: SalesforceClient, window: Window
) -> str | None:
    """One line naming where the usage lies, or None when there is none anywhere."""
    head = f"0 actions in {span_text(window)}"
    span = store.usage_span()
    if span["records"] and span["records_first"] and span["records_last"]:
        since, until = _days(span["records_first"], span["records_last"])
        return (
            f"{head}; the store holds {span['records']:,} source records from {since} to "
            f"{until} — use --since {since} --until {until}"
        )
    org = _org_span(cfg, client)
    if org is None:
        return None
    since, until = _days(*org)
    return (
        f"{head}; the org has AgentWorkItem records from {since} to {until} "
        f"— use --since {since} --until {until}"
    )


def _org_span(cfg: Config, client: SalesforceClient) -> tuple[str, str] | None:
    if "agentworkitem" not in cfg.source.kinds:
        return None
    field = cfg.connector.awi_fields.get("started_at", "StartTime__c")
    try:
        ends: list[Any] = []
        for order in ("ASC", "DESC"):
            rows = client.query_all(
                f"SELECT Id, {field} FROM AgentWorkItem WHERE {field} != null "
                f"ORDER BY {field} {order} LIMIT 1"
            )
            ends.append(rows[0].get(field) if rows else None)
    except ConnectorError:
        return None  # a hint is never worth failing a run for
    if not all(ends):
        return None
    return str(ends[0]), str(ends[1])
