"""SPEC §5 budgets: periods, thresholds once per period, forecast, spikes."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest

from audit.config import BudgetConfig
from audit.engine.budget import (
    detect_spikes,
    evaluate_budget,
    forecast,
    period_bounds,
    period_of,
    periods_overlapping,
)

BUDGET = BudgetConfig(credits=100_000.0)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=timezone.utc)


# --- periods -------------------------------------------------------------------------------


def test_period_of_is_utc() -> None:
    assert period_of(utc(2026, 10, 31, 23, 59)) == "2026-10"
    eastern = timezone(timedelta(hours=-5))
    assert period_of(datetime(2026, 10, 31, 20, 0, tzinfo=eastern)) == "2026-11"
    assert period_of(date(2026, 2, 3)) == "2026-02"


def test_period_bounds() -> None:
    assert period_bounds("2026-10") == (utc(2026, 10, 1), utc(2026, 11, 1))
    assert period_bounds("2026-12") == (utc(2026, 12, 1), utc(2027, 1, 1))
    with pytest.raises(ValueError):
        period_bounds("2026/10")


def test_periods_overlapping_half_open() -> None:
    assert periods_overlapping(utc(2026, 10, 5), utc(2026, 10, 6)) == ["2026-10"]
    assert periods_overlapping(utc(2026, 10, 5), utc(2026, 11, 1)) == ["2026-10"]
    just_after = utc(2026, 11, 1, 0, 0, 1)
    assert periods_overlapping(utc(2026, 10, 5), just_after) == ["2026-10", "2026-11"]
    assert periods_overlapping(utc(2026, 11, 20), utc(2027, 2, 2)) == [
        "2026-11", "2026-12", "2027-01", "2027-02"]
    assert periods_overlapping(utc(2026, 10, 5), utc(2026, 10, 5)) == []


# --- thresholds ----------------------------------------------------------------------------


def test_no_threshold_below_half() -> None:
    status = evaluate_budget("2026-10", 49_999.0, BUDGET, [])
    assert status.thresholds_crossed == [] and status.new_thresholds == []
    assert status.used_pct == pytest.approx(49.999)


def test_exactly_fifty_percent_crosses_fifty() -> None:
    status = evaluate_budget("2026-10", 50_000.0, BUDGET, [])
    assert status.thresholds_crossed == [50] and status.new_thresholds == [50]


def test_two_crossed_at_once_are_both_new() -> None:
    status = evaluate_budget("2026-10", 80_000.0, BUDGET, [])
    assert status.thresholds_crossed == [50, 75]
    assert status.new_thresholds == [50, 75]


def test_sent_thresholds_are_not_new_again() -> None:
    status = evaluate_budget("2026-10", 80_000.0, BUDGET, [50.0, 75.0])
    assert status.thresholds_crossed == [50, 75]
    assert status.new_thresholds == []
    status = evaluate_budget("2026-10", 95_000.0, BUDGET, [50, 75])
    assert status.new_thresholds == [90]


def test_over_budget_crosses_all() -> None:
    status = evaluate_budget("2026-10", 120_000.0, BUDGET, [50])
    assert status.thresholds_crossed == [50, 75, 90, 100]
    assert status.new_thresholds == [75, 90, 100]
    assert status.as_json() == {"period": "2026-10", "credits": 100000, "used_credits": 120000.0,
                                "used_pct": 120.0, "thresholds_crossed": [50, 75, 90, 100]}


def test_float_noise_does_not_miss_a_threshold() -> None:
    budget = BudgetConfig(credits=3.0, thresholds=(10.0,))
    assert evaluate_budget("2026-10", 0.1 + 0.2, budget, []).new_thresholds == [10]


# --- forecast ------------------------------------------------------------------------------


def daily(start: date, values: list[float]) -> dict[date, float]:
    return {start + timedelta(days=i): v for i, v in enumerate(values)}


def test_forecast_at_steady_burn() -> None:
    usage = daily(date(2026, 10, 1), [5_000.0] * 10)  # Oct 1–10: 50,000 used
    now = utc(2026, 10, 11, 0, 0)
    fc = forecast("2026-10", usage, BUDGET, now)
    assert fc is not None
    assert fc.burn_per_day == 5_000.0 and fc.burn_low == 5_000.0 and fc.burn_high == 5_000.0
    assert fc.days_used == 7
    assert fc.used_credits == 50_000.0
    assert fc.depletion_date == date(2026, 10, 21)  # 50,000 left at 5,000/day
    assert fc.depletes_before_period_end is True


def test_forecast_is_median_of_trailing_complete_days_and_ignores_today() -> None:
    values = [1_000.0] * 3 + [100.0, 200.0, 300.0, 400.0, 500.0, 600.0, 700.0]
    usage = daily(date(2026, 10, 1), values)
    usage[date(2026, 10, 11)] = 90_000.0  # today, partial: counts in usage, not in the burn
    fc = forecast("2026-10", usage, BUDGET, utc(2026, 10, 11, 12))
    assert fc is not None
    assert fc.burn_per_day == 400.0  # median of Oct 4–10
    assert fc.burn_low == 250.0 and fc.burn_high == 550.0
    assert fc.used_credits == pytest.approx(95_800.0)
    assert fc.depletion_low is not None and fc.depletion_high is not None
    assert fc.depletion_date is not None
    assert fc.depletion_low <= fc.depletion_date <= fc.depletion_high


def test_forecast_slow_burn_lasts_past_period_end() -> None:
    usage = daily(date(2026, 10, 1), [100.0] * 5)
    fc = forecast("2026-10", usage, BUDGET, utc(2026, 10, 6))
    assert fc is not None
    assert fc.days_used == 5  # only five complete days so far
    assert fc.depletes_before_period_end is False
    assert fc.depletion_date is not None and fc.depletion_date > date(2026, 10, 31)


def test_forecast_missing_days_count_as_zero() -> None:
    usage = {date(2026, 10, 1): 1_000.0, date(2026, 10, 2): 1_000.0}
    fc = forecast("2026-10", usage, BUDGET, utc(2026, 10, 6))
    assert fc is not None
    assert fc.burn_per_day == 0.0  # median of 1000, 1000, 0, 0, 0
    assert fc.depletion_date is None and fc.depletes_before_period_end is False


def test_forecast_only_for_the_current_period_and_with_data() -> None:
    usage = daily(date(2026, 10, 1), [1_000.0] * 5)
    assert forecast("2026-09", usage, BUDGET, utc(2026, 10, 6)) is None
    assert forecast("2026-10", usage, BUDGET, utc(2026, 10, 1, 12)) is None  # no complete day
    assert forecast("2026-10", {}, BUDGET, utc(2026, 10, 6)) is None


def test_forecast_when_already_depleted_gives_the_crossing_day() -> None:
    usage = daily(date(2026, 10, 1), [40_000.0, 40_000.0, 30_000.0, 10_000.0])
    fc = forecast("2026-10", usage, BUDGET, utc(2026, 10, 5, 8))
    assert fc is not None
    assert fc.depletion_date == date(2026, 10, 3)
    assert fc.depletes_before_period_end is True


def test_forecast_ignores_other_periods_usage() -> None:
    usage = daily(date(2026, 9, 25), [50_000.0] * 6)  # Sep 25–30
    usage.update(daily(date(2026, 10, 1), [1_000.0] * 4))
    fc = forecast("2026-10", usage, BUDGET, utc(2026, 10, 5))
    assert fc is not None
    assert fc.used_credits == 4_000.0 and fc.burn_per_day == 1_000.0
    assert fc.depletion_date is not None
    assert fc.as_json()["depletion_date"] == fc.depletion_date.isoformat()


# --- spikes --------------------------------------------------------------------------------


def rows(
    start: date, totals: list[float], agent: str = "Service", action: str = "Search"
) -> list[tuple[date, str | None, str, float]]:
    return [(start + timedelta(days=i), agent, action, v) for i, v in enumerate(totals) if v]


def test_spike_names_the_agent_and_action_that_grew() -> None:
    start = date(2026, 10, 1)
    data = rows(start, [100.0] * 7)
    data += rows(start, [50.0] * 7, agent="Sales", action="Quote")
    spike_day = start + timedelta(days=7)
    data += [(spike_day, "Service", "Search", 100.0), (spike_day, "Sales", "Quote", 50.0),
             (spike_day, "Sales", "Forecast", 400.0)]
    (spike,) = detect_spikes(data, factor=2.0, trailing_days=7)
    assert spike.day == spike_day
    assert spike.awu == 550.0 and spike.trailing_median == 150.0
    assert spike.top_agent == "Sales" and spike.top_action == "Forecast"
    assert spike.top_action_growth_awu == 400.0
    assert spike.growth_awu == 400.0
    assert spike.ratio == pytest.approx(550 / 150)
    assert spike.as_json()["day"] == "2026-10-08"


def test_no_spike_at_exactly_the_factor() -> None:
    data = rows(date(2026, 10, 1), [100.0] * 7 + [200.0])
    assert detect_spikes(data, factor=2.0, trailing_days=7) == []


def test_spike_needs_three_trailing_days_with_data() -> None:
    data = rows(date(2026, 10, 1), [100.0, 100.0, 900.0])
    assert detect_spikes(data, factor=2.0, trailing_days=7) == []
    data = rows(date(2026, 10, 1), [100.0, 100.0, 100.0, 900.0])
    assert [s.day for s in detect_spikes(data, factor=2.0, trailing_days=7)] == [date(2026, 10, 4)]


def test_days_without_usage_count_as_zero() -> None:
    # 3 days with data in a 7-day trailing window, 4 empty days: the median is 0
    data = rows(date(2026, 10, 1), [100.0, 0, 100.0, 0, 100.0, 0, 0, 50.0])
    (spike,) = detect_spikes(data, factor=2.0, trailing_days=7)
    assert spike.trailing_median == 0.0 and spike.ratio is None
    assert spike.day == date(2026, 10, 8)


def test_only_the_trailing_window_counts() -> None:
    # a high week long ago does not hide today's spike
    data = rows(date(2026, 10, 1), [1_000.0] * 7 + [10.0] * 7 + [100.0])
    spikes = detect_spikes(data, factor=2.0, trailing_days=7)
    assert [s.day for s in spikes] == [date(2026, 10, 15)]
