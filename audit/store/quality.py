"""Data quality: the bad records sources hand over with their pages (SPEC §3.5), written in
the page's transaction, and read back by window for `data_quality` and the report."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from audit.store.db import StoreBase, in_lists
from audit.store.values import iso, now_iso
from connector.sink import BadRecord, LogFileRecord, Page

__all__ = ["BAD_RECORD_COLUMNS", "Quality"]

BAD_RECORD_COLUMNS = tuple(BadRecord.__annotations__)
_INSERT_BAD_SQL = (
    f"INSERT OR REPLACE INTO bad_records ({', '.join(BAD_RECORD_COLUMNS)}, run_id, processed_at) "
    f"VALUES ({', '.join('?' * (len(BAD_RECORD_COLUMNS) + 2))})"
)
_IN_WINDOW = '"at" >= ? AND "at" < ?'
#: every source that hands over bad records
SOURCES = ("agentworkitem", "data360", "eventlogfile")


class Quality(StoreBase):
    # -- written with a page (inside Sources.commit's transaction) ------------------------

    def _commit_quality(self, page: Page) -> None:
        """Forget what the page supersedes, then keep its bad records: a record that
        arrives good leaves the bad list, one that arrives bad leaves its source table, and
        a log file read again replaces everything its previous reading said."""
        if page.log_file is not None:
            self._execute(
                "DELETE FROM bad_records WHERE source = ? AND file_id = ?",
                [page.source, page.log_file["id"]],
            )
        good = [
            *(r["id"] for r in page.awi_records),
            *(e["request_id"] for e in page.log_events),
            *(e["id"] for e in page.d360_events),
        ]
        any_bad = self._tuples("SELECT 1 FROM bad_records WHERE source = ? LIMIT 1", [page.source])
        for marks, chunk in in_lists(good if any_bad else []):
            self._execute(
                f"DELETE FROM bad_records WHERE source = ? AND key IN ({marks})",
                [page.source, *chunk],
            )
        if not page.bad_records:
            return
        self._drop_superseded(page)
        now = now_iso()
        self._executemany(
            _INSERT_BAD_SQL,
            [(*(b.get(c) for c in BAD_RECORD_COLUMNS), page.run_id, now) for b in page.bad_records],
        )

    def _drop_superseded(self, page: Page) -> None:
        """A record that arrives bad leaves its source: an AgentWorkItem or Data 360 event
        by id; a log row's REQUEST_ID loses the copies of files no newer than the bad
        row's (the newest file's copy is the event, SPEC §3.2 — here it cannot be data)."""
        gone = [b["record_id"] for b in page.bad_records if b["record_id"]]
        table = {"agentworkitem": "awi_records", "data360": "d360_events"}.get(page.source)
        if table is not None:
            for marks, chunk in in_lists(gone):
                self._execute(f"DELETE FROM {table} WHERE id IN ({marks})", chunk)
        elif page.log_file is not None:
            f = page.log_file
            for marks, chunk in in_lists(gone):
                self._execute(
                    f"DELETE FROM elf_events WHERE request_id IN ({marks}) AND "
                    "(file_created_date, file_sequence, file_id) <= (?, ?, ?)",
                    [*chunk, f["created_date"], f["sequence"], f["id"]],
                )

    def _log_file_row(self, record: LogFileRecord) -> dict[str, Any]:
        """The elf_files row: a bad file counts its readings of this CreatedDate."""
        row: dict[str, Any] = dict(record)
        row.setdefault("retryable", 0)
        attempts = 0
        if record["bad"]:
            prev = self._tuples(
                'SELECT "created_date", "bad", "attempts" FROM elf_files WHERE "id" = ?',
                [record["id"]],
            )
            same = prev and prev[0][0] == record["created_date"] and prev[0][1]
            attempts = (int(prev[0][2]) if same else 0) + 1
        row["attempts"] = attempts
        return row

    # -- SyncSink ----------------------------------------------------------------------

    def log_files_due(self, max_attempts: int) -> list[str]:
        """Ids of bad log files worth downloading again: retryable (torn, empty) and read
        fewer than `max_attempts` times."""
        rows = self._tuples(
            'SELECT "id" FROM elf_files WHERE "bad" = 1 AND "retryable" = 1 '
            'AND "attempts" < ? ORDER BY "id"',
            [max_attempts],
        )
        return [r[0] for r in rows]

    # -- what the run output and the report read ---------------------------------------

    def bad_record_counts(
        self, window: tuple[datetime, datetime], sources: Sequence[str] = SOURCES
    ) -> dict[str, int]:
        """Bad records of `sources` dated in [start, end), per reason class."""
        marks = ", ".join("?" * len(sources))
        rows = self._tuples(
            f"SELECT reason, count(*) FROM bad_records WHERE {_IN_WINDOW} "
            f"AND source IN ({marks}) GROUP BY reason ORDER BY reason",
            [iso(window[0]), iso(window[1]), *sources],
        )
        return {reason: int(n) for reason, n in rows}

    def bad_records(
        self,
        window: tuple[datetime, datetime],
        sources: Sequence[str] = SOURCES,
        limit: int = 20,
    ) -> list[dict[str, Any]]:
        """The first `limit` bad records of `sources` dated in [start, end) — bad files
        first, then by date — each with its reason, location and detail."""
        marks = ", ".join("?" * len(sources))
        return self._rows(
            f"SELECT source, key, reason, field, detail, record_id, file_id, line, at "
            f"FROM bad_records WHERE {_IN_WINDOW} AND source IN ({marks}) "
            "ORDER BY reason != 'bad_file', at, source, key LIMIT ?",
            [iso(window[0]), iso(window[1]), *sources, limit],
        )
