"""A quiet re-run: the stored results answer the window unchanged (`audit.reuse` decides),
so the run takes them, decides budgets and alerts anew for its `now`, and finishes.

Of the window's open findings it reads only the few costliest (what the summary and the
digest quote) and their number — every one only when `[run] fail_on` must count them."""

from __future__ import annotations

from datetime import datetime

from audit import alerts
from audit.engine.model import format_iso_ms
from audit.engine.rules import Finding
from audit.engine.window import top_findings
from audit.families import Family
from audit.report.settings import settings_json
from audit.reuse import Reuse
from audit.rounding import round_to_meaning
from audit.steps import (
    Run,
    RunResult,
    budget_json,
    budget_sums,
    decide,
    deliver,
    fail_on_reason,
    finish,
    forecast_json,
    record_basis,
)
from audit.store import FindingChanges
from connector.client import SalesforceClient

__all__ = ["reuse_primary"]

Window = tuple[datetime, datetime]


def reuse_primary(
    run: Run, family: Family, window: Window, found: Reuse, client: SalesforceClient
) -> RunResult:
    """The stored run's results for `window`, with this run's budget, alerts and sync."""
    cfg, store = run.cfg, run.store
    findings, open_count, fail_on = _stored_findings(run, window)
    channels, channel_errors = alerts.channels_from_config(cfg)
    with store.transaction():
        store.see_findings(run.run_id, *window)
        sums = budget_sums(run, window, found.sums)
        record_basis(run, window, found.totals, found.context, sums)
        no_changes = FindingChanges([], [], [])
        decisions = decide(run, window, findings, found.totals, no_changes, sums)
        names = sorted(set(channels) | set(channel_errors))
        alerts.enqueue(store, decisions.alerts, names, run.run_id, run.now)
    alerts_sent, alerts_failed = deliver(run, channels, channel_errors)
    what_if = found.what_if(cfg, window)
    kept = {k: v for k, v in found.summary.items() if k not in ("analysis", "sources", "vendor")}
    output = round_to_meaning(
        {
            **kept,
            "run_id": run.run_id,
            "org_id": run.org.org_id,
            "window": {"start": format_iso_ms(window[0]), "end": format_iso_ms(window[1])},
            "budget": {
                **budget_json(cfg, decisions),
                "alerts_sent": alerts_sent,
                "alerts_failed": alerts_failed,
            },
            "pricing": what_if.as_json(),
            "sync": family.source.sync_counts(),
            **family.extra_output_reused(found.summary),
        }
    )
    analysis_json = {
        **found.summary["analysis"],
        "pricing": what_if.as_dict(),
        "settings": settings_json(cfg),
        "forecast": forecast_json(decisions),
    }
    counts = (int(output["totals"]["actions"]), open_count)
    finish(run, window, counts, {**output, "analysis": analysis_json}, client)
    return RunResult(
        output=output,
        exit_code=1 if fail_on else 0,
        top_findings=top_findings(findings),
        notes=list(family.source.notes),
        fail_on_reason=fail_on,
        reused=(
            f"0 days recomputed: nothing changed since run {found.run_id[:8]} (same window "
            "start, no new source row, same settings); its results stand "
            "(`audit run --full` recomputes)"
        ),
    )


#: how many of the costliest findings a quiet re-run reads: `top_findings`' five (the
#: digest's `top_waste_lines` quotes the first three of the same order)
_TOP = 5


def _stored_findings(run: Run, window: Window) -> tuple[list[Finding], int, str | None]:
    """The window's costliest open findings (costliest first), how many are open, and why
    `[run] fail_on` tripped (None: it did not, or it is off)."""
    if run.cfg.run.fail_on != "off":
        every = run.store.findings_of_window(window)
        return top_findings(every, _TOP), len(every), fail_on_reason(run.cfg, every)
    top, count = run.store.costliest_findings_of_window(window, _TOP)
    return top, count, None
