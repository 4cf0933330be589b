"""Report aggregates: waste and spend by action or agent, reconciliation with what the org
billed, efficiency, daily usage rows for the store, and cost per resolved case.

All pure: actions, their recomputed costs and findings in; rows (JSON-ready dicts) out.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from audit.config import PricingConfig
from audit.engine.awu import ActionCost, credits_for, usd_for
from audit.engine.model import Action, Case
from audit.engine.rules import KINDS, Finding, agent_label

__all__ = [
    "CaseOutcomes",
    "waste_by",
    "reconcile",
    "efficiency_by_agent",
    "daily_usage_rows",
    "case_outcomes",
    "agent_group",
    "day_of",
]

UNKNOWN_AGENT = "unknown"


def agent_group(action: Action) -> str:
    """The agent label rows are grouped under: name, else id, else "unknown"."""
    return agent_label(action) or UNKNOWN_AGENT


def day_of(action: Action) -> str:
    """The UTC day of an action's start, YYYY-MM-DD."""
    return action.started_at.astimezone(timezone.utc).date().isoformat()


def _r(value: float) -> float:
    return round(value, 6) + 0.0  # + 0.0: never -0.0


_GROUPERS: dict[str, Callable[[Action], str]] = {
    "day": day_of,
    "agent": agent_group,
    "action": lambda a: a.action_name,
    "action_name": lambda a: a.action_name,
}


def waste_by(
    findings: Iterable[Finding],
    actions: Iterable[Action],
    costs: Mapping[str, ActionCost],
    by: str = "action_name",
) -> list[dict[str, Any]]:
    """Spend and waste per action name (`by="action_name"`) or agent (`by="agent"`).

    Each row: group, actions, awu (spend), share_of_spend (group AWU / all AWU), and per
    kind the finding count and wasted AWU. Kinds overlap (an action can be in a breach and a
    retry), so the per-kind figures are not summed. Findings without an action name
    (LONG_CONVERSATION) are left out of the by-action view. Sorted by spend, largest first.
    """
    if by not in ("action_name", "agent"):
        raise ValueError(f"waste_by: by must be 'action_name' or 'agent', not {by!r}")
    group_of = _GROUPERS[by]
    spend: dict[str, float] = defaultdict(float)
    count: dict[str, int] = defaultdict(int)
    total = 0.0
    for action in actions:
        awu = costs[action.id].awu
        key = group_of(action)
        spend[key] += awu
        count[key] += 1
        total += awu
    wasted: dict[str, dict[str, float]] = defaultdict(lambda: dict.fromkeys(KINDS, 0.0))
    found: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(KINDS, 0))
    for f in findings:
        key_or_none = f.action_name if by == "action_name" else (f.agent or UNKNOWN_AGENT)
        if key_or_none is None:
            continue
        wasted[key_or_none][f.kind] += f.wasted_awu
        found[key_or_none][f.kind] += 1
    rows = []
    for key in sorted(set(spend) | set(wasted), key=lambda k: (-spend.get(k, 0.0), k)):
        rows.append(
            {
                "group": key,
                "actions": count.get(key, 0),
                "awu": _r(spend.get(key, 0.0)),
                "share_of_spend": _r(spend.get(key, 0.0) / total) if total else 0.0,
                "findings": dict(found[key]),
                "wasted_awu": {k: _r(v) for k, v in wasted[key].items()},
            }
        )
    return rows


def reconcile(
    actions: Iterable[Action],
    costs: Mapping[str, ActionCost],
    pricing: PricingConfig,
    *,
    by: str = "day",
    sandbox: bool = False,
) -> list[dict[str, Any]]:
    """Recomputed vs reported AWU per day, agent or action (`by="day"|"agent"|"action"`).

    Compared over the actions that carry a reported AWU (an action the org reported
    nothing for cannot be over- or under-billed); `unreported_actions` counts the others.
    difference_* = reported − recomputed: positive means the org over-billed.
    """
    if by not in ("day", "agent", "action"):
        raise ValueError(f"reconcile: by must be 'day', 'agent' or 'action', not {by!r}")
    group_of = _GROUPERS[by]
    acc: dict[str, dict[str, float]] = defaultdict(
        lambda: {"actions": 0, "unreported_actions": 0, "recomputed_awu": 0.0, "reported_awu": 0.0}
    )
    for action in actions:
        row = acc[group_of(action)]
        row["actions"] += 1
        if action.reported_awu is None:
            row["unreported_actions"] += 1
            continue
        row["recomputed_awu"] += costs[action.id].awu
        row["reported_awu"] += action.reported_awu
    rows = []
    for key in sorted(acc):
        row = acc[key]
        diff = row["reported_awu"] - row["recomputed_awu"]
        diff_credits = credits_for(diff, pricing)
        rows.append(
            {
                "group": key,
                "actions": int(row["actions"]),
                "unreported_actions": int(row["unreported_actions"]),
                "recomputed_awu": _r(row["recomputed_awu"]),
                "reported_awu": _r(row["reported_awu"]),
                "difference_awu": _r(diff),
                "difference_credits": _r(diff_credits),
                "difference_usd": _r(usd_for(diff_credits, pricing, sandbox=sandbox)),
            }
        )
    return rows


def efficiency_by_agent(
    actions: Iterable[Action], costs: Mapping[str, ActionCost]
) -> list[dict[str, Any]]:
    """AWU per 1,000 tokens per agent (billable actions only; None without tokens)."""
    acc: dict[str, list[float]] = defaultdict(lambda: [0, 0, 0.0])  # actions, tokens, awu
    for action in actions:
        cost = costs[action.id]
        if not cost.billable:
            continue
        row = acc[agent_group(action)]
        row[0] += 1
        row[1] += action.tokens
        row[2] += cost.awu
    rows = []
    for agent in sorted(acc):
        n, tokens, awu = acc[agent]
        rows.append(
            {
                "agent": agent,
                "billable_actions": int(n),
                "tokens": int(tokens),
                "awu": _r(awu),
                "awu_per_1k_tokens": _r(awu / tokens * 1000) if tokens else None,
            }
        )
    return rows


def daily_usage_rows(
    actions: Iterable[Action],
    costs: Mapping[str, ActionCost],
    *,
    sandbox: bool,
    pricing: PricingConfig,
) -> list[dict[str, Any]]:
    """The store's `daily_usage`: one row per UTC day × agent × channel."""
    acc: dict[tuple[str, str, str], list[float]] = defaultdict(lambda: [0, 0, 0, 0.0, 0.0])
    for action in actions:
        cost = costs[action.id]
        row = acc[(day_of(action), agent_group(action), action.channel)]
        row[0] += 1
        row[1] += cost.billable
        row[2] += action.tokens
        row[3] += cost.awu
        if action.reported_awu is not None:
            row[4] += action.reported_awu
    rows = []
    for (day, agent, channel), (n, billable, tokens, awu, reported) in sorted(acc.items()):
        credits = credits_for(awu, pricing)
        rows.append(
            {
                "day": day,
                "agent": agent,
                "channel": channel,
                "actions": int(n),
                "billable_actions": int(billable),
                "tokens": int(tokens),
                "awu": _r(awu),
                "reported_awu": _r(reported),
                "credits": _r(credits),
                "cost_usd": _r(usd_for(credits, pricing, sandbox=sandbox)),
            }
        )
    return rows


@dataclass(frozen=True)
class CaseOutcomes:
    resolved_cases: int  # closed in the window and linked to by some action
    linked_actions: int  # actions linked to those cases
    credits: float  # credits of those actions
    cost_usd: float
    credits_per_resolved_case: float | None  # None when no case was resolved
    usd_per_resolved_case: float | None
    unresolved_awu: float  # AWU of sessions linked to no resolved case
    unresolved_share: float | None  # that / all AWU (None when there is no AWU)

    def as_json(self) -> dict[str, Any]:
        def opt(v: float | None) -> float | None:
            return None if v is None else _r(v)

        return {
            "resolved_cases": self.resolved_cases,
            "linked_actions": self.linked_actions,
            "credits": _r(self.credits),
            "cost_usd": _r(self.cost_usd),
            "credits_per_resolved_case": opt(self.credits_per_resolved_case),
            "usd_per_resolved_case": opt(self.usd_per_resolved_case),
            "unresolved_awu": _r(self.unresolved_awu),
            "unresolved_share": opt(self.unresolved_share),
        }


def case_outcomes(
    actions: Sequence[Action],
    costs: Mapping[str, ActionCost],
    cases: Mapping[str, Case],
    *,
    window_start: datetime,
    window_end: datetime,
    pricing: PricingConfig | None = None,
    sandbox: bool = False,
) -> CaseOutcomes:
    """Cost per resolved case, and the share of AWU spent in sessions that resolved none.

    A resolved case is closed (IsClosed) with its close date in [window_start, window_end)
    and linked to by at least one action. A session is linked to a resolved case when any of
    its actions is; an action without a session stands alone.
    """
    pricing = pricing or PricingConfig()
    linked_ids = {a.case_id for a in actions if a.case_id is not None}
    resolved = {
        case_id
        for case_id in linked_ids
        if (case := cases.get(case_id)) is not None
        and case.is_closed
        and case.closed_at is not None
        and window_start <= case.closed_at < window_end
    }
    linked = [a for a in actions if a.case_id in resolved]
    credits = sum(costs[a.id].credits for a in linked)
    usd = usd_for(credits, pricing, sandbox=sandbox)

    resolving_sessions = {a.session_id for a in linked if a.session_id is not None}
    total_awu = unresolved_awu = 0.0
    for action in actions:
        awu = costs[action.id].awu
        total_awu += awu
        if action.session_id is not None:
            if action.session_id not in resolving_sessions:
                unresolved_awu += awu
        elif action.case_id not in resolved:
            unresolved_awu += awu
    n = len(resolved)
    return CaseOutcomes(
        resolved_cases=n,
        linked_actions=len(linked),
        credits=credits,
        cost_usd=usd,
        credits_per_resolved_case=credits / n if n else None,
        usd_per_resolved_case=usd / n if n else None,
        unresolved_awu=unresolved_awu,
        unresolved_share=unresolved_awu / total_awu if total_awu else None,
    )
