"""AWU per day × agent × action — the rows spike detection reads — kept beside the daily
usage and summed anew with it from the stored actions (`refresh_action_days`), so a run
that writes no action (a quiet re-run) reads a few hundred stored sums instead of summing
the window's and the trailing days' actions again.

A day's sums are those of the actions the day holds: they are redone for every day whose
daily usage is, and for every day an action left since (moved to another day, or deleted:
the store's triggers note those days, `schema`'s v6). Redone with the query spike detection
ran over the actions before, over the same rows in the same order: the same sums."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date

from audit.store.db import StoreBase, in_lists

__all__ = ["ActionDays"]

# the sums of some days, from their stored actions: the query spike detection used to run
# over the actions of its days, per day instead of per range (the same rows, in the same
# order of the `day` index: the same sums)
_SUM_DAYS_SQL = """
    INSERT INTO action_days ("day", "agent", "action_name", "awu")
    SELECT day, coalesce(agent_name, agent_id), action_name, sum(awu)
    FROM actions WHERE day IN ({marks}) GROUP BY 1, 2, 3
"""


class ActionDays(StoreBase):
    def refresh_action_days(self, days: Iterable[str]) -> None:
        """Sum the AWU per agent × action of `days` ('YYYY-MM-DD') anew from the stored
        actions, and of every day an action left since the last refresh. Call in the
        transaction that wrote those days' actions (with their daily usage)."""
        with self.transaction():
            left = [d for (d,) in self._tuples('SELECT DISTINCT "day" FROM action_days_left')]
            for marks, chunk in in_lists(sorted(set(days) | set(left))):
                self._execute(f'DELETE FROM action_days WHERE "day" IN ({marks})', chunk)
                self._execute(_SUM_DAYS_SQL.format(marks=marks), chunk)
            self._execute("DELETE FROM action_days_left")

    def awu_by_day_agent_action(
        self, first_day: date, end_day: date
    ) -> list[tuple[date, str | None, str, float]]:
        """(day, agent, action_name, AWU) for days in [first_day, end_day), in that order:
        what spike detection reads."""
        rows = self._tuples(
            'SELECT "day", "agent", "action_name", "awu" FROM action_days '
            'WHERE "day" >= ? AND "day" < ? ORDER BY 1, 2, 3',
            [first_day.isoformat(), end_day.isoformat()],
        )
        return [
            (date.fromisoformat(d), agent, name, float(awu or 0)) for d, agent, name, awu in rows
        ]
