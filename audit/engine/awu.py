"""AWU arithmetic (SPEC §2): units from tokens, the voice multiplier, credits and dollars."""

from __future__ import annotations

import math
from dataclasses import dataclass

from audit.config import PricingConfig, RulesConfig
from audit.engine.model import Action

__all__ = ["ActionCost", "CostTable", "recompute_awu", "awu_for_tokens", "credits_for", "usd_for"]


@dataclass(frozen=True, slots=True)
class ActionCost:
    billable: bool
    units: int
    multiplier: float
    awu: float
    excess_awu: float  # what a ceiling breach added: awu − multiplier
    credits: float
    cost_usd: float  # before any sandbox discount


def awu_for_tokens(
    tokens: int, *, voice: bool, rules: RulesConfig, pricing: PricingConfig
) -> float:
    """AWU of one billable execution: max(1, ceil(t / ceiling)) × (1.5 voice | 1.0)."""
    units = max(1, math.ceil(tokens / rules.token_ceiling))
    return units * (pricing.voice_multiplier if voice else 1.0)


def recompute_awu(action: Action, rules: RulesConfig, pricing: PricingConfig) -> ActionCost:
    """What one action should cost. Errors are billed; Utility (and unmetered) cost 0."""
    multiplier = pricing.voice_multiplier if action.channel == "Voice" else 1.0
    if not action.is_billable:
        return ActionCost(False, 0, multiplier, 0.0, 0.0, 0.0, 0.0)
    units = max(1, math.ceil(max(action.tokens, 0) / rules.token_ceiling))
    awu = units * multiplier
    credits = credits_for(awu, pricing)
    return ActionCost(
        True, units, multiplier, awu, awu - multiplier, credits, usd_for(credits, pricing)
    )


def credits_for(awu: float, pricing: PricingConfig) -> float:
    return awu * pricing.credits_per_awu


def usd_for(credits: float, pricing: PricingConfig, *, sandbox: bool = False) -> float:
    usd = credits * pricing.usd_per_credit
    return usd * (1.0 - pricing.sandbox_discount) if sandbox else usd


class CostTable:
    """`recompute_awu` remembered across a window's batches. `by_tokens` maps (billable,
    channel, tokens) to the cost — a dict lookup per action for the hot loops — and a miss
    (`add`) is computed once per (billable, channel, units), all a cost depends on. The
    token map is emptied when it grows past `limit` entries: memory stays bounded."""

    __slots__ = ("_rules", "_pricing", "_ceiling", "_by_units", "by_tokens", "limit")

    def __init__(self, rules: RulesConfig, pricing: PricingConfig, limit: int = 200_000):
        self._rules = rules
        self._pricing = pricing
        self._ceiling = rules.token_ceiling
        self._by_units: dict[tuple[bool, str, int], ActionCost] = {}
        self.by_tokens: dict[tuple[bool, str, int], ActionCost] = {}
        self.limit = limit

    def add(self, action: Action, key: tuple[bool, str, int]) -> ActionCost:
        """The cost of `action`, whose (billable, channel, tokens) is `key`, remembered."""
        billable, channel, tokens = key
        units = max(1, math.ceil(max(tokens, 0) / self._ceiling))
        cost = self._by_units.get((billable, channel, units))
        if cost is None:
            cost = recompute_awu(action, self._rules, self._pricing)
            self._by_units[(billable, channel, units)] = cost
        if len(self.by_tokens) >= self.limit:
            self.by_tokens.clear()
        self.by_tokens[key] = cost
        return cost

    def cost(self, action: Action) -> ActionCost:
        key = (action.is_billable, action.channel, action.tokens)
        return self.by_tokens.get(key) or self.add(action, key)
