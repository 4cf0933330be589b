"""AgentAction EventLogFiles: list them, download each new or re-published one whole,
and hand its rows to the sink with the file's record.

Every file is remembered by Id and CreatedDate: a known file is never downloaded again, a
re-published one (new Id, or same Id with a later CreatedDate) is, and its rows replace
older copies by REQUEST_ID (the sink keeps the newest file's copy). Late Hourly files are
caught by re-listing a settle window of CreatedDate on every run. Backfills list only the
LogDates no earlier sync covered and never move the CreatedDate cursor.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from connector.client import SalesforceClient
from connector.config import ConnectorConfig
from connector.intervals import Interval, merge_intervals, subtract_intervals
from connector.logfiles import BadLogFile, parse_logfile
from connector.sink import LogEvent, LogFileRecord, Page, SyncSink
from connector.soql import datetime_literal, string_literal
from connector.source import Window, day_floor, since_bound_of
from connector.wire import canonical_iso_ms, format_iso_ms, iso_or_none, parse_sf_datetime

__all__ = ["SOURCE", "EventLogFileSync"]

SOURCE = "eventlogfile"  # its cursor's name
_FILE_FIELDS = (
    "Id",
    "EventType",
    "LogDate",
    "Interval",
    "Sequence",
    "CreatedDate",
    "LogFileLength",
    "LogFileFieldNames",
)
_END_OF_TIME = "9999-12-31T00:00:00.000Z"


@dataclass
class EventLogFileSync:
    """One run's sync of AgentAction log files into a sink."""

    client: SalesforceClient
    cfg: ConnectorConfig
    run_id: str
    sync_start: datetime
    progress: Callable[[str, int, int | None], None]
    on_changed: Callable[[str | None], None]
    downloaded: int = 0
    skipped: int = 0
    bad: int = 0
    rows: int = 0

    def __post_init__(self) -> None:
        self.notes: list[str] = []

    def sync(self, sink: SyncSink, window: Window | None) -> None:
        state = sink.sync_state(SOURCE) or {}
        since_bound = since_bound_of(state, self.sync_start, self.cfg.sync.initial_days)
        base, order = self._base_query()
        todo: list[Interval] = []
        if window is not None:
            todo = subtract_intervals(
                (format_iso_ms(day_floor(window[0])), format_iso_ms(window[1])),
                [
                    *(tuple(iv) for iv in state.get("covered", [])),
                    (state["since_bound"], _END_OF_TIME),
                ],
            )
        files: dict[str, dict[str, Any]] = {}
        for lo, hi in todo:
            soql = (
                f"{base} AND LogDate >= {datetime_literal(parse_sf_datetime(lo))} AND LogDate < "
                f"{datetime_literal(parse_sf_datetime(hi), round_up=True)} "
                f"AND CreatedDate <= {datetime_literal(self.sync_start)} {order}"
            )
            for rec in self.client.query_all(soql):
                files[str(rec["Id"])] = rec
        # only the incremental listing moves the CreatedDate cursor: a backfill of an old
        # window must not make the nightly settle re-check jump
        newest = state.get("created_cursor")
        soql = self._incremental_query(base, order, newest, since_bound)
        for rec in self.client.query_all(soql):
            files[str(rec["Id"])] = rec
            created = format_iso_ms(parse_sf_datetime(rec["CreatedDate"]))
            if newest is None or created > newest:
                newest = created
        ordered = sorted(files.values(), key=_file_order)
        for n, rec in enumerate(ordered, 1):
            self._process_file(sink, rec)
            self.progress("EventLogFiles", n, len(ordered))
        state = {**(sink.sync_state(SOURCE) or state), "since_bound": state["since_bound"]}
        if newest:
            state["created_cursor"] = newest
        state["covered"] = merge_intervals([*state.get("covered", []), *todo])
        sink.commit(Page(SOURCE, self.run_id, state=state))

    def _base_query(self) -> tuple[str, str]:
        described = {
            f["name"].lower() for f in self.client.describe("EventLogFile").get("fields", [])
        }
        select = ", ".join(f for f in _FILE_FIELDS if f.lower() in described or f == "Id")
        base = (
            f"SELECT {select} FROM EventLogFile WHERE EventType = {string_literal('AgentAction')}"
        )
        order = "ORDER BY LogDate, Id" if "logdate" in described else "ORDER BY Id"
        return base, order

    def _incremental_query(
        self, base: str, order: str, created_cursor: str | None, since_bound: datetime
    ) -> str:
        """Files created since the first sync's start (new days, old days re-published),
        or after the settle window before the CreatedDate cursor — never reaching back
        before where the incremental listing began: files created earlier belong to the
        backfilled ranges, not to the nightly re-check."""
        cap = f"AND CreatedDate <= {datetime_literal(self.sync_start)} {order}"
        if created_cursor:
            settle = parse_sf_datetime(created_cursor) - timedelta(
                hours=self.cfg.sync.elf_settle_hours
            )
            if settle >= since_bound:
                return f"{base} AND CreatedDate > {datetime_literal(settle)} {cap}"
        return f"{base} AND CreatedDate >= {datetime_literal(since_bound)} {cap}"

    def _process_file(self, sink: SyncSink, rec: dict[str, Any]) -> None:
        file_id = str(rec["Id"])
        created = format_iso_ms(parse_sf_datetime(rec["CreatedDate"]))
        if sink.log_file_created(file_id) == created:
            self.skipped += 1
            return
        sequence = int(float(rec.get("Sequence") or 0))
        rows, size, sha, bad = self._download(file_id, rec, created, sequence)
        record: LogFileRecord = {
            "id": file_id,
            "log_date": iso_or_none(rec.get("LogDate")),
            "interval": rec.get("Interval"),  # None below API 37.0: unknown
            "sequence": sequence,
            "created_date": created,
            "rows": len(rows),
            "sha256": sha,
            "bytes": size,
            "bad": 1 if bad else 0,
            "error": bad,
            "processed_at": format_iso_ms(datetime.now(timezone.utc)),
            "run_id": self.run_id,
        }
        sink.commit(Page(SOURCE, self.run_id, log_events=rows, log_file=record))
        if bad:
            self.bad += 1
            self.notes.append(f"EventLogFile {file_id}: {bad} (skipped as BAD_RECORD)")
        self.rows += len(rows)
        for row in rows:
            self.on_changed(row["started_at"])

    def _download(
        self, file_id: str, rec: dict[str, Any], created: str, sequence: int
    ) -> tuple[list[LogEvent], int, str, str | None]:
        """The file's rows (streamed to a temporary file first), its size and sha256, and
        why it is bad (then no rows)."""
        expected = rec.get("LogFileLength")
        with tempfile.TemporaryFile() as tmp:
            size, sha = self.client.download_logfile(
                file_id, tmp, expected_size=int(float(expected)) if expected is not None else None
            )
            self.downloaded += 1
            tmp.seek(0)
            rows: list[LogEvent] = []
            try:
                for row in parse_logfile(tmp, rec.get("LogFileFieldNames")):
                    if not row["request_id"] or not row["started_at"]:
                        continue
                    row["started_at"] = canonical_iso_ms(row["started_at"])
                    row.update(file_id=file_id, file_created_date=created, file_sequence=sequence)
                    rows.append(row)  # type: ignore[arg-type]  # parse_logfile's logical names
            except BadLogFile as exc:
                return [], size, sha, str(exc)
        return rows, size, sha, None


def _file_order(rec: dict[str, Any]) -> tuple[str, int, str]:
    # oldest first, so the newest copy of a REQUEST_ID is written last
    return (
        format_iso_ms(parse_sf_datetime(rec["CreatedDate"])),
        int(float(rec.get("Sequence") or 0)),
        str(rec["Id"]),
    )
