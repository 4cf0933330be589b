"""Findings (SPEC §4): pure rules over reconciled actions, config in, findings out.

`evaluate` recomputes every action's AWU (SPEC §2) and flags ceiling breaches, near
misses, retries and retry loops, redundant retrieval, AWU mismatches, source gaps and long
conversations. No clock, network, files or SQLite: the same input gives the same output,
whatever its order.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence

from audit.config import PricingConfig, RulesConfig
from audit.engine.awu import ActionCost, CostTable
from audit.engine.findings import (
    KIND_ORDER,
    KINDS,
    SEVERITY,
    AuditResult,
    Finding,
    agent_label,
    compute_totals,
    finding_id,
    finding_totals,
    fingerprint,
    is_query_or_retrieval,
    retrieval_by_name,
    severity_at_least,
)
from audit.engine.kinds import (
    Ctx,
    ceiling_breach,
    long_conversation,
    mismatch,
    near_ceiling,
    order,
    redundant,
    retry_chains,
    source_gap,
)
from audit.engine.model import Action

__all__ = [
    "KINDS",
    "SEVERITY",
    "Finding",
    "AuditResult",
    "evaluate",
    "finding_id",
    "fingerprint",
    "severity_at_least",
    "finding_totals",
    "compute_totals",
    "is_query_or_retrieval",
    "retrieval_by_name",
    "agent_label",
]

# --- evaluation ----------------------------------------------------------------------------

_MISMATCH_TOLERANCE = 1e-9


def evaluate(
    actions: Sequence[Action],
    rules: RulesConfig,
    pricing: PricingConfig,
    *,
    sandbox: bool = False,
    multi_source: bool = True,
    is_retrieval: Callable[[Action], bool] | None = None,
    known_fingerprints: Mapping[str, str | None] | None = None,
    cost_table: CostTable | None = None,
) -> AuditResult:
    """Recompute every action's AWU and derive the SPEC §4 findings.

    One pass over the actions on purpose (the one function allowed past 60 lines): a
    window holds up to millions of actions, and walking them once per rule would multiply
    the audit's cost by the number of rules. The per-kind builders live in `kinds`.

    `multi_source` is False when only one source is configured (Data 360): no SOURCE_GAP.
    `is_retrieval` decides what REDUNDANT_RETRIEVAL looks at (default: Query/Retrieval type).
    `known_fingerprints`: the actions' input fingerprints when they are known already (an action
    read back from the store), by id; the inputs are then not read. `cost_table`: the
    costs already computed (kept across the batches of a window).
    """
    retrieval = is_retrieval or is_query_or_retrieval
    costs: dict[str, ActionCost] = {}
    ctx = Ctx(rules, pricing, costs, sandbox)
    findings: list[Finding] = []
    bad_records: list[str] = []
    # Caches keep a million actions fast: costs depend only on (billable, channel, units),
    # fingerprints only on the input text, and both repeat a lot.
    table = cost_table or CostTable(rules, pricing)
    cost_cache = table.by_tokens
    fp_cache: dict[str, str | None] = {}
    fingerprints: dict[str, str] = {}

    # (session, action_name, fingerprint) → actions: the retry chains' and the
    # redundant-retrieval groups' raw material. Only billable, fingerprinted actions with a
    # session join them; ELF-only actions have no input and never join.
    # Most groups hold one action: keep a group's first action alone and make a list only
    # when a second arrives (a million one-element lists cost seconds).
    chain_first: dict[tuple[str, str, str], Action] = {}
    chain_groups: dict[tuple[str, str, str], list[Action]] = {}
    groups_with_errors: set[tuple[str, str, str]] = set()
    redundant_first: dict[tuple[str, str, str], Action] = {}
    redundant_groups: dict[tuple[str, str, str], list[Action]] = {}
    billable_by_session: dict[str, list[Action]] = defaultdict(list)

    ceiling = rules.token_ceiling
    near_floor = rules.near_ceiling_ratio * ceiling - 1e-9
    for action in actions:
        billable = action.is_billable
        cost_key = (billable, action.channel, action.tokens)
        cost = cost_cache.get(cost_key)
        if cost is None:
            cost = table.add(action, cost_key)
        costs[action.id] = cost

        fp: str | None = None
        if action.source != "elf":
            raw = action.action_input
            if known_fingerprints is not None:
                fp = known_fingerprints.get(action.id)
            elif raw is not None:
                if raw in fp_cache:
                    fp = fp_cache[raw]
                else:
                    fp = fp_cache[raw] = fingerprint(raw)
            if fp is None:
                bad_records.append(action.id)
            else:
                fingerprints[action.id] = fp

        reported = action.reported_awu
        if reported is not None and abs(reported - cost.awu) > _MISMATCH_TOLERANCE:
            findings.append(mismatch(ctx, action, cost))
        if multi_source and (action.source != "both" or action.elf_tokens is not None):
            gap = source_gap(ctx, action)
            if gap is not None:
                findings.append(gap)

        if not billable:
            continue  # Utility / unmetered: exempt from everything below
        tokens = action.tokens
        if tokens > ceiling:
            findings.append(ceiling_breach(ctx, action, cost))
        elif tokens >= near_floor:
            findings.append(near_ceiling(ctx, action))
        session_id = action.session_id
        if session_id is None:
            continue
        billable_by_session[session_id].append(action)
        if fp is None:
            continue
        group_key = (session_id, action.action_name, fp)
        _add_to_group(chain_first, chain_groups, group_key, action)
        if action.status == "Error":
            groups_with_errors.add(group_key)
        elif action.status == "Success" and retrieval(action):
            _add_to_group(redundant_first, redundant_groups, group_key, action)

    for group_key in groups_with_errors:
        group = chain_groups.get(group_key)
        if group is not None:
            group.sort(key=order)
            findings.extend(retry_chains(ctx, group))
    for (session_id, action_name, fp), group in redundant_groups.items():
        group.sort(key=order)
        findings.append(redundant(ctx, session_id, action_name, fp, group))
    for session_id, session_actions in billable_by_session.items():
        if len(session_actions) > rules.long_conversation_actions:
            session_actions.sort(key=order)
            findings.append(long_conversation(ctx, session_id, session_actions))

    findings.sort(key=lambda f: (KIND_ORDER[f.kind], f.key))
    bad_records.sort()
    return AuditResult(
        findings=findings, costs=costs, bad_records=bad_records, fingerprints=fingerprints
    )


def _add_to_group(
    first: dict[tuple[str, str, str], Action],
    groups: dict[tuple[str, str, str], list[Action]],
    key: tuple[str, str, str],
    action: Action,
) -> None:
    """Add `action` to group `key`; `groups` holds only groups of two or more."""
    earlier = first.setdefault(key, action)
    if earlier is action:
        return
    group = groups.get(key)
    if group is None:
        groups[key] = [earlier, action]
    else:
        group.append(action)
