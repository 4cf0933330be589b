"""One audit run, end to end: sources → store → engine → store → alerts. `audit run`, the
scheduler's nightly job and the demo all call `run_audit`."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any

from audit import alerts, crashpoints
from audit.config import Config
from audit.engine import budget as budget_mod
from audit.engine.decisions import (
    BudgetUsage,
    Decisions,
    decide_alerts,
    spike_days,
    top_waste_lines,
)
from audit.engine.model import format_iso_ms, json_number, parse_sf_datetime
from audit.engine.rules import Finding, severity_at_least
from audit.engine.window import WindowAudit, run_block, top_findings
from audit.errors import AuditError, ConfigError
from audit.families import Family, open_families
from audit.hints import empty_window_hint
from audit.report.settings import settings_json
from audit.rounding import round_to_meaning
from audit.store import FindingChanges, Store
from connector.client import SalesforceClient
from connector.errors import ConnectorError
from connector.org import OrgInfo, read_org
from connector.source import day_floor
from connector.vendor import read_vendor_view

__all__ = ["RunResult", "fail_on_reason", "parse_when", "run_audit"]

Progress = Callable[[str, int, "int | None"], None]
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

    def summary_line(self) -> str:
        t = self.output["totals"]
        found = sum(v["count"] for v in self.output["findings"].values())
        return (
            f"run {self.output['run_id'][:8]} ok: {t['actions']} actions, {t['awu']:g} AWU, "
            f"${t['cost_usd']:,.2f}; {found} findings; "
            f"{len(self.output['budget']['alerts_sent'])} alerts sent"
            + (
                f", {len(failed)} failed"
                if (failed := self.output["budget"].get("alerts_failed"))
                else ""
            )
        )


@dataclass(frozen=True)
class _Run:
    """What every step of one run shares."""

    cfg: Config
    store: Store
    org: OrgInfo
    run_id: str
    now: datetime


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
    """Sync, audit and alert once. Raises AuditError or ConnectorError with one-line
    messages. Everything that can fail before the sync (config, key, token, field mapping,
    Data 360 objects) fails before the store is opened: a failed start writes nothing."""
    now = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    requested = _requested_window(since, until, now)
    progress = progress or (lambda stage, done, total: None)
    run_id = uuid.uuid4().hex
    with SalesforceClient(cfg.connector) as client, ExitStack() as closing:
        progress("connecting", 0, None)
        client.connect()
        org = read_org(client)
        families = open_families(cfg, client, closing, run_id=run_id, now=now, progress=progress)
        for family in families:
            family.source.check()
        with Store.open(cfg.store.path) as store, store.lock(wait_s=lock_wait_s):
            run = _Run(cfg, store, org, run_id, now)
            store.start_run(
                run_id,
                started_at=format_iso_ms(now),
                window_start=format_iso_ms(since) if since else None,
                window_end=format_iso_ms(until) if until else None,
                trigger=trigger,
            )
            try:
                return _sync_and_audit(run, families, requested, client)
            except BaseException as exc:
                outcome = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
                known = isinstance(exc, (AuditError, ConnectorError))
                message = str(exc) if known else type(exc).__name__
                store.finish_run(run_id, outcome=outcome, error=message, api_calls=client.api_calls)
                raise


def _requested_window(
    since: datetime | None, until: datetime | None, now: datetime
) -> Window | None:
    if until is not None and since is None:
        raise ConfigError("--until needs --since")
    if since is None:
        return None
    until = until or now
    if since >= until:
        raise ConfigError("--since must be before --until")
    return since, until


def _sync_and_audit(
    run: _Run, families: list[Family], requested: Window | None, client: SalesforceClient
) -> RunResult:
    sink = crashpoints.checkpointed(run.store)
    for family in families:
        family.source.sync(sink, requested)
    crashpoints.reached("synced")
    primary, *others = families
    window = requested
    if window is None:
        default = day_floor(run.now - timedelta(days=run.cfg.sync.initial_days))
        window = (primary.source.audit_start(run.store, default), run.now)
    result = _audit_primary(run, primary, window, client)
    if result.output["totals"]["actions"] == 0:
        result.hint = empty_window_hint(run.store, run.cfg, client, window)
    if others:
        _add_side_by_side(run, result, primary, others, window)
    if any(f.reads_vendor_view for f in families):
        _add_vendor_view(run, client, result)
    return result


# -- the primary family: stored, budgeted, alerted on ------------------------------------------
def _audit_primary(
    run: _Run, family: Family, window: Window, client: SalesforceClient
) -> RunResult:
    cfg, store = run.cfg, run.store
    family.prepare(store, window)
    channels, channel_errors = alerts.channels_from_config(cfg)
    audit, decisions = _commit_decisions(
        run, family, window, sorted(set(channels) | set(channel_errors))
    )
    crashpoints.reached("queued")
    alerts_failed: list[dict[str, Any]] = []
    alerts_sent = alerts.deliver_pending(
        store,
        channels,
        run.run_id,
        run.now,
        channel_errors=channel_errors,
        checkpoint=crashpoints.reached,
        failed=alerts_failed,
    )
    output = round_to_meaning(
        run_block(
            audit,
            run_id=run.run_id,
            org_id=run.org.org_id,
            budget={
                **_budget_json(cfg, decisions),
                "alerts_sent": alerts_sent,
                "alerts_failed": alerts_failed,
            },
            sync=family.source.sync_counts(),
            bad_files=family.bad_files(store, window),
            extra=family.extra_output(audit),
        )
    )
    fail_on = fail_on_reason(cfg, audit.findings)
    analysis_json = {**_analysis(run, audit), "forecast": _forecast_json(decisions)}
    _finish(run, audit, {**output, "analysis": analysis_json}, client)
    return RunResult(
        output=output,
        exit_code=1 if fail_on else 0,
        top_findings=list(top_findings(audit)),
        notes=list(family.source.notes),
        fail_on_reason=fail_on,
    )


def _commit_decisions(
    run: _Run, family: Family, window: Window, channel_names: list[str]
) -> tuple[WindowAudit, Decisions]:
    """Everything this run decides — the window's actions and daily usage (written by the
    family's audit as it goes), its findings (new, reopened, resolved), and the alerts
    that announce them, budget crossings included — in ONE transaction. Killed before the
    COMMIT, the run leaves none of it and the re-run decides it all again (the night's
    DIGEST included); killed after, the re-run finds the alerts queued and delivers them.
    Alerts are queued even with no channel configured: a threshold fires once per period,
    not again the day a webhook is added."""
    store, sandbox = run.store, run.org.is_sandbox
    start, end = window
    with store.transaction():
        audit = family.audit(
            store, window, sandbox=sandbox, cost_factor=_discount(run.cfg, sandbox)
        )
        crashpoints.reached("actions")
        changes = store.sync_findings(
            run.run_id, audit.findings, window_start=start, window_end=end
        )
        crashpoints.reached("findings")
        decisions = _decide(run, audit, changes)
        alerts.enqueue(store, decisions.alerts, channel_names, run.run_id, run.now)
    return audit, decisions


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


def _finish(
    run: _Run, audit: WindowAudit, output: dict[str, Any], client: SalesforceClient
) -> None:
    """The run is ok, with its window, counts and summary — in one transaction, so a run
    marked ok always has its summary."""
    start, end = audit.window
    with run.store.transaction():
        run.store.set_run_window(run.run_id, start, end)
        _finish_ok(run, audit, output, client)
        run.store.set_run_summary(run.run_id, output)


def _finish_ok(
    run: _Run, audit: WindowAudit, output: dict[str, Any], client: SalesforceClient
) -> None:
    run.store.finish_run(
        run.run_id,
        outcome="ok",
        ended_at=format_iso_ms(datetime.now(timezone.utc)),
        org_id=run.org.org_id,
        is_sandbox=int(audit.sandbox),
        records=output["sync"]["records"],
        elf_files_downloaded=output["sync"]["elf_files_downloaded"],
        elf_files_skipped=output["sync"]["elf_files_skipped"],
        actions=audit.actions,
        findings_open=len(audit.findings),
        alerts_sent=len(output["budget"]["alerts_sent"]),
        api_calls=client.api_calls,
    )


def _discount(cfg: Config, sandbox: bool) -> float:
    return (1.0 - cfg.pricing.sandbox_discount) if sandbox else 1.0


def _decide(run: _Run, audit: WindowAudit, changes: FindingChanges) -> Decisions:
    """Gather what the budget rules read from the store, and let the engine decide."""
    cfg, store = run.cfg, run.store
    usage = {}
    for period in budget_mod.periods_overlapping(*audit.window):
        p_start, p_end = budget_mod.period_bounds(period)
        usage[period] = BudgetUsage(
            store.credits_between(p_start, p_end), store.enqueued_thresholds(period)
        )
    c_start, c_end = budget_mod.period_bounds(budget_mod.period_of(run.now))
    first, last = spike_days(audit.window, cfg.budget.spike_trailing_days)
    new_ids = set(changes.new_ids) | set(changes.reopened_ids)
    return decide_alerts(
        window=audit.window,
        now=run.now,
        budget=cfg.budget,
        pricing=cfg.pricing,
        usage_by_period=usage,
        current_daily_credits=store.action_credits_by_day(c_start, c_end),
        spike_rows=store.awu_by_day_agent_action(first, last),
        new_findings=[f for f in audit.findings if f.id in new_ids],
        resolved=len(changes.resolved_ids),
        totals=audit.totals,
        top_lines=top_waste_lines(audit.findings),
    )


def _budget_json(cfg: Config, decisions: Decisions) -> dict[str, Any]:
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


def _forecast_json(decisions: Decisions) -> dict[str, Any] | None:
    return decisions.forecast.as_json() if decisions.forecast is not None else None


def _analysis(run: _Run, audit: WindowAudit) -> dict[str, Any]:
    """What the report shows beyond §7: where the waste is, reconciliation, efficiency,
    outcomes (folded with the window's audit). Kept with the run so `audit report` needs no
    recomputation."""
    return {
        **audit.analysis,
        "pricing": audit.what_if.as_dict(),
        "bad_records": audit.bad_records,
        "settings": settings_json(run.cfg),  # what `audit report --db` reads the run with
    }


# -- other families, and the vendor's own view -------------------------------------------------
def _add_side_by_side(
    run: _Run, result: RunResult, primary: Family, others: list[Family], window: Window
) -> None:
    """No key joins two families, so each other one is audited on its own and shown beside
    the primary (which stays the top-level block and the one stored, budgeted and alerted
    on). `sources` holds one §7 block per family."""
    blocks = {primary.source.family: {k: v for k, v in result.output.items() if k != "sources"}}
    sandbox = run.org.is_sandbox
    for family in others:
        audit = family.audit(run.store, window, sandbox=sandbox, cost_factor=None)
        period = budget_mod.periods_overlapping(*window)[-1]
        used = family.audit(
            run.store, budget_mod.period_bounds(period), sandbox=sandbox, cost_factor=None
        ).credits
        status = budget_mod.evaluate_budget(period, used, run.cfg.budget, ())
        blocks[family.source.family] = round_to_meaning(
            run_block(
                audit,
                run_id=run.run_id,
                org_id=run.org.org_id,
                budget={**status.as_json(), "depletion_date": None, "alerts_sent": []},
                sync=family.source.sync_counts(),
                extra=family.extra_output(audit),
            )
        )
    result.output["sources"] = blocks
    run.store.merge_run_summary(run.run_id, sources=blocks)


def _add_vendor_view(run: _Run, client: SalesforceClient, result: RunResult) -> None:
    """Salesforce's own consumed/entitled units (Digital Wallet) beside our recomputed
    credits of the budget period, and the difference — where the org has them. Optional:
    the audit is done and recorded by now, so a failure here is a note, never a failed run."""
    try:
        vendor = read_vendor_view(
            client, run.cfg.salesforce.api_version, sandbox=run.org.is_sandbox
        )
    except ConnectorError as exc:
        result.notes.append(f"Digital Wallet figures not read this run: {exc}")
        return
    if vendor is None:
        return
    ours = result.output["budget"]["used_credits"]
    consumed = vendor["units_consumed"]
    vendor["recomputed_credits"] = ours
    vendor["difference"] = None if consumed is None else round(consumed - ours, 6)
    result.output["vendor"] = vendor
    run.store.merge_run_summary(run.run_id, vendor=vendor)
