"""EventLogFile AgentAction CSVs: parse by header (never by position), normalise ids,
and hand back rows in logical names. Files are read from disk after a streamed download,
so a large file never sits in memory whole."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

from connector.ids import to_18

__all__ = ["ELF_COLUMNS", "BadLogFile", "parse_logfile", "field_names_agree"]

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


@dataclass
class BadLogFile(Exception):
    reason: str

    def __str__(self) -> str:
        return self.reason


def field_names_agree(header: list[str], log_file_field_names: str | None) -> bool:
    """`LogFileFieldNames` must list exactly the CSV header's columns, in order."""
    if not log_file_field_names:
        return True  # older API versions do not return it
    declared = [n.strip() for n in log_file_field_names.split(",")]
    return declared == [h.strip() for h in header]


def parse_logfile(stream: IO[bytes], log_file_field_names: str | None) -> Iterator[dict[str, Any]]:
    """Yield one dict per CSV row in logical names. Raises BadLogFile (before yielding
    anything) when the header is unusable or disagrees with LogFileFieldNames."""
    text = io.TextIOWrapper(stream, encoding="utf-8-sig", newline="")
    try:
        reader = csv.reader(text)
        header = next(reader, None)
        if header is None:
            return
        header = [h.strip() for h in header]
        if not field_names_agree(header, log_file_field_names):
            raise BadLogFile("LogFileFieldNames disagrees with the CSV header")
        missing = [c for c in _REQUIRED if c not in header]
        if missing:
            raise BadLogFile(f"CSV header lacks {', '.join(missing)}")
        yield from _rows(reader, {name: i for i, name in enumerate(header)})
    finally:
        text.detach()  # the caller owns (and closes) the underlying file


def _rows(reader: Iterator[list[str]], index: dict[str, int]) -> Iterator[dict[str, Any]]:
    def get(row: list[str], name: str) -> str | None:
        i = index.get(name)
        if i is None or i >= len(row):
            return None
        value = row[i].strip()
        return value or None

    for row in reader:
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        if get(row, "EVENT_TYPE") not in (None, "AgentAction"):
            continue
        yield {
            "request_id": get(row, "REQUEST_ID"),
            "work_item_id": to_18(get(row, "WORK_ITEM_ID")),
            "session_id": get(row, "SESSION_KEY"),
            "user_id": to_18(get(row, "USER_ID")),
            "agent_id": to_18(get(row, "AGENT_ID")),
            "action_name": get(row, "ACTION_NAME"),
            "action_type": get(row, "ACTION_TYPE"),
            "channel": get(row, "CHANNEL") or "Text",
            "status": get(row, "STATUS") or "Success",
            "prompt_tokens": _int(get(row, "PROMPT_TOKENS")),
            "completion_tokens": _int(get(row, "COMPLETION_TOKENS")),
            "tokens": _int(get(row, "TOTAL_TOKENS")),
            "reported_awu": _float(get(row, "AWU_COUNT")),
            "started_at": get(row, "TIMESTAMP_DERIVED"),
        }


def _int(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(float(value))
    except ValueError:
        return None


def _float(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None
