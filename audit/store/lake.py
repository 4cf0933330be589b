"""What the fleet lake copies out of an org's store after its run: one day's actions (with
recomputed and reported AWU), the findings open on that day and its daily usage — each in a
stable order, so a day that did not change is copied byte for byte the same."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from audit.store.actions import ACTION_COLUMNS
from audit.store.db import StoreBase

__all__ = ["LAKE_ACTION_COLUMNS", "LAKE_FINDING_COLUMNS", "LakeRows"]

#: the action's input stays in the org's store: it may carry customer data, and the lake is
#: for spend and waste (the input's fingerprint is kept)
LAKE_ACTION_COLUMNS = tuple(c for c in ACTION_COLUMNS if c != "action_input")
#: run ids change with every run and are left out, so a re-run writes the same bytes
LAKE_FINDING_COLUMNS = (
    "id", "kind", "key", "severity", "session_id", "agent", "action_name", "action_ids",
    "started_at", "wasted_awu", "wasted_usd", "explanation", "detail",
)  # fmt: skip
_USAGE_COLUMNS = (
    "day", "agent", "channel", "actions", "billable_actions", "tokens", "awu", "reported_awu",
    "credits", "cost_usd",
)  # fmt: skip


def _quoted(columns: tuple[str, ...]) -> str:
    return ", ".join(f'"{c}"' for c in columns)


class LakeRows(StoreBase):
    def actions_of_day(self, day: str) -> list[dict[str, Any]]:
        """Every stored action that started on `day` (YYYY-MM-DD), by id."""
        return self._rows(
            f'SELECT {_quoted(LAKE_ACTION_COLUMNS)} FROM actions WHERE "day" = ? ORDER BY "id"',
            [day],
        )

    def open_findings_of_day(self, day: str) -> list[dict[str, Any]]:
        """The open findings whose first action started on `day`, by id."""
        end = (date.fromisoformat(day) + timedelta(days=1)).isoformat()
        return self._rows(
            f"SELECT {_quoted(LAKE_FINDING_COLUMNS)} FROM findings "
            'WHERE "status" = \'open\' AND "started_at" >= ? AND "started_at" < ? '
            'ORDER BY "id"',
            [day, end],
        )

    def daily_usage_of_day(self, day: str) -> list[dict[str, Any]]:
        """The day's usage by agent × channel."""
        return self._rows(
            f'SELECT {_quoted(_USAGE_COLUMNS)} FROM daily_usage WHERE "day" = ? '
            'ORDER BY "agent", "channel"',
            [day],
        )
