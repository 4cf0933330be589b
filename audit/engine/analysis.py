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
from audit.engine.sums import ExactSum, exact_sum

__all__ = [
    "CaseOutcomes",
    "CaseTally",
    "Efficiency",
    "Reconciliation",
    "Spend",
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


class _GroupSums:
    """Per-group counts and exact sums of one float, fed a batch at a time."""

    def __init__(self) -> None:
        self.count: dict[str, int] = defaultdict(int)
        self.sums: dict[str, ExactSum] = defaultdict(ExactSum)

    def add_batch(self, values: Mapping[str, list[float]]) -> None:
        for key, terms in values.items():
            self.count[key] += len(terms)
            self.sums[key].add_all(terms)

    def value(self, key: str) -> float:
        return self.sums[key].value if key in self.sums else 0.0


class Spend:
    """What `waste_by` reads from the actions — AWU and actions per group — a batch at a
    time (`by`: "action_name" or "agent")."""

    def __init__(self, by: str = "action_name") -> None:
        if by not in ("action_name", "agent"):
            raise ValueError(f"waste_by: by must be 'action_name' or 'agent', not {by!r}")
        self.by = by
        self._groups = _GroupSums()

    def add(self, actions: Iterable[Action], costs: Mapping[str, ActionCost]) -> None:
        group_of = _GROUPERS[self.by]
        batch: dict[str, list[float]] = defaultdict(list)
        for action in actions:
            batch[group_of(action)].append(costs[action.id].awu)
        self._groups.add_batch(batch)

    def rows(self, findings: Iterable[Finding]) -> list[dict[str, Any]]:
        """The `waste_by` rows of the actions added, with `findings`' waste."""
        by, groups = self.by, self._groups
        spend = {key: groups.value(key) for key in groups.sums}
        total = exact_sum(spend.values())
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
                    "actions": groups.count.get(key, 0),
                    "awu": _r(spend.get(key, 0.0)),
                    "share_of_spend": _r(spend.get(key, 0.0) / total) if total else 0.0,
                    "findings": dict(found[key]),
                    "wasted_awu": {k: _r(v) for k, v in wasted[key].items()},
                }
            )
        return rows


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
    spend = Spend(by)
    spend.add(actions, costs)
    return spend.rows(findings)


class Reconciliation:
    """`reconcile` a batch at a time (`by`: "day", "agent" or "action")."""

    def __init__(self, by: str = "day") -> None:
        if by not in ("day", "agent", "action"):
            raise ValueError(f"reconcile: by must be 'day', 'agent' or 'action', not {by!r}")
        self.by = by
        self._actions: dict[str, int] = defaultdict(int)
        self._recomputed = _GroupSums()
        self._reported = _GroupSums()

    def add(self, actions: Iterable[Action], costs: Mapping[str, ActionCost]) -> None:
        group_of = _GROUPERS[self.by]
        counts = self._actions
        recomputed: dict[str, list[float]] = defaultdict(list)
        reported: dict[str, list[float]] = defaultdict(list)
        for action in actions:
            key = group_of(action)
            counts[key] += 1
            if action.reported_awu is None:
                continue
            recomputed[key].append(costs[action.id].awu)
            reported[key].append(action.reported_awu)
        self._recomputed.add_batch(recomputed)
        self._reported.add_batch(reported)

    def rows(self, pricing: PricingConfig, *, sandbox: bool = False) -> list[dict[str, Any]]:
        rows = []
        for key in sorted(self._actions):
            n = self._actions[key]
            recomputed, reported = self._recomputed.value(key), self._reported.value(key)
            diff = reported - recomputed
            diff_credits = credits_for(diff, pricing)
            rows.append(
                {
                    "group": key,
                    "actions": n,
                    "unreported_actions": n - self._reported.count.get(key, 0),
                    "recomputed_awu": _r(recomputed),
                    "reported_awu": _r(reported),
                    "difference_awu": _r(diff),
                    "difference_credits": _r(diff_credits),
                    "difference_usd": _r(usd_for(diff_credits, pricing, sandbox=sandbox)),
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
    tally = Reconciliation(by)
    tally.add(actions, costs)
    return tally.rows(pricing, sandbox=sandbox)


class Efficiency:
    """`efficiency_by_agent` a batch at a time."""

    def __init__(self) -> None:
        self._tokens: dict[str, int] = defaultdict(int)
        self._awu = _GroupSums()

    def add(self, actions: Iterable[Action], costs: Mapping[str, ActionCost]) -> None:
        tokens = self._tokens
        awu: dict[str, list[float]] = defaultdict(list)
        for action in actions:
            cost = costs[action.id]
            if not cost.billable:
                continue
            agent = agent_group(action)
            tokens[agent] += action.tokens
            awu[agent].append(cost.awu)
        self._awu.add_batch(awu)

    def rows(self) -> list[dict[str, Any]]:
        rows = []
        for agent in sorted(self._tokens):
            tokens, awu = self._tokens[agent], self._awu.value(agent)
            rows.append(
                {
                    "agent": agent,
                    "billable_actions": self._awu.count[agent],
                    "tokens": tokens,
                    "awu": _r(awu),
                    "awu_per_1k_tokens": _r(awu / tokens * 1000) if tokens else None,
                }
            )
        return rows


def efficiency_by_agent(
    actions: Iterable[Action], costs: Mapping[str, ActionCost]
) -> list[dict[str, Any]]:
    """AWU per 1,000 tokens per agent (billable actions only; None without tokens)."""
    tally = Efficiency()
    tally.add(actions, costs)
    return tally.rows()


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


class CaseTally:
    """`case_outcomes` a batch at a time. Each `add` must hold whole sessions: a session is
    linked to a resolved case when any of its actions is."""

    def __init__(self, *, window_start: datetime, window_end: datetime) -> None:
        self._window = (window_start, window_end)
        self._resolved: set[str] = set()
        self._linked = 0
        self._credits = ExactSum()
        self._total_awu = ExactSum()
        self._unresolved_awu = ExactSum()

    def add(
        self,
        actions: Sequence[Action],
        costs: Mapping[str, ActionCost],
        cases: Mapping[str, Case],
    ) -> None:
        start, end = self._window
        linked_ids = {a.case_id for a in actions if a.case_id is not None}
        resolved = {
            case_id
            for case_id in linked_ids
            if (case := cases.get(case_id)) is not None
            and case.is_closed
            and case.closed_at is not None
            and start <= case.closed_at < end
        }
        self._resolved |= resolved
        linked = [a for a in actions if a.case_id in resolved]
        self._linked += len(linked)
        self._credits.add_all([costs[a.id].credits for a in linked])
        resolving_sessions = {a.session_id for a in linked if a.session_id is not None}
        total: list[float] = []
        unresolved: list[float] = []
        for action in actions:
            awu = costs[action.id].awu
            total.append(awu)
            if action.session_id is not None:
                if action.session_id not in resolving_sessions:
                    unresolved.append(awu)
            elif action.case_id not in resolved:
                unresolved.append(awu)
        self._total_awu.add_all(total)
        self._unresolved_awu.add_all(unresolved)

    def result(self, pricing: PricingConfig, *, sandbox: bool = False) -> CaseOutcomes:
        credits = self._credits.value
        usd = usd_for(credits, pricing, sandbox=sandbox)
        total_awu, unresolved_awu = self._total_awu.value, self._unresolved_awu.value
        n = len(self._resolved)
        return CaseOutcomes(
            resolved_cases=n,
            linked_actions=self._linked,
            credits=credits,
            cost_usd=usd,
            credits_per_resolved_case=credits / n if n else None,
            usd_per_resolved_case=usd / n if n else None,
            unresolved_awu=unresolved_awu,
            unresolved_share=unresolved_awu / total_awu if total_awu else None,
        )


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
    tally = CaseTally(window_start=window_start, window_end=window_end)
    tally.add(actions, costs, cases)
    return tally.result(pricing or PricingConfig(), sandbox=sandbox)
