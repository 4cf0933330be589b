"""The core REST source: AgentWorkItem records, AgentAction EventLogFiles and the Cases
the audit joins to actions, synced incrementally into a sink."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from datetime import datetime, timedelta, timezone
from typing import Any

from connector.client import SalesforceClient
from connector.config import ConnectorConfig
from connector.core.agentworkitem import AgentWorkItemSync, check_fields
from connector.core.eventlogfile import EventLogFileSync
from connector.ids import to_18
from connector.intervals import merge_intervals
from connector.sink import CaseRecord, Page, SyncSink
from connector.soql import datetime_literal, in_list
from connector.source import Window
from connector.wire import format_iso_ms, iso_or_none, parse_sf_datetime

__all__ = ["CoreSource"]

Progress = Callable[[str, int, "int | None"], None]
_CASE_FIELDS = "SELECT Id, Status, IsClosed, ClosedDate FROM Case"


class CoreSource:
    """AgentWorkItem and/or EventLogFile (as `kinds` says), reconciled by the engine."""

    family = "agentworkitem+eventlogfile"

    def __init__(
        self,
        client: SalesforceClient,
        cfg: ConnectorConfig,
        *,
        run_id: str,
        sync_start: datetime,
        progress: Progress | None = None,
    ):
        self.client = client
        self.cfg = cfg
        self.kinds = set(cfg.kinds) & {"agentworkitem", "eventlogfile"}
        self.run_id = run_id
        self.sync_start = sync_start.astimezone(timezone.utc)
        self.progress = progress or (lambda stage, done, total: None)
        self.notes: list[str] = []
        self.cases = 0
        #: how many Cases changed since the last Case sync one query may bring back; past
        #: that the known Cases are asked for by id, 200 at a time
        self.changed_cases_at_once = 2000
        #: the days (YYYY-MM-DD) of every row changed by this sync
        self.changed_days: set[str] = set()
        self._awi: AgentWorkItemSync | None = None
        self._elf = EventLogFileSync(
            client, cfg, run_id, self.sync_start, self.progress, self._changed
        )
        self._elf.notes = self.notes

    @property
    def records(self) -> int:
        return self._awi.records if self._awi is not None else 0

    def check(self) -> None:
        if "agentworkitem" in self.kinds and self._awi is None:
            fields = check_fields(self.client, self.cfg.awi_fields)
            self._awi = AgentWorkItemSync(
                self.client,
                self.cfg,
                fields,
                self.run_id,
                self.sync_start,
                self.progress,
                self._changed,
            )

    def sync(self, sink: SyncSink, window: Window | None) -> None:
        self.check()
        if self._awi is not None:
            self._awi.sync(sink, window)
        if "eventlogfile" in self.kinds:
            self._elf.sync(sink, window)

    def sync_counts(self) -> dict[str, int]:
        return {
            "records": self.records,
            "elf_files_downloaded": self._elf.downloaded,
            "elf_files_skipped": self._elf.skipped,
        }

    def _changed(self, started_at: str | None) -> None:
        if started_at:
            self.changed_days.add(started_at[:10])

    def audit_start(self, sink: SyncSink, default: datetime) -> datetime:
        """`default`, widened back to the day of the earliest row this sync changed (a
        record corrected late, a re-published file) — but only into ranges the store holds
        whole: since the first sync's start, or a backfilled window. A changed row older
        than that (say the Daily file of the day before the first sync, created after it)
        is stored for a later backfill, not audited from half its data."""
        source = "agentworkitem" if "agentworkitem" in self.kinds else "eventlogfile"
        state = sink.sync_state(source) or {}
        ranges: list[list[str]] = [list(iv) for iv in state.get("covered", [])]
        if state.get("since_bound"):
            ranges.append([state["since_bound"], "9999-12-31T00:00:00.000Z"])
        ranges = merge_intervals(ranges)
        for day in sorted(self.changed_days):
            lo_dt = datetime.fromisoformat(day).replace(tzinfo=timezone.utc)
            lo, hi = format_iso_ms(lo_dt), format_iso_ms(lo_dt + timedelta(days=1))
            for a, b in ranges:
                if a < hi and lo < b:  # the day overlaps a synced range
                    return min(default, parse_sf_datetime(max(a, lo)))
        return default

    def sync_related(self, sink: SyncSink, case_ids: Collection[str]) -> None:
        """Cases of the window's actions: unknown ones, and known ones changed since the
        last Case sync."""
        wanted = sorted({c for c in case_ids if c})
        if not wanted:
            return
        state = sink.sync_state("case") or {}
        known = sink.known_case_ids(wanted)
        batches = [
            f"{_CASE_FIELDS} WHERE Id IN {in_list(chunk)}"
            for chunk in _chunks([c for c in wanted if c not in known], 200)
        ]
        records: list[dict[str, Any]] = []
        if known and state.get("synced_at"):
            since = datetime_literal(parse_sf_datetime(state["synced_at"]))
            changed = self._changed_cases(since)
            if changed is not None:
                records += [r for r in changed if to_18(str(r["Id"])) in known]
            else:
                batches += [
                    f"{_CASE_FIELDS} WHERE Id IN {in_list(chunk)} AND SystemModstamp > {since}"
                    for chunk in _chunks(sorted(known), 200)
                ]
        for soql in batches:
            records += self.client.query_all(soql)
        rows: list[CaseRecord] = [
            {
                "id": to_18(str(rec["Id"])) or "",
                "status": rec.get("Status"),
                "is_closed": 1 if rec.get("IsClosed") else 0,
                "closed_at": iso_or_none(rec.get("ClosedDate")),
            }
            for rec in records
        ]
        state = {"synced_at": format_iso_ms(self.sync_start)}
        sink.commit(Page("case", self.run_id, state=state, cases=rows))
        self.cases += len(rows)

    def _changed_cases(self, since: str) -> list[dict[str, Any]] | None:
        """Every Case of the org changed since `since` (a SOQL datetime) — one query, where
        asking for the known ones by id takes one per 200 — or None when more changed
        than `changed_cases_at_once` (a busy org: asking by id then reads less)."""
        limit = self.changed_cases_at_once
        soql = f"{_CASE_FIELDS} WHERE SystemModstamp > {since} LIMIT {limit + 1}"
        changed = self.client.query_all(soql)
        return changed if len(changed) <= limit else None


def _chunks(items: list[str], size: int) -> Iterable[list[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
