"""One window of one source family audited: every action's recomputed AWU, the findings,
the totals and the pricing comparison — and the §7 run-output block that shows them."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from audit.config import PricingConfig, RulesConfig
from audit.engine.fold import SourceQuality, WindowAudit, WindowFold
from audit.engine.model import Action, Case, format_iso_ms
from audit.engine.rules import Finding, finding_totals

__all__ = ["SourceQuality", "WindowAudit", "audit_window", "run_block", "top_findings"]

#: how many bad records `data_quality.examples` shows (the total is always there)
EXAMPLES = 10


def audit_window(
    actions: Sequence[Action],
    window: tuple[datetime, datetime],
    *,
    rules: RulesConfig,
    pricing: PricingConfig,
    sandbox: bool,
    multi_source: bool,
    is_retrieval: Callable[[Action], bool] | None = None,
    quality: SourceQuality | None = None,
    cases: Mapping[str, Case] | None = None,
    extra: dict[str, Any] | None = None,
) -> WindowAudit:
    """Recompute, find, total and price a window's actions held in memory — one batch
    through the fold (`quality`: what the sources could not read in the window, reported
    beside them; `cases`: the stored Cases the actions link to)."""
    fold = WindowFold(
        window,
        rules=rules,
        pricing=pricing,
        sandbox=sandbox,
        multi_source=multi_source,
        is_retrieval=is_retrieval,
    )
    fold.add(actions, cases)
    return fold.finish(quality, extra)


def run_block(
    audit: WindowAudit,
    *,
    run_id: str,
    org_id: str,
    budget: Mapping[str, Any],
    sync: Mapping[str, int],
    bad_files: int = 0,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The run output's object for one family (SPEC §7)."""
    start, end = audit.window
    return {
        "run_id": run_id,
        "org_id": org_id,
        "is_sandbox": audit.sandbox,
        "window": {"start": format_iso_ms(start), "end": format_iso_ms(end)},
        "totals": audit.totals,
        "findings": finding_totals(audit.findings),
        "budget": dict(budget),
        "pricing": audit.what_if.as_json(),
        "sync": dict(sync),
        "data_quality": data_quality(audit, bad_files=bad_files),
        **(extra or {}),
    }


def data_quality(audit: WindowAudit, *, bad_files: int = 0) -> dict[str, Any]:
    """`data_quality` (SPEC §7): every bad record of the window — the sources' (values that
    cannot be data, bad log files) and the actions without a usable input — in total and
    per reason class, with the first few and where to find them. Bad log files are among
    the sources' bad records (reason `bad_file`); `bad_files`, the count a caller read from
    the store's file list, only covers a store the sources have not written to yet."""
    by_reason = dict(audit.quality.by_reason)
    no_input = audit.bad_records
    if audit.bad_record_count:
        by_reason["bad_input"] = by_reason.get("bad_input", 0) + audit.bad_record_count
    examples = [_example(b) for b in audit.quality.examples[:EXAMPLES]]
    examples += [
        {"reason": "bad_input", "location": f"action {action_id}", "detail": "input not JSON"}
        for action_id in no_input[: EXAMPLES - len(examples)]
    ]
    return {
        "bad_records": sum(by_reason.values()),
        "by_reason": dict(sorted(by_reason.items())),
        "bad_files": by_reason.get("bad_file", 0) or bad_files,
        "examples": examples,
    }


def _example(bad: Mapping[str, Any]) -> dict[str, Any]:
    """One bad record as a person fixing the org needs it: reason, where, what."""
    source = bad.get("source")
    if source == "eventlogfile":
        where = f"EventLogFile {bad.get('file_id')}"
        if bad.get("line"):
            where += f" line {bad['line']}"
    elif source == "agentworkitem":
        where = f"AgentWorkItem {bad.get('record_id') or bad.get('key')}"
    else:
        where = f"Data 360 usage event {bad.get('record_id') or bad.get('key')}"
    return {"reason": bad.get("reason"), "location": where, "detail": bad.get("detail")}


def top_findings(findings: Iterable[Finding], n: int = 5) -> list[Finding]:
    """The `n` costliest findings (the summary's "top waste")."""
    return sorted(findings, key=lambda f: (-f.wasted_usd, f.kind, f.key))[:n]
