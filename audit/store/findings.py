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


def _finding_row(f: Finding, run_id: str) -> dict[str, Any]:
    return {
        "id": f.id,
        "kind": f.kind,
        "key": f.key,
        "severity": f.severity,
        "status": "open",
        "session_id": f.session_id,
        "agent": f.agent,
        "action_name": f.action_name,
        "action_ids": to_json(list(f.action_ids)),
        "started_at": bound(f.started_at),
        "wasted_awu": float(f.wasted_awu),
        "wasted_usd": float(f.wasted_usd),
        "explanation": f.explanation,
        "detail": to_json(dict(f.detail)),
        "first_seen_run": run_id,
        "last_seen_run": run_id,
        "resolved_run": None,
    }


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
                # first_seen_run is written only when the finding is new
                self._upsert(
                    "findings",
                    (
                        row
                        if fid not in before
                        else {k: v for k, v in row.items() if k != "first_seen_run"}
                        for fid, row in by_id.items()
                    ),
                    "id",
                )
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
