"""The interface every source of agent telemetry implements (AgentWorkItem + EventLogFile,
Data 360, and whatever comes next): check the org, then sync a window into a sink."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime, timedelta, timezone
from typing import Protocol

from connector.sink import SyncSink, SyncState
from connector.wire import format_iso_ms, parse_sf_datetime

__all__ = ["Source", "Window", "day_floor", "since_bound_of"]

#: [start, end) of action start times, aware UTC
Window = tuple[datetime, datetime]


class Source(Protocol):
    @property
    def family(self) -> str:
        """The family's name in the run output's `sources` ("agentworkitem+eventlogfile")."""
        ...

    @property
    def records(self) -> int:
        """Records this run stored new or changed."""
        ...

    @property
    def notes(self) -> list[str]:
        """One-line remarks for the person running the audit (a bad file skipped, …)."""
        ...

    def check(self) -> None:
        """Reach the org and check what the sync needs (fields, objects); raises before
        anything is stored."""
        ...

    def sync(self, sink: SyncSink, window: Window | None) -> None:
        """Fetch what is new since the last sync (and, with a window, the part of it no
        earlier sync covered), page by page into `sink`."""
        ...

    def audit_start(self, sink: SyncSink, default: datetime) -> datetime:
        """Where a run without a window starts auditing: `default`, widened back to the
        day of the earliest row this sync changed, within what the store holds whole."""
        ...

    def sync_related(self, sink: SyncSink, case_ids: Collection[str]) -> None:
        """Fetch the records the audit joins to the window's actions (Cases); a source
        without any does nothing."""
        ...

    def sync_counts(self) -> dict[str, int]:
        """What this run's sync did, for the run output's `sync` block."""
        ...


def day_floor(dt: datetime) -> datetime:
    return dt.astimezone(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)


def since_bound_of(state: SyncState, sync_start: datetime, initial_days: int) -> datetime:
    """Where a source's incremental sync began: stored on the first sync (the last
    `initial_days` days), read back afterwards."""
    if state.get("since_bound"):
        return parse_sf_datetime(state["since_bound"])
    bound = day_floor(sync_start - timedelta(days=initial_days))
    state["since_bound"] = format_iso_ms(bound)
    return bound
