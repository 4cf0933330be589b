"""The value checks of `connector.checks`, a column at a time: a page of AgentWorkItem
records, or a block of log rows, is checked a field at a time, and a column whose every
value has a common wire shape (15/18-character ids, ASCII or valid UTF-8 text, numbers in
range, `…+0000` / `…Z` datetimes) is decided by a few C-level passes over the whole column
(one join, one regex, `map`) instead of a Python call per value. A column that is not wholly
in those shapes is checked value by value with the checks themselves, so every value gets
exactly the outcome its own check gives.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from datetime import datetime
from functools import partial
from operator import is_not, itemgetter
from typing import Any

from connector.checks import BadValue
from connector.ids import extend_15

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
_first = itemgetter(slice(0, 1))  # a string's first character ("" for "")
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


def fast_ids(*, required: bool, short: bool = False) -> Fast:
    """Ids that are all 18 ASCII letters and digits (or None, when optional) stand as they
    are, as `check_id` returns them; with `short`, 15-character ones too (log files), each
    distinct one extended to 18 characters once."""
    lengths = {15, 18} if short else {18}

    def fast(values: list[Any]) -> list[Any] | None:
        present = values if required else list(filter(_not_none, values))
        joined = _joined(present)
        if joined is None:
            return None
        if not present:
            return values  # all None, and optional
        if not set(map(len, present)) <= lengths or not (joined.isascii() and joined.isalnum()):
            return None
        extended = {v: extend_15(v) for v in set(present) if len(v) == 15}
        return list(map(extended.get, values, values)) if extended else values

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
    """JSON numbers that are all whole floats (or all ints) in [0, bound], or text that is
    all plain digits (log files), up to bound."""

    def fast(values: list[Any]) -> list[Any] | None:
        kinds = set(map(type, values))
        if kinds == {float}:
            # NaN and inf are not integers: past this, min and max compare soundly
            if not all(map(float.is_integer, values)):
                return None
            return list(map(int, values)) if _in_range(values, bound) else None
        if kinds == {int}:
            return values if _in_range(values, bound) else None
        if kinds == {str}:  # plain ASCII digits (log files)
            joined = "".join(values)
            if not (joined.isdigit() and joined.isascii()) or "" in values:
                return None
            if max(map(len, values)) > len(str(bound)):
                return None  # the value checks say which is too large (and int() refuses
                # text of more than 4,300 digits)
            whole = list(map(int, values))
            return whole if max(whole) <= bound else None
        return None

    return fast


def _in_range(values: list[Any], bound: float) -> bool:
    return bool(min(values) >= 0 and max(values) <= bound)


def fast_amounts(bound: float) -> Fast:
    """JSON numbers that are all finite floats in [0, bound], or text (log files) that all
    starts with a digit and reads as such a float — as `check_amount` takes either."""

    def fast(values: list[Any]) -> list[Any] | None:
        kinds = set(map(type, values))
        if kinds == {str}:
            if not all(map(str.isdigit, map(_first, values))):
                return None
            try:
                values = list(map(float, values))
            except ValueError:
                return None
        elif kinds != {float} or not all(map(math.isfinite, values)):
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
