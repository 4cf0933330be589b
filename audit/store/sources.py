"""Raw source rows: the store as the connector's `SyncSink` (pages of records and the cursor
they advance, in one transaction), and the readers that hand those rows to the engine."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from operator import itemgetter
from typing import Any, cast

from audit.engine.model import Case, parse_sf_datetime
from audit.errors import StoreError
from audit.store.actions import ceil_ms
from audit.store.basis import Basis
from audit.store.db import in_lists
from audit.store.quality import Quality
from audit.store.values import iso, now_iso, to_json
from connector.sink import (
    AwiRecord,
    D360Event,
    D360Session,
    D360Step,
    LogEvent,
    LogFileRecord,
    Page,
    SyncState,
)

__all__ = ["SYNC_STATE_VERSION", "Sources"]

#: version of the JSON documents kept in `sync_state.state`; bump when their shape changes
SYNC_STATE_VERSION = 1

_AWI_COLUMNS = tuple(AwiRecord.__annotations__)
_LOG_COLUMNS = tuple(LogEvent.__annotations__)
_LOG_KEYS = ("request_id", "work_item_id")
_D360_EVENT_COLUMNS = tuple(D360Event.__annotations__)
_D360_STEP_COLUMNS = tuple(D360Step.__annotations__)
_D360_SESSION_COLUMNS = tuple(D360Session.__annotations__)


# Raw rows come a page of thousands at a time, many pages a sync: they are written with one
# prepared statement over tuples (executemany), several times faster than sqlite-utils'
# per-batch SQL building and value conversion. The small tables go through sqlite-utils.
def _upsert_sql(table: str, columns: Sequence[str], key: str = "id", when: str = "") -> str:
    return (
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))}) "
        f"ON CONFLICT ({key}) DO UPDATE SET "
        + ", ".join(f"{c} = excluded.{c}" for c in columns if c != key)
        + when
    )


def _differs(table: str, columns: Sequence[str], key: str = "id") -> str:
    """An upsert's condition that leaves a stored row identical to the new one alone (no
    write, no change counted: the store's inputs version moves only when a row does)."""
    cols = [c for c in columns if c != key]
    return (
        f"({', '.join(f'{table}.{c}' for c in cols)}) IS NOT "
        f"({', '.join(f'excluded.{c}' for c in cols)})"
    )


_UPSERT_AWI_SQL = _upsert_sql(
    "awi_records", _AWI_COLUMNS, when=" WHERE " + _differs("awi_records", _AWI_COLUMNS)
)
# a log row replaces the stored copy of its REQUEST_ID only when its file is newer
# (CreatedDate, then Sequence, then Id): hourly files re-deliver rows of the daily ones
_UPSERT_LOG_SQL = _upsert_sql(
    "elf_events",
    _LOG_COLUMNS,
    key="request_id",
    when=" WHERE (excluded.file_created_date, excluded.file_sequence, excluded.file_id) >= "
    "(elf_events.file_created_date, elf_events.file_sequence, elf_events.file_id) AND "
    + _differs("elf_events", _LOG_COLUMNS, key="request_id"),
)
_UPSERT_D360_EVENT_SQL = _upsert_sql("d360_events", (*_D360_EVENT_COLUMNS, "run_id"))
_UPSERT_D360_STEP_SQL = _upsert_sql("d360_steps", _D360_STEP_COLUMNS)
_UPSERT_D360_SESSION_SQL = _upsert_sql("d360_sessions", _D360_SESSION_COLUMNS)

# which REQUEST_IDs a file newer than (?, ?, ?) holds as a bad row, or as a stored row
_ANY_BAD_ROW_SQL = (
    "SELECT 1 FROM bad_records WHERE source = 'eventlogfile' AND record_id IS NOT NULL LIMIT 1"
)
_NEWER_BAD_SQL = (
    "SELECT b.record_id FROM bad_records b JOIN elf_files f ON f.id = b.file_id "
    "WHERE b.source = 'eventlogfile' AND b.record_id IN ({marks}) "
    "AND (f.created_date, f.sequence, f.id) > (?, ?, ?)"
)
_NEWER_ROW_SQL = (
    "SELECT request_id FROM elf_events WHERE request_id IN ({marks}) "
    "AND (file_created_date, file_sequence, file_id) > (?, ?, ?)"
)

_D360_ROWS_SQL = """
    SELECT e.*, s.channel_type, s.voice_call_id,
           st.id AS step_id, st.input_text, st.error_text, st.started_at AS step_started
    FROM d360_events e
    LEFT JOIN d360_sessions s ON s.id = e.session_id
    LEFT JOIN d360_steps st ON st.request_id = e.request_id
    WHERE e.started_at >= ? AND e.started_at < ?
"""


# the chunk readers (`core_chunk`): a log row belongs to the group of its WORK_ITEM_ID,
# else of its REQUEST_ID (as the engine groups them)
_GROUP_KEY = "coalesce(nullif(e.work_item_id, ''), e.request_id)"
_RECORD_LOGS_SQL = (
    "SELECT {cols} FROM awi_records a JOIN elf_events e ON e.work_item_id = a.id "
    "WHERE a.started_at >= ? AND a.started_at < ? UNION ALL "
    "SELECT {cols} FROM awi_records a JOIN elf_events e ON e.request_id = a.id "
    "AND coalesce(e.work_item_id, '') = '' WHERE a.started_at >= ? AND a.started_at < ?"
)
_NO_RECORD = f"AND NOT EXISTS (SELECT 1 FROM awi_records a WHERE a.id = {_GROUP_KEY})"
_LOG_ONLY_SQL = (
    f"WITH k AS (SELECT DISTINCT {_GROUP_KEY} AS key FROM elf_events e "
    "WHERE e.started_at >= ? AND e.started_at < ? {no_record}) "
    "SELECT {cols} FROM k JOIN elf_events e ON e.work_item_id = k.key UNION ALL "
    "SELECT {cols} FROM k JOIN elf_events e ON e.request_id = k.key "
    "AND coalesce(e.work_item_id, '') = ''"
)
# agent names (`agent_names_for`): per agent the name of its latest record in the margin
# (the order the margin's records were once read in), then those of the records outside
# the margin that log rows inside it point at, by id
_NAMES_SQL = (
    "SELECT agent, agent_name FROM (SELECT substr(agent_id, 1, 15) AS agent, agent_name, "
    "max(started_at || printf('%020d', rowid)) FROM awi_records "
    "WHERE started_at >= ? AND started_at < ? AND agent_id != '' AND agent_name != '' "
    "GROUP BY 1)"
)
_REFERENCED_NAMES_SQL = (
    "SELECT substr(a.agent_id, 1, 15), a.agent_name FROM awi_records a "
    "WHERE (a.started_at < ? OR a.started_at >= ?) AND a.agent_id != '' "
    "AND a.agent_name != '' AND EXISTS (SELECT 1 FROM elf_events e "
    "WHERE e.work_item_id = a.id AND e.started_at >= ? AND e.started_at < ?) ORDER BY a.id"
)


def _tuples(rows: Iterable[Mapping[str, Any]], columns: Sequence[str]) -> list[tuple[Any, ...]]:
    """The rows as tuples of `columns` (an absent key is None)."""
    rows = rows if isinstance(rows, list | tuple) else list(rows)
    if len(columns) > 1:
        get = itemgetter(*columns)  # in C: a sync's pages hold every column
        try:
            return [get(r) for r in rows]
        except KeyError:
            pass
    return [tuple(r.get(c) for c in columns) for r in rows]


def _days_of(page: Page) -> set[str]:
    """The days ('YYYY-MM-DD') of the rows a page carries: when it changes the store, the
    actions of those days may change (Cases only change what is summed over sessions)."""
    stamps = [
        *(r["started_at"] for r in page.awi_records),
        *(e["started_at"] for e in page.log_events),
        *(e["started_at"] for e in page.d360_events),
        *(e["started_at"] for e in page.d360_steps),
        *(e["started_at"] for e in page.d360_sessions),
        *(b.get("at") for b in page.bad_records),
    ]
    return {s[:10] for s in stamps if isinstance(s, str) and len(s) >= 10}


class Sources(Quality, Basis):
    _names_memo: tuple[tuple[Any, int], dict[str, str]] | None = None

    # -- SyncSink ----------------------------------------------------------------------

    def sync_state(self, source: str) -> SyncState | None:
        """The cursor document of `source`, or None when there is none.

        A document written with an older SYNC_STATE_VERSION is treated as absent (the
        source re-syncs its initial window; upserts make that safe). One written with a
        newer version raises StoreError: a newer awu-audit owns this store.
        """
        rows = self._tuples(
            'SELECT "version", "state" FROM sync_state WHERE "source" = ?', [source]
        )
        if not rows:
            return None
        version, state = rows[0]
        if version > SYNC_STATE_VERSION:
            raise StoreError(
                f"store {self.path}: sync state of {source} was written by a newer awu-audit "
                f"(version {version}); upgrade awu-audit"
            )
        if version != SYNC_STATE_VERSION:
            return None
        try:
            value = json.loads(state)
        except ValueError:
            return None
        return value if isinstance(value, dict) else None

    def _write_sync_state(
        self, source: str, state: Mapping[str, Any], run_id: str | None, now: str | None = None
    ) -> None:
        row = {
            "source": source,
            "version": SYNC_STATE_VERSION,
            "state": to_json(dict(state)),
            "updated_at": now or now_iso(),
            "run_id": run_id,
        }
        self._upsert("sync_state", [row], "source")

    def commit(self, page: Page) -> None:
        """Store the page's records and (if given) its cursor in one transaction; a page
        that changes a stored source row raises the store's inputs version with it."""
        with self.transaction():
            before = self._total_changes()
            moved_from = self._stored_days(page)
            self._commit_rows(page)
            if self._total_changes() != before:
                self._inputs_changed(_days_of(page) | moved_from)
            if page.log_file is not None:
                self._upsert("elf_files", [self._log_file_row(page.log_file)], "id")
            if page.state is not None:
                self._write_sync_state(page.source, page.state, page.run_id)

    def _stored_days(self, page: Page) -> set[str]:
        """The days the page's records are stored on now: a record the page moves to
        another day, or drops as bad, changes the day it leaves too."""
        bad = [b["record_id"] for b in page.bad_records if b["record_id"]]
        keyed = (
            ("awi_records", "id", [r["id"] for r in page.awi_records], "agentworkitem"),
            (
                "elf_events",
                "request_id",
                [e["request_id"] for e in page.log_events],
                "eventlogfile",
            ),
            ("d360_events", "id", [e["id"] for e in page.d360_events], "data360"),
        )
        days: set[str] = set()
        for table, key, ids, source in keyed:
            sql = f"SELECT DISTINCT substr(started_at, 1, 10) FROM {table} WHERE {key} IN "
            wanted = {*ids, *bad} if page.source == source else set(ids)
            for marks, chunk in in_lists(sorted(wanted)):
                days.update(d for (d,) in self._tuples(f"{sql}({marks})", chunk) if d)
        return days

    def _commit_rows(self, page: Page) -> None:
        """The page's source rows and bad records (what an audit reads)."""
        if page.log_file is not None and (page.log_events or page.bad_records):
            page = self._newest_copies(page, page.log_file)
        if page.awi_records:
            self._executemany(_UPSERT_AWI_SQL, _tuples(page.awi_records, _AWI_COLUMNS))
        if page.log_events:
            self._executemany(_UPSERT_LOG_SQL, _tuples(page.log_events, _LOG_COLUMNS))
        if page.cases:
            self._upsert("cases", page.cases, "id")
        if page.d360_events:
            events = ({**e, "run_id": page.run_id} for e in page.d360_events)
            self._executemany(
                _UPSERT_D360_EVENT_SQL, _tuples(events, (*_D360_EVENT_COLUMNS, "run_id"))
            )
        if page.d360_steps:
            self._executemany(_UPSERT_D360_STEP_SQL, _tuples(page.d360_steps, _D360_STEP_COLUMNS))
        if page.d360_sessions:
            self._executemany(
                _UPSERT_D360_SESSION_SQL, _tuples(page.d360_sessions, _D360_SESSION_COLUMNS)
            )
        self._commit_quality(page)

    def _newest_copies(self, page: Page, file: LogFileRecord) -> Page:
        """The page without the rows whose REQUEST_ID a newer file already decided (SPEC
        §3.2: the newest file's copy is the event): a good row loses to a newer bad copy,
        a bad row to any newer copy. So files may come in any order — newest first, or an
        older one read again later — and the store ends the same as oldest first."""
        key = [file["created_date"], file["sequence"], file["id"]]
        newer_bad: set[str] = set()
        if page.log_events and self._tuples(_ANY_BAD_ROW_SQL):
            good_ids = [e["request_id"] for e in page.log_events]
            newer_bad = self._newer(_NEWER_BAD_SQL, good_ids, key)
        bad_ids = [b["record_id"] for b in page.bad_records if b["record_id"]]
        newer = self._newer(_NEWER_BAD_SQL, bad_ids, key)
        newer |= self._newer(_NEWER_ROW_SQL, bad_ids, key)
        if not newer_bad and not newer:
            return page
        return replace(
            page,
            log_events=[e for e in page.log_events if e["request_id"] not in newer_bad],
            bad_records=[b for b in page.bad_records if b["record_id"] not in newer],
        )

    def _newer(self, sql: str, ids: Sequence[str], key: Sequence[Any]) -> set[str]:
        found: set[str] = set()
        for marks, chunk in in_lists(sorted(set(ids))):
            found.update(r[0] for r in self._tuples(sql.format(marks=marks), [*chunk, *key]))
        return found

    def awi_modstamps(self, ids: Sequence[str]) -> dict[str, str | None]:
        """SystemModstamp of each stored AgentWorkItem among `ids`."""
        found: dict[str, str | None] = {}
        for marks, chunk in in_lists(ids):
            sql = f"SELECT id, system_modstamp FROM awi_records WHERE id IN ({marks})"
            found.update((i, stamp) for i, stamp in self._tuples(sql, chunk))
        return found

    def log_file_created(self, file_id: str) -> str | None:
        """CreatedDate of the stored EventLogFile `file_id`, or None if never processed."""
        rows = self._where("elf_files", '"id" = ?', [file_id], select='"created_date"')
        return rows[0]["created_date"] if rows else None

    def known_case_ids(self, ids: Sequence[str]) -> set[str]:
        """The ids among `ids` whose Case is stored."""
        return self._values_in("cases", "id", ids)

    def known_d360_step_requests(self, request_ids: Sequence[str]) -> set[str]:
        """The gateway request ids among `request_ids` that have a stored step."""
        return self._values_in("d360_steps", "request_id", request_ids)

    def known_d360_sessions(self, ids: Sequence[str]) -> set[str]:
        """The session ids among `ids` that are stored."""
        return self._values_in("d360_sessions", "id", ids)

    def stored_d360_events(self, ids: Sequence[str]) -> dict[str, D360Event]:
        """The stored copy of each usage event among `ids`."""
        found: dict[str, D360Event] = {}
        cols = ", ".join(_D360_EVENT_COLUMNS)
        for marks, chunk in in_lists(ids):
            for row in self._rows(f"SELECT {cols} FROM d360_events WHERE id IN ({marks})", chunk):
                found[row["id"]] = cast(D360Event, row)
        return found

    # -- what the engine reads ---------------------------------------------------------

    def core_rows(
        self, window: tuple[datetime, datetime]
    ) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]:
        """AgentWorkItem rows by id and log rows to reconcile for `window`, as dicts of
        every stored column (`core_tuples` reads the same rows)."""
        awi_cols = self._columns("awi_records")
        log_cols = self._columns("elf_events")
        awi, logs = self.core_tuples(window, awi_cols, log_cols)
        return (
            {k: dict(zip(awi_cols, r, strict=True)) for k, r in awi.items()},
            [dict(zip(log_cols, r, strict=True)) for r in logs],
        )

    def core_tuples(
        self,
        window: tuple[datetime, datetime],
        awi_columns: Sequence[str],
        log_columns: Sequence[str],
    ) -> tuple[dict[str, tuple[Any, ...]], list[tuple[Any, ...]]]:
        """AgentWorkItem rows by id and log rows to reconcile for `window`, as tuples of
        `awi_columns` (the first is `id`) and `log_columns` (the first two are `request_id`
        and `work_item_id`): no dict per row.

        Log rows may be stamped a little apart from their record: both are read with a day
        of margin, plus every record an in-window log row points at and every log row of
        those records (the engine keeps the actions in [start, end)).
        """
        if tuple(awi_columns[:1]) != ("id",) or tuple(log_columns[:2]) != _LOG_KEYS:
            raise StoreError("core_tuples: the key columns come first")
        start, end = window
        margin = [iso(start - timedelta(days=1)), iso(end + timedelta(days=1))]
        in_margin = "started_at >= ? AND started_at < ?"
        awi_sql = f"SELECT {', '.join(awi_columns)} FROM awi_records WHERE "
        log_sql = f"SELECT {', '.join(log_columns)} FROM elf_events WHERE "
        log_rows = self._tuples(log_sql + in_margin, margin)
        awi_rows = {r[0]: r for r in self._tuples(awi_sql + in_margin, margin)}
        referenced = sorted({r[1] for r in log_rows if r[1]} - awi_rows.keys())
        for marks, chunk in in_lists(referenced):
            awi_rows.update((r[0], r) for r in self._tuples(f"{awi_sql}id IN ({marks})", chunk))
        # the log rows, outside the margin, of the records in it: one join on the index
        joined = ", ".join(f"e.{c}" for c in log_columns)
        log_rows += self._tuples(
            f"SELECT {joined} FROM awi_records a JOIN elf_events e ON e.work_item_id = a.id "
            "WHERE a.started_at >= ? AND a.started_at < ? "
            "AND NOT (e.started_at >= ? AND e.started_at < ?)",
            margin + margin,
        )
        # … and of the records outside it that in-margin log rows point at
        seen = {r[0] for r in log_rows}
        for marks, chunk in in_lists(referenced):
            for r in self._tuples(f"{log_sql}work_item_id IN ({marks})", chunk):
                if r[0] not in seen:
                    seen.add(r[0])
                    log_rows.append(r)
        return awi_rows, log_rows

    def core_chunk(
        self,
        chunk: tuple[datetime, datetime],
        awi_columns: Sequence[str],
        log_columns: Sequence[str],
        *,
        use_awi: bool = True,
        use_elf: bool = True,
    ) -> tuple[list[tuple[Any, ...]], list[tuple[str, Any]], list[tuple[Any, ...]]]:
        """Exactly the rows the actions starting in `chunk` [c0, c1) are built from: the
        AgentWorkItem records started in it (`use_awi`), as tuples of `awi_columns`; every
        log row of theirs, any day (`use_awi` and `use_elf`), as (record Id, tokens) — all
        a record's log rows add to its action (SPEC §3.3) —; and for actions only the log
        files hold (`use_elf`), every row, any day, of each group — rows of one
        WORK_ITEM_ID, else of one REQUEST_ID — that has a row in the chunk and no record
        among the sources used, as tuples of `log_columns`. The engine keeps the groups
        whose earliest row is in the chunk. A bound with sub-millisecond digits is widened
        to the next stored millisecond: the engine compares exactly."""
        c0, c1 = iso(chunk[0]), ceil_ms(chunk[1])
        awi_rows: list[tuple[Any, ...]] = []
        record_tokens: list[tuple[str, Any]] = []
        log_rows: list[tuple[Any, ...]] = []
        if use_awi:
            awi_rows = self._tuples(
                f"SELECT {', '.join(awi_columns)} FROM awi_records "
                "WHERE started_at >= ? AND started_at < ?",
                [c0, c1],
            )
        if use_awi and use_elf:
            record_tokens = self._tuples(
                _RECORD_LOGS_SQL.format(cols="a.id, e.tokens"), [c0, c1, c0, c1]
            )
        if use_elf:
            cols = ", ".join(f"e.{c}" for c in log_columns)
            no_record = _NO_RECORD if use_awi else ""
            log_rows = self._tuples(_LOG_ONLY_SQL.format(cols=cols, no_record=no_record), [c0, c1])
        return awi_rows, record_tokens, log_rows

    def agent_names_for(self, window: tuple[datetime, datetime]) -> dict[str, str]:
        """Agent id (first 15 characters) → name, from the AgentWorkItem records a day
        around `window` and those its log rows there point at: what ELF-only actions are
        named by (where records disagree, the latest record's name; then the pointed-at
        records' by id)."""
        # asked twice a run (pass 1, the family's context): kept while no page changed a
        # stored source row (every such page raises inputs_version)
        key = (window, self.inputs_version())
        if self._names_memo is not None and self._names_memo[0] == key:
            return dict(self._names_memo[1])
        margin = [iso(window[0] - timedelta(days=1)), iso(window[1] + timedelta(days=1))]
        names = dict(self._tuples(_NAMES_SQL, margin))
        names.update(self._tuples(_REFERENCED_NAMES_SQL, margin + margin))
        self._names_memo = (key, dict(names))
        return names

    def awi_case_ids(self, window: tuple[datetime, datetime]) -> list[str]:
        """The Cases the AgentWorkItem records started in `window` link to (sorted)."""
        rows = self._tuples(
            "SELECT DISTINCT case_id FROM awi_records WHERE started_at >= ? AND started_at < ? "
            "AND case_id IS NOT NULL AND case_id != '' ORDER BY case_id",
            [iso(window[0]), ceil_ms(window[1])],
        )
        return [r[0] for r in rows]

    def _columns(self, table: str) -> list[str]:
        return [r[1] for r in self._tuples(f"PRAGMA table_info({table})")]

    def d360_rows(self, window: tuple[datetime, datetime]) -> list[dict[str, Any]]:
        """Data 360 usage events with started_at in [start, end), each joined with its
        session and its steps (one row per event × step), as plain dicts."""
        start, end = window
        return self._rows(_D360_ROWS_SQL, [iso(start), iso(end)])

    def cases(self, ids: Iterable[str]) -> dict[str, Case]:
        """The stored Cases among `ids`, by id."""
        found: dict[str, Case] = {}
        for marks, chunk in in_lists(sorted(set(ids))):
            for r in self._rows(f"SELECT * FROM cases WHERE id IN ({marks})", chunk):
                closed = parse_sf_datetime(r["closed_at"]) if r["closed_at"] else None
                found[r["id"]] = Case(r["id"], r["status"], bool(r["is_closed"]), closed)
        return found

    def bad_log_files(self, start: datetime, end: datetime) -> int:
        """How many EventLogFiles of log dates in [start, end) could not be read."""
        ((n,),) = self._tuples(
            "SELECT count(*) FROM elf_files WHERE bad = 1 AND log_date >= ? AND log_date < ?",
            [iso(start), iso(end)],
        )
        return int(n)
