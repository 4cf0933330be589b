"""Records in logical field names: what the connector hands the audit engine.

An `Action` is one reconciled agent action execution (SPEC §3.3): the union of an
AgentWorkItem record and its EventLogFile rows, counted once. The audit engine is pure
over these records; it never sees API field names, HTTP or SQLite.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

__all__ = [
    "days_of",
    "json_number",
    "Action",
    "Case",
    "to_ms",
    "from_ms",
    "parse_sf_datetime",
    "format_iso_ms",
]


# Not frozen, on purpose: a frozen dataclass sets each of its 21 fields through
# object.__setattr__, ~2 µs an action against ~0.3 µs; a window's audit builds every action
# twice (reconciled, then read back by session), a million of them at scale. Treat it as
# immutable all the same (nothing assigns to an action's fields; `dataclasses.replace`
# makes a changed copy); it keeps value equality and its hash.
@dataclass(slots=True, unsafe_hash=True)
class Action:
    id: str  # AgentWorkItem Id (18), else the ELF REQUEST_ID / Data 360 request id
    session_id: str | None
    action_name: str
    action_type: str | None  # Apex, Flow, ExternalAPI, Query, Retrieval, Response, Utility
    channel: str  # "Text" | "Voice"
    status: str  # "Success" | "Error"
    tokens: int
    started_at: datetime  # timezone-aware UTC
    reported_awu: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    agent_id: str | None = None
    agent_name: str | None = None
    error_code: str | None = None
    action_input: str | None = None
    user_id: str | None = None
    case_id: str | None = None
    source: str = "both"
    #: TOTAL_TOKENS from the log files when both sources have the action (SOURCE_GAP check)
    elf_tokens: int | None = None
    #: False for an action that is never billed (Utility; unmetered Data 360 events)
    billable_override: bool | None = None
    extra: dict[str, object] = field(default_factory=dict, compare=False, hash=False)

    @property
    def started_ms(self) -> int:
        return to_ms(self.started_at)

    @property
    def is_utility(self) -> bool:
        return self.action_type == "Utility"

    @property
    def is_billable(self) -> bool:
        if self.billable_override is not None:
            return self.billable_override
        return not self.is_utility


@dataclass(frozen=True, slots=True)
class Case:
    id: str
    status: str | None
    is_closed: bool
    closed_at: datetime | None


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def days_of(window: tuple[datetime, datetime]) -> list[str]:
    """Every day (YYYY-MM-DD, UTC) the window [start, end) touches."""
    start, end = (dt.astimezone(timezone.utc) for dt in window)
    day, last = start.date(), (end - timedelta(microseconds=1)).date()
    days = []
    while day <= last:
        days.append(day.isoformat())
        day += timedelta(days=1)
    return days


def json_number(value: float) -> float | int:
    """50.0 → 50 in JSON output; other values unchanged."""
    return int(value) if float(value).is_integer() else value


def to_ms(dt: datetime) -> int:
    """Integer milliseconds since the epoch (SPEC §4 compares retry gaps in whole ms)."""
    delta = dt - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).replace(
        microsecond=(ms % 1000) * 1000
    )


def parse_sf_datetime(value: str) -> datetime:
    """An ISO 8601 datetime (`Z`, `+0000` and `+00:00` offsets; naive means UTC) as aware
    UTC. ValueError when it is not a datetime."""
    dt = datetime.fromisoformat(value.strip())
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.astimezone(timezone.utc)


def format_iso_ms(dt: datetime) -> str:
    """`2026-10-06T14:03:22.123Z` — the store's and the JSON output's datetime form."""
    # isoformat is implemented in C; strftime was a measurable share of a large sync
    return dt.astimezone(timezone.utc).isoformat(timespec="milliseconds")[:-6] + "Z"
