"""What the stored results were computed from, so a re-run can tell whether anything it
would read has changed since.

Two facts, both in `meta`:

- `inputs_version`: a counter the sink raises in the same transaction as any page that
  changes a stored source row (an AgentWorkItem, a log row, a Case, a Data 360 row, a bad
  record). A page that re-delivers identical rows leaves it alone. `changed_days` keeps,
  per day, the version that last changed one of its rows.
- `audit_basis`: written in the transaction that writes a run's actions and findings — the
  run, its window, the inputs version it read and a fingerprint of the settings its
  figures depend on. The stored actions and findings are always the ones this names.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from audit.store.db import StoreBase
from audit.store.values import bound

__all__ = ["Basis"]

_INPUTS = "inputs_version"
_BASIS = "audit_basis"
_META_UPSERT = (
    'INSERT INTO meta ("key", "value") VALUES (?, ?) '
    'ON CONFLICT ("key") DO UPDATE SET "value" = excluded."value"'
)
# what could change a window's results when it grows by [?, ?): a source row starting in
# it (a new action), a Case closing in it (a newly resolved case), a bad record or a bad
# log file dated in it (data quality), or a stored action or open finding in it — left by
# an earlier, wider run, whose rows may be gone since (a recomputation removes them)
_ROW_IN_SQL = " UNION ALL ".join(
    f"SELECT 1 FROM (SELECT 1 FROM {table} WHERE {where} {column} >= ? AND {column} < ? LIMIT 1)"
    for table, column, where in (
        ("awi_records", "started_at", ""),
        ("elf_events", "started_at", ""),
        ("d360_events", "started_at", ""),
        ("cases", "closed_at", ""),
        ("bad_records", '"at"', ""),
        ("elf_files", "log_date", "bad = 1 AND"),
        ("actions", "started_at", ""),
        ("findings", "started_at", "status = 'open' AND"),
    )
)
_ROW_IN_TABLES = 8


class Basis(StoreBase):
    def inputs_version(self) -> int:
        """How many changing pages the store has taken (0 for a new store)."""
        rows = self._tuples('SELECT "value" FROM meta WHERE "key" = ?', [_INPUTS])
        return int(rows[0][0]) if rows else 0

    def _inputs_changed(self, days: Iterable[str]) -> None:
        """A page changed stored source rows of `days` ('YYYY-MM-DD'): call inside that
        page's transaction."""
        version = self.inputs_version() + 1
        self._execute(_META_UPSERT, [_INPUTS, str(version)])
        self._executemany(
            'INSERT INTO changed_days ("day", "inputs_version") VALUES (?, ?) '
            'ON CONFLICT ("day") DO UPDATE SET "inputs_version" = excluded."inputs_version"',
            [(day, version) for day in sorted(set(days))],
        )

    def days_changed_since(self, version: int, first_day: str, last_day: str) -> list[str]:
        """The days in [first_day, last_day] whose source rows changed after `version`."""
        rows = self._tuples(
            'SELECT "day" FROM changed_days WHERE "inputs_version" > ? '
            'AND "day" >= ? AND "day" <= ? ORDER BY "day"',
            [version, first_day, last_day],
        )
        return [r[0] for r in rows]

    def _total_changes(self) -> int:
        return int(self._db.conn.total_changes)

    def audit_basis(self) -> dict[str, Any] | None:
        """The run whose actions and findings the store holds, and what they were
        computed from (None before the first run, or after a store upgrade)."""
        rows = self._tuples('SELECT "value" FROM meta WHERE "key" = ?', [_BASIS])
        if not rows or not rows[0][0]:
            return None
        basis = json.loads(rows[0][0])
        return basis if isinstance(basis, dict) else None

    def set_audit_basis(self, basis: Mapping[str, Any]) -> None:
        """Record what the actions and findings just written were computed from: call in
        the transaction that writes them."""
        self._execute(_META_UPSERT, [_BASIS, json.dumps(dict(basis), sort_keys=True)])

    def rows_between(self, start: datetime | str, end: datetime | str) -> bool:
        """Whether anything that could change a window's results lies in [start, end): a
        source row, a closing Case, a bad record or file, a stored action or open finding."""
        lo, hi = bound(start), bound(end)
        return bool(self._tuples(_ROW_IN_SQL, [lo, hi] * _ROW_IN_TABLES))

    def see_findings(self, run_id: str, start: datetime | str, end: datetime | str) -> None:
        """The window's open findings were seen again by `run_id` (a reused result)."""
        self._execute(
            "UPDATE findings SET last_seen_run = ? "
            "WHERE status = 'open' AND started_at >= ? AND started_at < ?",
            [run_id, bound(start), bound(end)],
        )
