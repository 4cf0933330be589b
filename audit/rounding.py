"""JSON numbers rounded to what they mean: AWU to 0.1, Flex Credits and percentages to 0.01,
dollars to the cent — so `--json` and the report carry 75.4, never 75.40000000000016."""

from __future__ import annotations

from typing import Any

__all__ = ["round_to_meaning"]

_AWU = {"awu", "reported_awu", "wasted_awu", "recomputed_awu", "difference_awu", "excess_awu"}
_HUNDREDTHS = {"credits", "used_credits", "used_pct", "difference_credits"}


def _places(key: str) -> int | None:
    if key in _AWU:
        return 1
    if key in _HUNDREDTHS or key.endswith("_usd"):
        return 2
    return None


def round_to_meaning(value: Any, key: str = "") -> Any:
    """A copy of `value` (dicts and lists walked) with each float rounded by its key's
    meaning; ints, bools, strings and floats under other keys are left as they are."""
    if isinstance(value, dict):
        return {k: round_to_meaning(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [round_to_meaning(v, key) for v in value]
    if isinstance(value, float):
        places = _places(key)
        if places is not None:
            return round(value, places) + 0.0  # + 0.0: never -0.0
    return value
