"""One window of one source family audited: every action's recomputed AWU, the findings,
the totals and the pricing comparison — and the §7 run-output block that shows them."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from audit.config import PricingConfig, RulesConfig
from audit.engine.model import Action, format_iso_ms
from audit.engine.pricing import PricingWhatIf, price_window
from audit.engine.rules import AuditResult, compute_totals, evaluate, finding_totals

__all__ = ["WindowAudit", "audit_window", "run_block", "top_findings"]


@dataclass(frozen=True)
class WindowAudit:
    window: tuple[datetime, datetime]
    sandbox: bool
    actions: list[Action]
    result: AuditResult
    totals: dict[str, Any]
    what_if: PricingWhatIf


def audit_window(
    actions: list[Action],
    window: tuple[datetime, datetime],
    *,
    rules: RulesConfig,
    pricing: PricingConfig,
    sandbox: bool,
    multi_source: bool,
    is_retrieval: Callable[[Action], bool] | None = None,
) -> WindowAudit:
    """Recompute, find, total and price the window's actions."""
    result = evaluate(
        actions,
        rules,
        pricing,
        sandbox=sandbox,
        multi_source=multi_source,
        is_retrieval=is_retrieval,
    )
    totals = compute_totals(actions, result.costs, sandbox=sandbox, pricing=pricing)
    what_if = price_window(
        actions,
        result.costs,
        pricing,
        window_start=window[0],
        window_end=window[1],
        sandbox=sandbox,
    )
    return WindowAudit(window, sandbox, actions, result, totals, what_if)


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
        "findings": finding_totals(audit.result.findings),
        "budget": dict(budget),
        "pricing": audit.what_if.as_json(),
        "sync": dict(sync),
        "data_quality": {"bad_records": len(audit.result.bad_records) + bad_files},
        **(extra or {}),
    }


def top_findings(audit: WindowAudit, n: int = 5) -> Sequence[Any]:
    """The `n` costliest findings (the summary's "top waste")."""
    return sorted(audit.result.findings, key=lambda f: (-f.wasted_usd, f.kind, f.key))[:n]
