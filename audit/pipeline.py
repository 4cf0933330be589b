"""One audit run, end to end: sync → reconcile → recompute → findings → store → budgets
and alerts. `audit run` and the scheduler's nightly job both call `run_audit`."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any

from audit import alerts as alerts_mod
from audit.config import Config
from audit.engine import budget as budget_mod
from audit.engine.model import Action, format_iso_ms, parse_sf_datetime
from audit.engine.pricing import price_window
from audit.engine.sources.core import reconcile
from audit.engine.rules import (
    AuditResult,
    compute_totals,
    evaluate,
    finding_totals,
    retrieval_by_name,
    severity_at_least,
)
from audit.errors import AuditError, ConfigError
from audit.store import Store

__all__ = ["RunResult", "run_audit", "parse_when"]

Progress = Callable[[str, int, "int | None"], None]


@dataclass
class RunResult:
    output: dict[str, Any]  # the §7 JSON object
    exit_code: int
    top_findings: list[Any] = field(default_factory=list)
    pricing_detail: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def summary_line(self) -> str:
        t = self.output["totals"]
        f = self.output["findings"]
        wasted = sum(v["count"] for v in f.values())
        return (
            f"run {self.output['run_id'][:8]} ok: {t['actions']} actions, {t['awu']:g} AWU, "
            f"${t['cost_usd']:,.2f}; {wasted} findings; "
            f"{len(self.output['budget']['alerts_sent'])} alerts sent"
        )


def parse_when(value: str, name: str) -> datetime:
    """`--since/--until`: an ISO date (00:00:00Z that day) or an ISO datetime (UTC if naive)."""
    text = value.strip()
    try:
        if len(text) == 10:
            d = date.fromisoformat(text)
            return datetime(d.year, d.month, d.day, tzinfo=timezone.utc)
        return parse_sf_datetime(text)
    except ValueError:
        raise ConfigError(f"{name} must be an ISO date or datetime, got {value!r}") from None


def run_audit(
    cfg: Config,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    now: datetime | None = None,
    trigger: str = "run",
    progress: Progress | None = None,
    lock_wait_s: float = 0.0,
) -> RunResult:
    """Sync, audit and alert once. Raises AuditError subclasses with one-line messages."""
    # imported here so that `audit --help` stays fast and connector errors stay inside
    from connector.client import SalesforceClient
    from connector.sync import Syncer

    now = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    if until is not None and since is None:
        raise ConfigError("--until needs --since")
    if since is not None and until is None:
        until = now
    if since is not None and until is not None and since >= until:
        raise ConfigError("--since must be before --until")
    progress = progress or (lambda stage, done, total: None)
    kinds = set(cfg.source.kinds)
    # Data 360 is a source of its own (SPEC §11): with AgentWorkItem/ELF configured too, the
    # two are audited side by side, never merged
    core_kinds = kinds - {"data360"}

    # Everything that can fail before the sync (config, key, token, field mapping, Data 360
    # objects) fails before the store is opened: a failed start writes nothing.
    with SalesforceClient(cfg) as client, ExitStack() as closing:
        progress("connecting", 0, None)
        client.connect()
        run_id = uuid.uuid4().hex
        syncer = Syncer(client, None, cfg, run_id=run_id, sync_start=now, progress=progress)
        org = syncer.org_info()
        if "agentworkitem" in kinds:
            syncer.awi_fields()
        d360 = None
        if "data360" in kinds:
            from connector.data360 import Data360Client, Data360Syncer

            d360_client = closing.enter_context(Data360Client(cfg))
            d360 = Data360Syncer(
                d360_client, None, cfg, run_id=run_id, sync_start=now, progress=progress
            )
            d360.discover()

        with Store.open(cfg.store.path) as store, store.lock(wait_s=lock_wait_s):
            syncer.store = store
            if d360 is not None:
                d360.store = store
            window = (since, until) if since is not None and until is not None else None
            store.start_run(
                run_id,
                started_at=format_iso_ms(now),
                window_start=format_iso_ms(since) if since else None,
                window_end=format_iso_ms(until) if until else None,
                trigger=trigger,
            )
            try:
                if "agentworkitem" in kinds:
                    syncer.sync_awi(window)
                if "eventlogfile" in kinds:
                    syncer.sync_elf(window)
                if d360 is not None:
                    d360.sync(window)
                if window is None:
                    start = _day_floor(now - timedelta(days=cfg.sync.initial_days))
                    if core_kinds:
                        window = (syncer.audit_start(start), now)
                    else:
                        window = (d360.audit_start(start), now)  # type: ignore[union-attr]
                if not core_kinds:
                    result = _audit_window(
                        cfg, store, syncer, org, run_id, window, now, kinds, client, d360=d360
                    )
                else:
                    result = _audit_window(
                        cfg, store, syncer, org, run_id, window, now, core_kinds, client
                    )
                    if d360 is not None:
                        _add_side_by_side(cfg, store, d360, org, run_id, window, now, result)
                if d360 is not None:
                    _add_vendor_view(cfg, client, store, org, run_id, result)
            except BaseException as exc:
                outcome = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
                message = str(exc) if isinstance(exc, AuditError) else type(exc).__name__
                store.finish_run(run_id, outcome=outcome, error=message, api_calls=client.api_calls)
                raise
    return result


def _audit_window(
    cfg: Config,
    store: Store,
    syncer: Any,
    org: Any,
    run_id: str,
    window: tuple[datetime, datetime],
    now: datetime,
    kinds: set[str],
    client: Any,
    *,
    d360: Any = None,
) -> RunResult:
    start, end = window
    sandbox = org.is_sandbox
    if d360 is None:
        actions = _load_actions(store, window, kinds)
        syncer.sync_cases(a.case_id for a in actions if a.case_id)
        result = evaluate(
            actions,
            cfg.rules,
            cfg.pricing,
            sandbox=sandbox,
            multi_source={"agentworkitem", "eventlogfile"} <= kinds,
        )
    else:
        actions, result = _evaluate_data360(cfg, store, window, sandbox)
    totals = compute_totals(actions, result.costs, sandbox=sandbox, pricing=cfg.pricing)
    what_if = price_window(
        actions, result.costs, cfg.pricing, window_start=start, window_end=end, sandbox=sandbox
    )

    with store.transaction():
        store.replace_actions(window, _action_rows(actions, result, sandbox, cfg))
        changes = store.sync_findings(
            run_id,
            result.findings,
            window_start=format_iso_ms(start),
            window_end=format_iso_ms(end),
        )
        days = _days_between(start, end)
        store.replace_daily_usage(days, store.usage_of_days(days))

    budget_json, alerts_sent, forecast_json = _budgets_and_alerts(
        cfg, store, run_id, window, now, result, changes, totals
    )

    bad_files = store.bad_log_files(_day_floor(start), end)
    output = {
        "run_id": run_id,
        "org_id": org.org_id,
        "is_sandbox": sandbox,
        "window": {"start": format_iso_ms(start), "end": format_iso_ms(end)},
        "totals": totals,
        "findings": finding_totals(result.findings),
        "budget": {**budget_json, "alerts_sent": alerts_sent},
        "pricing": what_if.as_json(),
        "sync": {
            "records": syncer.report.records,
            "elf_files_downloaded": syncer.report.elf_files_downloaded,
            "elf_files_skipped": syncer.report.elf_files_skipped,
        },
        "data_quality": {"bad_records": len(result.bad_records) + int(bad_files)},
    }
    if d360 is not None:
        _data360_output(output, d360, actions)
    exit_code = 0
    if cfg.run.fail_on != "off" and any(
        severity_at_least(f.severity, cfg.run.fail_on) for f in result.findings
    ):
        exit_code = 1
    store.set_run_window(run_id, start, end)
    store.finish_run(
        run_id,
        outcome="ok",
        ended_at=format_iso_ms(datetime.now(timezone.utc)),
        org_id=org.org_id,
        is_sandbox=int(sandbox),
        records=output["sync"]["records"],
        elf_files_downloaded=syncer.report.elf_files_downloaded,
        elf_files_skipped=syncer.report.elf_files_skipped,
        actions=len(actions),
        findings_open=len(result.findings),
        alerts_sent=len(alerts_sent),
        api_calls=client.api_calls,
        summary=json.dumps(output, sort_keys=True),
    )
    top = sorted(result.findings, key=lambda f: (-f.wasted_usd, f.kind, f.key))[:5]
    store.set_run_summary(
        run_id,
        {
            **output,
            "analysis": {
                **_analysis(cfg, store, actions, result, window, sandbox, what_if),
                "forecast": forecast_json,
            },
        },
    )
    return RunResult(
        output=output,
        exit_code=exit_code,
        top_findings=top,
        pricing_detail=what_if.as_dict(),
        notes=syncer.report.notes,
    )


def _analysis(
    cfg: Config,
    store: Store,
    actions: list[Action],
    result: AuditResult,
    window: tuple[datetime, datetime],
    sandbox: bool,
    what_if: Any,
) -> dict[str, Any]:
    """What the report shows beyond §7: where the waste is, reconciliation, efficiency,
    outcomes. Kept with the run so `audit report` needs no recomputation."""
    from audit.engine import analysis

    cases = store.cases(a.case_id for a in actions if a.case_id)
    start, end = window
    costs = result.costs
    return {
        "waste_by_action": analysis.waste_by(result.findings, actions, costs, by="action_name")[
            :15
        ],
        "waste_by_agent": analysis.waste_by(result.findings, actions, costs, by="agent"),
        "reconcile_by_agent": analysis.reconcile(
            actions, costs, cfg.pricing, by="agent", sandbox=sandbox
        ),
        "reconcile_by_day": analysis.reconcile(
            actions, costs, cfg.pricing, by="day", sandbox=sandbox
        ),
        "efficiency_by_agent": analysis.efficiency_by_agent(actions, costs),
        "case_outcomes": analysis.case_outcomes(
            actions,
            costs,
            cases,
            window_start=start,
            window_end=end,
            pricing=cfg.pricing,
            sandbox=sandbox,
        ).as_json(),
        "pricing": what_if.as_dict(),
        "bad_records": result.bad_records[:50],
    }


# -- Data 360 (SPEC §11) ----------------------------------------------------------------------
def _evaluate_data360(
    cfg: Config, store: Store, window: tuple[datetime, datetime], sandbox: bool
) -> tuple[list[Action], AuditResult]:
    """The window's Data 360 actions and their audit: one source (no SOURCE_GAP), retrieval
    decided by `[rules] retrieval_actions` (Data 360 has no action type)."""
    from connector.data360 import load_actions

    actions = load_actions(store, window, voice_multiplier=cfg.pricing.voice_multiplier)
    result = evaluate(
        actions,
        cfg.rules,
        cfg.pricing,
        sandbox=sandbox,
        multi_source=False,
        is_retrieval=retrieval_by_name(cfg.rules.retrieval_actions),
    )
    return actions, result


def _data360_output(output: dict[str, Any], d360: Any, actions: list[Action]) -> None:
    """What this source adds to a §7 block: the audit's own cost in Data 360 (queries and
    rows read) and the unmetered calls (billable-but-unmetered ones are reported)."""
    from connector.data360 import unmetered_counts

    client = d360.client
    output["sync"]["records"] = d360.report.records
    output["sync"].update(
        {
            "data360_queries": client.queries,
            "data360_batches": client.batches,
            "data360_rows": client.rows,
            "data360_exchanges": client.exchanges,
        }
    )
    output["data360"] = {"objects": d360.discover().as_json(), **unmetered_counts(actions)}


def _add_side_by_side(
    cfg: Config,
    store: Store,
    d360: Any,
    org: Any,
    run_id: str,
    window: tuple[datetime, datetime],
    now: datetime,
    result: RunResult,
) -> None:
    """Both source families configured: no key joins them, so Data 360 is audited on its
    own and shown beside the AgentWorkItem/ELF audit (which stays the top-level block and
    the one stored, budgeted and alerted on). `sources` holds one §7 block per family."""
    start, end = window
    sandbox = org.is_sandbox
    actions, audit = _evaluate_data360(cfg, store, window, sandbox)
    totals = compute_totals(actions, audit.costs, sandbox=sandbox, pricing=cfg.pricing)
    what_if = price_window(
        actions, audit.costs, cfg.pricing, window_start=start, window_end=end, sandbox=sandbox
    )
    period = budget_mod.periods_overlapping(start, end)[-1]
    p_start, p_end = budget_mod.period_bounds(period)
    p_actions, p_audit = _evaluate_data360(cfg, store, (p_start, p_end), sandbox)
    used = sum(p_audit.costs[a.id].credits for a in p_actions)
    status = budget_mod.evaluate_budget(period, used, cfg.budget, ())
    block: dict[str, Any] = {
        "run_id": run_id,
        "org_id": org.org_id,
        "is_sandbox": sandbox,
        "window": {"start": format_iso_ms(start), "end": format_iso_ms(end)},
        "totals": totals,
        "findings": finding_totals(audit.findings),
        "budget": {**status.as_json(), "depletion_date": None, "alerts_sent": []},
        "pricing": what_if.as_json(),
        "sync": {"records": 0, "elf_files_downloaded": 0, "elf_files_skipped": 0},
        "data_quality": {"bad_records": len(audit.bad_records)},
    }
    _data360_output(block, d360, actions)
    primary = {k: v for k, v in result.output.items() if k != "sources"}
    result.output["sources"] = {"agentworkitem+eventlogfile": primary, "data360": block}
    store.merge_run_summary(run_id, sources=result.output["sources"])


def _add_vendor_view(
    cfg: Config, client: Any, store: Store, org: Any, run_id: str, result: RunResult
) -> None:
    """Salesforce's own consumed/entitled units (Digital Wallet) beside our recomputed
    credits of the budget period, and the difference — where the org has them (SPEC §11)."""
    from connector.data360 import read_vendor_view

    vendor = read_vendor_view(client, cfg.salesforce.api_version, sandbox=org.is_sandbox)
    if vendor is None:
        return
    ours = result.output["budget"]["used_credits"]
    consumed = vendor["units_consumed"]
    vendor["recomputed_credits"] = ours
    vendor["difference"] = None if consumed is None else round(consumed - ours, 6)
    result.output["vendor"] = vendor
    store.merge_run_summary(run_id, vendor=vendor)


# -- loading and writing --------------------------------------------------------------------
def _load_actions(store: Store, window: tuple[datetime, datetime], kinds: set[str]) -> list[Action]:
    awi_rows, elf_rows = store.core_rows(window)
    return reconcile(
        awi_rows.values(),
        elf_rows,
        window=window,
        use_awi="agentworkitem" in kinds,
        use_elf="eventlogfile" in kinds,
    )


def _action_rows(
    actions: list[Action], result: AuditResult, sandbox: bool, cfg: Config
) -> list[dict[str, Any]]:
    rows = []
    discount = (1.0 - cfg.pricing.sandbox_discount) if sandbox else 1.0
    for a in actions:
        c = result.costs[a.id]
        rows.append(
            {
                "id": a.id,
                "session_id": a.session_id,
                "agent_id": a.agent_id,
                "agent_name": a.agent_name,
                "action_name": a.action_name,
                "action_type": a.action_type,
                "channel": a.channel,
                "status": a.status,
                "error_code": a.error_code,
                "tokens": a.tokens,
                "prompt_tokens": a.prompt_tokens,
                "completion_tokens": a.completion_tokens,
                "reported_awu": a.reported_awu,
                "elf_tokens": a.elf_tokens,
                "action_input": a.action_input,
                "user_id": a.user_id,
                "case_id": a.case_id,
                "started_at": format_iso_ms(a.started_at),
                "source": a.source,
                "billable": int(c.billable),
                "units": c.units,
                "multiplier": c.multiplier,
                "awu": c.awu,
                "excess_awu": c.excess_awu,
                "credits": c.credits,
                "cost_usd": c.cost_usd * discount,
                "fingerprint": result.fingerprints.get(a.id),
                "day": a.started_at.date().isoformat(),
            }
        )
    return rows


# -- budgets, forecasts, spikes, alerts -----------------------------------------------------
def _budgets_and_alerts(
    cfg: Config,
    store: Store,
    run_id: str,
    window: tuple[datetime, datetime],
    now: datetime,
    result: AuditResult,
    changes: Any,
    totals: dict[str, Any],
) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any] | None]:
    """Budget status of every period the window overlaps, the current period's forecast,
    spikes and the digest: decide, record in the outbox, deliver. Returns the §7 budget
    object, the alerts delivered by this run, and the forecast (for the report)."""
    start, end = window
    channels, channel_errors = alerts_mod.channels_from_config(cfg)
    names = sorted(set(channels) | set(channel_errors))
    to_enqueue: list[alerts_mod.Alert] = []

    top_lines = [
        f.explanation
        for f in sorted(result.findings, key=lambda f: (-f.wasted_usd, f.kind, f.key))[:3]
        if f.wasted_usd > 0
    ]
    periods = budget_mod.periods_overlapping(start, end)
    status = None
    for period in periods:
        p_start, p_end = budget_mod.period_bounds(period)
        used = store.credits_between(p_start, p_end)
        sent = alerts_mod.already_sent_thresholds(store, period)
        status = budget_mod.evaluate_budget(period, used, cfg.budget, sent)
        for threshold in status.new_thresholds:
            to_enqueue.append(
                alerts_mod.budget_threshold_alert(
                    period,
                    threshold,
                    used_credits=status.used_credits,
                    budget_credits=cfg.budget.credits,
                    top_findings=top_lines,
                )
            )

    current = budget_mod.period_of(now)
    p_start, p_end = budget_mod.period_bounds(current)
    daily = store.action_credits_by_day(p_start, p_end)
    fc = budget_mod.forecast(current, daily, cfg.budget, now)
    if fc is not None and fc.depletes_before_period_end:
        assert fc.depletion_date is not None
        to_enqueue.append(
            alerts_mod.forecast_alert(
                current,
                fc.depletion_date.isoformat(),
                used_credits=fc.used_credits,
                budget_credits=cfg.budget.credits,
                burn_per_day=fc.burn_per_day,
                top_findings=top_lines,
            )
        )

    spike_rows = store.awu_by_day_agent_action(
        (_day_floor(start) - timedelta(days=cfg.budget.spike_trailing_days)).date(),
        end.date() if end.time() == datetime.min.time() else end.date() + timedelta(days=1),
    )
    for spike in budget_mod.detect_spikes(
        spike_rows, factor=cfg.budget.spike_factor, trailing_days=cfg.budget.spike_trailing_days
    ):
        if (
            start.date()
            <= spike.day
            < (end + timedelta(microseconds=-1)).date() + timedelta(days=1)
        ):
            per_awu = cfg.pricing.credits_per_awu
            to_enqueue.append(
                alerts_mod.spike_alert(
                    spike.day.isoformat(),
                    credits=spike.awu * per_awu,
                    baseline_credits=spike.trailing_median * per_awu,
                    top_findings=(
                        f"Grew most: agent {spike.top_agent or 'unknown'} "
                        f"(+{spike.top_agent_growth_awu:,.1f} AWU), action {spike.top_action} "
                        f"(+{spike.top_action_growth_awu:,.1f} AWU).",
                    ),
                )
            )

    new_ids = set(changes.new_ids) | set(getattr(changes, "reopened_ids", ()))
    new_findings = [f for f in result.findings if f.id in new_ids]
    digest = alerts_mod.digest_alert(
        now.date().isoformat(),
        new_findings,
        totals=totals,
        resolved=len(getattr(changes, "resolved_ids", ())),
    )
    if digest is not None:
        to_enqueue.append(digest)

    # decisions are recorded even with no channel configured: a threshold fires once per
    # period, not again on the day someone adds a Slack webhook
    alerts_mod.enqueue(store, to_enqueue, names, run_id, now)
    sent_now = alerts_mod.deliver_pending(
        store, channels, run_id, now, channel_errors=channel_errors
    )

    assert status is not None
    last = periods[-1]
    depletion = None
    if fc is not None and last == current:
        depletion = fc.depletion_date.isoformat() if fc.depletion_date else None
    budget_json = {
        "period": last,
        "credits": _num(cfg.budget.credits),
        "used_credits": round(status.used_credits, 6),
        "used_pct": round(status.used_pct, 6),
        "thresholds_crossed": status.thresholds_crossed,
        "depletion_date": depletion,
    }
    return budget_json, sent_now, fc.as_json() if fc is not None else None


def _days_between(start: datetime, end: datetime) -> list[str]:
    days = []
    d = start.date()
    last = (end - timedelta(microseconds=1)).date()
    while d <= last:
        days.append(d.isoformat())
        d += timedelta(days=1)
    return days


def _day_floor(dt: datetime) -> datetime:
    return dt.astimezone(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)


def _num(value: float) -> float | int:
    return int(value) if float(value).is_integer() else value
