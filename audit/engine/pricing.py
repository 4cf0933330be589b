"""Pricing what-if (SPEC §5): one window's usage under the three Agentforce pricing models.

Flex Credits (what the actions cost), per conversation ($2 × sessions) and per user
($125 × distinct users × months of the window), the cheapest, and the crossover facts.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from audit.config import PricingConfig
from audit.engine.awu import ActionCost, usd_for
from audit.engine.model import Action
from audit.engine.sums import ExactSum

__all__ = [
    "PricingTally", "PricingWhatIf", "price_window", "repriced", "window_months", "LENGTH_BUCKETS",
]  # fmt: skip

#: histogram buckets of billable actions per session: (label, low, high inclusive)
LENGTH_BUCKETS: tuple[tuple[str, int, int | None], ...] = (
    ("0", 0, 0),
    ("1-5", 1, 5),
    ("6-10", 6, 10),
    ("11-20", 11, 20),
    ("21-50", 21, 50),
    ("51+", 51, None),
)
_MODELS = ("flex", "per_conversation", "per_user")


@dataclass(frozen=True)
class PricingWhatIf:
    flex_usd: float  # Σ cost_usd, sandbox-discounted
    per_conversation_usd: float  # per_conversation_usd × sessions (never discounted)
    per_user_usd: float  # per_user_month_usd × distinct users × months (never discounted)
    cheapest: str  # "flex" | "per_conversation" | "per_user" (ties in that order)
    sessions: int
    distinct_users: int
    months: float
    #: sessions by billable actions per session; "0" holds sessions of Utility actions only
    length_distribution: dict[str, int] = field(default_factory=dict)
    sessions_above_crossover: int = 0
    crossover_actions_per_conversation: float = 0.0
    crossover_actions_per_user_month: float = 0.0

    def as_json(self) -> dict[str, Any]:
        """The §7 `pricing` object."""
        return {
            "flex_usd": round(self.flex_usd, 6),
            "per_conversation_usd": round(self.per_conversation_usd, 6),
            "per_user_usd": round(self.per_user_usd, 6),
            "cheapest": self.cheapest,
        }

    def as_dict(self) -> dict[str, Any]:
        """Everything, for the report."""
        return {
            **self.as_json(),
            "sessions": self.sessions,
            "distinct_users": self.distinct_users,
            "months": round(self.months, 6),
            "length_distribution": dict(self.length_distribution),
            "sessions_above_crossover": self.sessions_above_crossover,
            "crossover_actions_per_conversation": round(self.crossover_actions_per_conversation, 6),
            "crossover_actions_per_user_month": round(self.crossover_actions_per_user_month, 6),
        }


def window_months(start: datetime, end: datetime) -> float:
    """How many calendar months [start, end) spans: Σ over the months it overlaps of the
    share of that month's seconds inside the window (UTC)."""
    start = start.astimezone(timezone.utc)
    end = end.astimezone(timezone.utc)
    total = 0.0
    month_start = datetime(start.year, start.month, 1, tzinfo=timezone.utc)
    while month_start < end:
        month_end = _next_month(month_start)
        overlap = (min(end, month_end) - max(start, month_start)).total_seconds()
        if overlap > 0:
            total += overlap / (month_end - month_start).total_seconds()
        month_start = month_end
    return total


def _next_month(dt: datetime) -> datetime:
    if dt.month == 12:
        return dt.replace(year=dt.year + 1, month=1)
    return dt.replace(month=dt.month + 1)


class PricingTally:
    """`price_window` a batch at a time. Each `add` must hold whole sessions (a session's
    actions all in one batch): the per-conversation price counts sessions by their
    billable actions."""

    def __init__(self) -> None:
        self._credits = ExactSum()
        self._lengths: Counter[int] = Counter()  # billable actions per session → sessions
        self._users: set[str] = set()

    def add(self, actions: Iterable[Action], costs: Mapping[str, ActionCost]) -> None:
        credits: list[float] = []
        billable_per_session: Counter[str] = Counter()
        users = self._users
        for action in actions:
            cost = costs[action.id]
            credits.append(cost.credits)
            if action.session_id is not None:
                billable_per_session[action.session_id] += cost.billable
            if action.user_id is not None:
                users.add(action.user_id)
        self._credits.add_all(credits)
        self._lengths.update(billable_per_session.values())

    @property
    def credits(self) -> float:
        """Σ credits of the actions added (before any sandbox discount)."""
        return self._credits.value

    def result(
        self,
        pricing: PricingConfig,
        *,
        window_start: datetime,
        window_end: datetime,
        sandbox: bool,
    ) -> PricingWhatIf:
        flex = usd_for(self.credits, pricing, sandbox=sandbox)
        sessions = sum(self._lengths.values())
        months = window_months(window_start, window_end)
        per_conversation = pricing.per_conversation_usd * sessions
        per_user = pricing.per_user_month_usd * len(self._users) * months
        cheapest = _cheapest(flex, per_conversation, per_user)

        usd_per_awu = pricing.credits_per_awu * pricing.usd_per_credit
        crossover_conv = pricing.per_conversation_usd / usd_per_awu
        crossover_user = pricing.per_user_month_usd / usd_per_awu
        histogram = dict.fromkeys((label for label, _, _ in LENGTH_BUCKETS), 0)
        for count, n in self._lengths.items():
            histogram[_bucket(count)] += n
        above = sum(n for count, n in self._lengths.items() if count > crossover_conv)
        return PricingWhatIf(
            flex_usd=flex,
            per_conversation_usd=per_conversation,
            per_user_usd=per_user,
            cheapest=cheapest,
            sessions=sessions,
            distinct_users=len(self._users),
            months=months,
            length_distribution=histogram,
            sessions_above_crossover=above,
            crossover_actions_per_conversation=crossover_conv,
            crossover_actions_per_user_month=crossover_user,
        )


def price_window(
    actions: Iterable[Action],
    costs: Mapping[str, ActionCost],
    pricing: PricingConfig,
    *,
    window_start: datetime,
    window_end: datetime,
    sandbox: bool,
) -> PricingWhatIf:
    """Price one window's actions under Flex Credits, per conversation and per user."""
    tally = PricingTally()
    tally.add(actions, costs)
    return tally.result(pricing, window_start=window_start, window_end=window_end, sandbox=sandbox)


def repriced(
    saved: Mapping[str, Any],
    pricing: PricingConfig,
    *,
    window_start: datetime,
    window_end: datetime,
) -> PricingWhatIf:
    """A what-if saved with `as_dict`, over a window that grew by a stretch without
    actions: the months move, and with them the per-user price and the cheapest model."""
    fields = {f.name: saved[f.name] for f in dataclasses.fields(PricingWhatIf)}
    months = window_months(window_start, window_end)
    per_user = pricing.per_user_month_usd * int(fields["distinct_users"]) * months
    cheapest = _cheapest(fields["flex_usd"], fields["per_conversation_usd"], per_user)
    return PricingWhatIf(
        **{**fields, "months": months, "per_user_usd": per_user, "cheapest": cheapest}
    )


def _cheapest(flex: float, per_conversation: float, per_user: float) -> str:
    """The cheapest model (to the micro-dollar; ties in _MODELS order)."""
    prices = {"flex": flex, "per_conversation": per_conversation, "per_user": per_user}
    return min(_MODELS, key=lambda m: (round(prices[m], 6), _MODELS.index(m)))


def _bucket(count: int) -> str:
    for label, low, high in LENGTH_BUCKETS:
        if count >= low and (high is None or count <= high):
            return label
    raise ValueError(count)  # pragma: no cover - buckets cover every count ≥ 0
