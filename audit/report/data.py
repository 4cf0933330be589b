"""Everything one report shows, for ONE window, read from the store: the §7 blocks (totals,
findings, budget, pricing, data quality) recomputed over that window's stored actions and
findings with the engine's own functions, and the series the charts and tables draw."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any

from audit.config import Config
from audit.engine import analysis
from audit.engine import budget as budget_mod
from audit.engine.findings import KIND_ORDER, WASTE_KINDS, compute_totals, finding_totals
from audit.engine.model import format_iso_ms, json_number, parse_sf_datetime
from audit.engine.pricing import LENGTH_BUCKETS, price_window
from audit.engine.rules import Finding
from audit.errors import ConfigError, StoreError
from audit.report.series import (
    budget_progress,
    conversation_lengths,
    daily_by_agent,
    token_histogram,
    top_waste,
    waste_by_kind_day,
)
from audit.rounding import round_to_meaning
from audit.store import Store
from audit.store.report_queries import StoredWindow

__all__ = ["Window", "build_report", "choose_window", "costliest_first"]

Window = tuple[datetime, datetime]


def choose_window(
    store: Store,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    run_id: str | None = None,
    now: datetime,
) -> tuple[Window, dict[str, Any] | None]:
    """The report's one window: --since/--until, else --run's, else the latest completed
    run's. Returns it with the run that best describes it (None when no run covers it)."""
    if run_id is not None:
        if since is not None or until is not None:
            raise ConfigError("pass either --run or --since/--until, not both")
        run = store.completed_run(run_id)
        if run is None:
            raise ConfigError(
                f"no completed run {run_id!r} in {store.path} (or the id prefix is ambiguous)"
            )
        return _run_window(run), run
    if since is not None:
        window = (since, until or now)
        if window[0] >= window[1]:
            raise ConfigError("--since must be before --until")
        return window, store.latest_run_covering(window)
    if until is not None:
        raise ConfigError("--until needs --since")
    run = store.latest_completed_run()
    if run is None:
        raise StoreError(f"{store.path} holds no completed run yet; run `audit run` first")
    return _run_window(run), run


def _run_window(run: dict[str, Any]) -> Window:
    if not run.get("window_start") or not run.get("window_end"):
        raise StoreError(f"run {run['id'][:8]} has no recorded window")
    return parse_sf_datetime(run["window_start"]), parse_sf_datetime(run["window_end"])


def build_report(
    store: Store,
    cfg: Config,
    window: Window,
    run: dict[str, Any] | None,
    *,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The report document: §7-shaped blocks for `window` plus what the charts draw."""
    now = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    summary = _summary(run)
    sandbox = bool(run["is_sandbox"]) if run and run.get("is_sandbox") is not None else False
    stored = store.stored_window(window)
    findings = store.findings_of_window(window)
    what_if = price_window(
        stored.actions, stored.costs, cfg.pricing,
        window_start=window[0], window_end=window[1], sandbox=sandbox,
    )  # fmt: skip
    # the budget as the run saw it (its forecast, its period); without a run, as of the
    # window's end or now, whichever is first
    if run and run.get("started_at"):
        as_of = min(parse_sf_datetime(run["started_at"]), now)
    else:
        as_of = min(now, window[1])
    budget, progress = _budget(store, cfg, window, as_of)
    doc: dict[str, Any] = round_to_meaning(
        {
            "window": _window_json(window),
            "org_id": (run or {}).get("org_id"),
            "is_sandbox": sandbox,
            "run_id": (run or {}).get("id"),
            "totals": compute_totals(
                stored.actions, stored.costs, sandbox=sandbox, pricing=cfg.pricing
            ),
            "findings": finding_totals(findings),
            "budget": budget,
            "pricing": what_if.as_json(),
            "data_quality": summary.get("data_quality") or {"bad_records": 0},
            "sync": summary.get("sync"),
            "details": _details(store, cfg, stored, findings, what_if.as_dict(), sandbox, window)
            | {"budget_progress": progress, "vendor": summary.get("vendor")},
            "about": _about(store, cfg, run, now),
        }
    )
    return doc


def _summary(run: dict[str, Any] | None) -> dict[str, Any]:
    import json

    text = (run or {}).get("summary")
    return json.loads(text) if isinstance(text, str) and text else dict(text or {})


def _window_json(window: Window) -> dict[str, str]:
    since, until = format_iso_ms(window[0]), format_iso_ms(window[1])
    return {"since": since, "until": until, "start": since, "end": until}


def _budget(
    store: Store, cfg: Config, window: Window, as_of: datetime
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The §7 budget block of the window's last period (all stored usage of that period)
    as of `as_of`, with the alerts recorded for it, and the series the budget chart draws."""
    period = budget_mod.periods_overlapping(*window)[-1]
    p_start, p_end = budget_mod.period_bounds(period)
    used = store.credits_between(p_start, p_end)
    status = budget_mod.evaluate_budget(period, used, cfg.budget, ())
    daily = store.action_credits_by_day(p_start, p_end)
    fc = budget_mod.forecast(period, daily, cfg.budget, as_of)
    current = budget_mod.period_of(as_of) == period
    sent, failed = _alert_outcomes(store.alerts_of_period(period))
    block = {
        **status.as_json(),
        "depletion_date": fc.depletion_date.isoformat()
        if fc and current and fc.depletion_date
        else None,
        "alerts_sent": sent,
        "alerts_failed": failed,
    }
    progress = budget_progress(period, daily, cfg.budget, fc)
    if fc is None:
        progress["no_forecast"] = (
            f"{period} had ended when the data was audited ({as_of.date().isoformat()}): a "
            "forecast is made only for the month in progress"
            if not current
            else f"{period} has no complete day of usage before {as_of.date().isoformat()} yet"
        )
    return block, progress


def _alert_outcomes(rows: Iterable[dict[str, Any]]) -> tuple[list[Any], list[Any]]:
    sent: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []
    for r in rows:
        head: dict[str, Any] = {"kind": r["kind"], "period": r["period"]}
        if r["threshold"] is not None:
            head["threshold"] = json_number(r["threshold"])
        if r["sent"]:
            sent.append({**head, "channels": sorted(r["sent"])})
        for channel, error in sorted(r["failed"].items()):
            failed.append({**head, "channel": channel, "error": error})
    return sent, failed


def _details(
    store: Store,
    cfg: Config,
    stored: StoredWindow,
    findings: list[Finding],
    pricing: dict[str, Any],
    sandbox: bool,
    window: Window,
) -> dict[str, Any]:
    actions, costs = stored.actions, stored.costs
    cases = store.cases(sorted({a.case_id for a in actions if a.case_id}))
    crossover = pricing["crossover_actions_per_conversation"]
    per_session: Counter[str] = Counter()
    for a in actions:
        if a.session_id is not None:
            per_session[a.session_id] += costs[a.id].billable
    return {
        "daily_by_agent": daily_by_agent(actions, costs, cfg.pricing, sandbox),
        "reconcile_by_day": analysis.reconcile(
            actions, costs, cfg.pricing, by="day", sandbox=sandbox
        ),
        "reconcile_by_agent": analysis.reconcile(
            actions, costs, cfg.pricing, by="agent", sandbox=sandbox
        ),
        "waste_by_kind_day": waste_by_kind_day(findings, WASTE_KINDS),
        "top_waste": top_waste(findings, WASTE_KINDS, n=15),
        "findings_usd": _usd_by_kind(findings),
        "waste_by_agent": analysis.waste_by(findings, actions, costs, by="agent"),
        "waste_by_action": analysis.waste_by(findings, actions, costs, by="action_name")[:15],
        "efficiency_by_agent": analysis.efficiency_by_agent(actions, costs),
        "case_outcomes": analysis.case_outcomes(
            actions,
            costs,
            cases,
            window_start=window[0],
            window_end=window[1],
            pricing=cfg.pricing,
            sandbox=sandbox,
        ).as_json(),
        "tokens": token_histogram(actions, cfg.rules.token_ceiling),
        "conversation_lengths": conversation_lengths(per_session.values(), crossover),
        "length_buckets": _length_buckets(per_session.values()),
        "pricing": {k: v for k, v in pricing.items() if k != "length_distribution"},
        "findings_list": [_finding_row(f) for f in costliest_first(findings)],
    }


def costliest_first(findings: Iterable[Finding]) -> list[Finding]:
    """Findings by wasted dollars (as shown, to the cent), highest first; ties by kind (in
    the engine's order), then by key: the order the report's findings table lists them in."""
    return sorted(
        findings,
        key=lambda f: (-round(f.wasted_usd, 2), KIND_ORDER.get(f.kind, len(KIND_ORDER)), f.key),
    )


def _usd_by_kind(findings: Iterable[Finding]) -> dict[str, float]:
    usd: dict[str, float] = defaultdict(float)
    for f in findings:
        usd[f.kind] += f.wasted_usd
    return {k: round(v, 2) + 0.0 for k, v in usd.items()}


def _length_buckets(counts: Iterable[int]) -> list[dict[str, Any]]:
    """Conversations per length bucket, in numeric order (a list: JSON keeps its order)."""
    counts = list(counts)
    out = []
    for label, low, high in LENGTH_BUCKETS:
        n = sum(1 for c in counts if c >= low and (high is None or c <= high))
        out.append({"label": label, "sessions": n})
    return out


def _finding_row(f: Finding) -> dict[str, Any]:
    return {
        "kind": f.kind,
        "severity": f.severity,
        "agent": f.agent or "",
        "action_name": f.action_name or "",
        "session_id": f.session_id or "",
        "started_at": format_iso_ms(f.started_at),
        "day": f.started_at.date().isoformat(),
        "wasted_awu": round(f.wasted_awu, 1) + 0.0,
        "wasted_usd": round(f.wasted_usd, 2) + 0.0,
        "explanation": f.explanation,
    }


def _about(store: Store, cfg: Config, run: dict[str, Any] | None, now: datetime) -> dict[str, Any]:
    """The method: rules and prices in force, where the data came from, when."""
    return {
        "generated_at": format_iso_ms(now),
        "last_synced_at": store.last_synced_at(),
        "timezone": cfg.schedule.timezone,
        "run": {k: (run or {}).get(k) for k in ("id", "started_at", "ended_at", "trigger")},
        "rules": {
            "token_ceiling": cfg.rules.token_ceiling,
            "near_ceiling_ratio": cfg.rules.near_ceiling_ratio,
            "retry_window_s": cfg.rules.retry_window_s,
            "retry_loop_min": cfg.rules.retry_loop_min,
            "long_conversation_actions": cfg.rules.long_conversation_actions,
        },
        "pricing": {
            "credits_per_awu": cfg.pricing.credits_per_awu,
            "usd_per_credit": cfg.pricing.usd_per_credit,
            "voice_multiplier": cfg.pricing.voice_multiplier,
            "per_conversation_usd": cfg.pricing.per_conversation_usd,
            "per_user_month_usd": cfg.pricing.per_user_month_usd,
            "sandbox_discount": cfg.pricing.sandbox_discount,
        },
        "budget": {
            "period": cfg.budget.period,
            "credits": cfg.budget.credits,
            "thresholds": list(cfg.budget.thresholds),
            "forecast_days": cfg.budget.forecast_days,
        },
        "store_span": store.usage_span(),
    }
