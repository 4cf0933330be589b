"""Report aggregates: waste by group, reconciliation, efficiency, daily usage, cases."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from audit.config import PricingConfig, RulesConfig
from audit.engine.analysis import (
    case_outcomes,
    daily_usage_rows,
    efficiency_by_agent,
    reconcile,
    waste_by,
)
from audit.engine.model import Action, Case
from audit.engine.rules import KINDS, evaluate

RULES = RulesConfig()
PRICING = PricingConfig()
T0 = datetime(2026, 10, 6, 23, 0, tzinfo=timezone.utc)


def act(id: str, *, at_h: float = 0, agent: str | None = "Service", agent_id: str | None = None,
        name: str = "Search", type: str = "Apex", channel: str = "Text", tokens: int = 1_000,
        reported: float | None = None, session: str | None = "s1", case: str | None = None,
        status: str = "Success") -> Action:
    return Action(id=id, session_id=session, action_name=name, action_type=type, channel=channel,
                  status=status, tokens=tokens, started_at=T0 + timedelta(hours=at_h),
                  reported_awu=reported, agent_name=agent, agent_id=agent_id, case_id=case,
                  action_input=f'{{"id": "{id}"}}')


def test_waste_by_action_name_and_agent() -> None:
    actions = [
        act("a", name="Search", tokens=22_000),  # 3 AWU, 2 wasted (breach)
        act("b", name="Search", tokens=100),
        act("c", name="Quote", agent="Sales", tokens=100, reported=2.0),  # mismatch +1
        act("d", name="Quote", agent="Sales", tokens=100),
    ]
    result = evaluate(actions, RULES, PRICING)
    rows = waste_by(result.findings, actions, result.costs, by="action_name")
    assert [r["group"] for r in rows] == ["Search", "Quote"]
    search, quote = rows
    assert search["awu"] == 4.0 and search["share_of_spend"] == pytest.approx(4 / 6)
    assert search["wasted_awu"]["CEILING_BREACH"] == 2.0
    assert search["findings"]["CEILING_BREACH"] == 1
    assert list(search["wasted_awu"]) == list(KINDS)
    assert quote["wasted_awu"]["AWU_MISMATCH"] == 1.0
    by_agent = {r["group"]: r for r in waste_by(result.findings, actions, result.costs, by="agent")}
    assert by_agent["Sales"]["actions"] == 2
    assert by_agent["Service"]["wasted_awu"]["CEILING_BREACH"] == 2.0
    with pytest.raises(ValueError):
        waste_by(result.findings, actions, result.costs, by="day")


def test_reconcile_positive_means_over_billed() -> None:
    actions = [
        act("a", tokens=12_000, reported=3.0),  # recomputed 2
        act("b", tokens=100, reported=1.0, at_h=2),  # next day
        act("c", tokens=100, reported=None, at_h=2),  # nothing reported: not compared
    ]
    costs = evaluate(actions, RULES, PRICING).costs
    rows = reconcile(actions, costs, PRICING, by="day")
    assert rows == [
        {"group": "2026-10-06", "actions": 1, "unreported_actions": 0, "recomputed_awu": 2.0,
         "reported_awu": 3.0, "difference_awu": 1.0, "difference_credits": 20.0,
         "difference_usd": 0.1},
        {"group": "2026-10-07", "actions": 2, "unreported_actions": 1, "recomputed_awu": 1.0,
         "reported_awu": 1.0, "difference_awu": 0.0, "difference_credits": 0.0,
         "difference_usd": 0.0},
    ]
    (agent_row,) = reconcile(actions, costs, PRICING, by="agent")
    assert agent_row["difference_awu"] == 1.0
    assert reconcile(actions, costs, PRICING, by="action")[0]["group"] == "Search"


def test_efficiency_by_agent() -> None:
    actions = [act("a", tokens=2_000), act("b", tokens=22_000), act("u", type="Utility"),
               act("x", agent=None, agent_id="0Xx1", tokens=0)]
    costs = evaluate(actions, RULES, PRICING).costs
    rows = {r["agent"]: r for r in efficiency_by_agent(actions, costs)}
    assert rows["Service"]["awu_per_1k_tokens"] == pytest.approx(4 / 24, abs=1e-6)
    assert rows["Service"]["billable_actions"] == 2
    assert rows["0Xx1"]["awu_per_1k_tokens"] is None


def test_daily_usage_rows() -> None:
    actions = [
        act("a", tokens=22_000, reported=3.0),
        act("b", channel="Voice", reported=1.5),
        act("u", type="Utility", tokens=40),
        act("n", agent=None, at_h=2),
    ]
    costs = evaluate(actions, RULES, PRICING).costs
    rows = daily_usage_rows(actions, costs, sandbox=True, pricing=PRICING)
    assert rows == [
        {"day": "2026-10-06", "agent": "Service", "channel": "Text", "actions": 2,
         "billable_actions": 1, "tokens": 22_040, "awu": 3.0, "reported_awu": 3.0,
         "credits": 60.0, "cost_usd": 0.15},
        {"day": "2026-10-06", "agent": "Service", "channel": "Voice", "actions": 1,
         "billable_actions": 1, "tokens": 1_000, "awu": 1.5, "reported_awu": 1.5,
         "credits": 30.0, "cost_usd": 0.075},
        {"day": "2026-10-07", "agent": "unknown", "channel": "Text", "actions": 1,
         "billable_actions": 1, "tokens": 1_000, "awu": 1.0, "reported_awu": 0.0,
         "credits": 20.0, "cost_usd": 0.05},
    ]


def test_case_outcomes() -> None:
    start = datetime(2026, 10, 1, tzinfo=timezone.utc)
    end = datetime(2026, 11, 1, tzinfo=timezone.utc)
    cases = {
        "c1": Case("c1", "Closed", True, datetime(2026, 10, 7, tzinfo=timezone.utc)),
        "c2": Case("c2", "Closed", True, datetime(2026, 11, 2, tzinfo=timezone.utc)),  # outside
        "c3": Case("c3", "Working", False, None),
        "c4": Case("c4", "Closed", True, datetime(2026, 10, 8, tzinfo=timezone.utc)),  # unlinked
    }
    actions = [
        act("a", session="s1", case="c1"),
        act("b", session="s1", tokens=22_000),  # same session as a resolved case: resolved
        act("c", session="s2", case="c2"),
        act("d", session="s3", case="c3"),
        act("e", session=None),
    ]
    costs = evaluate(actions, RULES, PRICING).costs
    out = case_outcomes(actions, costs, cases, window_start=start, window_end=end)
    assert out.resolved_cases == 1
    assert out.linked_actions == 1
    assert out.credits_per_resolved_case == 20.0
    assert out.usd_per_resolved_case == pytest.approx(0.10)
    assert out.unresolved_awu == 3.0  # c, d, e
    assert out.unresolved_share == pytest.approx(3 / 7)
    assert out.as_json()["resolved_cases"] == 1

    none = case_outcomes(actions, costs, {}, window_start=start, window_end=end)
    assert none.resolved_cases == 0 and none.credits_per_resolved_case is None
    assert none.unresolved_share == 1.0
