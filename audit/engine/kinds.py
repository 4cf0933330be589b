"""What each finding says and weighs (SPEC §4): one builder per kind, given the actions
that make it up and the run's config. `rules.evaluate` decides which findings exist."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from audit.config import PricingConfig, RulesConfig
from audit.engine.awu import ActionCost, credits_for, usd_for
from audit.engine.findings import SEVERITY, Finding, agent_label, finding_id
from audit.engine.model import Action, format_iso_ms

__all__ = [
    "Ctx",
    "ceiling_breach",
    "long_conversation",
    "mismatch",
    "near_ceiling",
    "order",
    "redundant",
    "retry",
    "retry_chains",
    "source_gap",
]


def order(action: Action) -> tuple[int, str]:
    """Actions in time order (ties by id): how chains and groups are read."""
    return (action.started_ms, action.id)


class Ctx:
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


def retry_chains(ctx: Ctx, group: Sequence[Action]) -> list[Finding]:
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
            out.append(retry(ctx, group[i : j + 1]))
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


def ceiling_breach(ctx: Ctx, action: Action, cost: ActionCost) -> Finding:
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


def near_ceiling(ctx: Ctx, action: Action) -> Finding:
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


def retry(ctx: Ctx, chain: Sequence[Action]) -> Finding:
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


def redundant(
    ctx: Ctx, session_id: str, action_name: str, fp: str, group: Sequence[Action]
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


def mismatch(ctx: Ctx, action: Action, cost: ActionCost) -> Finding:
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


def source_gap(ctx: Ctx, action: Action) -> Finding | None:
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


def long_conversation(ctx: Ctx, session_id: str, session_actions: Sequence[Action]) -> Finding:
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
