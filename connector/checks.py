"""Values that cannot be data: every source checks each value where a row becomes a typed
record, and a value that fails makes the whole record a bad record (SPEC §3.5) — never a
crash, never a silent zero.

Each check returns the typed value or raises `BadValue` with a reason class (the keys of
`data_quality.by_reason`). Empty means "no value": None for an optional field, a
`missing` bad value for a required one. Whole numbers written as `5562.0` are fine;
`10000.9` is `fractional`, never truncated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from connector.ids import extend_15
from connector.wire import format_iso_ms

__all__ = [
    "DEFAULT_MAX_TOKENS",
    "EARLIEST",
    "LATEST",
    "REASONS",
    "BadValue",
    "check_amount",
    "check_count",
    "check_datetime",
    "check_id",
    "check_text",
    "shown",
]

#: the default bound on a token count of one action (`[rules] max_tokens_per_action`)
DEFAULT_MAX_TOKENS = 100_000_000
#: datetimes outside [EARLIEST, LATEST) are not plausible for agent telemetry
EARLIEST = datetime(2000, 1, 1, tzinfo=timezone.utc)
LATEST = datetime(2100, 1, 1, tzinfo=timezone.utc)

#: reason class → what it means (the report's legend)
REASONS: dict[str, str] = {
    "missing": "a required value is empty",
    "not_a_number": "a number field holds text",
    "not_finite": "a number is inf or NaN",
    "negative": "a count or amount below zero",
    "fractional": "a count that is not a whole number",
    "too_large": "a count above the configured bound (max_tokens_per_action)",
    "bad_datetime": "a datetime that does not parse or does not exist",
    "implausible_datetime": "a datetime before 2000 or after 2099",
    "bad_id": "not a 15- or 18-character Salesforce id",
    "invalid_utf8": "text that is not valid UTF-8",
    "field_count": "a CSV row with more or fewer fields than the header",
    "bad_file": "a log file that did not parse whole",
    "bad_input": "an action input that is null or not JSON (no fingerprint)",
}


@dataclass
class BadValue(Exception):
    """Why one value of one field cannot be data."""

    reason: str
    field: str
    value: Any

    def __str__(self) -> str:
        return f"{self.field} = {shown(self.value)}: {REASONS.get(self.reason, self.reason)}"


def shown(value: Any, limit: int = 40) -> str:
    """A value as a report shows it: repr, cut to `limit` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _empty(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _nothing(value: Any, field: str, required: bool) -> None:
    if required:
        raise BadValue("missing", field, value)


def _number(value: Any, field: str) -> float | int | Decimal:
    """int, float or Decimal as sent; text parsed (int first, so large ints stay exact)."""
    if isinstance(value, bool):
        raise BadValue("not_a_number", field, value)
    if isinstance(value, int | float | Decimal):
        return value
    if isinstance(value, str):
        text = value.strip()
        try:
            return int(text)
        except ValueError:
            pass
        try:
            return float(text)
        except ValueError:
            raise BadValue("not_a_number", field, value) from None
    raise BadValue("not_a_number", field, value)


def _finite(number: float | int | Decimal) -> bool:
    if isinstance(number, Decimal):
        return number.is_finite()
    return isinstance(number, int) or math.isfinite(number)


def _bounded(
    value: Any, field: str, *, required: bool, bound: float
) -> float | int | Decimal | None:
    """A finite number in [0, bound], or None for an empty optional value."""
    if _empty(value):
        _nothing(value, field, required)
        return None
    number = _number(value, field)
    if not _finite(number):
        raise BadValue("not_finite", field, value)
    if number < 0:
        raise BadValue("negative", field, value)
    if number > bound:
        raise BadValue("too_large", field, value)
    return number


def check_count(value: Any, field: str, *, required: bool, bound: int) -> int | None:
    """A token count: a finite whole number in [0, bound]."""
    kind = type(value)  # the common case first: a JSON number already in range
    if kind is float and 0 <= value <= bound and value.is_integer():
        return int(value)
    if kind is int and 0 <= value <= bound:
        return value  # type: ignore[no-any-return]  # an int, as `kind` says
    if kind is str and value.isdigit() and value.isascii():  # plain digits (log files)
        # by length first: int() refuses text of more than 4,300 digits with a ValueError
        digits = value.lstrip("0")
        if len(digits) <= len(str(bound)) and int(digits or "0") <= bound:
            return int(digits or "0")
        raise BadValue("too_large", field, value)
    number = _bounded(value, field, required=required, bound=bound)
    if number is None:
        return None
    whole = int(number)
    if whole != number:
        raise BadValue("fractional", field, value)
    return whole


def check_amount(value: Any, field: str, *, required: bool, bound: float) -> float | None:
    """A reported AWU (or usage quantity): a finite number in [0, bound]."""
    kind = type(value)  # the common cases first: NaN and inf fail the comparisons
    if kind is float and 0 <= value <= bound:
        return value  # type: ignore[no-any-return]  # a float, as `kind` says
    if kind is str and value[:1].isdigit():  # text such as "1.0" (log files)
        try:
            quick = float(value)
        except ValueError:
            pass
        else:
            if 0 <= quick <= bound:
                return quick
    number = _bounded(value, field, required=required, bound=bound)
    return None if number is None else float(number)


def check_datetime(value: Any, field: str, *, required: bool) -> str | None:
    """A wire datetime (`…+0000`, `…Z`, `datetime`) as `YYYY-MM-DDTHH:MM:SS.mmmZ`; it must
    exist and fall in [EARLIEST, LATEST)."""
    if _empty(value):
        _nothing(value, field, required)
        return None
    if isinstance(value, datetime):
        dt = value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)
    elif isinstance(value, str):
        text = value.strip()
        try:
            dt = datetime.fromisoformat(text)
        except ValueError:
            raise BadValue("bad_datetime", field, value) from None
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=timezone.utc)
    else:
        raise BadValue("bad_datetime", field, value)
    try:
        in_range = EARLIEST <= dt < LATEST
    except (OverflowError, ValueError):  # pragma: no cover - an extreme offset
        in_range = False
    if not in_range:
        raise BadValue("implausible_datetime", field, value)
    if isinstance(value, str) and text[10:11] == "T" and text[19:20] == ".":
        # the two wire shapes, valid (parsed above) and in range: no formatting needed
        if len(text) == 24 and text[-1] == "Z":
            return text  # 2026-10-06T14:03:22.123Z (log files)
        if len(text) == 28 and text.endswith("+0000"):
            return text[:23] + "Z"  # 2026-10-06T14:03:22.000+0000 (records)
    return format_iso_ms(dt)


def check_id(value: Any, field: str, *, required: bool) -> str | None:
    """A Salesforce id: 15 or 18 letters and digits, returned in the 18-character form."""
    if _empty(value):
        _nothing(value, field, required)
        return None
    if not isinstance(value, str):
        raise BadValue("bad_id", field, value)
    text = value.strip()
    if len(text) not in (15, 18) or not (text.isascii() and text.isalnum()):
        raise BadValue("bad_id", field, value)
    return text if len(text) == 18 else extend_15(text)  # record Ids are unique: no cache


def check_text(value: Any, field: str) -> str | None:
    """Free text: kept as is when it is valid Unicode (no lone surrogates, which is what
    undecodable bytes become); other JSON values are kept as their text."""
    if value is None:
        return None
    if not isinstance(value, str):
        return str(value)
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise BadValue("invalid_utf8", field, value) from None
    return value
