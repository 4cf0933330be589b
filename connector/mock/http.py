"""HTTP types of the mock org: headers, request, response, the request log, and the JSON
and Salesforce-error replies every endpoint builds its answers from."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple
from urllib.parse import parse_qsl

__all__ = [
    "Headers",
    "MockRequest",
    "MockResponse",
    "LoggedRequest",
    "RequestLog",
    "JSON_TYPE",
    "NOT_FOUND_MESSAGE",
    "json_response",
    "sf_error",
    "not_found",
]

JSON_TYPE = "application/json;charset=UTF-8"
NOT_FOUND_MESSAGE = "The requested resource does not exist"


class Headers(MutableMapping[str, str]):
    """A case-insensitive header mapping that remembers each name's spelling."""

    def __init__(self, items: Mapping[str, str] | Iterable[tuple[str, str]] | None = None) -> None:
        self._items: dict[str, tuple[str, str]] = {}
        pairs = items.items() if isinstance(items, Mapping) else (items or ())
        for name, value in pairs:
            self[name] = value

    def __getitem__(self, name: str) -> str:
        return self._items[name.lower()][1]

    def __setitem__(self, name: str, value: str) -> None:
        self._items[name.lower()] = (name, value)

    def __delitem__(self, name: str) -> None:
        del self._items[name.lower()]

    def __iter__(self) -> Iterator[str]:
        return (name for name, _ in self._items.values())

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Headers({dict(self.items())!r})"


@dataclass
class MockRequest:
    """One HTTP request as the org sees it. ``base_url`` is how the client reached us."""

    method: str
    path: str
    query: dict[str, str] = field(default_factory=dict)
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""
    base_url: str = "https://127.0.0.1"

    def __post_init__(self) -> None:
        if not isinstance(self.headers, Headers):
            self.headers = Headers(self.headers)
        self.base_url = self.base_url.rstrip("/")


@dataclass
class MockResponse:
    """Status, headers and a body of bytes or an iterator of byte chunks (streaming).

    A streamed body with a ``Content-Length`` header is sent as is, one without as
    ``Transfer-Encoding: chunked``. Iterating a cut-off body raises ``TruncatedBody``.
    """

    status: int
    headers: Headers = field(default_factory=Headers)
    body: bytes | Iterator[bytes] = b""
    #: how many records a query page holds (for the request log), when it is one
    records: int | None = None

    def read(self) -> bytes:
        """The whole body (consumes a streamed body)."""
        if isinstance(self.body, bytes):
            return self.body
        self.body = b"".join(self.body)
        return self.body

    def json(self) -> Any:
        """The body decoded as JSON."""
        return json.loads(self.read())


class LoggedRequest(NamedTuple):
    """One entry of ``MockOrg.request_log``."""

    method: str
    path: str
    query: str  # URL-encoded query string, "" when none
    status: int
    #: records in the answer of a query page (first or ``nextRecordsUrl``), else None
    records: int | None = None

    @property
    def params(self) -> dict[str, str]:
        """The query string decoded (e.g. ``entry.params["q"]`` is the SOQL)."""
        return dict(parse_qsl(self.query, keep_blank_values=True))


class RequestLog:
    """Thread-safe list of ``LoggedRequest`` (method, path, query string, status)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: list[LoggedRequest] = []

    def append(self, entry: LoggedRequest) -> None:
        with self._lock:
            self._entries.append(entry)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def entries(self) -> list[LoggedRequest]:
        """A copy of the entries so far."""
        with self._lock:
            return list(self._entries)

    def matching(self, path_contains: str = "", method: str | None = None) -> list[LoggedRequest]:
        """Entries whose path contains ``path_contains`` (and of ``method``, if given)."""
        return [
            e
            for e in self.entries()
            if path_contains in e.path and (method is None or e.method == method)
        ]

    def __iter__(self) -> Iterator[LoggedRequest]:
        return iter(self.entries())

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def __getitem__(self, index: int) -> LoggedRequest:
        with self._lock:
            return self._entries[index]


# ------------------------------------------------------------------------- replies


def json_response(
    status: int, payload: Any, headers: Mapping[str, str] | None = None
) -> MockResponse:
    """``payload`` as compact JSON (Salesforce sends no whitespace) with ``headers`` added."""
    out = Headers({"Content-Type": JSON_TYPE})
    out.update(headers or {})
    return MockResponse(status, out, json.dumps(payload, separators=(",", ":")).encode())


def sf_error(status: int, code: str, message: str) -> MockResponse:
    """A REST API error: Salesforce answers a one-element list of ``{message, errorCode}``."""
    return json_response(status, [{"message": message, "errorCode": code}])


def not_found() -> MockResponse:
    return sf_error(404, "NOT_FOUND", NOT_FOUND_MESSAGE)
