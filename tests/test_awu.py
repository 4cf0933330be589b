"""SPEC §2 arithmetic, table-driven from the spec's own examples and decoys."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from audit.config import PricingConfig, RulesConfig
from audit.engine.awu import awu_for_tokens, credits_for, recompute_awu, usd_for
from audit.engine.model import Action

RULES = RulesConfig()
PRICING = PricingConfig()
T0 = datetime(2026, 10, 6, 14, 3, 22, tzinfo=timezone.utc)


def act(tokens: int, *, channel: str = "Text", action_type: str = "Apex", status: str = "Success",
        billable_override: bool | None = None) -> Action:
    return Action(id="a1", session_id="s1", action_name="GetOrderHistory", action_type=action_type,
                  channel=channel, status=status, tokens=tokens, started_at=T0,
                  billable_override=billable_override)


@pytest.mark.parametrize(
    ("tokens", "channel", "units", "awu", "excess"),
    [
        (22_000, "Text", 3, 3.0, 2.0),  # the spec's example
        (10_000, "Text", 1, 1.0, 0.0),  # exactly at the ceiling: still one unit
        (10_001, "Text", 2, 2.0, 1.0),  # one token over
        (9_000, "Text", 1, 1.0, 0.0),
        (0, "Text", 1, 1.0, 0.0),  # max(1, …): an empty action still costs a unit
        (1, "Text", 1, 1.0, 0.0),
        (20_000, "Text", 2, 2.0, 1.0),
        (20_001, "Text", 3, 3.0, 2.0),
        (5_000, "Voice", 1, 1.5, 0.0),
        (22_000, "Voice", 3, 4.5, 3.0),
    ],
)
def test_units_and_awu(tokens: int, channel: str, units: int, awu: float, excess: float) -> None:
    cost = recompute_awu(act(tokens, channel=channel), RULES, PRICING)
    assert cost.billable
    assert cost.units == units
    assert cost.awu == awu
    assert cost.excess_awu == excess
    assert awu_for_tokens(tokens, voice=channel == "Voice", rules=RULES, pricing=PRICING) == awu


def test_text_action_costs_ten_cents_voice_fifteen() -> None:
    text = recompute_awu(act(100), RULES, PRICING)
    voice = recompute_awu(act(100, channel="Voice"), RULES, PRICING)
    assert text.credits == 20.0 and text.cost_usd == pytest.approx(0.10)
    assert voice.credits == 30.0 and voice.cost_usd == pytest.approx(0.15)


def test_utility_is_free_even_above_the_ceiling() -> None:
    cost = recompute_awu(act(12_000, action_type="Utility"), RULES, PRICING)
    assert not cost.billable
    assert (cost.units, cost.awu, cost.excess_awu, cost.credits, cost.cost_usd) == (0, 0, 0, 0, 0)


def test_unmetered_action_is_free() -> None:
    cost = recompute_awu(act(500, billable_override=False), RULES, PRICING)
    assert (cost.billable, cost.awu) == (False, 0.0)


def test_errors_are_billed() -> None:
    cost = recompute_awu(act(15_000, status="Error"), RULES, PRICING)
    assert cost.billable and cost.awu == 2.0


def test_sandbox_halves_dollars_only() -> None:
    credits = credits_for(3.0, PRICING)
    assert credits == 60.0
    assert usd_for(credits, PRICING) == pytest.approx(0.30)
    assert usd_for(credits, PRICING, sandbox=True) == pytest.approx(0.15)


def test_config_values_drive_the_arithmetic() -> None:
    rules = RulesConfig(token_ceiling=5_000)
    pricing = PricingConfig(voice_multiplier=2.0, credits_per_awu=10.0)
    cost = recompute_awu(act(12_000, channel="Voice"), rules, pricing)
    assert (cost.units, cost.awu, cost.credits) == (3, 6.0, 60.0)
