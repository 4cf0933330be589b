"""Findings (SPEC §4): pure rules over reconciled actions, config in, findings out.

`evaluate` recomputes every action's AWU (SPEC §2) and flags ceiling breaches, near
misses, retries and retry loops, redundant retrieval, AWU mismatches, source gaps and long
conversations. No clock, network, files or SQLite: the same input gives the same output,
whatever its order.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from audit.config import SEVERITIES, PricingConfig, RulesConfig
from audit.engine.awu import ActionCost, credits_for, recompute_awu, usd_for
from audit.engine.model import Action, format_iso_ms

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

KINDS: tuple[str, ...] = (
    "CEILING_BREACH",
    "NEAR_CEILING",
    "RETRY",
    "RETRY_LOOP",
    "REDUNDANT_RETRIEVAL",
    "AWU_MISMATCH",
    "SOURCE_GAP",
    "LONG_CONVERSATION",
)

#: severity of each kind
SEVERITY: dict[str, str] = {
    "CEILING_BREACH": "high",
    "NEAR_CEILING": "warning",
    "RETRY": "warning",
    "RETRY_LOOP": "high",
    "REDUNDANT_RETRIEVAL": "warning",
    "AWU_MISMATCH": "high",
    "SOURCE_GAP": "info",
    "LONG_CONVERSATION": "info",
}

_KIND_ORDER = {kind: i for i, kind in enumerate(KINDS)}
_SEVERITY_ORDER = {sev: i for i, sev in enumerate(SEVERITIES)}  # info < warning < high
_MISMATCH_TOLERANCE = 1e-9


@dataclass(frozen=True, slots=True)
class Finding:
    id: str
    kind: str
    key: str
    severity: str
    session_id: str | None
    agent: str | None
    action_name: str | None
    action_ids: tuple[str, ...]
    started_at: datetime  # earliest action of the finding
    wasted_awu: float
    wasted_usd: float
    explanation: str
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class AuditResult:
    findings: list[Finding]  # sorted by kind (KINDS order), then key
    costs: dict[str, ActionCost]  # action id → recomputed cost
    bad_records: list[str]  # ids of actions whose input is null or not JSON (sorted)
    fingerprints: dict[str, str] = field(default_factory=dict)  # action id → input fingerprint


# --- small public helpers ------------------------------------------------------------------


def finding_id(kind: str, *key_parts: str) -> str:
    """sha256 of `kind|part1|part2…`: a re-run over the same data upserts, never duplicates."""
    return hashlib.sha256(f"{kind}|{'|'.join(key_parts)}".encode()).hexdigest()


def fingerprint(action_input: str | None) -> str | None:
    """sha256 of the canonical JSON of an action's input (keys sorted at every depth).

    None when the input is null or not valid JSON: such an action joins no chain or group.
    """
    if action_input is None:
        return None
    try:
        value = json.loads(action_input)
    except (ValueError, RecursionError):
        return None
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    try:
        data = canonical.encode()
    except UnicodeEncodeError:  # a lone surrogate ("\ud800") is valid JSON, not valid UTF-8
        data = canonical.encode("utf-8", "surrogatepass")
    return hashlib.sha256(data).hexdigest()


def severity_at_least(severity: str, threshold: str) -> bool:
    """True when `severity` reaches `threshold` (info < warning < high; "off" never)."""
    if threshold not in _SEVERITY_ORDER or severity not in _SEVERITY_ORDER:
        return False
    return _SEVERITY_ORDER[severity] >= _SEVERITY_ORDER[threshold]


def is_query_or_retrieval(action: Action) -> bool:
    """Default retrieval test: the AgentWorkItem action type is Query or Retrieval."""
    return action.action_type in ("Query", "Retrieval")


def retrieval_by_name(patterns: Iterable[str]) -> Callable[[Action], bool]:
    """Retrieval test by action-name globs (`[rules] retrieval_actions`, for Data 360,
    which has no action type). Case-sensitive, like `fnmatch.fnmatchcase`."""
    pats = tuple(patterns)

    def is_retrieval(action: Action) -> bool:
        return any(fnmatch.fnmatchcase(action.action_name, p) for p in pats)

    return is_retrieval


def agent_label(action: Action) -> str | None:
    """The agent as people know it: its name, else its id."""
    return action.agent_name or action.agent_id


# --- evaluation ----------------------------------------------------------------------------


def _order(action: Action) -> tuple[int, str]:
    return (action.started_ms, action.id)


class _Ctx:
    """What every rule needs: config, costs, and the AWU → dollars conversion."""

    def __init__(
        self,
        rules: RulesConfig,
        pricing: PricingConfig,
        costs: Mapping[str, ActionCost],
        sandbox: bool,
    ) -> None:
        self.rules = rules
        self.pricing = pricing
        self.costs = costs
        self.sandbox = sandbox

    def usd(self, awu: float) -> float:
        return usd_for(credits_for(awu, self.pricing), self.pricing, sandbox=self.sandbox)

    def finding(
        self,
        kind: str,
        key_parts: tuple[str, ...],
        actions: Sequence[Action],
        wasted_awu: float,
        explanation: str,
        detail: dict[str, Any],
        *,
        action_name: str | None,
    ) -> Finding:
        first = actions[0]
        started_at = first.started_at
        if len(actions) > 1:
            started_at = min(a.started_at for a in actions)
        return Finding(
            id=finding_id(kind, *key_parts),
            kind=kind,
            key="|".join(key_parts),
            severity=SEVERITY[kind],
            session_id=first.session_id,
            agent=agent_label(first),
            action_name=action_name,
            action_ids=tuple([a.id for a in actions]),
            started_at=started_at,
            wasted_awu=wasted_awu,
            wasted_usd=self.usd(wasted_awu),
            explanation=explanation,
            detail=detail,
        )


def evaluate(
    actions: Sequence[Action],
    rules: RulesConfig,
    pricing: PricingConfig,
    *,
    sandbox: bool = False,
    multi_source: bool = True,
    is_retrieval: Callable[[Action], bool] | None = None,
) -> AuditResult:
    """Recompute every action's AWU and derive the SPEC §4 findings.

    `multi_source` is False when only one source is configured (Data 360): no SOURCE_GAP.
    `is_retrieval` decides what REDUNDANT_RETRIEVAL looks at (default: Query/Retrieval type).
    """
    retrieval = is_retrieval or is_query_or_retrieval
    costs: dict[str, ActionCost] = {}
    ctx = _Ctx(rules, pricing, costs, sandbox)
    findings: list[Finding] = []
    bad_records: list[str] = []
    # Caches keep a million actions fast: costs depend only on (billable, channel, tokens),
    # fingerprints only on the input text, and both repeat a lot.
    cost_cache: dict[tuple[bool, str, int], ActionCost] = {}
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
            cost = cost_cache[cost_key] = recompute_awu(action, rules, pricing)
        costs[action.id] = cost

        fp: str | None = None
        if action.source != "elf":
            raw = action.action_input
            if raw is not None:
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
            findings.append(_mismatch(ctx, action, cost))
        if multi_source and (action.source != "both" or action.elf_tokens is not None):
            gap = _source_gap(ctx, action)
            if gap is not None:
                findings.append(gap)

        if not billable:
            continue  # Utility / unmetered: exempt from everything below
        tokens = action.tokens
        if tokens > ceiling:
            findings.append(_ceiling_breach(ctx, action, cost))
        elif tokens >= near_floor:
            findings.append(_near_ceiling(ctx, action))
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
            group.sort(key=_order)
            findings.extend(_retry_chains(ctx, group))
    for (session_id, action_name, fp), group in redundant_groups.items():
        group.sort(key=_order)
        findings.append(_redundant(ctx, session_id, action_name, fp, group))
    for session_id, session_actions in billable_by_session.items():
        if len(session_actions) > rules.long_conversation_actions:
            session_actions.sort(key=_order)
            findings.append(_long_conversation(ctx, session_id, session_actions))

    findings.sort(key=lambda f: (_KIND_ORDER[f.kind], f.key))
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


def _retry_chains(ctx: _Ctx, group: Sequence[Action]) -> list[Finding]:
    """Maximal runs of errors, each retried within the window, ending at the first success
    or the first gap over the window (SPEC §4). `group` is ordered by (started_at, id)."""
    window_ms = ctx.rules.retry_window_s * 1000
    out: list[Finding] = []
    i, n = 0, len(group)
    while i < n:
        if group[i].status != "Error":
            i += 1
            continue
        j = i
        while (
            j + 1 < n
            and group[j].status == "Error"
            and group[j + 1].started_ms - group[j].started_ms <= window_ms
        ):
            j += 1
        if j > i:
            out.append(_retry(ctx, group[i : j + 1]))
        i = j + 1
    return out


# --- one builder per kind ------------------------------------------------------------------


def _usd_text(usd: float) -> str:
    return f"${usd:,.2f}"


def _awu_text(awu: float) -> str:
    return f"{awu:,.6g}" if awu != int(awu) else f"{int(awu):,}"


def _duration_text(seconds: float) -> str:
    if seconds >= 60 and seconds % 60 == 0:
        minutes = int(seconds // 60)
        return f"{minutes} minute{'s' if minutes != 1 else ''}"
    return f"{seconds:g} seconds"


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def _ceiling_breach(ctx: _Ctx, action: Action, cost: ActionCost) -> Finding:
    wasted = cost.excess_awu
    text = (
        f"{action.action_name} used {action.tokens:,} tokens: billed as "
        f"{_plural(cost.units, 'action')} instead of 1, {_usd_text(ctx.usd(wasted))} extra."
    )
    detail = {
        "tokens": action.tokens,
        "token_ceiling": ctx.rules.token_ceiling,
        "units": cost.units,
        "multiplier": cost.multiplier,
        "awu": cost.awu,
        "excess_awu": cost.excess_awu,
        "channel": action.channel,
    }
    return ctx.finding(
        "CEILING_BREACH",
        (action.id,),
        [action],
        wasted,
        text,
        detail,
        action_name=action.action_name,
    )


def _near_ceiling(ctx: _Ctx, action: Action) -> Finding:
    ceiling = ctx.rules.token_ceiling
    pct = action.tokens / ceiling * 100
    text = (
        f"{action.action_name} used {action.tokens:,} tokens, {pct:.0f}% of the {ceiling:,}-token "
        f"limit: slightly more would bill it as 2 actions."
    )
    detail = {"tokens": action.tokens, "token_ceiling": ceiling, "ratio": action.tokens / ceiling}
    return ctx.finding(
        "NEAR_CEILING", (action.id,), [action], 0.0, text, detail, action_name=action.action_name
    )


def _retry(ctx: _Ctx, chain: Sequence[Action]) -> Finding:
    n = len(chain)
    kind = "RETRY_LOOP" if n >= ctx.rules.retry_loop_min else "RETRY"
    wasted = sum(ctx.costs[a.id].awu for a in chain[:-1])
    succeeded = chain[-1].status != "Error"
    errors = n - 1 if succeeded else n
    window = _duration_text(ctx.rules.retry_window_s)
    name = chain[0].action_name
    usd = _usd_text(ctx.usd(wasted))
    if errors == 1:
        failed = f"{name} failed once and was retried within {window}"
    else:
        failed = f"{name} failed {errors:,} times in a row, each retried within {window},"
    if succeeded:
        text = f"{failed} before succeeding: {_plural(n - 1, 'wasted attempt')}, {usd}."
    else:
        retries = f"{n - 1:,} {'retry' if n == 2 else 'retries'}"
        text = f"{failed} and never succeeded: {retries} that did not help, {usd}."
    detail = {
        "attempts": n,
        "errors": errors,
        "ended_with": "Success" if succeeded else "Error",
        "error_codes": [a.error_code for a in chain if a.status == "Error"],
        "retry_window_s": ctx.rules.retry_window_s,
        "first_started_at": format_iso_ms(chain[0].started_at),
        "last_started_at": format_iso_ms(chain[-1].started_at),
    }
    return ctx.finding(kind, (chain[0].id,), chain, wasted, text, detail, action_name=name)


def _redundant(
    ctx: _Ctx, session_id: str, action_name: str, fp: str, group: Sequence[Action]
) -> Finding:
    n = len(group)
    wasted = sum(ctx.costs[a.id].awu for a in group[1:])
    text = (
        f"{action_name} fetched the same data {_plural(n, 'time')} in one conversation: "
        f"{_plural(n - 1, 'repeat')} a reused result would have avoided, "
        f"{_usd_text(ctx.usd(wasted))}."
    )
    detail = {"repeats": n - 1, "executions": n, "fingerprint": fp}
    return ctx.finding(
        "REDUNDANT_RETRIEVAL",
        (session_id, action_name, fp),
        group,
        wasted,
        text,
        detail,
        action_name=action_name,
    )


def _mismatch(ctx: _Ctx, action: Action, cost: ActionCost) -> Finding:
    reported = float(action.reported_awu or 0.0)
    diff = reported - cost.awu
    direction = "over-billed" if diff > 0 else "under-billed"
    text = (
        f"Salesforce billed {action.action_name} as {_awu_text(reported)} AWU but its "
        f"{action.tokens:,} tokens come to {_awu_text(cost.awu)} AWU: "
        f"{_awu_text(abs(diff))} AWU ({_usd_text(ctx.usd(abs(diff)))}) {direction}."
    )
    detail = {
        "reported_awu": reported,
        "recomputed_awu": cost.awu,
        "difference_awu": diff,
        "tokens": action.tokens,
        "channel": action.channel,
        "billable": cost.billable,
    }
    return ctx.finding(
        "AWU_MISMATCH", (action.id,), [action], diff, text, detail, action_name=action.action_name
    )


def _source_gap(ctx: _Ctx, action: Action) -> Finding | None:
    name = action.action_name
    if action.source == "awi":
        text = (
            f"{name} ({action.id}) has an AgentWorkItem record but is missing from the "
            f"Event Monitoring logs."
        )
    elif action.source == "elf":
        text = (
            f"{name} ({action.id}) is in the Event Monitoring logs but has no AgentWorkItem record."
        )
    elif action.source == "both" and (
        action.elf_tokens is not None and action.elf_tokens != action.tokens
    ):
        text = (
            f"The two sources disagree on {name} ({action.id}): {action.tokens:,} tokens in "
            f"AgentWorkItem, {action.elf_tokens:,} in the Event Monitoring logs."
        )
    else:
        return None
    detail = {"source": action.source, "tokens": action.tokens, "elf_tokens": action.elf_tokens}
    return ctx.finding("SOURCE_GAP", (action.id,), [action], 0.0, text, detail, action_name=name)


def _long_conversation(ctx: _Ctx, session_id: str, session_actions: Sequence[Action]) -> Finding:
    n = len(session_actions)
    flex = sum(ctx.usd(ctx.costs[a.id].awu) for a in session_actions)
    per_conversation = ctx.pricing.per_conversation_usd
    saving = flex - per_conversation
    price = f"per-conversation pricing ({_usd_text(per_conversation)})"
    if saving > 0:
        outcome = f"{price} would save {_usd_text(saving)}"
    else:
        outcome = f"{price} would not be cheaper"
    text = (
        f"One conversation ran {_plural(n, 'billable action')} "
        f"(more than {ctx.rules.long_conversation_actions}) and cost {_usd_text(flex)} in Flex "
        f"Credits: {outcome}."
    )
    detail = {
        "billable_actions": n,
        "threshold": ctx.rules.long_conversation_actions,
        "flex_usd": round(flex, 6),
        "per_conversation_usd": per_conversation,
        "saving_usd": round(saving, 6),
    }
    return ctx.finding(
        "LONG_CONVERSATION", (session_id,), session_actions, 0.0, text, detail, action_name=None
    )


# --- totals --------------------------------------------------------------------------------


def finding_totals(findings: Iterable[Finding]) -> dict[str, dict[str, Any]]:
    """§7 `findings`: every kind, zeros included; count and summed wasted AWU per kind."""
    counts = dict.fromkeys(KINDS, 0)
    wasted = dict.fromkeys(KINDS, 0.0)
    for f in findings:
        counts[f.kind] += 1
        wasted[f.kind] += f.wasted_awu
    return {k: {"count": counts[k], "wasted_awu": round(wasted[k], 6) + 0.0} for k in KINDS}


def compute_totals(
    actions: Iterable[Action],
    costs: Mapping[str, ActionCost],
    *,
    sandbox: bool,
    pricing: PricingConfig,
) -> dict[str, Any]:
    """§7 `totals`. Credits and dollars come from the recomputed AWU, never the reported."""
    n = billable = tokens = 0
    awu = reported = 0.0
    for action in actions:
        cost = costs[action.id]
        n += 1
        billable += cost.billable
        tokens += action.tokens
        awu += cost.awu
        if action.reported_awu is not None:
            reported += action.reported_awu
    credits = credits_for(awu, pricing)
    return {
        "actions": n,
        "billable_actions": billable,
        "tokens": tokens,
        "awu": round(awu, 6),
        "reported_awu": round(reported, 6),
        "credits": round(credits, 6),
        "cost_usd": round(usd_for(credits, pricing, sandbox=sandbox), 6),
    }
