"""A window's audit folded a batch at a time: nothing holds the window's actions.

Every cross-action rule (retry chains and loops, redundant retrieval, long conversations)
and every per-session figure (the per-conversation price, the sessions that resolved a
case) looks inside one session; everything else looks at one action. So a window fed to
`WindowFold.add` in batches of whole sessions — every action of a session in the same
batch; an action without a session stands alone — gives exactly the findings, totals,
pricing what-if and report aggregates of the whole window in one piece: each batch is
evaluated on its own (`rules.evaluate`), its figures folded into running tallies and its
actions dropped. Sums are exact (`sums.ExactSum`), so the batches' order does not matter.

Pure, like the rest of the engine: actions, cases and config in; a `WindowAudit` out.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from audit.config import PricingConfig, RulesConfig
from audit.engine.analysis import CaseTally, Efficiency, Reconciliation, Spend
from audit.engine.awu import ActionCost, CostTable
from audit.engine.findings import Finding, Totals, fingerprint
from audit.engine.model import Action, Case
from audit.engine.packed import FindingPacker
from audit.engine.pricing import PricingTally, PricingWhatIf
from audit.engine.rules import evaluate

__all__ = [
    "BAD_RECORDS_KEPT",
    "SourceQuality",
    "WindowAudit",
    "WindowFold",
    "costs_and_fingerprints",
]

#: how many ids of actions without a usable input a window audit keeps (the count is whole)
BAD_RECORDS_KEPT = 50
#: how many rows of spend by action name the report keeps
TOP_ACTIONS = 15

Window = tuple[datetime, datetime]


@dataclass(frozen=True)
class SourceQuality:
    """What the sources said could not be data in a window (SPEC §3.5): bad records per
    reason class and the first few, each with its location (as the store keeps them)."""

    by_reason: Mapping[str, int] = field(default_factory=dict)
    examples: Sequence[Mapping[str, Any]] = ()


@dataclass(frozen=True)
class WindowAudit:
    """One window of one family audited: its findings and figures, not its actions."""

    window: Window
    sandbox: bool
    findings: list[Finding]  # sorted by kind (KINDS order), then key
    totals: dict[str, Any]  # §7 `totals`
    what_if: PricingWhatIf
    #: the report's aggregates (waste, reconciliation, efficiency, case outcomes)
    analysis: dict[str, Any]
    actions: int  # how many actions the window holds
    credits: float  # their recomputed credits (before a sandbox's discount)
    #: the first BAD_RECORDS_KEPT ids (sorted) of actions without a usable input, and how many
    bad_records: list[str]
    bad_record_count: int
    quality: SourceQuality = field(default_factory=SourceQuality)
    #: family-specific output (Data 360's unmetered counts)
    extra: dict[str, Any] = field(default_factory=dict)


class WindowFold:
    """The window's audit, fed batches of whole sessions (`add`), read once (`finish`)."""

    def __init__(
        self,
        window: Window,
        *,
        rules: RulesConfig,
        pricing: PricingConfig,
        sandbox: bool,
        multi_source: bool,
        is_retrieval: Callable[[Action], bool] | None = None,
    ) -> None:
        self.window = window
        self._config = (rules, pricing, sandbox, multi_source, is_retrieval)
        self._costs = CostTable(rules, pricing)
        self._totals = Totals()
        self._pricing = PricingTally()
        self._spend = (Spend("action_name"), Spend("agent"))
        self._reconciled = (Reconciliation("agent"), Reconciliation("day"))
        self._efficiency = Efficiency()
        self._cases = CaseTally(window_start=window[0], window_end=window[1])
        self._findings = FindingPacker()
        self._bad: list[str] = []
        self._bad_count = 0

    def add(
        self,
        actions: Sequence[Action],
        cases: Mapping[str, Case] | None = None,
        *,
        fingerprints: Mapping[str, str | None] | None = None,
    ) -> None:
        """Audit one batch of whole sessions and fold it in. `cases`: the stored Cases its
        actions link to; `fingerprints`: the actions' input fingerprints when known."""
        rules, pricing, sandbox, multi_source, is_retrieval = self._config
        result = evaluate(
            actions,
            rules,
            pricing,
            sandbox=sandbox,
            multi_source=multi_source,
            is_retrieval=is_retrieval,
            known_fingerprints=fingerprints,
            cost_table=self._costs,
        )
        costs = result.costs
        for tally in (self._totals, self._pricing, *self._spend, *self._reconciled):
            tally.add(actions, costs)
        self._efficiency.add(actions, costs)
        self._cases.add(actions, costs, cases or {})
        self._findings.add(result.findings)
        self._bad_count += len(result.bad_records)
        self._bad = heapq.nsmallest(BAD_RECORDS_KEPT, [*self._bad, *result.bad_records])

    def finish(
        self, quality: SourceQuality | None = None, extra: dict[str, Any] | None = None
    ) -> WindowAudit:
        _, pricing, sandbox, _, _ = self._config
        start, end = self.window
        findings = self._findings.sorted()
        by_action, by_agent = self._spend
        agents, days = self._reconciled
        analysis = {
            "waste_by_action": by_action.rows(findings)[:TOP_ACTIONS],
            "waste_by_agent": by_agent.rows(findings),
            "reconcile_by_agent": agents.rows(pricing, sandbox=sandbox),
            "reconcile_by_day": days.rows(pricing, sandbox=sandbox),
            "efficiency_by_agent": self._efficiency.rows(),
            "case_outcomes": self._cases.result(pricing, sandbox=sandbox).as_json(),
        }
        return WindowAudit(
            window=self.window,
            sandbox=sandbox,
            findings=findings,
            totals=self._totals.as_json(sandbox=sandbox, pricing=pricing),
            what_if=self._pricing.result(
                pricing, window_start=start, window_end=end, sandbox=sandbox
            ),
            analysis=analysis,
            actions=self._totals.actions,
            credits=self._pricing.credits,
            bad_records=list(self._bad),
            bad_record_count=self._bad_count,
            quality=quality or SourceQuality(),
            extra=dict(extra or {}),
        )


def costs_and_fingerprints(
    actions: Sequence[Action],
    rules: RulesConfig,
    pricing: PricingConfig,
    cost_table: CostTable | None = None,
) -> tuple[dict[str, ActionCost], dict[str, str]]:
    """Each action's recomputed cost and input fingerprint (actions without a usable
    input, and log-file-only ones, have none) — as `rules.evaluate` computes them.
    `cost_table`: costs already computed (kept across a window's chunks)."""
    cost_of = (cost_table or CostTable(rules, pricing)).cost
    costs: dict[str, ActionCost] = {}
    fingerprints: dict[str, str] = {}
    fp_cache: dict[str, str | None] = {}
    for action in actions:
        costs[action.id] = cost_of(action)
        raw = action.action_input
        if action.source == "elf" or raw is None:
            continue
        fp = fp_cache[raw] if raw in fp_cache else fp_cache.setdefault(raw, fingerprint(raw))
        if fp is not None:
            fingerprints[action.id] = fp
    return costs, fingerprints
