"""The value checks take the common wire shapes first (a JSON number in range, plain digits,
`…+0000`, an 18-character id). Those shortcuts must give exactly what the general rules
give (SPEC §3.5): the expected values here are written out by hand, and each case is also
asked in a shape the shortcut does not take, which must agree."""

from __future__ import annotations

import math
from typing import Any

import pytest

from connector.checks import BadValue, check_amount, check_count, check_datetime, check_id

BOUND = 1_000_000


def _outcome(check: Any, value: Any, **kw: Any) -> Any:
    try:
        return check(value, "F", **kw)
    except BadValue as bad:
        return ("bad", bad.reason)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (5546.0, 5546),
        (5546, 5546),
        ("5546", 5546),
        ("0005", 5),
        (" 5546 ", 5546),  # not plain digits: the general rule strips it
        ("１２", 12),  # Unicode digits are digits to int(); not ASCII: the general rule
        ("5546.0", 5546),
        (0.0, 0),
        (BOUND, BOUND),
        (float(BOUND), BOUND),
        (str(BOUND), BOUND),
        ("-0", 0),
        (5546.5, ("bad", "fractional")),
        ("5546.5", ("bad", "fractional")),
        (-1.0, ("bad", "negative")),
        (-1, ("bad", "negative")),
        ("-1", ("bad", "negative")),
        (BOUND + 1, ("bad", "too_large")),
        (float(BOUND + 1), ("bad", "too_large")),
        (str(BOUND + 1), ("bad", "too_large")),
        ("9" * 5000, ("bad", "too_large")),  # int() refuses more than 4,300 digits
        ("0" * 5000 + "7", 7),
        (math.inf, ("bad", "not_finite")),
        (math.nan, ("bad", "not_finite")),
        ("nan", ("bad", "not_finite")),
        (True, ("bad", "not_a_number")),
        ("12a", ("bad", "not_a_number")),
        ("", None),
        (None, None),
    ],
)
def test_check_count(value: Any, expected: Any) -> None:
    got = _outcome(check_count, value, required=False, bound=BOUND)
    assert got == expected and type(got) is type(expected)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1.0, 1.0),
        (1, 1.0),
        ("1.0", 1.0),
        ("10", 10.0),
        ("1e3", 1000.0),
        (".5", 0.5),
        ("-0", 0.0),
        (float(BOUND), float(BOUND)),
        (BOUND + 0.5, ("bad", "too_large")),
        ("1e400", ("bad", "not_finite")),
        (math.nan, ("bad", "not_finite")),
        ("nan", ("bad", "not_finite")),
        (-0.5, ("bad", "negative")),
        ("-0.5", ("bad", "negative")),
        ("1.0x", ("bad", "not_a_number")),
        (None, None),
    ],
)
def test_check_amount(value: Any, expected: Any) -> None:
    got = _outcome(check_amount, value, required=False, bound=BOUND)
    assert got == expected and type(got) is type(expected)
    if isinstance(got, float):
        assert math.copysign(1, got) == 1  # never a -0.0


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-10-06T14:03:22.123+0000", "2026-10-06T14:03:22.123Z"),
        ("2026-10-06T14:03:22.123Z", "2026-10-06T14:03:22.123Z"),
        ("2026-10-06T14:03:22.123+0100", "2026-10-06T13:03:22.123Z"),
        ("2026-10-06 14:03:22.123+0000", "2026-10-06T14:03:22.123Z"),
        ("2026-10-06T14:03:22.000+00:00", "2026-10-06T14:03:22.000Z"),
        ("2026-10-06T14:03:22+0000", "2026-10-06T14:03:22.000Z"),
        ("2026-02-30T00:00:00.000+0000", ("bad", "bad_datetime")),
        ("2026-10-06T24:00:00.000+0000", ("bad", "bad_datetime")),
        ("1999-12-31T23:59:59.999+0000", ("bad", "implausible_datetime")),
        ("2100-01-01T00:00:00.000+0000", ("bad", "implausible_datetime")),
    ],
)
def test_check_datetime(value: str, expected: Any) -> None:
    assert _outcome(check_datetime, value, required=True) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0055g00lwncOrhWAAS", "0055g00lwncOrhWAAS"),
        (" 0055g00lwncOrhWAAS ", "0055g00lwncOrhWAAS"),
        ("0055g00lwncOrhW", "0055g00lwncOrhWAAS"),  # 15 → 18: the same record
        ("0055g00lwncOrh", ("bad", "bad_id")),
        ("0055g00lwncOrhW-AS", ("bad", "bad_id")),
    ],
)
def test_check_id(value: str, expected: Any) -> None:
    assert _outcome(check_id, value, required=True) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("001D000000IqhSL", "001D000000IqhSLIAZ"),  # Salesforce's own example
        ("0055g00lwncOrhW", "0055g00lwncOrhWAAS"),
        ("aaaaaaaaaaaaaaa", "aaaaaaaaaaaaaaaAAA"),
        ("ZZZZZZZZZZZZZZZ", "ZZZZZZZZZZZZZZZ555"),
        ("A0000B0000C0000", "A0000B0000C0000BBB"),
        ("ÀBCDEFGHIJKLMNO", "ÀBCDEFGHIJKLMNO455"),  # À is not A–Z: no bit, as before
    ],
)
def test_extend_15(value: str, expected: str) -> None:
    from connector.ids import _extend_any, extend_15

    assert extend_15(value) == expected == _extend_any(value)
