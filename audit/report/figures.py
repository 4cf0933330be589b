"""The report's charts, built from its document (audit.report.data) as inline SVG."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from audit.engine.model import days_of, parse_sf_datetime
from audit.report.charts import Band, Chart, HMark, Series, VMark, hbar_chart, render
from audit.report.labels import KIND_COLOURS, KIND_LABELS, PRICING_LABELS

__all__ = ["figures"]


def _days(since: str, until: str) -> list[str]:
    """The window's days (at least its first one)."""
    return days_of((parse_sf_datetime(since), parse_sf_datetime(until))) or [since[:10]]


def figures(doc: dict[str, Any]) -> dict[str, str]:
    """Chart id → SVG for every chart of the HTML report."""
    days = _days(doc["window"]["since"], doc["window"]["until"])
    d = doc["details"]
    return {
        "daily": _daily(days, d, doc),
        "budget": _budget(d["budget_progress"]),
        "reconcile": _reconcile(days, d["reconcile_by_day"]),
        "waste": _waste(days, d["waste_by_kind_day"]),
        "tokens": _tokens(d["tokens"]),
        "lengths": _lengths(d["conversation_lengths"]),
        "pricing": _pricing(doc["pricing"]),
    }


def _daily(days: list[str], d: dict[str, Any], doc: dict[str, Any]) -> str:
    agents = sorted({r["agent"] for r in d["daily_by_agent"]})
    credits = {(r["day"], r["agent"]): r["credits"] for r in d["daily_by_agent"]}
    usd_per_credit = doc["about"]["pricing"]["usd_per_credit"]
    if doc["is_sandbox"]:
        usd_per_credit *= 1 - doc["about"]["pricing"]["sandbox_discount"]
    pace = d["budget_progress"]["pace_per_day"]
    chart = Chart(
        "chart-daily",
        "Daily Flex Credits by agent, against the budget's daily pace",
        days,
        "Flex Credits per day",
        bars=[Series(a, [credits.get((day, a), 0.0) for day in days]) for a in agents],
        lines=[Series("Budget pace", [pace] * len(days), "#c2413a", "6 4")],
        fmt=lambda v: f"{v:,.0f} credits (${v * usd_per_credit:,.2f})",
    )
    return render(chart)


def _budget(p: dict[str, Any]) -> str:
    first = date.fromisoformat(p["first_day"])
    days = [(first + timedelta(days=i)).isoformat() for i in range(p["days"])]
    actual: list[float | None] = [None] * len(days)
    for row in p["cumulative"]:
        actual[days.index(row["day"])] = row["credits"]
    bands, lines = [], [Series("Spent so far", actual, "#2f6db5")]
    fc = p["forecast"]
    if fc and p["cumulative"]:
        last = len(p["cumulative"]) - 1
        base = p["cumulative"][-1]["credits"]

        def ahead(rate: float) -> list[float | None]:
            return [None if i < last else base + rate * (i - last) for i in range(len(days))]

        proj, low, high = ahead(fc["burn_per_day"]), ahead(fc["burn_low"]), ahead(fc["burn_high"])
        lines.append(Series("Forecast (median burn)", proj, "#e07b39", "6 4"))
        bands.append(Band("Forecast band (25th–75th percentile burn)", low, high))
    marks = [
        HMark(t["credits"], f"{t['pct']:g} %", "#c2413a" if t["pct"] >= 100 else "#8c6d31")
        for t in p["thresholds"]
    ]
    chart = Chart(
        "chart-budget",
        f"Cumulative Flex Credits in {p['period']} against the budget",
        days,
        "Flex Credits, cumulative",
        lines=lines,
        hmarks=marks,
        bands=bands,
    )
    return render(chart)


def _reconcile(days: list[str], rows: list[dict[str, Any]]) -> str:
    by_day = {r["group"]: r for r in rows}
    labels = [
        f"{day} ({by_day[day]['difference_usd']:+,.2f} $)" if day in by_day else day
        for day in days
    ]
    chart = Chart(
        "chart-reconcile",
        "Recomputed vs reported AWU per day (label: over (+) or under (−) billing in dollars)",
        labels,
        "AWU per day",
        bars=[
            Series("Recomputed AWU", [by_day.get(d, {}).get("recomputed_awu", 0) for d in days]),
            Series(
                "Reported by the org",
                [by_day.get(d, {}).get("reported_awu", 0) for d in days],
                "#e07b39",
            ),
        ],
        stacked=False,
        fmt=lambda v: f"{v:,.1f} AWU",
        axis=lambda v: f"{v:,.0f}",
    )
    return render(chart)


def _waste(days: list[str], rows: list[dict[str, Any]]) -> str:
    kinds = [k for k in KIND_LABELS if any(r["kind"] == k for r in rows)]
    usd = {(r["day"], r["kind"]): r["wasted_usd"] for r in rows}
    chart = Chart(
        "chart-waste",
        "Wasted dollars per day, by kind of finding",
        days,
        "Wasted USD per day",
        bars=[
            Series(KIND_LABELS[k], [usd.get((d, k), 0.0) for d in days], KIND_COLOURS[k])
            for k in kinds
        ],
        fmt=lambda v: f"${v:,.2f}",
        axis=lambda v: f"${v:,.2f}",
    )
    return render(chart)


def _tokens(t: dict[str, Any]) -> str:
    at = t["ceiling"] / t["bin_tokens"] - 0.5
    chart = Chart(
        "chart-tokens",
        "Tokens per action execution",
        [b["label"] for b in t["bins"]],
        "Actions",
        bars=[Series("Actions", [b["actions"] for b in t["bins"]])],
        vmarks=[VMark(at, f"{t['ceiling']:,}-token ceiling (published third-party rule)")],
    )
    return render(chart)


def _lengths(c: dict[str, Any]) -> str:
    chart = Chart(
        "chart-lengths",
        "Conversations by billable actions per conversation",
        [b["label"] for b in c["bars"]],
        "Conversations",
        bars=[Series("Conversations", [b["sessions"] for b in c["bars"]], "#8467b8")],
        vmarks=[
            VMark(
                c["crossover"] + 0.5,
                f"beyond {c['crossover']:g} actions, per-conversation pricing is cheaper",
            )
        ],
    )
    return render(chart)


def _pricing(p: dict[str, Any]) -> str:
    rows = [
        (label, float(p[f"{key}_usd"]), p["cheapest"] == key)
        for key, label in PRICING_LABELS.items()
    ]
    return hbar_chart("chart-pricing", "The same usage under each pricing model", rows)
