"""The value checks of `connector.checks`, a column at a time: a page of records is checked a
field at a time, and a column whose every value has a common wire shape (an 18-character
id, ASCII or valid UTF-8 text, JSON numbers in range, `…+0000` / `…Z` datetimes) is decided
by a few C-level passes over the whole column (one join, one regex, `map`) instead of a
Python call per value. A column that is not wholly in those shapes is checked value by value
with the checks themselves, so every value gets exactly the outcome its own check gives.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from datetime import datetime
from functools import partial
from operator import is_not
from typing import Any

from connector.checks import BadValue

__all__ = [
    "Fast",
    "checked_column",
    "fast_amounts",
    "fast_counts",
    "fast_datetimes",
    "fast_ids",
    "fast_text",
]

#: a column's values checked at once, or None when some value is not in the common shape
Fast = Callable[[list[Any]], "list[Any] | None"]

_not_none = partial(is_not, None)
# in [EARLIEST, LATEST) by the year alone (both shapes are UTC); that each date and time
# exists is left to datetime.fromisoformat
_STAMP = r"20[0-9]{2}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}"
_RECORD_STAMPS = re.compile(f"(?:{_STAMP}\\+0000)*")  # 2026-10-06T14:03:22.000+0000
_LOG_STAMPS = re.compile(f"(?:{_STAMP}Z)*")  # 2026-10-06T14:03:22.123Z


def checked_column(
    values: list[Any], check: Callable[[Any], Any], fast: Fast | None, bad: dict[int, BadValue]
) -> list[Any]:
    """`values` checked: by `fast` when it takes the whole column, else each by `check`. A
    value that fails is None in the result and its BadValue goes to `bad` under its
    position, unless an earlier column already failed there (a bad record reports the
    first field its checks reach)."""
    if fast is not None and values:
        out = fast(values)
        if out is not None:
            return out
    out = []
    for i, value in enumerate(values):
        try:
            out.append(check(value))
        except BadValue as exc:
            bad.setdefault(i, exc)
            out.append(None)
    return out


def _joined(values: Iterable[Any]) -> str | None:
    """The values as one string; None if one of them is not a string."""
    try:
        return "".join(values)
    except TypeError:
        return None


def fast_ids(*, required: bool) -> Fast:
    """Ids that are all 18 ASCII letters and digits (or None, when optional) stand as
    they are: `check_id` returns such an id unchanged."""

    def fast(values: list[Any]) -> list[Any] | None:
        present = values if required else list(filter(_not_none, values))
        joined = _joined(present)
        if joined is None:
            return None
        if not present:
            return values  # all None, and optional
        if set(map(len, present)) != {18} or not (joined.isascii() and joined.isalnum()):
            return None
        return values

    return fast


def fast_text(values: list[Any]) -> list[Any] | None:
    """Free text that is all strings (or None) and valid UTF-8 as a whole — then each value
    is — stands as it is."""
    joined = _joined(filter(_not_none, values))
    if joined is None:
        return None
    if not joined.isascii():
        try:
            joined.encode("utf-8")
        except UnicodeEncodeError:
            return None
    return values


def fast_counts(bound: int) -> Fast:
    """JSON numbers that are all whole floats (or all ints) in [0, bound]."""

    def fast(values: list[Any]) -> list[Any] | None:
        kinds = set(map(type, values))
        if kinds == {float}:
            # NaN and inf are not integers: past this, min and max compare soundly
            if not all(map(float.is_integer, values)):
                return None
            return list(map(int, values)) if _in_range(values, bound) else None
        if kinds == {int}:
            return values if _in_range(values, bound) else None
        return None

    return fast


def _in_range(values: list[Any], bound: float) -> bool:
    return bool(min(values) >= 0 and max(values) <= bound)


def fast_amounts(bound: float) -> Fast:
    """JSON numbers that are all finite floats in [0, bound]."""

    def fast(values: list[Any]) -> list[Any] | None:
        if set(map(type, values)) != {float} or not all(map(math.isfinite, values)):
            return None
        return values if _in_range(values, bound) else None

    return fast


def fast_datetimes(values: list[Any]) -> list[Any] | None:
    """Datetimes that are all `…+0000` (records) or all `…Z` (log files), of years 2000 to
    2099 and that exist, in the canonical `…Z` form."""
    joined = _joined(values)
    if joined is None or len(joined) not in (24 * len(values), 28 * len(values)):
        return None
    lengths = set(map(len, values))
    if lengths == {28} and _RECORD_STAMPS.fullmatch(joined):
        canonical = [v[:23] + "Z" for v in values]
    elif lengths == {24} and _LOG_STAMPS.fullmatch(joined):
        canonical = values
    else:
        return None
    try:
        all(map(datetime.fromisoformat, values))  # raises for a day or time that is not
    except ValueError:
        return None
    return canonical
