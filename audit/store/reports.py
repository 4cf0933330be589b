"""What `audit report` and `audit demo` read: the last completed run and which triggers a
store's runs had. The queries of one report window are in `report_queries` (every figure of
a report comes from one window; nothing here sums across windows)."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

from audit.store.db import map_errors
from audit.store.report_queries import ReportQueries

__all__ = ["Reports", "run_triggers"]


class Reports(ReportQueries):
    def latest_completed_run(self) -> dict[str, Any] | None:
        """The run that ended 'ok' last started (its summary left as JSON text)."""
        rows = self._rows(
            "SELECT * FROM runs WHERE outcome = 'ok' ORDER BY started_at DESC LIMIT 1"
        )
        return rows[0] if rows else None


def run_triggers(path: Path) -> set[str]:
    """The triggers ('run', 'schedule', 'demo' …) of the runs in the store file at `path`,
    read without opening it as a store (no migration, no lock, nothing written)."""
    with map_errors(path), closing(sqlite3.connect(path)) as conn:
        return {r[0] for r in conn.execute("SELECT DISTINCT trigger FROM runs")}
