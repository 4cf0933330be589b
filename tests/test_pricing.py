"""SPEC §5 pricing what-if: Flex vs per conversation vs per user."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from audit.config import PricingConfig, RulesConfig
from audit.engine.awu import recompute_awu
from audit.engine.model import Action
from audit.engine.pricing import PricingWhatIf, price_window, window_months

RULES = RulesConfig()
PRICING = PricingConfig()
OCT = datetime(2026, 10, 1, tzinfo=timezone.utc)
NOV = datetime(2026, 11, 1, tzinfo=timezone.utc)


def act(id: str, session: str | None, user: str | None, *, type: str = "Apex",
        channel: str = "Text", tokens: int = 100) -> Action:
    return Action(id=id, session_id=session, action_name="Do", action_type=type, channel=channel,
                  status="Success", tokens=tokens, started_at=OCT + timedelta(hours=1),
                  user_id=user)


def price(actions: list[Action], *, start: datetime = OCT, end: datetime = NOV,
          sandbox: bool = False, pricing: PricingConfig = PRICING) -> PricingWhatIf:
    costs = {a.id: recompute_awu(a, RULES, pricing) for a in actions}
    return price_window(actions, costs, pricing, window_start=start, window_end=end,
                        sandbox=sandbox)


def test_window_months() -> None:
    assert window_months(OCT, NOV) == 1.0
    assert window_months(OCT, OCT + timedelta(days=31 / 2)) == pytest.approx(0.5)
    # Oct 16 → Nov 16: half of October (31 d) plus half of November (30 d)
    assert window_months(datetime(2026, 10, 16, 12, tzinfo=timezone.utc),
                         datetime(2026, 11, 16, tzinfo=timezone.utc)) == pytest.approx(1.0)
    assert window_months(datetime(2026, 12, 1, tzinfo=timezone.utc),
                         datetime(2027, 2, 1, tzinfo=timezone.utc)) == pytest.approx(2.0)
    assert window_months(NOV, OCT) == 0.0


def test_three_models_and_cheapest() -> None:
    # one session of 30 text actions ($3.00 flex) for one user
    actions = [act(f"a{i}", "s1", "u1") for i in range(30)]
    what_if = price(actions)
    assert what_if.flex_usd == pytest.approx(3.0)
    assert what_if.per_conversation_usd == 2.0
    assert what_if.per_user_usd == 125.0
    assert what_if.cheapest == "per_conversation"
    assert what_if.sessions == 1 and what_if.distinct_users == 1 and what_if.months == 1.0
    assert what_if.as_json() == {"flex_usd": 3.0, "per_conversation_usd": 2.0,
                                 "per_user_usd": 125.0, "cheapest": "per_conversation"}


def test_flex_cheapest_for_short_conversations() -> None:
    actions = [act(f"a{i}", f"s{i}", "u1") for i in range(10)]
    what_if = price(actions)
    assert what_if.flex_usd == pytest.approx(1.0)
    assert what_if.per_conversation_usd == 20.0
    assert what_if.cheapest == "flex"


def test_per_user_cheapest_for_heavy_users() -> None:
    actions = [act(f"a{i}", f"s{i}", "u1", tokens=25_000) for i in range(500)]  # 3 AWU each
    what_if = price(actions, end=OCT + timedelta(days=31 / 4))
    assert what_if.months == pytest.approx(0.25)
    assert what_if.per_user_usd == pytest.approx(31.25)
    assert what_if.cheapest == "per_user"


def test_ties_prefer_flex_then_per_conversation() -> None:
    actions = [act(f"a{i}", "s1", "u1") for i in range(20)]  # $2.00 either way
    assert price(actions).cheapest == "flex"
    pricing = PricingConfig(per_conversation_usd=10.0, per_user_month_usd=10.0)
    actions = [act(f"a{i}", "s1", "u1") for i in range(200)]
    assert price(actions, pricing=pricing).cheapest == "per_conversation"


def test_sandbox_discounts_flex_only() -> None:
    actions = [act(f"a{i}", "s1", "u1") for i in range(30)]
    what_if = price(actions, sandbox=True)
    assert what_if.flex_usd == pytest.approx(1.5)
    assert what_if.per_conversation_usd == 2.0
    assert what_if.per_user_usd == 125.0
    assert what_if.cheapest == "flex"


def test_null_sessions_and_users_are_not_counted_and_utility_is_free() -> None:
    actions = [act("a", None, None), act("b", "s1", "u1", type="Utility", tokens=50_000),
               act("c", "s1", "u2", channel="Voice")]
    what_if = price(actions)
    assert what_if.sessions == 1 and what_if.distinct_users == 2
    assert what_if.flex_usd == pytest.approx(0.25)


def test_crossover_and_length_distribution() -> None:
    sizes = {"s1": 3, "s2": 8, "s3": 20, "s4": 21, "s5": 60}
    actions = [act(f"{s}-{i}", s, "u1") for s, n in sizes.items() for i in range(n)]
    actions.append(act("util", "s6", "u1", type="Utility"))
    what_if = price(actions)
    assert what_if.crossover_actions_per_conversation == pytest.approx(20.0)
    assert what_if.crossover_actions_per_user_month == pytest.approx(1250.0)
    assert what_if.length_distribution == {"0": 1, "1-5": 1, "6-10": 1, "11-20": 1, "21-50": 1,
                                           "51+": 1}
    assert what_if.sessions_above_crossover == 2  # 21 and 60; exactly 20 is not above
    assert what_if.as_dict()["sessions"] == 6
