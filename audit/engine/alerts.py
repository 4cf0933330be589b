"""Alerts as decisions: what each alert says and its deterministic id.

An `Alert` has an id of kind | period | threshold | day, so each budget threshold fires once
per period and the digest and a spike once per day. Building one is pure (no store, no
network); `audit.alerts` records and delivers them.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from audit.engine.rules import Finding

__all__ = [
    "ALERT_KINDS",
    "Alert",
    "alert_id",
    "budget_threshold_alert",
    "digest_alert",
    "forecast_alert",
    "one_line",
    "spike_alert",
]

ALERT_KINDS = ("BUDGET_THRESHOLD", "FORECAST_DEPLETION", "SPIKE", "DIGEST", "TEST")


def _fmt_threshold(threshold: float | None) -> str:
    return "" if threshold is None else f"{float(threshold):g}"


def alert_id(kind: str, period: str, threshold: float | None, day: str | None) -> str:
    """sha256 of kind|period|threshold|day (threshold as %g: 75 and 75.0 are one alert)."""
    text = f"{kind}|{period}|{_fmt_threshold(threshold)}|{day or ''}"
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class Alert:
    kind: str  # one of ALERT_KINDS
    period: str  # 'YYYY-MM'
    threshold: float | None
    day: str | None  # 'YYYY-MM-DD' for per-day alerts (DIGEST, SPIKE)
    title: str
    text: str  # plain-text body
    fields: tuple[tuple[str, str], ...] = ()
    top_findings: tuple[str, ...] = ()  # one-sentence explanations

    def __post_init__(self) -> None:
        if self.kind not in ALERT_KINDS:
            raise ValueError(f"unknown alert kind {self.kind!r}")

    @property
    def id(self) -> str:
        return alert_id(self.kind, self.period, self.threshold, self.day)

    def to_payload(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "period": self.period,
            "threshold": self.threshold,
            "day": self.day,
            "title": self.title,
            "text": self.text,
            "fields": [list(f) for f in self.fields],
            "top_findings": list(self.top_findings),
        }

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> Alert:
        threshold = payload.get("threshold")
        return cls(
            kind=payload["kind"],
            period=payload["period"],
            threshold=None if threshold is None else float(threshold),
            day=payload.get("day"),
            title=payload.get("title", ""),
            text=payload.get("text", ""),
            fields=tuple((str(k), str(v)) for k, v in payload.get("fields", ())),
            top_findings=tuple(str(s) for s in payload.get("top_findings", ())),
        )


def one_line(text: str) -> str:
    """`text` with every run of whitespace (newlines too) as one space."""
    return " ".join(text.split())


def _credits(value: float) -> str:
    return f"{value:,.0f}"


def _usd(value: float) -> str:
    return f"${value:,.2f}"


def digest_alert(
    day: str,
    new_findings: Sequence[Finding],
    *,
    totals: Mapping[str, Any] | None = None,
    resolved: int = 0,
    top_n: int = 5,
) -> Alert | None:
    """One DIGEST alert for a night's new findings; None when there is nothing new.

    Counts by kind (with that kind's wasted dollars — kinds overlap, so no grand total),
    the top `top_n` by wasted_usd as one-sentence explanations, and the window's totals
    (§7 `totals` keys) when given.
    """
    if not new_findings:
        return None
    by_kind = Counter(f.kind for f in new_findings)
    usd_by_kind: dict[str, float] = {}
    for f in new_findings:
        usd_by_kind[f.kind] = usd_by_kind.get(f.kind, 0.0) + float(f.wasted_usd)
    n = len(new_findings)
    fields: list[tuple[str, str]] = [
        (kind, f"{count} · {_usd(usd_by_kind[kind])} wasted")
        for kind, count in sorted(by_kind.items(), key=lambda kv: (-kv[1], kv[0]))
    ]
    sentences = [f"awu-audit found {n} new finding{'s' if n != 1 else ''} on {day}."]
    if resolved:
        sentences.append(f"{resolved} earlier finding{'s' if resolved != 1 else ''} resolved.")
    if totals:
        sentences.append(
            f"The window had {int(totals.get('actions', 0)):,} actions, "
            f"{float(totals.get('awu', 0.0)):,.1f} AWU, "
            f"{_credits(float(totals.get('credits', 0.0)))} credits "
            f"({_usd(float(totals.get('cost_usd', 0.0)))})."
        )
    top = sorted(new_findings, key=lambda f: (-float(f.wasted_usd), f.started_at, f.id))[:top_n]
    return Alert(
        kind="DIGEST",
        period=day[:7],
        threshold=None,
        day=day,
        title=f"awu-audit: {n} new finding{'s' if n != 1 else ''} on {day}",
        text=" ".join(sentences),
        fields=tuple(fields),
        top_findings=tuple(one_line(f.explanation) for f in top),
    )


def budget_threshold_alert(
    period: str,
    threshold: float,
    *,
    used_credits: float,
    budget_credits: float,
    depletion_date: str | None = None,
    top_findings: Sequence[str] = (),
) -> Alert:
    """BUDGET_THRESHOLD: `threshold` % of the period's credit budget is used."""
    pct = 100.0 * used_credits / budget_credits if budget_credits else 0.0
    fields = [
        ("Used", f"{_credits(used_credits)} of {_credits(budget_credits)} credits ({pct:.1f}%)"),
        ("Threshold", f"{_fmt_threshold(threshold)}%"),
    ]
    if depletion_date:
        fields.append(("Forecast depletion", depletion_date))
    return Alert(
        kind="BUDGET_THRESHOLD",
        period=period,
        threshold=float(threshold),
        day=None,
        title=f"Agentforce budget {period}: {_fmt_threshold(threshold)}% reached",
        text=(
            f"Agentforce usage for {period} has reached {pct:.1f}% of the "
            f"{_credits(budget_credits)}-credit budget."
        ),
        fields=tuple(fields),
        top_findings=tuple(top_findings),
    )


def forecast_alert(
    period: str,
    depletion_date: str,
    *,
    used_credits: float,
    budget_credits: float,
    burn_per_day: float,
    top_findings: Sequence[str] = (),
) -> Alert:
    """FORECAST_DEPLETION: at the current burn rate the budget runs out before period end."""
    return Alert(
        kind="FORECAST_DEPLETION",
        period=period,
        threshold=None,
        day=None,
        title=f"Agentforce budget {period} forecast to run out on {depletion_date}",
        text=(
            f"At the current burn rate of {_credits(burn_per_day)} credits a day, the "
            f"{_credits(budget_credits)}-credit budget for {period} runs out on "
            f"{depletion_date}, before the period ends."
        ),
        fields=(
            ("Used", f"{_credits(used_credits)} of {_credits(budget_credits)} credits"),
            ("Burn rate", f"{_credits(burn_per_day)} credits/day"),
            ("Depletion", depletion_date),
        ),
        top_findings=tuple(top_findings),
    )


def spike_alert(
    day: str,
    *,
    credits: float,
    baseline_credits: float,
    top_findings: Sequence[str] = (),
) -> Alert:
    """SPIKE: one day's credits far above the trailing baseline (once per day)."""
    ratio = credits / baseline_credits if baseline_credits else float("inf")
    ratio_text = f"{ratio:.1f}×" if baseline_credits else "no baseline"
    return Alert(
        kind="SPIKE",
        period=day[:7],
        threshold=None,
        day=day,
        title=f"Agentforce usage spike on {day}: {_credits(credits)} credits ({ratio_text})",
        text=(
            f"Usage on {day} was {_credits(credits)} credits against a trailing average of "
            f"{_credits(baseline_credits)} credits a day."
        ),
        fields=(
            ("Credits", _credits(credits)),
            ("Trailing average", _credits(baseline_credits)),
            ("Ratio", ratio_text),
        ),
        top_findings=tuple(top_findings),
    )
