"""One audit run, end to end: sources → store → engine → store → alerts. `audit run`, the
scheduler's nightly job and the demo all call `run_audit`."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from contextlib import ExitStack
from datetime import date, datetime, timedelta, timezone
from typing import Any

from audit import alerts, crashpoints, rerun, reuse
from audit.config import Config
from audit.engine import budget as budget_mod
from audit.engine.decisions import Decisions
from audit.engine.model import days_of, format_iso_ms, parse_sf_datetime
from audit.engine.window import WindowAudit, run_block, top_findings
from audit.errors import AuditError, ConfigError
from audit.families import Family, open_families
from audit.hints import empty_window_hint
from audit.report.settings import settings_json
from audit.rounding import round_to_meaning
from audit.steps import (
    Run,
    RunResult,
    budget_json,
    budget_sums,
    decide,
    deliver,
    discount,
    fail_on_reason,
    finish,
    forecast_json,
    record_basis,
)
from audit.store import Store
from connector.client import SalesforceClient
from connector.errors import ConnectorError
from connector.org import read_org
from connector.source import day_floor
from connector.vendor import read_vendor_view

__all__ = ["RunResult", "fail_on_reason", "parse_when", "run_audit"]

Progress = Callable[[str, int, "int | None"], None]
Window = tuple[datetime, datetime]


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
    full: bool = False,
) -> RunResult:
    """Sync, audit and alert once. Raises AuditError or ConnectorError with one-line
    messages. Everything that can fail before the sync (config, key, token, field mapping,
    Data 360 objects) fails before the store is opened: a failed start writes nothing.
    `full`: recompute the window even when the stored results could be reused."""
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
            run = Run(cfg, store, org, run_id, now, full)
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
    run: Run, families: list[Family], requested: Window | None, client: SalesforceClient
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
    primary.prepare(run.store, window)
    reused = (
        None if run.full else reuse.reusable(run.store, run.cfg, window, sandbox=run.org.is_sandbox)
    )
    if reused is not None:
        result = rerun.reuse_primary(run, primary, window, reused, client)
    else:
        result = _audit_primary(run, primary, window, client)
    if result.output["totals"]["actions"] == 0:
        result.hint = empty_window_hint(run.store, run.cfg, client, window)
    if others:
        _add_side_by_side(run, result, primary, others, window)
    if any(f.reads_vendor_view for f in families):
        _add_vendor_view(run, client, result)
    return result


# -- the primary family: stored, budgeted, alerted on ------------------------------------------
def _audit_primary(run: Run, family: Family, window: Window, client: SalesforceClient) -> RunResult:
    cfg = run.cfg
    channels, channel_errors = alerts.channels_from_config(cfg)
    sandbox = run.org.is_sandbox
    days = None if run.full else family.days_to_recompute(run.store, window, sandbox=sandbox)
    audit, decisions = _commit_decisions(
        run, family, window, days, sorted(set(channels) | set(channel_errors))
    )
    alerts_sent, alerts_failed = deliver(run, channels, channel_errors)
    output = round_to_meaning(
        run_block(
            audit,
            run_id=run.run_id,
            org_id=run.org.org_id,
            budget={
                **budget_json(cfg, decisions),
                "alerts_sent": alerts_sent,
                "alerts_failed": alerts_failed,
            },
            sync=family.source.sync_counts(),
            bad_files=family.bad_files(run.store, window),
            extra=family.extra_output(audit),
        )
    )
    fail_on = fail_on_reason(cfg, audit.findings)
    analysis_json = {**_analysis(run, audit), "forecast": forecast_json(decisions)}
    counts = (audit.actions, len(audit.findings))
    finish(run, window, counts, {**output, "analysis": analysis_json}, client)
    return RunResult(
        output=output,
        exit_code=1 if fail_on else 0,
        top_findings=top_findings(audit.findings),
        notes=list(family.source.notes),
        fail_on_reason=fail_on,
        recomputed=_partly(days, window),
    )


def _partly(days: list[str] | None, window: Window) -> str | None:
    """What a run that recomputed only some days says (None when it did them all)."""
    every = len(days_of(window))
    if days is None or len(days) >= every:
        return None
    return f"recomputed {len(days)} of {every} days (the others unchanged since the last run)"


def _commit_decisions(
    run: Run,
    family: Family,
    window: Window,
    days: list[str] | None,
    channel_names: list[str],
) -> tuple[WindowAudit, Decisions]:
    """Everything this run decides — the window's actions and daily usage (written by the
    family's audit as it goes), its findings (new, reopened, resolved), and the alerts
    that announce them, budget crossings included — in ONE transaction, with what they were
    computed from. Killed before the COMMIT, the run leaves none of it and the re-run
    decides it all again (the night's DIGEST included); killed after, the re-run finds the
    alerts queued and delivers them. Alerts are queued even with no channel configured: a
    threshold fires once per period, not again the day a webhook is added. `days`: the
    days whose actions are reconciled anew (None: all of the window's)."""
    store, sandbox = run.store, run.org.is_sandbox
    with store.transaction():
        audit = family.audit(
            store, window, sandbox=sandbox, cost_factor=discount(run.cfg, sandbox), days=days
        )
        crashpoints.reached("actions")
        changes = store.sync_findings(
            run.run_id, audit.findings, window_start=window[0], window_end=window[1]
        )
        crashpoints.reached("findings")
        sums = budget_sums(run, window)
        record_basis(run, window, audit.totals, family.context(store, window), sums)
        decisions = decide(run, window, audit.findings, audit.totals, changes, sums)
        alerts.enqueue(store, decisions.alerts, channel_names, run.run_id, run.now)
    return audit, decisions


def _analysis(run: Run, audit: WindowAudit) -> dict[str, Any]:
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
    run: Run, result: RunResult, primary: Family, others: list[Family], window: Window
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


def _add_vendor_view(run: Run, client: SalesforceClient, result: RunResult) -> None:
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
