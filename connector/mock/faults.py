"""Fault injection for the mock org: switchable per test at runtime, or from a spec string.

A ``Faults`` object is shared by a ``MockOrg`` and the test (or the ``audit mock-org
--faults`` command line) that drives it. Every setter and every ``take_*`` consumer holds
the object's lock, so a test may flip faults while a sync runs in another thread.

Spec string (``Faults.parse``), comma-separated ``key=value`` pairs::

    expire_token_after=N   each access token dies after N authorised API calls (401)
    unavailable=K          the next K API calls answer 503 SERVER_UNAVAILABLE
    lock_row=K             the next K API calls answer UNABLE_TO_LOCK_ROW
    lock_row_status=S      HTTP status of those answers (default 400)
    rate_limit=K           the next K API calls answer 429 REQUEST_LIMIT_EXCEEDED
    daily_limit=1          every API call answers 403 REQUEST_LIMIT_EXCEEDED (0 = off)
    api_used=N             API calls already used today (Sforce-Limit-Info, /limits)
    api_max=M              daily API call allowance (default 15000)
    api_usage=N/M          both of the above at once
    cut_logfile=K          the next K LogFile downloads stop after half of the body
    cut_logfile_id=ID      ... only downloads of this EventLogFile id
    republish_after=N      once the N-th LogFile download (from now) has been served,
                           re-publish a Daily AgentAction file as a new EventLogFile (new
                           Id, same LogDate/Interval, CreatedDate now): one row's
                           TOTAL_TOKENS and AWU_COUNT changed, one ELF-only row appended
    republish_id=ID        ... re-publish this file (default: the newest Daily)
    republish_same_id=1    ... keep the file's Id (CreatedDate now, body changed alike)
    late_hourly=N          Hourly AgentAction files are hidden until N EventLogFile
                           queries have been answered; they then appear, CreatedDate now
    insert_at_page_edge=N  when the first page of an AgentWorkItem query is served, insert
                           N records with that page's last SystemModstamp (once)

``republish_id`` or ``republish_same_id`` alone imply ``republish_after=1``; 0 switches a
count off.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

__all__ = ["Faults", "FailureReply", "RepublishPlan", "TruncatedBody", "FAULT_KEYS"]


class TruncatedBody(ConnectionError):
    """Raised by a LogFile body iterator cut off by the ``cut_logfile`` fault.

    The HTTP server answers it by closing the connection mid-body; an in-process caller
    sees it raised while iterating the response body.
    """


@dataclass(frozen=True)
class FailureReply:
    """An injected failure: HTTP status plus Salesforce's ``errorCode`` and ``message``."""

    status: int
    error_code: str
    message: str

    def body(self) -> list[dict[str, str]]:
        """The Salesforce error body."""
        return [{"message": self.message, "errorCode": self.error_code}]


@dataclass(frozen=True)
class RepublishPlan:
    """What the org re-publishes once ``republish_after`` downloads have been served."""

    file_id: str | None  # None: the newest Daily AgentAction file
    same_id: bool


UNAVAILABLE = FailureReply(503, "SERVER_UNAVAILABLE", "Service Unavailable")
RATE_LIMITED = FailureReply(
    429, "REQUEST_LIMIT_EXCEEDED", "ConcurrentPerOrgLongTxn Limit exceeded."
)
DAILY_LIMIT = FailureReply(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")
LOCK_ROW_MESSAGE = "unable to obtain exclusive access to this record or 1 records"

FAULT_KEYS = (
    "expire_token_after",
    "unavailable",
    "lock_row",
    "lock_row_status",
    "rate_limit",
    "daily_limit",
    "api_used",
    "api_max",
    "api_usage",
    "cut_logfile",
    "cut_logfile_id",
    "republish_after",
    "republish_id",
    "republish_same_id",
    "late_hourly",
    "insert_at_page_edge",
)
DEFAULT_API_MAX = 15000


class Faults:
    """The faults a mock org injects, plus its API-usage counter. Thread-safe."""

    def __init__(self, *, api_used: int = 0, api_max: int = DEFAULT_API_MAX) -> None:
        self._lock = threading.Lock()
        self._api_used = api_used
        self._api_max = api_max
        self._clear()

    def _clear(self) -> None:
        self._token_calls: int | None = None
        self._unavailable = 0
        self._lock_row = 0
        self._lock_row_status = 400
        self._rate_limit = 0
        self._daily_limit = False
        self._cut_logfile = 0
        self._cut_logfile_id: str | None = None
        self._republish_in = 0
        self._republish_id: str | None = None
        self._republish_same_id = False
        self._late_hourly = 0
        self._insert_at_page_edge = 0

    # ------------------------------------------------------------------ switching
    def reset(self) -> None:
        """Switch every fault off (the API-usage counter is kept)."""
        with self._lock:
            self._clear()

    def expire_token_after(self, calls: int | None) -> None:
        """Each access token answers ``calls`` authorised API calls, then 401 (None: off)."""
        with self._lock:
            self._token_calls = (
                _non_negative("expire_token_after", calls) if calls is not None else None
            )

    def unavailable(self, calls: int) -> None:
        """The next ``calls`` API calls answer 503 SERVER_UNAVAILABLE."""
        with self._lock:
            self._unavailable = _non_negative("unavailable", calls)

    def lock_row(self, calls: int, status: int = 400) -> None:
        """The next ``calls`` API calls answer ``status`` UNABLE_TO_LOCK_ROW."""
        with self._lock:
            self._lock_row = _non_negative("lock_row", calls)
            self._lock_row_status = status

    def rate_limit(self, calls: int) -> None:
        """The next ``calls`` API calls answer 429 REQUEST_LIMIT_EXCEEDED."""
        with self._lock:
            self._rate_limit = _non_negative("rate_limit", calls)

    def daily_limit(self, exceeded: bool = True) -> None:
        """While on, every API call answers 403 REQUEST_LIMIT_EXCEEDED (TotalRequests)."""
        with self._lock:
            self._daily_limit = exceeded

    def api_usage(self, used: int, max_calls: int | None = None) -> None:
        """Set the API calls used today (and optionally the daily allowance)."""
        with self._lock:
            self._api_used = _non_negative("api_used", used)
            if max_calls is not None:
                self._api_max = _non_negative("api_max", max_calls)

    def cut_logfile(self, downloads: int = 1, file_id: str | None = None) -> None:
        """The next ``downloads`` LogFile downloads (of ``file_id`` only, if given) stop
        after half of the body and drop the connection."""
        with self._lock:
            self._cut_logfile = _non_negative("cut_logfile", downloads)
            self._cut_logfile_id = file_id[:15] if file_id else None

    def republish_after(
        self, downloads: int, file_id: str | None = None, *, same_id: bool = False
    ) -> None:
        """Once ``downloads`` more LogFile downloads have been served, re-publish
        ``file_id`` (default: the newest Daily AgentAction file) with one row changed and
        one ELF-only row added: as a new EventLogFile, or under its own Id if ``same_id``.
        Fires once; 0 switches it off."""
        with self._lock:
            self._republish_in = _non_negative("republish_after", downloads)
            self._republish_id = file_id[:15] if file_id else None
            self._republish_same_id = same_id

    def late_hourly(self, queries: int) -> None:
        """Hide Hourly AgentAction EventLogFiles until ``queries`` more EventLogFile
        queries have been answered; they then appear with CreatedDate = that moment
        (0: off — hidden files appear at the next API call)."""
        with self._lock:
            self._late_hourly = _non_negative("late_hourly", queries)

    def insert_at_page_edge(self, rows: int) -> None:
        """When the first page of the next AgentWorkItem query (with records) is served,
        insert ``rows`` records sharing that page's last SystemModstamp. Fires once."""
        with self._lock:
            self._insert_at_page_edge = _non_negative("insert_at_page_edge", rows)

    # ------------------------------------------------------------------ consuming
    @property
    def token_call_limit(self) -> int | None:
        """Authorised calls an access token answers before it dies (None: unlimited)."""
        with self._lock:
            return self._token_calls

    def take_failure(self) -> FailureReply | None:
        """The injected failure for this API call, if any (consumes one burst slot)."""
        with self._lock:
            if self._daily_limit:
                return DAILY_LIMIT
            if self._unavailable:
                self._unavailable -= 1
                return UNAVAILABLE
            if self._lock_row:
                self._lock_row -= 1
                return FailureReply(self._lock_row_status, "UNABLE_TO_LOCK_ROW", LOCK_ROW_MESSAGE)
            if self._rate_limit:
                self._rate_limit -= 1
                return RATE_LIMITED
            return None

    def count_api_call(self) -> None:
        """Count one API call against the daily allowance."""
        with self._lock:
            self._api_used += 1

    def usage(self) -> tuple[int, int]:
        """(used, max) API calls, as ``Sforce-Limit-Info`` reports them."""
        with self._lock:
            return self._api_used, self._api_max

    def take_cut_logfile(self, file_id: str) -> bool:
        """Whether this download of ``file_id`` is to be cut off (consumes one slot)."""
        with self._lock:
            if not self._cut_logfile:
                return False
            if self._cut_logfile_id and self._cut_logfile_id != file_id[:15]:
                return False
            self._cut_logfile -= 1
            return True

    def take_republish(self) -> RepublishPlan | None:
        """Count one served LogFile download; the plan when it is time to re-publish."""
        with self._lock:
            if not self._republish_in:
                return None
            self._republish_in -= 1
            if self._republish_in:
                return None
            return RepublishPlan(self._republish_id, self._republish_same_id)

    @property
    def republish_id(self) -> str | None:
        """The file a pending re-publish targets (None: none pending, or the default)."""
        with self._lock:
            return self._republish_id if self._republish_in else None

    @property
    def late_hourly_pending(self) -> int:
        """EventLogFile queries still to answer before hidden Hourly files appear."""
        with self._lock:
            return self._late_hourly

    def take_elf_listing(self) -> bool:
        """Count one answered EventLogFile query; True when hidden files appear now."""
        with self._lock:
            if not self._late_hourly:
                return False
            self._late_hourly -= 1
            return not self._late_hourly

    def take_insert_at_page_edge(self) -> int:
        """Rows to insert at this first page's edge (consumes the fault)."""
        with self._lock:
            rows, self._insert_at_page_edge = self._insert_at_page_edge, 0
            return rows

    # ------------------------------------------------------------------ spec strings
    @classmethod
    def parse(cls, spec: str | None) -> Faults:
        """Faults from ``"key=value,key=value"``; ``ValueError`` names a bad key or value."""
        faults = cls()
        for item in (spec or "").split(","):
            item = item.strip()
            if not item:
                continue
            key, sep, value = item.partition("=")
            key, value = key.strip(), value.strip()
            if key not in FAULT_KEYS:
                raise ValueError(
                    f"unknown fault '{key}' in --faults (known: {', '.join(FAULT_KEYS)})"
                )
            if not sep or not value:
                raise ValueError(f"fault '{key}' needs a value, e.g. {key}=1")
            faults._apply(key, value)
        return faults

    def _apply(self, key: str, value: str) -> None:
        if key == "cut_logfile_id":
            with self._lock:
                self._cut_logfile_id = value[:15]
                self._cut_logfile = self._cut_logfile or 1
            return
        if key == "republish_id":
            with self._lock:
                self._republish_id = value[:15]
                self._republish_in = self._republish_in or 1
            return
        if key == "republish_same_id":
            flag = _int(key, value)
            with self._lock:
                self._republish_same_id = bool(flag)
                if flag:
                    self._republish_in = self._republish_in or 1
            return
        if key == "api_usage":
            used, slash, total = value.partition("/")
            self.api_usage(_int(key, used), _int(key, total) if slash else None)
            return
        number = _int(key, value)
        if key == "expire_token_after":
            self.expire_token_after(number)
        elif key == "lock_row_status":
            with self._lock:
                self._lock_row_status = number
        elif key == "daily_limit":
            self.daily_limit(bool(number))
        elif key == "api_used":
            self.api_usage(number)
        elif key == "api_max":
            self.api_usage(self.usage()[0], number)
        elif key == "cut_logfile":
            with self._lock:
                self._cut_logfile = number
        elif key == "lock_row":
            with self._lock:
                self._lock_row = number
        elif key == "republish_after":
            with self._lock:
                self._republish_in = number
        else:
            getattr(self, key)(number)  # unavailable, rate_limit, late_hourly, insert_at_…

    def describe(self) -> dict[str, object]:
        """The current state, for logs and assertions."""
        with self._lock:
            return {
                "expire_token_after": self._token_calls,
                "unavailable": self._unavailable,
                "lock_row": self._lock_row,
                "lock_row_status": self._lock_row_status,
                "rate_limit": self._rate_limit,
                "daily_limit": self._daily_limit,
                "api_used": self._api_used,
                "api_max": self._api_max,
                "cut_logfile": self._cut_logfile,
                "cut_logfile_id": self._cut_logfile_id,
                "republish_after": self._republish_in,
                "republish_id": self._republish_id,
                "republish_same_id": self._republish_same_id,
                "late_hourly": self._late_hourly,
                "insert_at_page_edge": self._insert_at_page_edge,
            }


def _int(key: str, value: str) -> int:
    try:
        return _non_negative(key, int(value))
    except ValueError:
        raise ValueError(f"fault '{key}' needs a non-negative integer, got '{value}'") from None


def _non_negative(key: str, value: int) -> int:
    if value < 0:
        raise ValueError(f"fault '{key}' needs a non-negative integer, got {value}")
    return value
