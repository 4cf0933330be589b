"""Incremental sync of AgentWorkItem records and AgentAction EventLogFiles into the store.

Guarantees (STYLE: "state you can trust"):
- AgentWorkItem: keyset cursor (SystemModstamp, Id), `ORDER BY SystemModstamp, Id`, every
  query capped at the sync's start so rows written during the sync come next time; the
  cursor is written in the same transaction as the page of rows it covers.
- EventLogFile: every file remembered by Id and CreatedDate; a known file is never
  downloaded again, a re-published one (new Id, or same Id with a later CreatedDate) is,
  and its rows replace older copies by REQUEST_ID (latest CreatedDate, then Sequence, then
  Id wins; a newer file never removes rows). Late Hourly files are caught by re-listing a
  settle window of CreatedDate on every run.
- Backfills (`--since/--until`) fetch only the part of the window no earlier sync covered
  and leave the nightly cursor where it is.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from audit.config import AWI_FIELD_DEFAULTS, Config
from audit.engine.model import canonical_iso_ms, format_iso_ms, parse_sf_datetime
from audit.errors import ConfigError, SalesforceError
from connector.client import SalesforceClient
from connector.ids import to_18
from connector.logfiles import BadLogFile, parse_logfile
from connector.soql import datetime_literal, ident, in_list, string_literal

__all__ = ["SyncReport", "Syncer", "OrgInfo", "Interval", "subtract_intervals", "merge_intervals"]

Progress = Callable[[str, int, "int | None"], None]

#: logical fields the audit cannot work without; the rest are optional
REQUIRED_AWI = (
    "id",
    "session_id",
    "action_name",
    "action_type",
    "channel",
    "status",
    "tokens",
    "started_at",
)
_INT_FIELDS = {"prompt_tokens", "completion_tokens", "tokens"}
_ELF_FILE_FIELDS = (
    "Id",
    "EventType",
    "LogDate",
    "Interval",
    "Sequence",
    "CreatedDate",
    "LogFileLength",
    "LogFileFieldNames",
)

Interval = tuple[str, str]  # [start, end) as ISO strings (sortable)

#: How far back of the previous sync's start each incremental AgentWorkItem query re-reads.
#: A transaction's rows carry the SystemModstamp of its start but become visible only when
#: it commits, so a row can appear after a sync has read past its timestamp (the keyset
#: cursor alone would skip it for ever). Salesforce ends a transaction after 10 minutes.
AWI_LOOKBACK = timedelta(minutes=10)


@dataclass
class OrgInfo:
    org_id: str
    is_sandbox: bool


@dataclass
class SyncReport:
    records: int = 0
    elf_files_downloaded: int = 0
    elf_files_skipped: int = 0
    elf_files_bad: int = 0
    elf_rows: int = 0
    cases: int = 0
    #: earliest started_at among rows changed by this sync (widens the audit)
    earliest_changed: str | None = None
    #: the days (YYYY-MM-DD) of every row changed by this sync
    changed_days: set[str] = field(default_factory=set)
    notes: list[str] = field(default_factory=list)

    def changed(self, started_at: str | None) -> None:
        if not started_at:
            return
        self.changed_days.add(started_at[:10])
        if self.earliest_changed is None or started_at < self.earliest_changed:
            self.earliest_changed = started_at


class Syncer:
    """Syncs one org into one store for one run."""

    def __init__(
        self,
        client: SalesforceClient,
        store: Any,
        cfg: Config,
        *,
        run_id: str,
        sync_start: datetime,
        progress: Progress | None = None,
    ):
        self.client = client
        self.store = store
        self.cfg = cfg
        self.run_id = run_id
        self.sync_start = sync_start.astimezone(timezone.utc)
        self.progress = progress or (lambda stage, done, total: None)
        self.report = SyncReport()
        self._awi_fields: dict[str, str] | None = None

    # -- organisation & schema ------------------------------------------------------------
    def org_info(self) -> OrgInfo:
        rows = self.client.query_all("SELECT Id, IsSandbox FROM Organization")
        if not rows:
            raise SalesforceError("the org returned no Organization record")
        return OrgInfo(org_id=str(rows[0]["Id"]), is_sandbox=bool(rows[0].get("IsSandbox")))

    def awi_fields(self) -> dict[str, str]:
        """Logical → API name for the fields this org has; one error naming every mapped
        field the org lacks (describe is checked once per run)."""
        if self._awi_fields is not None:
            return self._awi_fields
        described = self.client.describe("AgentWorkItem")
        present = {f["name"].lower(): f["name"] for f in described.get("fields", [])}
        mapping = self.cfg.awi_fields
        explicit = {k for k, v in mapping.items() if AWI_FIELD_DEFAULTS.get(k) != v}
        missing, fields = [], {}
        for logical, api in mapping.items():
            actual = present.get(api.lower())
            if actual is not None:
                fields[logical] = actual
            elif logical in explicit or logical in REQUIRED_AWI:
                missing.append(f"{api} ({logical})")
        if missing:
            raise ConfigError(
                "AgentWorkItem in this org lacks mapped field(s): "
                + ", ".join(missing)
                + " — fix [fields.AgentWorkItem] in the config"
            )
        self._awi_fields = fields
        return fields

    # -- AgentWorkItem --------------------------------------------------------------------
    def sync_awi(self, window: tuple[datetime, datetime] | None) -> None:
        state = self.store.get_sync_state("agentworkitem") or {}
        fields = self.awi_fields()
        select = ", ".join(dict.fromkeys([*fields.values(), "CreatedDate", "SystemModstamp"]))
        start_field = ident(fields["started_at"])
        cap = datetime_literal(self.sync_start)

        since_bound = state.get("since_bound")
        if since_bound is None:
            since_bound = _day_floor(self.sync_start - timedelta(days=self.cfg.sync.initial_days))
            state["since_bound"] = format_iso_ms(since_bound)
        else:
            since_bound = parse_sf_datetime(since_bound)

        if window is not None:
            todo = subtract_intervals(
                (format_iso_ms(window[0]), format_iso_ms(window[1])),
                [
                    *(tuple(iv) for iv in state.get("covered", [])),
                    (format_iso_ms(since_bound), "9999-12-31T00:00:00.000Z"),
                ],
            )
            for lo, hi in todo:
                soql = (
                    f"SELECT {select} FROM AgentWorkItem WHERE {start_field} >= "
                    f"{datetime_literal(parse_sf_datetime(lo))} AND {start_field} < "
                    f"{datetime_literal(parse_sf_datetime(hi), round_up=True)} "
                    f"AND SystemModstamp <= {cap} ORDER BY SystemModstamp, Id"
                )
                self._fetch_awi(soql, fields, state=None)
                state = self.store.get_sync_state("agentworkitem") or state
                state.setdefault("since_bound", format_iso_ms(since_bound))
                state["covered"] = merge_intervals([*state.get("covered", []), (lo, hi)])
                self.store.set_sync_state("agentworkitem", state, self.run_id)

        # the incremental part runs on every run: it is what keeps backfilled ranges fresh.
        # Keyset on (SystemModstamp, Id) from the cursor — several rows sharing one
        # timestamp across a page or run edge are neither skipped nor read twice — widened
        # to re-read AWI_LOOKBACK before the previous sync's start, for late commits.
        cursor = state.get("cursor")
        if cursor:
            cursor_ts = parse_sf_datetime(cursor["ts"])
            synced_to = state.get("synced_to")
            lookback = parse_sf_datetime(synced_to) - AWI_LOOKBACK if synced_to else None
            if lookback is not None and lookback <= cursor_ts:
                where = f"SystemModstamp >= {datetime_literal(lookback)}"
            else:
                ts = datetime_literal(cursor_ts)
                where = (
                    f"(SystemModstamp > {ts} OR (SystemModstamp = {ts} AND Id > "
                    f"{string_literal(cursor['id'])}))"
                )
        else:
            where = f"SystemModstamp >= {datetime_literal(since_bound)}"
        soql = (
            f"SELECT {select} FROM AgentWorkItem WHERE {where} AND SystemModstamp <= {cap} "
            "ORDER BY SystemModstamp, Id"
        )
        state["synced_to"] = format_iso_ms(self.sync_start.replace(microsecond=0))
        self._fetch_awi(soql, fields, state=state)

    def _fetch_awi(
        self, soql: str, fields: dict[str, str], *, state: dict[str, Any] | None
    ) -> None:
        """Page through a query, committing each page (and the cursor, if `state`). Rows
        the store already holds unchanged (same SystemModstamp) are neither written nor
        counted: a re-read (lookback, a resumed run) fetches nothing twice."""
        done = 0
        for page in self.client.query_pages(soql):
            rows = [self._awi_row(rec, fields) for rec in page]
            stored = _stored_modstamps(self.store, [r["id"] for r in rows])
            rows = [
                r for r in rows if r["id"] not in stored or stored[r["id"]] != r["system_modstamp"]
            ]
            with self.store.transaction():
                if rows:
                    self.store.upsert("awi_records", rows, pk="id")
                if state is not None and page:
                    last = page[-1]
                    edge = {
                        "ts": format_iso_ms(parse_sf_datetime(last["SystemModstamp"])),
                        "id": to_18(str(last["Id"])),
                    }
                    old = state.get("cursor")
                    if not old or (edge["ts"], edge["id"]) > (old["ts"], old["id"]):
                        state["cursor"] = edge  # a lookback re-read never moves it back
                    self.store.set_sync_state("agentworkitem", state, self.run_id)
            for row in rows:
                self.report.changed(row["started_at"])
            done += len(rows)
            self.report.records += len(rows)
            self.progress("AgentWorkItem records", done, None)
        if state is not None:
            # also when nothing came: records where the cursor starts and how far it read
            self.store.set_sync_state("agentworkitem", state, self.run_id)

    def _awi_row(self, rec: dict[str, Any], fields: dict[str, str]) -> dict[str, Any]:
        # the SELECT used describe's canonical names, which is how records come back; the
        # case-insensitive lookup is only a fallback
        lower: dict[str, Any] | None = None
        row: dict[str, Any] = {}
        for logical in AWI_FIELD_DEFAULTS:
            api = fields.get(logical)
            value = rec.get(api) if api else None
            if value is None and api and api not in rec:
                lower = lower or {k.lower(): v for k, v in rec.items()}
                value = lower.get(api.lower())
            if logical in _INT_FIELDS and value is not None:
                value = round(float(value))
            elif logical == "reported_awu" and value is not None:
                value = float(value)
            elif logical == "started_at" and value:
                value = canonical_iso_ms(str(value))
            elif logical in ("id", "user_id", "case_id") and value:
                value = to_18(str(value))
            row[logical] = value
        row["created_date"] = _iso_or_none(rec.get("CreatedDate"))
        row["system_modstamp"] = _iso_or_none(rec.get("SystemModstamp"))
        return row

    # -- EventLogFile ---------------------------------------------------------------------
    def sync_elf(self, window: tuple[datetime, datetime] | None) -> None:
        state = self.store.get_sync_state("eventlogfile") or {}
        described = {
            f["name"].lower() for f in self.client.describe("EventLogFile").get("fields", [])
        }
        select = ", ".join(f for f in _ELF_FILE_FIELDS if f.lower() in described or f == "Id")
        cap = datetime_literal(self.sync_start)
        base = (
            f"SELECT {select} FROM EventLogFile WHERE EventType = {string_literal('AgentAction')}"
        )
        order = "ORDER BY LogDate, Id" if "logdate" in described else "ORDER BY Id"

        since_bound = state.get("since_bound")
        if since_bound is None:
            since_bound = _day_floor(self.sync_start - timedelta(days=self.cfg.sync.initial_days))
            state["since_bound"] = format_iso_ms(since_bound)
        else:
            since_bound = parse_sf_datetime(since_bound)

        backfill: list[str] = []
        todo: list[Interval] = []
        if window is not None:
            todo = subtract_intervals(
                (format_iso_ms(_day_floor(window[0])), format_iso_ms(window[1])),
                [
                    *(tuple(iv) for iv in state.get("covered", [])),
                    (format_iso_ms(since_bound), "9999-12-31T00:00:00.000Z"),
                ],
            )
            for lo, hi in todo:
                backfill.append(
                    f"{base} AND LogDate >= {datetime_literal(parse_sf_datetime(lo))} "
                    "AND LogDate < "
                    f"{datetime_literal(parse_sf_datetime(hi), round_up=True)} "
                    f"AND CreatedDate <= {cap} {order}"
                )
        created_cursor = state.get("created_cursor")
        if created_cursor:
            settle = parse_sf_datetime(created_cursor) - timedelta(
                hours=self.cfg.sync.elf_settle_hours
            )
            # never reach back before where the incremental listing began: files created
            # earlier belong to the backfilled ranges, not to the nightly re-check
            if settle < since_bound:
                incremental = (
                    f"{base} AND CreatedDate >= {datetime_literal(since_bound)} "
                    f"AND CreatedDate <= {cap} {order}"
                )
            else:
                incremental = (
                    f"{base} AND CreatedDate > {datetime_literal(settle)} "
                    f"AND CreatedDate <= {cap} {order}"
                )
        else:
            # files created since the first sync's start: new days, and old days re-published
            incremental = (
                f"{base} AND CreatedDate >= {datetime_literal(since_bound)} "
                f"AND CreatedDate <= {cap} {order}"
            )

        files: dict[str, dict[str, Any]] = {}
        for soql in backfill:
            for rec in self.client.query_all(soql):
                files[str(rec["Id"])] = rec
        # only the incremental listing moves the CreatedDate cursor: a backfill of an old
        # window must not make the nightly settle re-check jump
        newest = created_cursor
        for rec in self.client.query_all(incremental):
            files[str(rec["Id"])] = rec
            created = format_iso_ms(parse_sf_datetime(rec["CreatedDate"]))
            if newest is None or created > newest:
                newest = created
        ordered = sorted(files.values(), key=_file_order)
        total = len(ordered)
        for n, rec in enumerate(ordered, 1):
            self._process_file(rec)
            self.progress("EventLogFiles", n, total)

        with self.store.transaction():
            state = {
                **(self.store.get_sync_state("eventlogfile") or state),
                "since_bound": state["since_bound"],
            }
            if newest:
                state["created_cursor"] = newest
            state["covered"] = merge_intervals([*state.get("covered", []), *todo])
            self.store.set_sync_state("eventlogfile", state, self.run_id)

    def _process_file(self, rec: dict[str, Any]) -> None:
        file_id = str(rec["Id"])
        created = format_iso_ms(parse_sf_datetime(rec["CreatedDate"]))
        known = _elf_file(self.store, file_id)
        if known is not None and known["created_date"] == created:
            self.report.elf_files_skipped += 1
            return
        sequence = int(float(rec.get("Sequence") or 0))
        with tempfile.TemporaryFile() as tmp:
            expected = rec.get("LogFileLength")
            size, sha = self.client.download_logfile(
                file_id, tmp, expected_size=int(float(expected)) if expected is not None else None
            )
            self.report.elf_files_downloaded += 1
            bad: str | None = None
            tmp.seek(0)
            rows: list[dict[str, Any]] = []
            try:
                for row in parse_logfile(tmp, rec.get("LogFileFieldNames")):
                    if not row["request_id"] or not row["started_at"]:
                        continue
                    row["started_at"] = canonical_iso_ms(row["started_at"])
                    row.update(file_id=file_id, file_created_date=created, file_sequence=sequence)
                    rows.append(row)
            except BadLogFile as exc:
                bad = str(exc)
                rows = []
        with self.store.transaction():
            if rows:
                _upsert_elf_events(self.store, rows)
            self.store.upsert(
                "elf_files",
                [
                    {
                        "id": file_id,
                        "log_date": _iso_or_none(rec.get("LogDate")),
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
                ],
                pk="id",
            )
        if bad:
            self.report.elf_files_bad += 1
            self.report.notes.append(f"EventLogFile {file_id}: {bad} (skipped as BAD_RECORD)")
        self.report.elf_rows += len(rows)
        for row in rows:
            self.report.changed(row["started_at"])

    # -- the audit window of a run without one ------------------------------------------
    def audit_start(self, default: datetime) -> datetime:
        """Where a run without `--since` starts auditing: `default` (the last initial_days),
        widened back to the day of the earliest row this sync changed (a record corrected
        late, a re-published file) — but only into ranges the store holds whole: since the
        first sync's start, or a backfilled window. A changed row older than that (say the
        Daily file of the day before the first sync, created after it) is stored for a
        later backfill, not audited from half its data."""
        kinds = set(self.cfg.source.kinds)
        source = "agentworkitem" if "agentworkitem" in kinds else "eventlogfile"
        state = self.store.get_sync_state(source) or {}
        ranges: list[list[str]] = [list(iv) for iv in state.get("covered", [])]
        if state.get("since_bound"):
            ranges.append([state["since_bound"], "9999-12-31T00:00:00.000Z"])
        ranges = merge_intervals(ranges)
        start = default
        for day in sorted(self.report.changed_days):
            lo = format_iso_ms(datetime.fromisoformat(day).replace(tzinfo=timezone.utc))
            hi = format_iso_ms(
                datetime.fromisoformat(day).replace(tzinfo=timezone.utc) + timedelta(days=1)
            )
            for a, b in ranges:
                if a < hi and lo < b:  # the day overlaps a synced range
                    start = min(start, parse_sf_datetime(max(a, lo)))
                    return start
        return start

    # -- Case -----------------------------------------------------------------------------
    def sync_cases(self, case_ids: Iterable[str]) -> None:
        wanted = sorted({c for c in case_ids if c})
        if not wanted:
            return
        state = self.store.get_sync_state("case") or {}
        known = self.store.existing("cases", "id", wanted)
        unknown = [c for c in wanted if c not in known]
        batches: list[str] = []
        for chunk in _chunks(unknown, 200):
            batches.append(
                f"SELECT Id, Status, IsClosed, ClosedDate FROM Case WHERE Id IN {in_list(chunk)}"
            )
        if known and state.get("synced_at"):
            since = datetime_literal(parse_sf_datetime(state["synced_at"]))
            for chunk in _chunks(sorted(known), 200):
                batches.append(
                    "SELECT Id, Status, IsClosed, ClosedDate FROM Case WHERE Id IN "
                    f"{in_list(chunk)} AND SystemModstamp > {since}"
                )
        rows = []
        for soql in batches:
            for rec in self.client.query_all(soql):
                rows.append(
                    {
                        "id": to_18(str(rec["Id"])),
                        "status": rec.get("Status"),
                        "is_closed": 1 if rec.get("IsClosed") else 0,
                        "closed_at": _iso_or_none(rec.get("ClosedDate")),
                    }
                )
        with self.store.transaction():
            if rows:
                self.store.upsert("cases", rows, pk="id")
            self.store.set_sync_state(
                "case", {"synced_at": format_iso_ms(self.sync_start)}, self.run_id
            )
        self.report.cases += len(rows)


# -- store operations of the sync ---------------------------------------------------------
_ELF_EVENT_COLUMNS = (
    "request_id",
    "work_item_id",
    "session_id",
    "user_id",
    "agent_id",
    "action_name",
    "action_type",
    "channel",
    "status",
    "prompt_tokens",
    "completion_tokens",
    "tokens",
    "reported_awu",
    "started_at",
    "file_id",
    "file_created_date",
    "file_sequence",
)
# A copy of a REQUEST_ID replaces the stored one only if its file is newer: latest
# CreatedDate, then higher Sequence, then larger Id (SPEC §3.2). Processing files in any
# order therefore ends with the same rows.
_UPSERT_ELF_SQL = (
    f"INSERT INTO elf_events ({', '.join(_ELF_EVENT_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in _ELF_EVENT_COLUMNS)}) "
    "ON CONFLICT (request_id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in _ELF_EVENT_COLUMNS[1:])
    + " WHERE (excluded.file_created_date, excluded.file_sequence, excluded.file_id) >= "
    "(elf_events.file_created_date, elf_events.file_sequence, elf_events.file_id)"
)


def _upsert_elf_events(store: Any, rows: list[dict[str, Any]]) -> None:
    store.db.conn.executemany(
        _UPSERT_ELF_SQL, [tuple(r.get(c) for c in _ELF_EVENT_COLUMNS) for r in rows]
    )


def _stored_modstamps(store: Any, ids: list[str]) -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for chunk in _chunks(ids, 500):
        marks = ",".join("?" * len(chunk))
        found.update(
            store.db.conn.execute(
                f"SELECT id, system_modstamp FROM awi_records WHERE id IN ({marks})", chunk
            ).fetchall()
        )
    return found


def _elf_file(store: Any, file_id: str) -> dict[str, Any] | None:
    row = store.db.conn.execute(
        "SELECT id, created_date FROM elf_files WHERE id = ?", (file_id,)
    ).fetchone()
    return {"id": row[0], "created_date": row[1]} if row else None


# -- helpers ------------------------------------------------------------------------------
def _file_order(rec: dict[str, Any]) -> tuple[str, int, str]:
    # oldest first, so the newest copy of a REQUEST_ID is written last
    return (
        format_iso_ms(parse_sf_datetime(rec["CreatedDate"])),
        int(float(rec.get("Sequence") or 0)),
        str(rec["Id"]),
    )


def _iso_or_none(value: Any) -> str | None:
    if value in (None, ""):
        return None
    return canonical_iso_ms(str(value))


def _day_floor(dt: datetime) -> datetime:
    return dt.astimezone(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)


def _chunks(items: list[str], size: int) -> Iterable[list[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def merge_intervals(intervals: Iterable[Iterable[str]]) -> list[list[str]]:
    """Union of [start, end) ISO intervals, sorted and coalesced."""
    out: list[list[str]] = []
    for lo, hi in sorted(tuple(iv) for iv in intervals):
        if lo >= hi:
            continue
        if out and lo <= out[-1][1]:
            out[-1][1] = max(out[-1][1], hi)
        else:
            out.append([lo, hi])
    return out


def subtract_intervals(window: Interval, covered: Iterable[Iterable[str]]) -> list[Interval]:
    """The parts of `window` not inside any covered interval."""
    todo = [window]
    for lo, hi in merge_intervals(covered):
        nxt: list[Interval] = []
        for a, b in todo:
            if hi <= a or lo >= b:
                nxt.append((a, b))
                continue
            if a < lo:
                nxt.append((a, lo))
            if hi < b:
                nxt.append((hi, b))
        todo = nxt
    return [(a, b) for a, b in todo if a < b]
