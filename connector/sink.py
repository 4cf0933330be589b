"""What a source hands its sink: typed pages of records and the cursor they advance.

A source (AgentWorkItem + EventLogFile, Data 360) reads an org page by page and hands each
page to a `SyncSink`; the sink stores the page's records and its cursor in one transaction,
so a cursor never runs ahead of the rows it covers. The connector knows record shapes in
logical field names, never tables or SQL: the store implements this protocol.

Datetimes in records are the store's ISO text form, `YYYY-MM-DDTHH:MM:SS.mmmZ`.

A row whose values cannot be data (SPEC §3.5) travels in the same page as a `BadRecord`:
the good records of the page are stored as usual, the bad one is kept with its reason and
location, and a stored copy of it (an earlier good version) leaves its source.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, NotRequired, Protocol, TypedDict

__all__ = [
    "AwiRecord",
    "BadRecord",
    "CaseRecord",
    "D360Event",
    "D360Session",
    "D360Step",
    "LogEvent",
    "LogFileRecord",
    "Page",
    "SyncSink",
    "SyncState",
]

#: a source's cursor document (keys are the source's own: cursor, since_bound, covered…)
SyncState = dict[str, Any]


class AwiRecord(TypedDict):
    """One AgentWorkItem record in logical field names (SPEC §3.1)."""

    id: str
    session_id: str | None
    agent_id: str | None
    agent_name: str | None
    action_name: str | None
    action_type: str | None
    channel: str | None
    status: str | None
    error_code: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    tokens: int | None
    reported_awu: float | None
    action_input: str | None
    user_id: str | None
    case_id: str | None
    started_at: str | None
    created_date: str | None
    system_modstamp: str | None


class LogEvent(TypedDict):
    """One AgentAction log row (SPEC §3.2) and the file it came from."""

    request_id: str
    work_item_id: str | None
    session_id: str | None
    user_id: str | None
    agent_id: str | None
    action_name: str | None
    action_type: str | None
    channel: str | None
    status: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    tokens: int | None
    reported_awu: float | None
    started_at: str
    file_id: str
    file_created_date: str
    file_sequence: int


class LogFileRecord(TypedDict):
    """One EventLogFile as processed: whole (rows, sha256) or bad (error)."""

    id: str
    log_date: str | None
    interval: str | None
    sequence: int
    created_date: str
    rows: int
    sha256: str
    bytes: int
    bad: int
    error: str | None
    processed_at: str
    run_id: str
    #: 1 when a bad file may read whole on a later download (a torn or empty body)
    retryable: NotRequired[int]


class BadRecord(TypedDict):
    """A record (or a whole log file) that cannot be data, and where to find it."""

    source: str  # "agentworkitem", "eventlogfile", "data360"
    #: unique within the source: the record id, the REQUEST_ID of a log row (its file Id +
    #: line when that is unusable), a log file's Id, a Data 360 event id
    key: str
    reason: str  # a reason class (connector.checks.REASONS)
    field: str | None
    detail: str  # one line: the value and what is wrong with it
    record_id: str | None
    file_id: str | None
    line: int | None  # CSV line (1 = the header)
    #: when the record belongs (its start time, else its file's LogDate or CreatedDate):
    #: which windows count it
    at: str | None


class CaseRecord(TypedDict):
    id: str
    status: str | None
    is_closed: int
    closed_at: str | None


class D360Event(TypedDict):
    """One Data 360 generative-AI usage event of a tool call (SPEC §11)."""

    id: str
    request_id: str | None
    started_at: str
    session_id: str | None
    interaction_id: str | None
    agent_id: str | None
    agent_name: str | None
    tool_name: str
    user_id: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    tokens: int | None
    usage_quantity: str | None
    is_metered: int | None
    is_billable: int | None
    skip_reason: str | None
    usage_type: str | None


class D360Step(TypedDict):
    id: str
    request_id: str
    interaction_id: str | None
    step_type: str | None
    prev_step_id: str | None
    input_text: str | None
    error_text: str | None
    started_at: str | None


class D360Session(TypedDict):
    id: str
    channel_type: str | None
    voice_call_id: str | None
    started_at: str | None


@dataclass(frozen=True)
class Page:
    """Records to store together with the cursor they advance `source` to.

    `state=None` leaves the source's cursor as it is (a backfill page, a Case lookup).
    Log events replace a stored copy of the same REQUEST_ID only when their file is newer
    (CreatedDate, then Sequence, then Id): the sink enforces that rule.
    """

    source: str
    run_id: str
    state: Mapping[str, Any] | None = None
    awi_records: Sequence[AwiRecord] = ()
    log_events: Sequence[LogEvent] = ()
    log_file: LogFileRecord | None = None
    cases: Sequence[CaseRecord] = ()
    d360_events: Sequence[D360Event] = ()
    d360_steps: Sequence[D360Step] = ()
    d360_sessions: Sequence[D360Session] = ()
    bad_records: Sequence[BadRecord] = ()


class SyncSink(Protocol):
    """Where sources write. Implemented by the store (`audit.store`)."""

    def sync_state(self, source: str) -> SyncState | None:
        """The cursor document last committed for `source`, or None."""
        ...

    def commit(self, page: Page) -> None:
        """Store the page's records and (if given) its cursor in one transaction."""
        ...

    def together(self) -> AbstractContextManager[object]:
        """The pages committed inside are stored together or not at all (a log file's
        rows go in pages of their own: a file found torn part-way leaves nothing behind)."""
        ...

    def awi_modstamps(self, ids: Sequence[str]) -> dict[str, str | None]:
        """SystemModstamp of each stored AgentWorkItem among `ids`."""
        ...

    def log_file_created(self, file_id: str) -> str | None:
        """CreatedDate of the stored EventLogFile `file_id`, or None if never processed."""
        ...

    def log_files_due(self, max_attempts: int) -> list[str]:
        """Ids of stored bad EventLogFiles worth downloading again: retryable (torn or
        empty), and read fewer than `max_attempts` times."""
        ...

    def known_case_ids(self, ids: Sequence[str]) -> set[str]:
        """The ids among `ids` whose Case is stored."""
        ...

    def known_d360_step_requests(self, request_ids: Sequence[str]) -> set[str]:
        """The gateway request ids among `request_ids` that have a stored step."""
        ...

    def known_d360_sessions(self, ids: Sequence[str]) -> set[str]:
        """The session ids among `ids` that are stored."""
        ...

    def stored_d360_events(self, ids: Sequence[str]) -> dict[str, D360Event]:
        """The stored copy of each usage event among `ids`."""
        ...
