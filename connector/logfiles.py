"""EventLogFile AgentAction CSVs: parse by header (never by position), check every value,
normalise ids, and hand back rows in logical names — or, for a row that cannot be data,
why and where (SPEC §3.5). Files are read from disk after a streamed download,
so a large file never sits in memory whole."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache, partial
from itertools import chain
from operator import is_not, itemgetter
from typing import IO, Any, NamedTuple

from connector.checks import (
    DEFAULT_MAX_TOKENS,
    BadValue,
    check_amount,
    check_count,
    check_datetime,
    check_id,
    check_text,
)
from connector.columns import (
    Fast,
    checked_column,
    fast_amounts,
    fast_counts,
    fast_datetimes,
    fast_ids,
    fast_text,
)

__all__ = ["ELF_COLUMNS", "BadLogFile", "LogRow", "field_names_agree", "parse_logfile"]

ELF_COLUMNS = (
    "EVENT_TYPE",
    "TIMESTAMP_DERIVED",
    "REQUEST_ID",
    "ORGANIZATION_ID",
    "USER_ID",
    "SESSION_KEY",
    "AGENT_ID",
    "ACTION_NAME",
    "ACTION_TYPE",
    "CHANNEL",
    "STATUS",
    "PROMPT_TOKENS",
    "COMPLETION_TOKENS",
    "TOTAL_TOKENS",
    "AWU_COUNT",
    "WORK_ITEM_ID",
)
_REQUIRED = ("TIMESTAMP_DERIVED", "REQUEST_ID", "ACTION_NAME", "TOTAL_TOKENS")
#: rows read before they are checked together, a column at a time (`_block`)
_BLOCK = 1000
_not_none = partial(is_not, None)


@dataclass
class BadLogFile(Exception):
    """The file as a whole cannot be read. `retryable`: a torn or empty body, which a later
    download may bring whole (a header that disagrees stays wrong)."""

    reason: str
    retryable: bool = False

    def __str__(self) -> str:
        return self.reason


class LogRow(NamedTuple):
    """One AgentAction row: `event` in logical names, or `bad` (why it cannot be data) with
    whatever of the row could still locate it — or neither: a row whose REQUEST_ID the
    caller said is settled, read no further than that (see parse_logfile)."""

    line: int
    event: dict[str, Any] | None
    bad: BadValue | None = None
    request_id: str | None = None
    started_at: str | None = None


def field_names_agree(header: list[str], log_file_field_names: str | None) -> bool:
    """`LogFileFieldNames` must list exactly the CSV header's columns, in order."""
    if not log_file_field_names:
        return True  # older API versions do not return it
    declared = [n.strip() for n in log_file_field_names.split(",")]
    return declared == [h.strip() for h in header]


def parse_logfile(
    stream: IO[bytes],
    log_file_field_names: str | None,
    *,
    max_tokens: int = DEFAULT_MAX_TOKENS,
    settled: Callable[[str], bool] | None = None,
) -> Iterator[LogRow]:
    """Yield one LogRow per AgentAction CSV row, every value checked (SPEC §3.5). Raises
    BadLogFile when the file does not parse whole: no header (an empty body), a header that
    is unusable or disagrees with LogFileFieldNames (before yielding anything), or broken
    quoting anywhere (the caller drops what it was handed).

    A row whose (ASCII) REQUEST_ID `settled` accepts — a newer copy already decided it —
    is yielded with neither event nor bad and its other values unchecked; the CSV is still
    parsed whole, so a torn file is still found."""
    # undecodable bytes become lone surrogates: that row is bad, the file is not
    text = io.TextIOWrapper(stream, encoding="utf-8-sig", errors="surrogateescape", newline="")
    try:
        reader = csv.reader(text, strict=True)
        try:
            header = next(reader, None)
            if header is None:
                raise BadLogFile("empty body: no CSV header", retryable=True)
            header = [h.strip() for h in header]
            if not field_names_agree(header, log_file_field_names):
                raise BadLogFile("LogFileFieldNames disagrees with the CSV header")
            missing = [c for c in _REQUIRED if c not in header]
            if missing:
                raise BadLogFile(f"CSV header lacks {', '.join(missing)}")
            index = {name: i for i, name in enumerate(header)}
            rows: list[list[str]] = []
            lines: list[int] = []
            for row in reader:
                rows.append(row)
                lines.append(reader.line_num)
                if len(rows) == _BLOCK:
                    yield from _block(rows, lines, index, len(header), max_tokens, settled)
                    rows, lines = [], []
            yield from _block(rows, lines, index, len(header), max_tokens, settled)
        except csv.Error as exc:
            raise BadLogFile(
                f"CSV does not parse at line {reader.line_num}: {exc}", retryable=True
            ) from None
    finally:
        text.detach()  # the caller owns (and closes) the underlying file


def _block(
    rows: list[list[str]],
    lines: list[int],
    index: dict[str, int],
    width: int,
    bound: int,
    settled: Callable[[str], bool] | None,
) -> Iterator[LogRow]:
    """The block's rows, each as `_row` makes it. When every row is an AgentAction row as
    wide as the header (the common case), the rows no newer copy settled are checked a
    column at a time (`_events`); any other block, and a row that is not all ASCII, go
    through `_row`."""
    if not rows:
        return
    if set(map(len, rows)) != {width} or not _agent_actions(rows, index):
        for row, line in zip(rows, lines, strict=True):
            parsed = _row(row, index, width, line, bound, settled)
            if parsed is not None:
                yield parsed
        return
    out: list[LogRow | None] = [None] * len(rows)
    request_ids = list(map(str.strip, map(itemgetter(index["REQUEST_ID"]), rows)))
    all_ascii = "".join(chain.from_iterable(rows)).isascii()
    todo: list[int] = []
    for i, rid in enumerate(request_ids):
        if settled is not None and rid and rid.isascii() and settled(rid):
            out[i] = LogRow(lines[i], None, None, rid)
        elif all_ascii or "".join(rows[i]).isascii():
            todo.append(i)
        else:  # undecodable bytes, or text beyond ASCII: the row's own checks say which
            out[i] = _row(rows[i], index, width, lines[i], bound, settled)
    events, started, bad = _events([rows[i] for i in todo], index, bound)
    for k, i in enumerate(todo):
        why = bad.get(k)
        out[i] = (
            LogRow(lines[i], events[k], None, request_ids[i], started[k])
            if why is None
            else LogRow(lines[i], None, why, request_ids[i] or None, started[k])
        )
    yield from filter(_not_none, out)


def _agent_actions(rows: list[list[str]], index: dict[str, int]) -> bool:
    """Whether every row's EVENT_TYPE is AgentAction (or the file has no such column)."""
    at = index.get("EVENT_TYPE")
    if at is None:
        return True
    types = list(map(itemgetter(at), rows))
    return types.count("AgentAction") == len(types)


def _events(
    rows: list[list[str]], index: dict[str, int], bound: int
) -> tuple[list[dict[str, Any]], list[str | None], dict[int, BadValue]]:
    """All-ASCII rows as wide as the header, checked a column at a time in the order `_row`
    checks a row: their events, their started_at (None where it is bad) and, by position,
    the first value of each bad row that cannot be data."""
    bad: dict[int, BadValue] = {}
    if not rows:
        return [], [], bad
    columns = list(zip(*rows, strict=True))
    started = checked_column(
        _cells(columns, index, "TIMESTAMP_DERIVED"), _check_started, fast_datetimes, bad
    )
    checked = [
        checked_column(_cells(columns, index, column, default), check, fast, bad)
        for column, _, default, check, fast in _plan(bound)
    ]
    names = [*(logical for _, logical, *_ in _plan(bound)), "started_at"]
    # a name per value by construction: strict only once, on the columns
    rows_of = zip(*checked, started, strict=True)
    events = [dict(zip(names, values, strict=False)) for values in rows_of]
    return events, started, bad


def _cells(
    columns: list[tuple[str, ...]], index: dict[str, int], name: str, default: str | None = None
) -> list[str | None]:
    """One column's values stripped; empty (or an absent column) reads as `default`."""
    at = index.get(name)
    if at is None:
        return [default] * len(columns[0])
    values: list[str | None] = list(map(str.strip, columns[at]))
    return [v or default for v in values] if "" in values else values


#: (column, logical name, value when empty, its check, its column shortcut) of an event's
#: values, in the order `_event` checks them
_Plan = list[tuple[str, str, str | None, Callable[[Any], Any], Fast | None]]


@lru_cache(maxsize=4)
def _plan(bound: int) -> _Plan:
    ids = fast_ids(required=False, short=True)
    counts = fast_counts(bound)
    plain = (_plain, fast_text)
    return [
        ("REQUEST_ID", "request_id", None, _check_request_id, None),
        ("WORK_ITEM_ID", "work_item_id", None, partial(check_id, field="WORK_ITEM_ID",
                                                       required=False), ids),
        ("SESSION_KEY", "session_id", None, *plain),
        ("USER_ID", "user_id", None, partial(check_id, field="USER_ID", required=False), ids),
        ("AGENT_ID", "agent_id", None, partial(check_id, field="AGENT_ID", required=False), ids),
        ("ACTION_NAME", "action_name", None, *plain),
        ("ACTION_TYPE", "action_type", None, *plain),
        ("CHANNEL", "channel", "Text", *plain),
        ("STATUS", "status", "Success", *plain),
        ("PROMPT_TOKENS", "prompt_tokens", None, partial(check_count, field="PROMPT_TOKENS",
                                                         required=False, bound=bound), counts),
        ("COMPLETION_TOKENS", "completion_tokens", None, partial(
            check_count, field="COMPLETION_TOKENS", required=False, bound=bound), counts),
        ("TOTAL_TOKENS", "tokens", None, partial(check_count, field="TOTAL_TOKENS",
                                                 required=True, bound=bound), counts),
        ("AWU_COUNT", "reported_awu", None, partial(check_amount, field="AWU_COUNT",
                                                    required=False, bound=bound),
         fast_amounts(bound)),
    ]  # fmt: skip


def _check_started(value: Any) -> str | None:
    return check_datetime(value, "TIMESTAMP_DERIVED", required=True)


def _check_request_id(value: Any) -> Any:
    if value is None:
        raise BadValue("missing", "REQUEST_ID", "")
    return value


def _plain(value: Any) -> Any:
    return value  # text of an all-ASCII row: nothing to check


def _row(
    row: list[str],
    index: dict[str, int],
    width: int,
    line: int,
    bound: int,
    settled: Callable[[str], bool] | None = None,
) -> LogRow | None:
    if not row or (len(row) == 1 and not row[0].strip()):
        return None
    event_type = _get(row, index, "EVENT_TYPE")
    if event_type is not None and event_type != "AgentAction" and len(row) == width:
        return None
    request_id = _get(row, index, "REQUEST_ID")
    rid = request_id if request_id and request_id.isascii() else None
    # only an ASCII id: a bad row with any other id is kept by file and line, never settled
    if rid is not None and settled is not None and settled(rid):
        return LogRow(line, None, None, rid)
    started_at: str | None = None
    try:
        # undecodable bytes first: whatever column they sit in, that is what is wrong
        if not "".join(row).isascii():
            for i, value in enumerate(row):
                if not value.isascii():
                    check_text(value, _name_at(index, i))
        started = _get(row, index, "TIMESTAMP_DERIVED")
        started_at = check_datetime(started, "TIMESTAMP_DERIVED", required=True)
        if len(row) != width:
            raise BadValue("field_count", "row", f"{len(row)} fields, header has {width}")
        event = _event(row, index, bound)
    except BadValue as bad:
        return LogRow(line, None, bad, rid, started_at)
    event["started_at"] = started_at
    return LogRow(line, event, None, request_id, started_at)


def _get(row: list[str], index: dict[str, int], name: str) -> str | None:
    i = index.get(name)
    if i is None or i >= len(row):
        return None
    value = row[i].strip()
    return value or None


def _name_at(index: dict[str, int], i: int) -> str:
    return next((name for name, at in index.items() if at == i), f"column {i + 1}")


#: the columns an event is made of, in the order _event checks them
_EVENT_COLUMNS = (
    "REQUEST_ID",
    "WORK_ITEM_ID",
    "SESSION_KEY",
    "USER_ID",
    "AGENT_ID",
    "ACTION_NAME",
    "ACTION_TYPE",
    "CHANNEL",
    "STATUS",
    "PROMPT_TOKENS",
    "COMPLETION_TOKENS",
    "TOTAL_TOKENS",
    "AWU_COUNT",
)


def _event(row: list[str], index: dict[str, int], bound: int) -> dict[str, Any]:
    """The row (as wide as the header) as an event in logical names, values checked."""
    # one pass over the columns (an absent column reads as empty), then the checks in order
    (request_id, work_item, session, user, agent, action, action_type, channel, status,
     prompt, completion, total, awu) = [
        row[i].strip() if i is not None else "" for i in map(index.get, _EVENT_COLUMNS)
    ]  # fmt: skip
    if not request_id:
        raise BadValue("missing", "REQUEST_ID", "")
    return {
        "request_id": request_id,
        "work_item_id": check_id(work_item or None, "WORK_ITEM_ID", required=False),
        "session_id": session or None,
        "user_id": check_id(user or None, "USER_ID", required=False),
        "agent_id": check_id(agent or None, "AGENT_ID", required=False),
        "action_name": action or None,
        "action_type": action_type or None,
        "channel": channel or "Text",
        "status": status or "Success",
        "prompt_tokens": check_count(
            prompt or None, "PROMPT_TOKENS", required=False, bound=bound
        ),
        "completion_tokens": check_count(
            completion or None, "COMPLETION_TOKENS", required=False, bound=bound
        ),
        "tokens": check_count(total or None, "TOTAL_TOKENS", required=True, bound=bound),
        "reported_awu": check_amount(awu or None, "AWU_COUNT", required=False, bound=bound),
    }
