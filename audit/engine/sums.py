"""Float sums that do not depend on the order of their terms.

A window is audited a batch of whole sessions at a time, in session order, where it once
was summed in time order: a plain running `+=` would move the last bits of reported AWU,
credits and dollars with the order. `ExactSum` sums each batch exactly (math.fsum) and
keeps the rounded sum with its rounding error, so the total is exact to ~106 bits — the
same whatever the order of the terms within a batch, and in practice whatever the batches.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

__all__ = ["ExactSum", "exact_sum"]


class ExactSum:
    """Σ of the terms added so far, exactly rounded at the end (`value`)."""

    __slots__ = ("_parts",)

    def __init__(self) -> None:
        self._parts: list[float] = []

    def add_all(self, terms: Iterable[float]) -> None:
        """Add a batch of terms (any iterable; read once)."""
        values = terms if isinstance(terms, list) else list(terms)
        if not values:
            return
        total = math.fsum(values)
        values.append(-total)
        error = math.fsum(values)  # what rounding `total` dropped (itself rounded)
        values.pop()
        self._parts.append(total)
        if error:
            self._parts.append(error)
        if len(self._parts) > 64:  # keep the parts few: fold them back into two
            self._parts = _compact(self._parts)

    def add(self, term: float) -> None:
        self._parts.append(term)
        if len(self._parts) > 64:
            self._parts = _compact(self._parts)

    @property
    def value(self) -> float:
        return math.fsum(self._parts)


def _compact(parts: list[float]) -> list[float]:
    total = math.fsum(parts)
    error = math.fsum([*parts, -total])
    return [total, error] if error else [total]


def exact_sum(terms: Iterable[float]) -> float:
    """The correctly rounded sum of `terms`, whatever their order."""
    return math.fsum(terms)
