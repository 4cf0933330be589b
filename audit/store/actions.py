"""Actions (one row per reconciled action, recomputed AWU) and what is summed from them:
daily usage (and with it `action_days`, the rows spike detection reads), credits of a
period, per-day credits."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from datetime import date, datetime, timedelta
from typing import Any

from audit.engine.awu import ActionCost
from audit.engine.model import Action, days_of, parse_sf_datetime
from audit.store.action_days import ActionDays
from audit.store.db import in_lists, map_errors
from audit.store.values import PLAIN, bound, iso, to_db_value

__all__ = ["Actions", "ceil_ms"]

ACTION_COLUMNS = (
    "id", "session_id", "agent_id", "agent_name", "action_name", "action_type", "channel",
    "status", "error_code", "tokens", "prompt_tokens", "completion_tokens", "reported_awu",
    "elf_tokens", "action_input", "user_id", "case_id", "started_at", "source", "billable",
    "units", "multiplier", "awu", "excess_awu", "credits", "cost_usd", "fingerprint", "day",
)  # fmt: skip

# A window holds up to hundreds of thousands of actions: they are written with one prepared
# statement over tuples (executemany), several times faster than sqlite-utils' per-batch
# SQL building and value conversion. A row identical to the stored one is not written at
# all (a re-run over unchanged data rewrites nothing: no page, index or WAL traffic).
_UPSERT_ACTION_SQL = (
    f"INSERT INTO actions ({', '.join(ACTION_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(ACTION_COLUMNS))}) ON CONFLICT (id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in ACTION_COLUMNS[1:])
    + f" WHERE ({', '.join(f'actions.{c}' for c in ACTION_COLUMNS[1:])}) IS NOT "
    + f"({', '.join(f'excluded.{c}' for c in ACTION_COLUMNS[1:])})"
)
# what the audit reads back (`stored_actions_by_session`), whole sessions together
_READ_BACK_SQL = (
    "SELECT id, session_id, action_name, action_type, channel, status, tokens, started_at, "
    "reported_awu, prompt_tokens, completion_tokens, agent_id, agent_name, error_code, "
    "user_id, case_id, source, elf_tokens, fingerprint FROM actions "
    "WHERE started_at >= ? AND started_at < ? ORDER BY session_id"
)
_STARTS_IN_WINDOW_SQL = (
    'SELECT "id", "started_at" FROM actions WHERE "started_at" >= ? AND "started_at" < ?'
)
_COUNT_IN_WINDOW_SQL = 'SELECT count(*) FROM actions WHERE "started_at" >= ? AND "started_at" < ?'
_STARTED = ACTION_COLUMNS.index("started_at")
_IDS_IN_WINDOW_SQL = 'SELECT "id" FROM actions WHERE "started_at" >= ? AND "started_at" < ?'

_DAILY_USAGE_SQL = """
    SELECT day, coalesce(agent_name, agent_id, 'unknown') AS agent, channel,
           count(*) AS actions, sum(billable) AS billable_actions, sum(tokens) AS tokens,
           sum(awu) AS awu, sum(coalesce(reported_awu, 0)) AS reported_awu,
           sum(credits) AS credits, sum(cost_usd) AS cost_usd
    FROM actions WHERE day IN ({marks}) GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
"""


def _action_tuple(row: Mapping[str, Any]) -> tuple[Any, ...]:
    values = (row.get(c) for c in ACTION_COLUMNS)
    return tuple(v if isinstance(v, PLAIN) else to_db_value(v) for v in values)


def _action_tuples(
    actions: Iterable[Action],
    costs: Mapping[str, ActionCost],
    fingerprints: Mapping[str, str],
    cost_factor: float,
) -> Iterator[tuple[Any, ...]]:
    """Each action with its recomputed cost, as a row of ACTION_COLUMNS; dollars times
    `cost_factor` (a sandbox's discount). Tuples straight from the actions: no dict per row.
    An action's started_at is aware UTC, so its day is its stored text's first ten."""
    for a in actions:
        c = costs[a.id]
        started = iso(a.started_at)
        yield (
            a.id, a.session_id, a.agent_id, a.agent_name, a.action_name, a.action_type,
            a.channel, a.status, a.error_code, a.tokens, a.prompt_tokens, a.completion_tokens,
            a.reported_awu, a.elf_tokens, a.action_input, a.user_id, a.case_id,
            started, a.source, int(c.billable), c.units, c.multiplier, c.awu,
            c.excess_awu, c.credits, c.cost_usd * cost_factor, fingerprints.get(a.id),
            started[:10],
        )  # fmt: skip


def _stored_action(r: tuple[Any, ...]) -> Action:
    """A row of _READ_BACK_SQL as the action it was written from, its input aside (its
    fingerprint comes with it). Positional: Action's fields in _READ_BACK_SQL's order."""
    return Action(
        r[0], r[1], r[2], r[3], r[4], r[5], r[6], _parse_stored(r[7]), r[8], r[9], r[10],
        r[11], r[12], r[13], None, r[14], r[15], r[16], r[17],
    )  # fmt: skip


def _remember(rows: Iterable[tuple[Any, ...]], written: set[str]) -> Iterator[tuple[Any, ...]]:
    """`rows` as they go, their ids added to `written`."""
    for row in rows:
        written.add(row[0])
        yield row


def _remember_in(
    rows: Iterable[tuple[Any, ...]], written: set[str], lo: str, hi: str
) -> Iterator[tuple[Any, ...]]:
    """`rows` (of ACTION_COLUMNS) as they go, the ids of those stored in [lo, hi) added to
    `written`."""
    for row in rows:
        if lo <= row[_STARTED] < hi:
            written.add(row[0])
        yield row


def ceil_ms(value: datetime) -> str:
    """`value` as stored text, rounded up to the next millisecond when it has finer digits
    (a window's end taken as the upper bound of a query that keeps everything before it)."""
    if value.microsecond % 1000:
        value += timedelta(microseconds=1000 - value.microsecond % 1000)
    return iso(value)


def _parse_stored(text: str) -> datetime:
    """The store's canonical `YYYY-MM-DDTHH:MM:SS.mmmZ` as aware UTC."""
    return datetime.fromisoformat(text) if text.endswith("Z") else parse_sf_datetime(text)


class Actions(ActionDays):
    def write_actions_of(
        self,
        chunk: tuple[datetime, datetime],
        actions: Iterable[Action],
        costs: Mapping[str, ActionCost],
        fingerprints: Mapping[str, str],
        *,
        cost_factor: float = 1.0,
    ) -> list[tuple[str, str]]:
        """Upsert the actions of one chunk of a window, each with its recomputed cost and
        input fingerprint (dollars times `cost_factor`): a row identical to the stored one
        is not written. Returns the chunk's stored actions that were not among them, as
        (id, started_at): gone, or moved to a chunk not written yet — `delete_unwritten`
        tells them apart once every chunk is written. Holds only this chunk's ids."""
        rows = _action_tuples(actions, costs, fingerprints, cost_factor)
        lo, hi = iso(chunk[0]), iso(chunk[1])
        written: set[str] = set()  # the ids written into the chunk's stored range
        with self.transaction():
            self._executemany(_UPSERT_ACTION_SQL, _remember_in(rows, written, lo, hi))
            # every row written is stored: when the range holds no more rows than were
            # written into it, none of its rows went unwritten (the usual case: its ids
            # are not read back)
            ((stored_count,),) = self._tuples(_COUNT_IN_WINDOW_SQL, (lo, hi))
            if stored_count == len(written):
                return []
            stored = self._tuples(_STARTS_IN_WINDOW_SQL, (lo, hi))
        return [(i, started) for i, started in stored if i not in written]

    def delete_unwritten(self, unwritten: Iterable[tuple[str, str]]) -> None:
        """Delete the actions `write_actions_of` found unwritten that no later chunk wrote
        either: a row another chunk rewrote has that chunk's started_at now, so a row still
        at its old started_at was not rewritten. A moved action keeps its row (its place
        in the table, and so the order sums over the table see)."""
        with self.transaction():
            self._executemany(
                'DELETE FROM actions WHERE "id" = ? AND "started_at" = ?', list(unwritten)
            )

    def replace_actions_of(
        self,
        window: tuple[datetime, datetime],
        actions: Iterable[Action],
        costs: Mapping[str, ActionCost],
        fingerprints: Mapping[str, str],
        *,
        cost_factor: float = 1.0,
    ) -> None:
        """The actions of [start, end) become `actions` (`write_actions_of` for the whole
        window, then `delete_unwritten`)."""
        self.delete_unwritten(
            self.write_actions_of(window, actions, costs, fingerprints, cost_factor=cost_factor)
        )

    def refresh_daily_usage(self, window: tuple[datetime, datetime]) -> None:
        """Sum the daily usage of the days `window` touches anew from the stored actions
        (and their AWU per agent × action: `refresh_action_days`)."""
        days = days_of(window)
        with self.transaction():
            self.replace_daily_usage(days, self.usage_of_days(days))
            self.refresh_action_days(days)

    def stored_actions_by_session(
        self, window: tuple[datetime, datetime]
    ) -> Iterator[tuple[Action, str | None]]:
        """The stored actions that started in [start, end), each with its input
        fingerprint, ordered by session (actions without a session first): read a row at a
        time, never the window at once."""
        start, end = window
        params = (iso(start), ceil_ms(end))
        with map_errors(self.path):
            cursor = self._db.conn.execute(_READ_BACK_SQL, params)
            while rows := cursor.fetchmany(2000):
                for row in rows:
                    action = _stored_action(row)
                    if start <= action.started_at < end:
                        yield action, row[18]

    def replace_actions(
        self, window: tuple[datetime | str, datetime | str], rows: Iterable[Mapping[str, Any]]
    ) -> None:
        """The actions of [start, end) become `rows` — atomically (a re-run replaces its
        window; an action whose started_at moved out of it is updated in place)."""
        self._replace_action_tuples(window, map(_action_tuple, rows))

    def _replace_action_tuples(
        self, window: tuple[datetime | str, datetime | str], rows: Iterable[tuple[Any, ...]]
    ) -> None:
        """Upsert `rows` (rows of ACTION_COLUMNS), then delete the window's stored actions
        that are not among them: unchanged rows are never written."""
        start, end = window
        written: set[str] = set()
        with self.transaction():
            self._executemany(_UPSERT_ACTION_SQL, _remember(rows, written))
            stored = self._tuples(_IDS_IN_WINDOW_SQL, (bound(start), bound(end)))
            gone = [i for (i,) in stored if i not in written]
            del stored
            for marks, chunk in in_lists(gone):
                self._execute(f'DELETE FROM actions WHERE "id" IN ({marks})', chunk)

    def usage_of_days(self, days: list[str]) -> list[dict[str, Any]]:
        """Usage of `days` ('YYYY-MM-DD') from the actions, by day × agent × channel."""
        if not days:
            return []
        marks = ", ".join("?" * len(days))  # the days of one window: never near the limit
        return self._rows(_DAILY_USAGE_SQL.format(marks=marks), days)

    def replace_daily_usage(self, days: Iterable[str], rows: Iterable[Mapping[str, Any]]) -> int:
        """Replace the usage of `days` ('YYYY-MM-DD') with `rows` (day × agent × channel).

        A null agent or channel is stored as '' (they are part of the primary key).
        """
        normalised = (
            {**row, "agent": row.get("agent") or "", "channel": row.get("channel") or ""}
            for row in rows
        )
        with self.transaction():
            for marks, chunk in in_lists(sorted(set(days))):
                self._execute(f'DELETE FROM daily_usage WHERE "day" IN ({marks})', chunk)
            return self._upsert("daily_usage", normalised, ("day", "agent", "channel"))

    def credits_by_day(self, start_day: str, end_day: str) -> dict[str, float]:
        """Credits per day of the daily usage for days in [start_day, end_day) — half-open."""
        rows = self._tuples(
            'SELECT "day", SUM("credits") FROM daily_usage WHERE "day" >= ? AND "day" < ? '
            'GROUP BY "day" ORDER BY "day"',
            (start_day, end_day),
        )
        return {day: float(total or 0.0) for day, total in rows}

    def credits_between(self, start: datetime, end: datetime) -> float:
        """Credits of the actions that started in [start, end)."""
        ((total,),) = self._tuples(
            "SELECT coalesce(sum(credits), 0) FROM actions "
            "WHERE started_at >= ? AND started_at < ?",
            [iso(start), iso(end)],
        )
        return float(total)

    def action_credits_by_day(self, start: datetime, end: datetime) -> dict[date, float]:
        """Credits per day of the actions that started in [start, end)."""
        rows = self._tuples(
            "SELECT day, sum(credits) FROM actions "
            "WHERE started_at >= ? AND started_at < ? GROUP BY day",
            [iso(start), iso(end)],
        )
        return {date.fromisoformat(d): float(c) for d, c in rows}
