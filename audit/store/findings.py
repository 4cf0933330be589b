"""Findings: kept open while the rules still find them, resolved by the run that stops."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from audit.engine.rules import Finding
from audit.store.db import StoreBase, in_lists
from audit.store.values import bound, to_json

__all__ = ["FindingChanges", "Findings"]

#: findings upserted per step of `sync_findings`
_CHUNK = 2000


@dataclass(frozen=True)
class FindingChanges:
    """What one `sync_findings` call changed: ids in the order the findings were given."""

    new_ids: list[str]
    reopened_ids: list[str]
    resolved_ids: list[str]


_FINDING_COLUMNS = (
    "id", "kind", "key", "severity", "status", "session_id", "agent", "action_name",
    "action_ids", "started_at", "wasted_awu", "wasted_usd", "explanation", "detail",
    "first_seen_run", "last_seen_run", "resolved_run",
)  # fmt: skip
# one prepared statement over tuples (sqlite-utils' upsert_all built its SQL and converted
# every value again per batch: ~40 µs a finding): a stored finding keeps its first_seen_run
_UPSERT_FINDING_SQL = (
    f"INSERT INTO findings ({', '.join(_FINDING_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(_FINDING_COLUMNS))}) ON CONFLICT (id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in _FINDING_COLUMNS[1:] if c != "first_seen_run")
)


def _finding_row(f: Finding, run_id: str) -> tuple[Any, ...]:
    """`f` open as of `run_id`, as a row of _FINDING_COLUMNS."""
    return (
        f.id, f.kind, f.key, f.severity, "open", f.session_id, f.agent, f.action_name,
        to_json(list(f.action_ids)), bound(f.started_at), float(f.wasted_awu),
        float(f.wasted_usd), f.explanation, to_json(dict(f.detail)), run_id, run_id, None,
    )  # fmt: skip


class Findings(StoreBase):
    def sync_findings(
        self,
        run_id: str,
        findings: Iterable[Finding],
        *,
        window_start: datetime | str,
        window_end: datetime | str,
    ) -> FindingChanges:
        """Make the store's findings of [window_start, window_end) equal to `findings`.

        Given findings are upserted open (first_seen_run kept, last_seen_run = run_id);
        a resolved one that is given again reopens with its id. Open findings whose
        started_at is in the window and which are not given are resolved by run_id.
        Findings outside the window are upserted but never resolved by this call.
        """
        given: set[str] = set()
        new_ids: list[str] = []
        reopened: list[str] = []
        with self.transaction():
            # a few thousand at a time: a window's findings are never all rows at once
            iterator = iter(findings)
            while chunk := list(itertools.islice(iterator, _CHUNK)):
                by_id = {f.id: _finding_row(f, run_id) for f in chunk}
                given.update(by_id)
                before = self._statuses(list(by_id))
                new_ids += [fid for fid in by_id if fid not in before]
                reopened += [fid for fid in by_id if before.get(fid) == "resolved"]
                self._executemany(_UPSERT_FINDING_SQL, by_id.values())
            candidates = self._tuples(
                'SELECT "id" FROM findings WHERE "status" = \'open\' '
                'AND "started_at" >= ? AND "started_at" < ? ORDER BY "started_at", "id"',
                [bound(window_start), bound(window_end)],
            )
            resolved = [fid for (fid,) in candidates if fid not in given]
            self._executemany(
                "UPDATE findings SET status = 'resolved', resolved_run = ? WHERE id = ?",
                [(run_id, fid) for fid in resolved],
            )
        return FindingChanges(new_ids, reopened, resolved)

    def _statuses(self, ids: list[str]) -> dict[str, str]:
        """The stored status of each of `ids` that is stored."""
        found: dict[str, str] = {}
        for marks, chunk in in_lists(ids):
            rows = self._tuples(
                f'SELECT "id", "status" FROM findings WHERE "id" IN ({marks})', chunk
            )
            found.update((fid, status) for fid, status in rows)
        return found

    def open_findings(
        self,
        kind: str | None = None,
        window: tuple[datetime | str, datetime | str] | None = None,
    ) -> list[dict[str, Any]]:
        """Open findings (of `kind`, with started_at in [start, end)), oldest first;
        action_ids and detail decoded from JSON."""
        where = ["\"status\" = 'open'"]
        params: list[Any] = []
        if kind is not None:
            where.append('"kind" = ?')
            params.append(kind)
        if window is not None:
            where.append('"started_at" >= ? AND "started_at" < ?')
            params.extend([bound(window[0]), bound(window[1])])
        rows = self._where("findings", " AND ".join(where), params, order_by='"started_at", "id"')
        for row in rows:
            row["action_ids"] = json.loads(row["action_ids"]) if row["action_ids"] else []
            row["detail"] = json.loads(row["detail"]) if row["detail"] else {}
        return rows
