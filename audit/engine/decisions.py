"""Which alerts a run raises (SPEC §5): budget thresholds of every period the window
overlaps, the current period's depletion forecast, usage spikes inside the window, and the
nightly digest of new findings. Pure: usage, what was already sent and `now` in; alerts
out. Recording them in the outbox and delivering them is `audit.alerts`' job."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from audit.config import BudgetConfig, PricingConfig
from audit.engine import budget as budget_mod
from audit.engine.alerts import (
    Alert,
    budget_threshold_alert,
    digest_alert,
    forecast_alert,
    spike_alert,
)
from audit.engine.rules import Finding

__all__ = ["BudgetUsage", "Decisions", "decide_alerts", "spike_days", "top_waste_lines"]


@dataclass(frozen=True)
class BudgetUsage:
    """What the store knows of one period: credits used, thresholds already announced."""

    used_credits: float
    sent_thresholds: Collection[float]


@dataclass(frozen=True)
class Decisions:
    alerts: list[Alert]
    #: status of the last period the window overlaps (what the run output shows)
    status: budget_mod.BudgetStatus
    forecast: budget_mod.Forecast | None
    period: str
    current_period: str


def top_waste_lines(findings: Sequence[Finding], n: int = 3) -> list[str]:
    """The explanations of the `n` costliest findings that waste something."""
    ranked = sorted(findings, key=lambda f: (-f.wasted_usd, f.kind, f.key))[:n]
    return [f.explanation for f in ranked if f.wasted_usd > 0]


def decide_alerts(
    *,
    window: tuple[datetime, datetime],
    now: datetime,
    budget: BudgetConfig,
    pricing: PricingConfig,
    usage_by_period: Mapping[str, BudgetUsage],
    current_daily_credits: Mapping[date, float],
    spike_rows: Sequence[tuple[date, str | None, str, float]],
    new_findings: Sequence[Finding],
    resolved: int,
    totals: Mapping[str, Any],
    top_lines: Sequence[str],
) -> Decisions:
    """`usage_by_period` covers `budget_mod.periods_overlapping(*window)`;
    `current_daily_credits` the period of `now`; `spike_rows` (day, agent, action, AWU)
    the window plus the trailing days the spike rule compares against."""
    alerts: list[Alert] = []
    status = None
    periods = budget_mod.periods_overlapping(*window)
    for period in periods:
        usage = usage_by_period[period]
        status = budget_mod.evaluate_budget(
            period, usage.used_credits, budget, usage.sent_thresholds
        )
        alerts += [
            budget_threshold_alert(
                period,
                threshold,
                used_credits=status.used_credits,
                budget_credits=budget.credits,
                top_findings=top_lines,
            )
            for threshold in status.new_thresholds
        ]
    assert status is not None, "an audit window is never empty"
    current = budget_mod.period_of(now)
    fc = budget_mod.forecast(current, dict(current_daily_credits), budget, now)
    if fc is not None and fc.depletes_before_period_end:
        assert fc.depletion_date is not None
        alerts.append(
            forecast_alert(
                current,
                fc.depletion_date.isoformat(),
                used_credits=fc.used_credits,
                budget_credits=budget.credits,
                burn_per_day=fc.burn_per_day,
                top_findings=top_lines,
            )
        )
    alerts += _spike_alerts(window, budget, pricing, spike_rows)
    digest = digest_alert(now.date().isoformat(), new_findings, totals=totals, resolved=resolved)
    if digest is not None:
        alerts.append(digest)
    return Decisions(alerts, status, fc, periods[-1], current)


def spike_days(window: tuple[datetime, datetime], trailing_days: int) -> tuple[date, date]:
    """[first, last) day of the usage the spike rule reads for `window`."""
    start, end = window
    first = start.date() - timedelta(days=trailing_days)
    last = end.date() if end.time() == datetime.min.time() else end.date() + timedelta(days=1)
    return first, last


def _spike_alerts(
    window: tuple[datetime, datetime],
    budget: BudgetConfig,
    pricing: PricingConfig,
    rows: Sequence[tuple[date, str | None, str, float]],
) -> list[Alert]:
    start, end = window
    last_day = (end + timedelta(microseconds=-1)).date()
    per_awu = pricing.credits_per_awu
    return [
        spike_alert(
            spike.day.isoformat(),
            credits=spike.awu * per_awu,
            baseline_credits=spike.trailing_median * per_awu,
            top_findings=(
                f"Grew most: agent {spike.top_agent or 'unknown'} "
                f"(+{spike.top_agent_growth_awu:,.1f} AWU), action {spike.top_action} "
                f"(+{spike.top_action_growth_awu:,.1f} AWU).",
            ),
        )
        for spike in budget_mod.detect_spikes(
            rows, factor=budget.spike_factor, trailing_days=budget.spike_trailing_days
        )
        if start.date() <= spike.day <= last_day
    ]
