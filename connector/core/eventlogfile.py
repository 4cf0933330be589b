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
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import IO, Any

from connector.checks import BadValue, check_count, check_datetime, shown
from connector.client import SalesforceClient
from connector.config import ConnectorConfig
from connector.errors import SalesforceError
from connector.intervals import Interval, merge_intervals, subtract_intervals
from connector.logfiles import BadLogFile, LogRow, parse_logfile
from connector.sink import BadRecord, LogEvent, LogFileRecord, Page, SyncSink
from connector.soql import datetime_literal, in_list, string_literal
from connector.source import Window, day_floor, since_bound_of
from connector.wire import format_iso_ms, iso_or_none, parse_sf_datetime

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
#: a torn (or empty) file is downloaded this many times in all, one run after another,
#: then kept as a permanent bad file
MAX_FILE_ATTEMPTS = 3
#: a log file's good rows go to the sink this many at a time, all of a file's pages in one
#: transaction: a Daily file holds a whole day of a large org, never in memory at once (a
#: page is ~30 MB of rows; smaller pages cost more lookups of the store's ids)
PAGE_ROWS = 20_000


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
        self._base = ""
        #: REQUEST_ID → (CreatedDate, Sequence, Id) of the newest file of the current
        #: LogDate day that held it, for rows read this run
        self._seen: dict[str, tuple[str, int, str]] = {}
        self._seen_day: str | None = None

    def sync(self, sink: SyncSink, window: Window | None) -> None:
        state = sink.sync_state(SOURCE) or {}
        since_bound = since_bound_of(state, self.sync_start, self.cfg.sync.initial_days)
        base, order = self._base_query()
        self._base = base
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
            try:
                created = check_datetime(rec.get("CreatedDate"), "CreatedDate", required=True)
            except BadValue:
                continue  # reported as a bad file by _well_listed
            if created is not None and (newest is None or created > newest):
                newest = created
        due = self._due_files(sink)
        for rec in due:
            files.setdefault(str(rec["Id"]), rec)
        files = self._well_listed(sink, files)
        # newest first, a LogDate day at a time: a row already read from a newer file of
        # its day is not written again (half the rows: Hourly and Daily files overlap)
        ordered = sorted(files.values(), key=_file_order, reverse=True)
        due_ids = {str(r["Id"]) for r in due}
        for n, rec in enumerate(ordered, 1):
            day = str(rec.get("LogDate") or "")[:10]
            if day != self._seen_day:
                self._seen_day, self._seen = day, {}
            self._process_file(sink, rec, due_ids)
            self.progress("EventLogFiles", n, len(ordered))
        self._seen = {}
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

    def _due_files(self, sink: SyncSink) -> list[dict[str, Any]]:
        """The current records of bad files that are due another download."""
        due = sink.log_files_due(MAX_FILE_ATTEMPTS)
        found: list[dict[str, Any]] = []
        for i in range(0, len(due), 200):
            soql = f"{self._base} AND Id IN {in_list(due[i : i + 200])}"
            found.extend(self.client.query_all(soql))
        return found

    def _well_listed(
        self, sink: SyncSink, files: dict[str, dict[str, Any]]
    ) -> dict[str, dict[str, Any]]:
        """The listed files whose own record can be read (a CreatedDate, and a whole
        LogFileLength and Sequence); any other is a bad file, noted, never a crash."""
        good: dict[str, dict[str, Any]] = {}
        bad: list[BadRecord] = []
        for file_id, rec in files.items():
            try:
                check_datetime(rec.get("CreatedDate"), "CreatedDate", required=True)
                for name in ("LogFileLength", "Sequence"):
                    check_count(rec.get(name), name, required=False, bound=2**62)
            except BadValue as exc:
                at = iso_or_none(rec.get("LogDate")) or format_iso_ms(self.sync_start)
                detail = f"its EventLogFile record has {exc.field} = {shown(exc.value)}"
                bad.append(_bad_file(file_id, at, detail))
                self.notes.append(f"EventLogFile {file_id}: {detail} (skipped as BAD_RECORD)")
                continue
            good[file_id] = rec
        if bad:
            sink.commit(Page(SOURCE, self.run_id, bad_records=bad))
        return good

    def _relist(self, file_id: str) -> dict[str, Any] | None:
        """The file's record as the org holds it now (None when it is gone)."""
        found = self.client.query_all(f"{self._base} AND Id = {string_literal(file_id)}")
        return found[0] if found else None

    def _process_file(self, sink: SyncSink, rec: dict[str, Any], due: set[str]) -> None:
        file_id = str(rec["Id"])
        created = format_iso_ms(parse_sf_datetime(rec["CreatedDate"]))
        if sink.log_file_created(file_id) == created and file_id not in due:
            self.skipped += 1
            return
        try:
            read = self._download(sink, rec, created, _length(rec))
        except SalesforceError as exc:
            if exc.status == 404:  # deleted between the listing and the download
                self.notes.append(f"EventLogFile {file_id}: deleted before it was read")
                return
            # the body's size disagrees with LogFileLength even after retries: re-published
            # under its own Id while we read it (read the new record), or torn for good
            if exc.status is not None or _length(rec) is None:
                raise
            fresh = self._relist(file_id)
            if fresh is None:
                self.notes.append(f"EventLogFile {file_id}: deleted while it was read")
                return
            if (fresh.get("CreatedDate"), _length(fresh)) != (rec["CreatedDate"], _length(rec)):
                self._process_file(sink, fresh, due | {file_id})
                return
            read = self._download(sink, rec, created, None, declared=_length(rec))
        self._file_done(sink, rec, created, read)

    def _file_record(self, rec: dict[str, Any], created: str, read: _FileRead) -> LogFileRecord:
        return {
            "id": str(rec["Id"]),
            "log_date": iso_or_none(rec.get("LogDate")),
            "interval": rec.get("Interval"),  # None below API 37.0: unknown
            "sequence": _sequence(rec),
            "created_date": created,
            # rows read as data: good ones and those a newer file already settled
            "rows": read.good + read.settled,
            "sha256": read.sha,
            "bytes": read.size,
            "bad": 1 if read.error else 0,
            "error": read.error,
            "processed_at": format_iso_ms(datetime.now(timezone.utc)),
            "run_id": self.run_id,
            "retryable": int(read.retryable),
        }

    def _file_done(
        self, sink: SyncSink, rec: dict[str, Any], created: str, read: _FileRead
    ) -> None:
        """A bad file's record stored; then what the file's reading leaves this run: notes,
        counts, its REQUEST_IDs settled for the older files of its day, the days it changed."""
        file_id = str(rec["Id"])
        at = iso_or_none(rec.get("LogDate")) or created
        if read.error:
            bad = [_bad_file(file_id, at, read.error)]
            record = self._file_record(rec, created, read)
            sink.commit(Page(SOURCE, self.run_id, log_file=record, bad_records=bad))
            self.bad += 1
            again = f" (read again on later runs, {MAX_FILE_ATTEMPTS} readings in all)"
            again = again if read.retryable else ""
            self.notes.append(f"EventLogFile {file_id}: {read.error}{again}")
            return
        if read.bad_rows:
            first = _bad_row(file_id, at, read.bad_rows[0])
            self.notes.append(
                f"EventLogFile {file_id}: {len(read.bad_rows)} bad row(s), first at line "
                f"{first['line']}: {first['detail']} ({first['reason']})"
            )
        self.rows += read.good + read.settled
        seen, key = self._seen, (created, _sequence(rec), file_id)
        for request_id in read.ids:
            if seen.get(request_id, key) <= key:
                seen[request_id] = key
        for started_at in read.days.values():
            self.on_changed(started_at)

    def _download(
        self,
        sink: SyncSink,
        rec: dict[str, Any],
        created: str,
        expected: int | None,
        *,
        declared: int | None = None,
    ) -> _FileRead:
        """The file streamed to a temporary file, then read into the sink a page of rows at
        a time, all its pages in one transaction (`_read_into`) — or why the file as a whole
        is bad, and then none of its rows are stored."""
        file_id = str(rec["Id"])
        with tempfile.TemporaryFile() as tmp:
            size, sha = self.client.download_logfile(file_id, tmp, expected_size=expected)
            self.downloaded += 1
            if declared is not None and size != declared:
                why = f"body of {size} bytes where LogFileLength says {declared}"
                return _FileRead(size, sha, why, retryable=True)
            tmp.seek(0)
            read = _FileRead(size, sha, None)
            try:
                with sink.together():
                    self._read_into(sink, tmp, rec, created, read)
            except BadLogFile as exc:
                return _FileRead(size, sha, str(exc), retryable=exc.retryable)
        return read

    def _read_into(
        self, sink: SyncSink, stream: IO[bytes], rec: dict[str, Any], created: str, read: _FileRead
    ) -> None:
        """Parse the file and hand its good rows to the sink PAGE_ROWS at a time; the last
        page carries its bad rows too. A row whose REQUEST_ID a newer file of its day already
        gave is only counted: the store would keep the newer copy whatever this one holds
        (good, or bad), so its values are not checked."""
        file_id, sequence = str(rec["Id"]), _sequence(rec)
        seen, key = self._seen, (created, sequence, file_id)
        page: list[LogEvent] = []
        for row in parse_logfile(
            stream,
            rec.get("LogFileFieldNames"),
            max_tokens=self.cfg.sync.max_tokens_per_action,
            settled=lambda rid: seen.get(rid, key) > key,
        ):
            if row.event is None:
                if row.bad is None:
                    read.settled += 1
                else:
                    read.bad_rows.append(row)
                continue
            row.event.update(file_id=file_id, file_created_date=created, file_sequence=sequence)
            page.append(row.event)  # type: ignore[arg-type]  # parse_logfile's names
            if len(page) == PAGE_ROWS:
                self._commit_page(sink, rec, created, read, page)
                page = []
        self._commit_page(sink, rec, created, read, page, last=True)

    def _commit_page(
        self,
        sink: SyncSink,
        rec: dict[str, Any],
        created: str,
        read: _FileRead,
        rows: list[LogEvent],
        *,
        last: bool = False,
    ) -> None:
        """One page of the file's good rows (those a newer file read this run already holds
        never get here: `parse_logfile` hands them over as settled), with the file's record
        as read so far; the last page also with the file's bad rows."""
        file_id = str(rec["Id"])
        read.good += len(rows)
        read.ids += [r["request_id"] for r in rows]
        for row in rows:
            read.days.setdefault(row["started_at"][:10], row["started_at"])
        bad: list[BadRecord] = []
        if last:
            at = iso_or_none(rec.get("LogDate")) or created
            bad = [_bad_row(file_id, at, row) for row in read.bad_rows]
            read.ids += [r.request_id for r in read.bad_rows if r.request_id]
        record = self._file_record(rec, created, read)
        sink.commit(Page(SOURCE, self.run_id, log_events=rows, log_file=record, bad_records=bad))


@dataclass
class _FileRead:
    """One reading of a log file: its size and digest, and why it is bad as a whole — or
    what its rows were (the good ones are in the store by the time it is done)."""

    size: int
    sha: str
    error: str | None
    retryable: bool = False
    #: good rows read
    good: int = 0
    #: rows read no further than REQUEST_ID: a newer file of their day already gave it
    settled: int = 0
    bad_rows: list[LogRow] = field(default_factory=list)
    #: the REQUEST_IDs of its good and bad rows, settled for older files once it is stored
    ids: list[str] = field(default_factory=list)
    #: a started_at of each day (YYYY-MM-DD) its good rows start on
    days: dict[str, str] = field(default_factory=dict)


def _length(rec: dict[str, Any]) -> int | None:
    value = rec.get("LogFileLength")
    return None if value is None else int(float(value))


def _sequence(rec: dict[str, Any]) -> int:
    return int(float(rec.get("Sequence") or 0))


def _bad_file(file_id: str, at: str, error: str) -> BadRecord:
    return {
        "source": SOURCE,
        "key": file_id,
        "reason": "bad_file",
        "field": None,
        "detail": error,
        "record_id": None,
        "file_id": file_id,
        "line": None,
        "at": at,
    }


def _bad_row(file_id: str, log_date: str, row: LogRow) -> BadRecord:
    bad = row.bad
    assert bad is not None
    return {
        "source": SOURCE,
        "key": row.request_id or f"{file_id}:{row.line}",
        "reason": bad.reason,
        "field": bad.field,
        "detail": f"{bad.field} = {shown(bad.value)}",
        "record_id": row.request_id,
        "file_id": file_id,
        "line": row.line,
        "at": row.started_at or log_date,
    }


def _file_order(rec: dict[str, Any]) -> tuple[str, str, int, str]:
    # by LogDate day, then as the sink ranks copies of a row: CreatedDate, Sequence, Id
    return (
        str(rec.get("LogDate") or "")[:10],
        format_iso_ms(parse_sf_datetime(rec["CreatedDate"])),
        _sequence(rec),
        str(rec["Id"]),
    )
