"""What `audit report` and `audit export` read for one window: the stored actions with their
recomputed costs, the window's open findings, the alerts of a budget period, where the
stored usage lies, and table rows for spreadsheets."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from audit.engine.awu import ActionCost
from audit.engine.model import Action, days_of, parse_sf_datetime
from audit.engine.rules import Finding
from audit.store.db import StoreBase, in_lists
from audit.store.values import bound

__all__ = ["EXPORT_TABLES", "ReportQueries", "StoredWindow"]

Window = tuple[datetime, datetime]

_ACTION_SQL = (
    "SELECT id, session_id, action_name, action_type, channel, status, tokens, started_at, "
    "reported_awu, prompt_tokens, completion_tokens, agent_id, agent_name, error_code, "
    "user_id, case_id, source, elf_tokens, billable, units, multiplier, awu, excess_awu, "
    "credits, cost_usd FROM actions WHERE started_at >= ? AND started_at < ? "
    "ORDER BY started_at, id"
)

#: the tables `audit export --format csv --table …` writes, and the columns of each
EXPORT_TABLES: dict[str, tuple[str, ...]] = {
    "findings": (
        "id", "kind", "severity", "status", "started_at", "agent", "action_name", "session_id",
        "wasted_awu", "wasted_usd", "explanation", "first_seen_run", "last_seen_run",
    ),
    "actions": (
        "id", "started_at", "day", "agent_name", "agent_id", "action_name", "action_type",
        "channel", "status", "error_code", "session_id", "user_id", "case_id", "tokens",
        "reported_awu", "billable", "units", "multiplier", "awu", "excess_awu", "credits",
        "cost_usd", "source",
    ),
    "daily_usage": (
        "day", "agent", "channel", "actions", "billable_actions", "tokens", "awu",
        "reported_awu", "credits", "cost_usd",
    ),
}  # fmt: skip


class StoredWindow:
    """The stored actions of one window with their recomputed costs (as the run stored
    them: `cost_usd` already carries a sandbox's discount)."""

    def __init__(self, actions: list[Action], costs: dict[str, ActionCost]):
        self.actions = actions
        self.costs = costs


def _action(row: tuple[Any, ...]) -> tuple[Action, ActionCost]:
    (aid, session, name, atype, channel, status, tokens, started, reported, prompt, completion,
     agent_id, agent_name, error_code, user, case, source, elf_tokens, billable, units, mult,
     awu, excess, credits, cost) = row  # fmt: skip
    action = Action(
        id=aid,
        session_id=session,
        action_name=name or "",
        action_type=atype,
        channel=channel or "Text",
        status=status or "Success",
        tokens=int(tokens or 0),
        started_at=parse_sf_datetime(started),
        reported_awu=reported,
        prompt_tokens=prompt,
        completion_tokens=completion,
        agent_id=agent_id,
        agent_name=agent_name,
        error_code=error_code,
        user_id=user,
        case_id=case,
        source=source or "both",
        elf_tokens=elf_tokens,
        billable_override=bool(billable),
    )
    cost = ActionCost(
        bool(billable), int(units or 0), float(mult or 1.0), float(awu or 0.0),
        float(excess or 0.0), float(credits or 0.0), float(cost or 0.0),
    )  # fmt: skip
    return action, cost


def _finding(row: dict[str, Any]) -> Finding:
    return Finding(
        id=row["id"],
        kind=row["kind"],
        key=row["key"],
        severity=row["severity"] or "info",
        session_id=row["session_id"],
        agent=row["agent"],
        action_name=row["action_name"],
        action_ids=tuple(json.loads(row["action_ids"]) if row["action_ids"] else ()),
        started_at=parse_sf_datetime(row["started_at"]),
        wasted_awu=float(row["wasted_awu"] or 0.0),
        wasted_usd=float(row["wasted_usd"] or 0.0),
        explanation=row["explanation"] or "",
        detail=json.loads(row["detail"]) if row["detail"] else {},
    )


class ReportQueries(StoreBase):
    def stored_window(self, window: Window) -> StoredWindow:
        """The actions that started in [start, end), oldest first, with their costs."""
        actions: list[Action] = []
        costs: dict[str, ActionCost] = {}
        for row in self._tuples(_ACTION_SQL, (bound(window[0]), bound(window[1]))):
            action, cost = _action(row)
            actions.append(action)
            costs[action.id] = cost
        return StoredWindow(actions, costs)

    def findings_of_window(self, window: Window) -> list[Finding]:
        """The open findings that started in [start, end), as the engine's records."""
        rows = self._where(
            "findings",
            '"status" = \'open\' AND "started_at" >= ? AND "started_at" < ?',
            [bound(window[0]), bound(window[1])],
            order_by='"started_at", "id"',
        )
        return [_finding(r) for r in rows]

    def costliest_findings_of_window(self, window: Window, n: int) -> tuple[list[Finding], int]:
        """The `n` costliest open findings of [start, end) — in `top_findings`' order: most
        wasted USD, then kind, then key (one finding per kind and key) — and how many
        findings are open there."""
        where = '"status" = \'open\' AND "started_at" >= ? AND "started_at" < ?'
        params = [bound(window[0]), bound(window[1])]
        rows = self._rows(
            f"SELECT * FROM findings WHERE {where} "
            'ORDER BY coalesce("wasted_usd", 0.0) DESC, "kind", "key" LIMIT ?',
            [*params, n],
        )
        count = self._tuples(f"SELECT count(*) FROM findings WHERE {where}", params)[0][0]
        return [_finding(r) for r in rows], int(count)

    def alerts_of_period(self, period: str) -> list[dict[str, Any]]:
        """The alerts recorded for a budget period, each with the channels that delivered
        it (`sent`) and those that failed (`failed`: channel → last error)."""
        rows = self._rows(
            "SELECT a.id, a.kind, a.period, a.threshold, a.day, a.title, a.created_at, "
            "d.channel, d.state, d.last_error, d.delivered_at FROM alerts a "
            "LEFT JOIN alert_deliveries d ON d.alert_id = a.id WHERE a.period = ? "
            "ORDER BY a.created_at, a.rowid, d.channel",
            [period],
        )
        by_id: dict[str, dict[str, Any]] = {}
        for r in rows:
            entry = by_id.setdefault(
                r["id"],
                {k: r[k] for k in ("kind", "period", "threshold", "day", "title", "created_at")}
                | {"sent": [], "failed": {}, "pending": []},
            )
            if r["state"] == "sent":
                entry["sent"].append(r["channel"])
            elif r["state"] == "failed":
                entry["failed"][r["channel"]] = r["last_error"] or "failed"
            elif r["state"] == "pending":
                entry["pending"].append(r["channel"])
        return list(by_id.values())

    def usage_span(self) -> dict[str, Any]:
        """Where the stored usage lies: action count and first/last start over all
        actions, and the raw source records kept (what a window may have missed)."""
        ((n, first, last),) = self._tuples(
            "SELECT count(*), min(started_at), max(started_at) FROM actions"
        )
        ((raw, raw_first, raw_last),) = self._tuples(
            "SELECT count(*), min(s), max(s) FROM (SELECT started_at AS s FROM awi_records "
            "UNION ALL SELECT started_at FROM elf_events UNION ALL "
            "SELECT started_at FROM d360_events)"
        )
        return {
            "actions": n, "first": first, "last": last,
            "records": raw, "records_first": raw_first, "records_last": raw_last,
        }  # fmt: skip

    def last_synced_at(self) -> str | None:
        """When a source cursor last moved (the newest sync), else None."""
        ((when,),) = self._tuples("SELECT max(updated_at) FROM sync_state")
        return str(when) if when else None

    def completed_run(self, run_id: str) -> dict[str, Any] | None:
        """The completed run whose id is `run_id` or starts with it (a unique prefix)."""
        rows = self._rows(
            "SELECT * FROM runs WHERE outcome = 'ok' AND id LIKE ? ORDER BY started_at DESC",
            [run_id.replace("%", "").replace("_", "") + "%"],
        )
        return rows[0] if len(rows) == 1 else None

    def latest_run_covering(self, window: Window) -> dict[str, Any] | None:
        """The latest completed run whose window holds [start, end), else the latest
        completed run that overlaps it."""
        start, end = bound(window[0]), bound(window[1])
        for where in (
            "window_start <= ? AND window_end >= ?",
            "window_start < ? AND window_end > ?",
        ):
            params = [start, end] if where.startswith("window_start <=") else [end, start]
            rows = self._rows(
                f"SELECT * FROM runs WHERE outcome = 'ok' AND {where} "
                "ORDER BY started_at DESC LIMIT 1",
                params,
            )
            if rows:
                return rows[0]
        return None

    def table_rows(self, table: str, window: Window) -> list[tuple[Any, ...]]:
        """Rows of `findings` (open), `actions` or `daily_usage` in the window, with the
        columns of EXPORT_TABLES[table], oldest first."""
        cols = ", ".join(f'"{c}"' for c in EXPORT_TABLES[table])
        if table == "daily_usage":
            days = days_of(window)
            rows: list[tuple[Any, ...]] = []
            for marks, chunk in in_lists(days):
                rows += self._tuples(
                    f'SELECT {cols} FROM daily_usage WHERE "day" IN ({marks})', chunk
                )
            return sorted(rows, key=lambda r: (r[0], r[1], r[2]))
        where = '"started_at" >= ? AND "started_at" < ?'
        if table == "findings":
            where += " AND \"status\" = 'open'"
        return self._tuples(
            f'SELECT {cols} FROM {table} WHERE {where} ORDER BY "started_at", "id"',
            [bound(window[0]), bound(window[1])],
        )
