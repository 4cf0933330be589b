"""Credit budgets (SPEC §5): thresholds, depletion forecast and usage spikes.

Pure decisions: the usage, what was already sent and `now` come in; statuses come out.
The store keeps the sent state; the alert outbox delivers.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any

from audit.config import BudgetConfig
from audit.engine.model import json_number

__all__ = [
    "BudgetStatus",
    "Forecast",
    "Spike",
    "period_of",
    "periods_overlapping",
    "period_bounds",
    "evaluate_budget",
    "forecast",
    "detect_spikes",
]

_TOLERANCE = 1e-9


# --- periods (calendar months, UTC) --------------------------------------------------------


def period_of(dt: datetime | date) -> str:
    """The budget period ("YYYY-MM", UTC) a moment or a day belongs to."""
    if isinstance(dt, datetime) and dt.tzinfo is not None:
        dt = dt.astimezone(timezone.utc)
    return f"{dt.year:04d}-{dt.month:02d}"


def period_bounds(period: str) -> tuple[datetime, datetime]:
    """[start, end) of a "YYYY-MM" period as aware UTC datetimes."""
    try:
        year_text, month_text = period.split("-")
        year, month = int(year_text), int(month_text)
        start = datetime(year, month, 1, tzinfo=timezone.utc)
    except ValueError:
        raise ValueError(f"not a budget period (YYYY-MM): {period!r}") from None
    if month == 12:
        end = datetime(year + 1, 1, 1, tzinfo=timezone.utc)
    else:
        end = start.replace(month=month + 1)
    return start, end


def periods_overlapping(start: datetime, end: datetime) -> list[str]:
    """Every period [start, end) overlaps, oldest first ([] for an empty window)."""
    if end <= start:
        return []
    periods = []
    period = period_of(start)
    while True:
        periods.append(period)
        _, period_end = period_bounds(period)
        if period_end >= end:
            return periods
        period = period_of(period_end)


# --- thresholds ----------------------------------------------------------------------------


@dataclass(frozen=True)
class BudgetStatus:
    period: str
    credits: float  # the budget
    used_credits: float
    used_pct: float
    thresholds_crossed: list[float]  # every threshold reached, ascending
    new_thresholds: list[float]  # crossed and not yet sent: alert these, once

    def as_json(self) -> dict[str, Any]:
        """The §7 `budget` fields this module decides (the caller adds `depletion_date` and
        `alerts_sent`)."""
        return {
            "period": self.period,
            "credits": json_number(self.credits),
            "used_credits": round(self.used_credits, 6),
            "used_pct": round(self.used_pct, 6),
            "thresholds_crossed": [json_number(t) for t in self.thresholds_crossed],
        }


def evaluate_budget(
    period: str, used_credits: float, budget: BudgetConfig, already_sent: Collection[float]
) -> BudgetStatus:
    """Which thresholds a period's usage has reached, and which of those are new.

    A threshold counts as reached when used ≥ threshold % of the budget (so exactly 50 %
    fires the 50 % alert)."""
    used_pct = used_credits / budget.credits * 100.0
    crossed = sorted(
        json_number(t)
        for t in set(budget.thresholds)
        if used_credits * 100.0 + _TOLERANCE >= t * budget.credits
    )
    sent = {float(t) for t in already_sent}
    new = [t for t in crossed if float(t) not in sent]
    return BudgetStatus(
        period=period,
        credits=budget.credits,
        used_credits=used_credits,
        used_pct=used_pct,
        thresholds_crossed=list(crossed),
        new_thresholds=new,
    )


# --- forecast ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Forecast:
    period: str
    used_credits: float  # all usage of the period so far
    burn_per_day: float  # median credits/day over the trailing complete days
    burn_low: float  # 25th percentile
    burn_high: float  # 75th percentile
    depletion_date: date | None  # None: not within any horizon (no burn)
    depletion_low: date | None  # earliest plausible date (at burn_high)
    depletion_high: date | None  # latest plausible date (at burn_low)
    depletes_before_period_end: bool
    days_used: int  # how many trailing days the burn rate rests on

    def as_json(self) -> dict[str, Any]:
        return {
            "period": self.period,
            "used_credits": round(self.used_credits, 6),
            "burn_per_day": round(self.burn_per_day, 6),
            "burn_low": round(self.burn_low, 6),
            "burn_high": round(self.burn_high, 6),
            "depletion_date": _iso(self.depletion_date),
            "depletion_low": _iso(self.depletion_low),
            "depletion_high": _iso(self.depletion_high),
            "depletes_before_period_end": self.depletes_before_period_end,
            "days_used": self.days_used,
        }


def _iso(d: date | None) -> str | None:
    return d.isoformat() if d is not None else None


def forecast(
    period: str,
    daily_credits: Mapping[date, float],
    budget: BudgetConfig,
    now: datetime,
) -> Forecast | None:
    """When will the budget run out at the current burn rate?

    Only for the period containing `now` (else None). The burn rate is the median of the
    last `forecast_days` complete days of the period before now's day (fewer when the
    period is younger; a day without usage counts as 0); the band uses the 25th/75th
    percentiles. None when the period has no usage on its complete days yet. If usage has
    already reached the budget, the depletion date is the day the running total crossed it.
    """
    now = now.astimezone(timezone.utc)
    if period_of(now) != period:
        return None
    start, end = period_bounds(period)
    today = now.date()
    in_period = sorted((d, c) for d, c in daily_credits.items() if start.date() <= d < end.date())
    used = sum(c for _, c in in_period)

    first = max(start.date(), today - timedelta(days=budget.forecast_days))
    trailing_days = [first + timedelta(days=i) for i in range((today - first).days)]
    if not trailing_days or not any(d in daily_credits for d in trailing_days):
        return None
    burns = [float(daily_credits.get(d, 0.0)) for d in trailing_days]
    burn = statistics.median(burns)
    if len(burns) >= 2:
        low, _, high = statistics.quantiles(burns, n=4, method="inclusive")
    else:
        low = high = burn

    if used + _TOLERANCE >= budget.credits:
        crossed_on = _crossing_day(in_period, budget.credits) or today
        return Forecast(
            period, used, burn, low, high, crossed_on, crossed_on, crossed_on, True, len(burns)
        )

    remaining = budget.credits - used

    def depletion(rate: float) -> date | None:
        if rate <= 0:
            return None
        return (now + timedelta(days=remaining / rate)).date()

    when = depletion(burn)
    return Forecast(
        period=period,
        used_credits=used,
        burn_per_day=burn,
        burn_low=low,
        burn_high=high,
        depletion_date=when,
        depletion_low=depletion(high),
        depletion_high=depletion(low),
        depletes_before_period_end=when is not None and when < end.date(),
        days_used=len(burns),
    )


def _crossing_day(days: list[tuple[date, float]], budget_credits: float) -> date | None:
    """The day the running total of `days` (in order) reached the budget."""
    running = 0.0
    for d, c in days:
        running += c
        if running + _TOLERANCE >= budget_credits:
            return d
    return None


# --- spikes --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Spike:
    day: date
    awu: float  # the day's total
    trailing_median: float  # median daily total of the trailing days
    factor: float  # the configured factor the day exceeded
    top_agent: str | None  # the agent whose AWU grew most vs its own trailing median
    top_action: str | None  # the action whose AWU grew most vs its own trailing median
    growth_awu: float  # awu − trailing_median
    ratio: float | None = None  # awu / trailing_median (None when the median is 0)
    top_agent_growth_awu: float = 0.0
    top_action_growth_awu: float = 0.0
    detail: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "day": self.day.isoformat(),
            "awu": round(self.awu, 6),
            "trailing_median": round(self.trailing_median, 6),
            "factor": self.factor,
            "ratio": None if self.ratio is None else round(self.ratio, 6),
            "top_agent": self.top_agent,
            "top_action": self.top_action,
            "growth_awu": round(self.growth_awu, 6),
            "top_agent_growth_awu": round(self.top_agent_growth_awu, 6),
            "top_action_growth_awu": round(self.top_action_growth_awu, 6),
        }


def detect_spikes(
    day_rows: Iterable[tuple[date, str | None, str, float]],
    *,
    factor: float,
    trailing_days: int,
) -> list[Spike]:
    """Days whose total AWU exceeds `factor` × the median of the trailing days' totals.

    `day_rows` are (day, agent, action_name, awu). The trailing window is the
    `trailing_days` days before the day, clipped to the first day with data; days without
    rows count as 0, and at least 3 of the trailing days must have rows. Each spike names
    the agent and the action whose AWU grew most over their own trailing median.
    """
    totals: dict[date, float] = defaultdict(float)
    by_agent: dict[str | None, dict[date, float]] = defaultdict(lambda: defaultdict(float))
    by_action: dict[str, dict[date, float]] = defaultdict(lambda: defaultdict(float))
    for day, agent, action_name, awu in day_rows:
        totals[day] += awu
        by_agent[agent][day] += awu
        by_action[action_name][day] += awu
    if not totals:
        return []
    first_day = min(totals)
    spikes = []
    for day in sorted(totals):
        window_start = max(first_day, day - timedelta(days=trailing_days))
        window = [window_start + timedelta(days=i) for i in range((day - window_start).days)]
        if sum(1 for d in window if d in totals) < 3:
            continue
        median = statistics.median(totals.get(d, 0.0) for d in window)
        awu = totals[day]
        if awu <= factor * median + _TOLERANCE:
            continue
        top_agent, agent_growth = _top_growth(by_agent, day, window)
        top_action, action_growth = _top_growth(by_action, day, window)
        spikes.append(
            Spike(
                day=day,
                awu=awu,
                trailing_median=median,
                factor=factor,
                top_agent=top_agent,
                top_action=top_action,
                growth_awu=awu - median,
                ratio=awu / median if median > 0 else None,
                top_agent_growth_awu=agent_growth,
                top_action_growth_awu=action_growth,
            )
        )
    return spikes


def _top_growth(
    series: Mapping[str | None, Mapping[date, float]] | Mapping[str, Mapping[date, float]],
    day: date,
    window: list[date],
) -> tuple[str | None, float]:
    """The key whose AWU on `day` grew most over its median across `window` (ties: name)."""
    best: tuple[float, str] | None = None
    best_key: str | None = None
    for key, per_day in series.items():
        if day not in per_day:
            continue
        growth = per_day[day] - statistics.median(per_day.get(d, 0.0) for d in window)
        rank = (-growth, key or "")
        if best is None or rank < best:
            best, best_key = rank, key
    return best_key, (-best[0] if best is not None else 0.0)
