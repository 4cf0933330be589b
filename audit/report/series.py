"""The series the report's charts and tables draw, from one window's actions and findings.
Pure: no store, no clock."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, timedelta
from typing import Any

from audit.config import BudgetConfig, PricingConfig
from audit.engine import budget as budget_mod
from audit.engine.analysis import agent_group, day_of
from audit.engine.awu import ActionCost, usd_for
from audit.engine.model import Action
from audit.engine.rules import Finding

__all__ = [
    "budget_progress",
    "conversation_lengths",
    "daily_by_agent",
    "token_histogram",
    "top_waste",
    "waste_by_kind_day",
]

_TOKEN_BIN = 1000
_TOKEN_BINS = 30  # 0 … 30,000 tokens, then one "30,000+" bin
_LENGTH_MAX = 60  # conversations longer than this share one bar


def daily_by_agent(
    actions: Iterable[Action],
    costs: Mapping[str, ActionCost],
    pricing: PricingConfig,
    sandbox: bool,
) -> list[dict[str, Any]]:
    """Credits and dollars per UTC day × agent, oldest day first."""
    acc: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0, 0.0])
    for a in actions:
        row = acc[(day_of(a), agent_group(a))]
        row[0] += 1
        row[1] += costs[a.id].credits
    return [
        {
            "day": day,
            "agent": agent,
            "actions": int(n),
            "credits": round(credits, 2) + 0.0,
            "cost_usd": round(usd_for(credits, pricing, sandbox=sandbox), 2) + 0.0,
        }
        for (day, agent), (n, credits) in sorted(acc.items())
    ]


def budget_progress(
    period: str,
    daily: Mapping[date, float],
    budget: BudgetConfig,
    forecast: budget_mod.Forecast | None,
) -> dict[str, Any]:
    """The period's running total per day, the budget and its threshold marks, the
    straight-line pace, and (when there is one) the forecast with its band to period end."""
    start, end = budget_mod.period_bounds(period)
    days = (end.date() - start.date()).days
    running = 0.0
    cumulative = []
    for i in range(days):
        d = start.date() + timedelta(days=i)
        if d in daily:
            running += daily[d]
        if d <= max(daily, default=start.date()):
            cumulative.append({"day": d.isoformat(), "credits": round(running, 2) + 0.0})
    out: dict[str, Any] = {
        "period": period,
        "first_day": start.date().isoformat(),
        "days": days,
        "budget_credits": budget.credits,
        "pace_per_day": round(budget.credits / days, 2),
        "thresholds": [
            {"pct": t, "credits": round(budget.credits * t / 100.0, 2)} for t in budget.thresholds
        ],
        "cumulative": cumulative,
        "forecast": forecast.as_json() if forecast is not None else None,
    }
    return out


def token_histogram(actions: Iterable[Action], ceiling: int) -> dict[str, Any]:
    """Actions per 1,000-token bin (the last bin open-ended), with the ceiling to mark."""
    bins = [0] * (_TOKEN_BINS + 1)
    above = 0
    for a in actions:
        bins[min(max(a.tokens, 0) // _TOKEN_BIN, _TOKEN_BINS)] += 1
        above += a.tokens > ceiling
    labels = [f"{i * _TOKEN_BIN:,}–{(i + 1) * _TOKEN_BIN:,}" for i in range(_TOKEN_BINS)]
    labels.append(f"{_TOKEN_BINS * _TOKEN_BIN:,}+")
    return {
        "bin_tokens": _TOKEN_BIN,
        "bins": [{"label": lab, "actions": n} for lab, n in zip(labels, bins, strict=True)],
        "ceiling": ceiling,
        "above_ceiling": above,
    }


def conversation_lengths(counts: Iterable[int], crossover: float) -> dict[str, Any]:
    """Conversations by billable actions per conversation, in numeric order (1, 2, … then
    one bar for the longest), with the per-conversation pricing crossover to mark."""
    bars = [0] * (_LENGTH_MAX + 2)
    for c in counts:
        bars[min(c, _LENGTH_MAX + 1)] += 1
    labels = [str(i) for i in range(_LENGTH_MAX + 1)] + [f"{_LENGTH_MAX + 1}+"]
    return {
        "bars": [{"label": lab, "sessions": n} for lab, n in zip(labels, bars, strict=True)],
        "crossover": round(crossover, 2),
    }


def waste_by_kind_day(findings: Iterable[Finding], kinds: Sequence[str]) -> list[dict[str, Any]]:
    """Wasted AWU and dollars per day (of the finding's first action) × kind."""
    acc: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0.0, 0.0])
    for f in findings:
        if f.kind in kinds:
            row = acc[(f.started_at.date().isoformat(), f.kind)]
            row[0] += f.wasted_awu
            row[1] += f.wasted_usd
    return [
        {"day": d, "kind": k, "wasted_awu": round(awu, 1) + 0.0, "wasted_usd": round(usd, 2) + 0.0}
        for (d, k), (awu, usd) in sorted(acc.items())
    ]


def top_waste(findings: Iterable[Finding], kinds: Sequence[str], *, n: int) -> list[dict[str, Any]]:
    """The costliest agent × action × kind groups of waste findings."""
    acc: dict[tuple[str, str, str], list[float]] = defaultdict(lambda: [0, 0.0, 0.0])
    for f in findings:
        if f.kind in kinds and f.wasted_usd > 0:
            row = acc[(f.agent or "unknown", f.action_name or "—", f.kind)]
            row[0] += 1
            row[1] += f.wasted_awu
            row[2] += f.wasted_usd
    ranked = sorted(acc.items(), key=lambda kv: (-kv[1][2], kv[0]))[:n]
    return [
        {
            "agent": agent,
            "action_name": action,
            "kind": kind,
            "findings": int(count),
            "wasted_awu": round(awu, 1) + 0.0,
            "wasted_usd": round(usd, 2) + 0.0,
        }
        for (agent, action, kind), (count, awu, usd) in ranked
    ]
