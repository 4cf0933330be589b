"""A column checked at once (`connector.columns`) gives exactly what its values checked one by
one give (SPEC §3.5): the same typed values, the same bad values at the same positions. Each
shortcut is asked with its common shape alone (it must take it, and agree), and with every
edge value mixed in, where it must leave the column to the value checks."""

from __future__ import annotations

import math
from functools import partial
from typing import Any

import pytest

from connector.checks import BadValue, check_amount, check_count, check_datetime, check_id
from connector.columns import (
    Fast,
    checked_column,
    fast_amounts,
    fast_counts,
    fast_datetimes,
    fast_ids,
    fast_text,
)

BOUND = 1_000_000


def _one_by_one(check: Any, values: list[Any]) -> tuple[list[Any], dict[int, str]]:
    out: list[Any] = []
    bad: dict[int, str] = {}
    for i, value in enumerate(values):
        try:
            out.append(check(value))
        except BadValue as exc:
            out.append(None)
            bad[i] = exc.reason
    return out, bad


def _agrees(check: Any, fast: Fast, values: list[Any]) -> None:
    bad: dict[int, BadValue] = {}
    got = checked_column(values, check, fast, bad)
    want, want_bad = _one_by_one(check, values)
    assert [(v, type(v)) for v in got] == [(v, type(v)) for v in want]
    assert {i: b.reason for i, b in bad.items()} == want_bad
    for value in values:  # and each alone, where the shortcut may take it
        single: dict[int, BadValue] = {}
        alone = checked_column([value], check, fast, single)
        assert [(v, type(v)) for v in alone] == [
            (v, type(v)) for v in _one_by_one(check, [value])[0]
        ]


_COUNTS = [5546.0, 0.0, -0.0, float(BOUND), 12.0]
_COUNT_EDGES = [5546, 7.5, -1.0, float(BOUND + 1), math.inf, math.nan, -math.inf, True, None,
                "", "12", 1e30, BOUND + 1, -1]  # fmt: skip
# log files' counts are text; int() refuses text of more than 4,300 digits
_COUNT_TEXTS = ["5546", "0", str(BOUND), "0012"]
_COUNT_TEXT_EDGES = ["9" * 5000, "0" * 5000 + "7", str(BOUND + 1), "12a", "", "-1", "１２",
                     " 12", "12.0"]  # fmt: skip
_AMOUNTS = [1.0, 0.0, 1.5, float(BOUND), 0.25]
_AMOUNT_EDGES = [1, -0.5, BOUND + 0.5, math.inf, math.nan, None, "1.0", True, 1e308]
_IDS = ["0055g00lwncOrhWAAS", "1AW5g00VbwRtAK1GEN", "a0B5g00000AbCdEFGH"]
_ID_EDGES = [None, "", " 0055g00lwncOrhWAAS", "0055g00lwncOrhW", "0055g00lwncOrh",
             "0055g00lwncOrhW-AS", "0055g00lwncOrhWAAé", 55, "0055g00lwncOrhWAAS0"]  # fmt: skip
_STAMPS = ["2026-10-06T14:03:22.123+0000", "2000-01-01T00:00:00.000+0000",
           "2099-12-31T23:59:59.999+0000", "2028-02-29T12:00:00.000+0000"]  # fmt: skip
_ZSTAMPS = [s[:23] + "Z" for s in _STAMPS]
_STAMP_EDGES = ["2026-02-30T00:00:00.000+0000", "2026-10-06T24:00:00.000+0000",
                "2027-02-29T00:00:00.000+0000", "1999-12-31T23:59:59.999+0000",
                "2100-01-01T00:00:00.000+0000", "2026-10-06T14:03:22.123+0100",
                "2026-10-06 14:03:22.123+0000", "2026-10-06T14:03:22+0000",
                "2026-13-45T99:00:00Z", "2026-10-06T14:03:22.123Z", " 2026-10-06T14:03:22.123Z",
                "２０２６-10-06T14:03:22.123+0000", None, "", 20261006]  # fmt: skip
_TEXTS = ["Success", "Amélie Dubois", '{"a": 1}', None, ""]
_TEXT_EDGES = ["bad \udcff byte", 5, 0, False, {"a": 1}, "\ud800"]


def _text(value: Any) -> Any:
    # the AgentWorkItem text check: None stands, other values through check_text
    from connector.checks import check_text

    return value if value is None else check_text(value, "F")


CASES: list[tuple[str, Any, Fast, list[Any], list[Any]]] = [
    ("count", partial(check_count, field="F", required=True, bound=BOUND), fast_counts(BOUND),
     _COUNTS, _COUNT_EDGES),
    ("count ints", partial(check_count, field="F", required=False, bound=BOUND),
     fast_counts(BOUND), [1, 0, BOUND], _COUNT_EDGES),
    ("count text", partial(check_count, field="F", required=False, bound=BOUND),
     fast_counts(BOUND), _COUNT_TEXTS, _COUNT_TEXT_EDGES),
    ("amount", partial(check_amount, field="F", required=False, bound=BOUND),
     fast_amounts(BOUND), _AMOUNTS, _AMOUNT_EDGES),
    ("id", partial(check_id, field="F", required=True), fast_ids(required=True), _IDS,
     _ID_EDGES),
    ("optional id", partial(check_id, field="F", required=False), fast_ids(required=False),
     [*_IDS, None], _ID_EDGES),
    ("log id", partial(check_id, field="F", required=False),
     fast_ids(required=False, short=True), ["0055g00lwncOrhW", *_IDS, None, "0055g00lwncOrhW"],
     _ID_EDGES),
    ("datetime", partial(check_datetime, field="F", required=True), fast_datetimes, _STAMPS,
     _STAMP_EDGES),
    ("datetime Z", partial(check_datetime, field="F", required=False), fast_datetimes,
     _ZSTAMPS, _STAMP_EDGES),
    ("text", _text, fast_text, _TEXTS, _TEXT_EDGES),
]  # fmt: skip


@pytest.mark.parametrize(("name", "check", "fast", "common", "edges"), CASES,
                         ids=[c[0] for c in CASES])  # fmt: skip
def test_a_column_in_the_common_shape_takes_the_shortcut(
    name: str, check: Any, fast: Fast, common: list[Any], edges: list[Any]
) -> None:
    assert fast(common) is not None
    _agrees(check, fast, common)


@pytest.mark.parametrize(("name", "check", "fast", "common", "edges"), CASES,
                         ids=[c[0] for c in CASES])  # fmt: skip
def test_every_edge_value_mixed_in_agrees_with_its_own_check(
    name: str, check: Any, fast: Fast, common: list[Any], edges: list[Any]
) -> None:
    for edge in edges:
        for at in (0, len(common) // 2, len(common)):
            _agrees(check, fast, [*common[:at], edge, *common[at:]])
    _agrees(check, fast, [*edges, *common])


def test_a_bad_value_keeps_the_first_column_that_failed_its_row() -> None:
    bad: dict[int, BadValue] = {}
    ids = partial(check_id, field="id", required=True)
    counts = partial(check_count, field="tokens", required=True, bound=BOUND)
    checked_column(["0055g00lwncOrhWAAS", "bad"], ids, fast_ids(required=True), bad)
    checked_column([1.0, -1.0], counts, fast_counts(BOUND), bad)
    assert {i: (b.field, b.reason) for i, b in bad.items()} == {1: ("id", "bad_id")}


def test_log_rows_read_a_block_at_a_time_are_the_rows_read_one_by_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """parse_logfile checks a block of rows a column at a time; every row must come out
    as `_row` makes it alone: good, bad (reason, field, line, id, start) or settled."""
    import csv
    import io

    from connector import logfiles
    from connector.logfiles import ELF_COLUMNS, _row, parse_logfile

    good = ["AgentAction", "2026-09-30T02:57:26.245Z", "req", "00D5g00b74xrTngEAE",
            "0055g00lwncOrhW", "s-1", "0Xx5g00630j1RslCAE", "SendReply", "Response", "Text",
            "Success", "2161", "540", "2701", "1.0", "1AW5g00VbwRtAKZ"]  # fmt: skip
    changes: list[dict[int, str]] = [
        {}, {4: "0055g00lwncOrhWAAS"}, {15: ""}, {4: ""}, {13: "-5"}, {13: "12.5"}, {12: ""},
        {14: "abc"}, {14: ""}, {1: "2026-02-30T00:00:00.000Z"}, {1: ""}, {2: ""},
        {6: "0Xx5g"}, {9: ""}, {10: ""}, {5: "Amélie"}, {5: "bad \udcff"},
        {11: "1e30"}, {13: str(BOUND + 1)}, {15: "1AW5g00VbwRtAKZGE3"}, {14: "2"},
    ]  # fmt: skip
    rows = []
    for n in range(2500):
        row = [*good]
        row[2] = f"req-{n % 2300}"  # some REQUEST_IDs twice
        for at, value in changes[n % len(changes)].items():
            row[at] = value
        rows.append(row)
    # the second block (rows 1000-1999) goes row by row: a short row, another event type
    # and a blank line; the others are read a column at a time
    rows[1200] = rows[1200][:5]
    rows[1500][0] = "Other"
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(ELF_COLUMNS)
    writer.writerows(rows[:1900])
    out.write("\n")  # a blank line
    writer.writerows(rows[1900:])
    body = out.getvalue().encode("utf-8", errors="surrogateescape")

    def settled(rid: str) -> bool:
        return rid.endswith("7")

    alone: list[int] = []

    def counted(row: list[str], *args: Any) -> Any:
        alone.append(1)
        return _row(row, *args)

    monkeypatch.setattr(logfiles, "_row", counted)
    got = list(parse_logfile(io.BytesIO(body), None, max_tokens=BOUND, settled=settled))
    monkeypatch.undo()
    assert 1000 <= len(alone) < 1200  # the second block, and the rows beyond ASCII
    index = {name: i for i, name in enumerate(ELF_COLUMNS)}
    text = body.decode("utf-8", errors="surrogateescape").splitlines()[1:]
    want = [
        parsed
        for line, row in enumerate(csv.reader(text), 2)
        if (parsed := _row(row, index, len(ELF_COLUMNS), line, BOUND, settled)) is not None
    ]
    assert got == want
    kinds = {(r.event is not None, r.bad.reason if r.bad else None) for r in got}
    assert len(kinds) >= 8  # good, settled and several kinds of bad rows were compared
