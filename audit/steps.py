"""The steps every run ends with, whether it recomputed its window or reused stored
results: decide budgets and alerts, deliver them, record what the results were computed
from, and mark the run ok with its summary. `audit.pipeline` runs them after an audit,
`audit.reuse` after a quiet re-run."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from audit import alerts, crashpoints, reuse
from audit.config import Config
from audit.engine import budget as budget_mod
from audit.engine.decisions import (
    BudgetUsage,
    Decisions,
    decide_alerts,
    spike_days,
    top_waste_lines,
)
from audit.engine.model import format_iso_ms, json_number
from audit.engine.rules import Finding, severity_at_least
from audit.reuse import BudgetSums
from audit.store import FindingChanges, Store
from connector.client import SalesforceClient
from connector.org import OrgInfo

__all__ = [
    "Run", "RunResult", "budget_json", "budget_sums", "decide", "deliver", "discount",
    "fail_on_reason", "finish", "forecast_json", "record_basis",
]  # fmt: skip

Window = tuple[datetime, datetime]


@dataclass
class RunResult:
    output: dict[str, Any]  # the §7 JSON object
    exit_code: int
    top_findings: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: why `[run] fail_on` tripped (exit 1): how many findings of which kinds; else None
    fail_on_reason: str | None = None
    #: said when the window held no action but usage exists elsewhere (audit.hints)
    hint: str | None = None
    #: said when nothing changed and the stored results were reused (audit.reuse)
    reused: str | None = None
    #: said when only some days of the window were reconciled anew (the others unchanged)
    recomputed: str | None = None

    def summary_line(self) -> str:
        t = self.output["totals"]
        found = sum(v["count"] for v in self.output["findings"].values())
        failed = self.output["budget"].get("alerts_failed")
        return (
            f"run {self.output['run_id'][:8]} ok: {t['actions']} actions, {t['awu']:g} AWU, "
            f"${t['cost_usd']:,.2f}; {found} findings; "
            f"{len(self.output['budget']['alerts_sent'])} alerts sent"
            + (f", {len(failed)} failed" if failed else "")
            + (" (0 days recomputed: nothing changed)" if self.reused else "")
        )


@dataclass(frozen=True)
class Run:
    """What every step of one run shares."""

    cfg: Config
    store: Store
    org: OrgInfo
    run_id: str
    now: datetime
    #: recompute the window even when stored results could be reused (`audit run --full`)
    full: bool = False


def deliver(
    run: Run, channels: Mapping[str, Any], channel_errors: Mapping[str, str]
) -> tuple[list[Any], list[dict[str, Any]]]:
    """Deliver what is queued (this run's alerts and any left by an earlier run): the
    alerts sent and the deliveries that failed."""
    crashpoints.reached("queued")
    failed: list[dict[str, Any]] = []
    sent = alerts.deliver_pending(
        run.store,
        channels,
        run.run_id,
        run.now,
        channel_errors=channel_errors,
        checkpoint=crashpoints.reached,
        failed=failed,
    )
    return sent, failed


def record_basis(
    run: Run, window: Window, totals: Mapping[str, Any], context: str, sums: BudgetSums
) -> None:
    """What the results just written were computed from (call in their transaction), with
    what their budget is decided from (`budget_sums`)."""
    run.store.set_audit_basis(
        reuse.basis(
            run.run_id,
            window,
            inputs_version=run.store.inputs_version(),
            settings=reuse.settings_fingerprint(run.cfg, sandbox=run.org.is_sandbox),
            totals=totals,
            context=context,
            sums=sums,
        )
    )


def budget_sums(run: Run, window: Window, known: BudgetSums | None = None) -> BudgetSums:
    """The credits of every budget period `window` overlaps — of all the period's stored
    actions, not only the window's (SPEC §5) — and per day those of the period of `now`.
    `known`: those a reused basis kept (the stored actions are the same since); only what
    they lack is summed."""
    known = known or BudgetSums({}, {})
    store = run.store
    credits = {
        period: (
            known.credits[period]
            if period in known.credits
            else store.credits_between(*budget_mod.period_bounds(period))
        )
        for period in budget_mod.periods_overlapping(*window)
    }
    current = budget_mod.period_of(run.now)
    daily = known.daily.get(current)
    if daily is None:
        daily = store.action_credits_by_day(*budget_mod.period_bounds(current))
    return BudgetSums(credits, {current: daily})


def decide(
    run: Run,
    window: Window,
    findings: Sequence[Finding],
    totals: Mapping[str, Any],
    changes: FindingChanges,
    sums: BudgetSums,
) -> Decisions:
    """Gather what the budget rules read from the store (`sums`: `budget_sums` of the
    window), and let the engine decide."""
    cfg, store = run.cfg, run.store
    usage = {
        period: BudgetUsage(sums.credits[period], store.enqueued_thresholds(period))
        for period in budget_mod.periods_overlapping(*window)
    }
    first, last = spike_days(window, cfg.budget.spike_trailing_days)
    new_ids = set(changes.new_ids) | set(changes.reopened_ids)
    return decide_alerts(
        window=window,
        now=run.now,
        budget=cfg.budget,
        pricing=cfg.pricing,
        usage_by_period=usage,
        current_daily_credits=sums.daily[budget_mod.period_of(run.now)],
        spike_rows=store.awu_by_day_agent_action(first, last),
        new_findings=[f for f in findings if f.id in new_ids],
        resolved=len(changes.resolved_ids),
        totals=totals,
        top_lines=top_waste_lines(findings),
    )


def fail_on_reason(cfg: Config, findings: Sequence[Finding]) -> str | None:
    """Why `[run] fail_on` tripped — how many findings of which kinds are at or above it —
    or None when it did not (or is off)."""
    if cfg.run.fail_on == "off":
        return None
    tripped = Counter(f.kind for f in findings if severity_at_least(f.severity, cfg.run.fail_on))
    if not tripped:
        return None
    ranked = sorted(tripped.items(), key=lambda kv: (-kv[1], kv[0]))
    kinds = ", ".join(f"{n} {kind}" for kind, n in ranked)
    total = sum(tripped.values())
    noun = "finding" if total == 1 else "findings"
    return f"{total} {noun} at or above run.fail_on = {cfg.run.fail_on!r}: {kinds}"


def finish(
    run: Run,
    window: Window,
    counts: tuple[int, int],
    output: dict[str, Any],
    client: SalesforceClient,
) -> None:
    """The run is ok, with its window, counts (actions, open findings) and summary — in
    one transaction, so a run marked ok always has its summary."""
    with run.store.transaction():
        run.store.set_run_window(run.run_id, *window)
        run.store.finish_run(
            run.run_id,
            outcome="ok",
            ended_at=format_iso_ms(datetime.now(timezone.utc)),
            org_id=run.org.org_id,
            is_sandbox=int(run.org.is_sandbox),
            records=output["sync"]["records"],
            elf_files_downloaded=output["sync"]["elf_files_downloaded"],
            elf_files_skipped=output["sync"]["elf_files_skipped"],
            actions=counts[0],
            findings_open=counts[1],
            alerts_sent=len(output["budget"]["alerts_sent"]),
            api_calls=client.api_calls,
        )
        run.store.set_run_summary(run.run_id, output)


def discount(cfg: Config, sandbox: bool) -> float:
    return (1.0 - cfg.pricing.sandbox_discount) if sandbox else 1.0


def budget_json(cfg: Config, decisions: Decisions) -> dict[str, Any]:
    status, fc = decisions.status, decisions.forecast
    depletion = None
    if fc is not None and decisions.period == decisions.current_period and fc.depletion_date:
        depletion = fc.depletion_date.isoformat()
    return {
        "period": decisions.period,
        "credits": json_number(cfg.budget.credits),
        "used_credits": round(status.used_credits, 6),
        "used_pct": round(status.used_pct, 6),
        "thresholds_crossed": status.thresholds_crossed,
        "depletion_date": depletion,
    }


def forecast_json(decisions: Decisions) -> dict[str, Any] | None:
    return decisions.forecast.as_json() if decisions.forecast is not None else None
