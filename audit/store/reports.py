"""What `audit report` and `audit demo` read: the last completed run, open findings by kind
and the costliest ones, usage by day, and which triggers a store's runs had. The queries of
one report window are in `report_queries`."""

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

    def open_findings_by_kind(self) -> list[dict[str, Any]]:
        """Per kind of open finding: `kind`, count `n`, wasted `awu` and `usd`."""
        return self._rows(
            "SELECT kind, count(*) AS n, sum(wasted_awu) AS awu, sum(wasted_usd) AS usd "
            "FROM findings WHERE status = 'open' GROUP BY kind"
        )

    def top_open_findings(self, limit: int) -> list[dict[str, Any]]:
        """The open findings that waste the most dollars (AWU_MISMATCH is not waste)."""
        return self._rows(
            "SELECT * FROM findings WHERE status = 'open' AND kind != 'AWU_MISMATCH' "
            "ORDER BY wasted_usd DESC, kind, key LIMIT ?",
            [limit],
        )

    def usage_by_day(self) -> list[dict[str, Any]]:
        """Daily usage summed over agents and channels, oldest day first."""
        return self._rows(
            "SELECT day, sum(actions) AS actions, sum(awu) AS awu, "
            "sum(reported_awu) AS reported_awu, sum(credits) AS credits, "
            "sum(cost_usd) AS cost_usd FROM daily_usage GROUP BY day ORDER BY day"
        )


def run_triggers(path: Path) -> set[str]:
    """The triggers ('run', 'schedule', 'demo' …) of the runs in the store file at `path`,
    read without opening it as a store (no migration, no lock, nothing written)."""
    with map_errors(path), closing(sqlite3.connect(path)) as conn:
        return {r[0] for r in conn.execute("SELECT DISTINCT trigger FROM runs")}
