"""Runs: one row per audit run — when, which window, how it ended, its counts and summary."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from audit.errors import StoreError
from audit.store.db import StoreBase
from audit.store.values import bound, now_iso

__all__ = ["Runs"]

_RUN_COUNTS = (
    "org_id",
    "is_sandbox",
    "records",
    "elf_files_downloaded",
    "elf_files_skipped",
    "actions",
    "findings_open",
    "alerts_sent",
    "api_calls",
    "summary",
)


class Runs(StoreBase):
    def start_run(
        self,
        run_id: str,
        *,
        started_at: datetime | str,
        window_start: datetime | str | None,
        window_end: datetime | str | None,
        trigger: str,
    ) -> None:
        row = {
            "id": run_id,
            "started_at": bound(started_at),
            "window_start": bound(window_start),
            "window_end": bound(window_end),
            "trigger": trigger,
            "outcome": "running",
            "ended_at": None,
            "error": None,
        }
        self._upsert("runs", [row], "id")

    def finish_run(
        self,
        run_id: str,
        *,
        outcome: str,
        error: str | None = None,
        ended_at: datetime | str | None = None,
        **counts: Any,
    ) -> None:
        """Record how a run ended; `counts` are runs columns (records, actions, summary …)."""
        if outcome not in ("ok", "failed", "interrupted"):
            raise StoreError(f"invalid run outcome {outcome!r}")
        unknown = sorted(set(counts) - set(_RUN_COUNTS))
        if unknown:
            raise StoreError(f"runs has no column {unknown[0]!r}")
        row: dict[str, Any] = {
            "id": run_id,
            "outcome": outcome,
            "error": error,
            "ended_at": bound(ended_at) if ended_at is not None else now_iso(),
            **counts,
        }
        self._upsert("runs", [row], "id")

    def set_run_window(self, run_id: str, start: datetime | str, end: datetime | str) -> None:
        """The window a run audited (known only after the sync when none was given)."""
        self._upsert(
            "runs", [{"id": run_id, "window_start": bound(start), "window_end": bound(end)}], "id"
        )

    def set_run_summary(self, run_id: str, summary: Mapping[str, Any]) -> None:
        """Replace the run's summary document (the §7 object and what the report adds)."""
        text = json.dumps(summary, sort_keys=True)
        self._upsert("runs", [{"id": run_id, "summary": text}], "id")

    def merge_run_summary(self, run_id: str, **extra: Any) -> None:
        """Add top-level keys to the run's summary document."""
        with self.transaction():
            rows = self._where("runs", '"id" = ?', [run_id], select='"summary"')
            text = rows[0]["summary"] if rows else None
            summary = json.loads(text) if text else {}
            summary.update(extra)
            self.set_run_summary(run_id, summary)

    def get_run(self, run_id: str) -> dict[str, Any] | None:
        rows = self._where("runs", '"id" = ?', [run_id])
        if not rows:
            return None
        row = rows[0]
        if row.get("summary"):
            row["summary"] = json.loads(row["summary"])
        return row

    def mark_interrupted_runs(self, *, now: datetime | str | None = None) -> int:
        """Runs still 'running' become 'interrupted'. Call only while holding the lock."""
        ended = bound(now) if now is not None else now_iso()
        with self.transaction():
            return self._execute(
                "UPDATE runs SET outcome = 'interrupted', ended_at = COALESCE(ended_at, ?), "
                "error = COALESCE(error, 'the process stopped before the run finished') "
                "WHERE outcome = 'running'",
                (ended,),
            )
