"""The mock Salesforce org: a plain function from ``MockRequest`` to ``MockResponse``.

``MockOrg.handle`` speaks Salesforce's REST wire format over an org snapshot (SPEC §8), so
the same object serves in-process calls in unit tests and the threaded HTTPS server in
``connector.mock.server``. Endpoints:

* ``POST /services/oauth2/token`` — OAuth 2.0 JWT bearer (RS256 against ``app.crt``);
* ``GET /services/data/`` — API versions up to the org's release;
* ``GET /services/data/vXX.X/query[/]?q=…`` and ``…/query/<locator>-<offset>`` pages;
* ``GET /services/data/vXX.X/sobjects[/<obj>/describe | /<obj>/<id>]``;
* ``GET /services/data/vXX.X/sobjects/EventLogFile/<id>/LogFile`` (streamed, gzip on
  ``Accept-Encoding: gzip``);
* ``GET /services/data/vXX.X/limits``.

Every ``/services/data/vXX.X`` call needs a bearer token from the token endpoint, counts
against the daily allowance and carries ``Sforce-Limit-Info: api-usage=N/M``. Faults
(``connector.mock.faults``) and the runtime mutation API let tests play a live org; the
org itself carries out the faults that mutate it (a re-published log file, Hourly files
arriving late, rows inserted at a query page's edge).
"""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
import json
import logging
import re
import secrets
import string
import threading
import time
import zlib
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import parse_qsl, urlencode

import jwt
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from .faults import FailureReply, Faults, RepublishPlan, TruncatedBody
from .soql import (
    FieldDef,
    QueryResult,
    SoqlError,
    Table,
    execute,
    format_datetime_ms,
    is_sf_id,
    parse,
    parse_datetime_ms,
    render_record,
    to18,
)

__all__ = [
    "Headers",
    "MockRequest",
    "MockResponse",
    "LoggedRequest",
    "RequestLog",
    "OrgInfo",
    "MockOrg",
    "KNOWN_FIELDS",
    "JWT_GRANT_TYPE",
    "LOGFILE_CHUNK",
]

JWT_GRANT_TYPE = "urn:ietf:params:oauth:grant-type:jwt-bearer"
LOGFILE_CHUNK = 64 * 1024
MIN_API_VERSION = 20
MAX_OPEN_LOCATORS = 200
JSON_TYPE = "application/json;charset=UTF-8"
NOT_FOUND_MESSAGE = "The requested resource does not exist"
_ID_CHARS = string.digits + string.ascii_uppercase + string.ascii_lowercase  # ASCII order
#: TOTAL_TOKENS and AWU_COUNT added to the changed row of a re-published log file
REPUBLISH_TOKENS_DELTA = 1000
REPUBLISH_AWU_DELTA = 1

_log = logging.getLogger(__name__)

# ----------------------------------------------------------------- request/response


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


# ----------------------------------------------------------------------- schema data


def _defs(*specs: tuple[str, str] | tuple[str, str, dict[str, Any]]) -> dict[str, FieldDef]:
    out: dict[str, FieldDef] = {}
    for spec in specs:
        extra = spec[2] if len(spec) > 2 else {}
        out[spec[0]] = FieldDef(spec[0], spec[1], **extra)
    return out


_NOT_NULL = {"nillable": False}
COMMON_FIELDS = _defs(
    ("Id", "id", _NOT_NULL),
    ("CreatedDate", "datetime", _NOT_NULL),
    ("SystemModstamp", "datetime", _NOT_NULL),
    ("LastModifiedDate", "datetime", _NOT_NULL),
    ("CreatedById", "reference"),
    ("LastModifiedById", "reference"),
    ("OwnerId", "reference"),
    ("Name", "string"),
    ("IsDeleted", "boolean", _NOT_NULL),
)
KNOWN_FIELDS: dict[str, dict[str, FieldDef]] = {
    "AgentWorkItem": _defs(
        ("SessionId__c", "string"),
        ("AgentId__c", "string"),
        ("AgentName__c", "string"),
        ("ActionName__c", "string"),
        ("ActionType__c", "picklist"),
        ("Channel__c", "picklist"),
        ("Status__c", "picklist"),
        ("ErrorCode__c", "string"),
        ("PromptTokens__c", "double"),
        ("CompletionTokens__c", "double"),
        ("TokensConsumed__c", "double"),
        ("AwuCount__c", "double"),
        ("ActionInput__c", "textarea"),
        ("UserId__c", "reference"),
        ("CaseId__c", "reference"),
        ("StartTime__c", "datetime"),
    ),
    "Case": _defs(
        ("Status", "picklist"),
        ("IsClosed", "boolean", _NOT_NULL),
        ("ClosedDate", "datetime"),
        ("Subject", "string"),
        ("Description", "textarea"),
        ("CaseNumber", "string"),
    ),
    "EventLogFile": _defs(
        ("EventType", "string"),
        ("LogDate", "datetime"),
        ("Interval", "picklist", {"min_version": 37.0}),
        ("Sequence", "int", {"min_version": 37.0}),
        ("LogFileLength", "double"),
        ("LogFileFieldNames", "textarea"),
        ("LogFileFieldTypes", "textarea"),
        ("LogFileContentType", "string"),
        ("ApiVersion", "double"),
        ("LogFile", "base64"),
    ),
    "Organization": _defs(
        ("IsSandbox", "boolean", _NOT_NULL),
        ("OrganizationType", "string"),
        ("InstanceName", "string"),
    ),
}
KEY_PREFIXES = {
    "AgentWorkItem": "0Bz",
    "Case": "500",
    "EventLogFile": "0AT",
    "Organization": "00D",
    "User": "005",
}
_VERSION_RE = re.compile(r"v(\d+)\.(\d)")
_SEASONS = ("Spring", "Summer", "Winter")


def _known_fields(sobject: str) -> dict[str, FieldDef]:
    fields = dict(COMMON_FIELDS)
    fields.update(KNOWN_FIELDS.get(sobject, {}))
    return fields


def _release_label(major: int) -> str:
    """Release name of API ``major``.0 (60 → "Spring '24", 62 → "Winter '25")."""
    offset = major - 60
    return f"{_SEASONS[offset % 3]} '{24 + (offset + 1) // 3:02d}"


# --------------------------------------------------------------------------- org info


@dataclass(frozen=True)
class OrgInfo:
    """The contents of ``org.json``."""

    organization_id: str
    is_sandbox: bool
    api_version: str
    username: str
    consumer_key: str
    name: str = "Mock Org"
    accept_auds: tuple[str, ...] = ()

    @property
    def api_version_number(self) -> float:
        return float(self.api_version)

    @classmethod
    def load(cls, root: Path) -> tuple[OrgInfo, Path]:
        """The org info and the certificate path from ``root/org.json``."""
        path = root / "org.json"
        if not path.is_file():
            raise ValueError(f"org snapshot {root}: missing org.json")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"org snapshot {root}: org.json is not valid JSON ({exc})") from None
        if not isinstance(data, dict):
            raise ValueError(f"org snapshot {root}: org.json must hold a JSON object")
        required = ("organization_id", "api_version", "username", "consumer_key")
        missing = [k for k in required if not data.get(k)]
        if missing:
            raise ValueError(f"org snapshot {root}: org.json lacks {', '.join(missing)}")
        org_id = str(data["organization_id"])
        if not is_sf_id(org_id):
            raise ValueError(
                f"org snapshot {root}: organization_id {org_id!r} is not a Salesforce id"
            )
        version = str(data["api_version"])
        if not re.fullmatch(r"\d+\.\d", version):
            raise ValueError(f"org snapshot {root}: api_version {version!r} is not like '62.0'")
        auds = data.get("accept_auds") or []
        if not isinstance(auds, list) or not all(isinstance(a, str) for a in auds):
            raise ValueError(f"org snapshot {root}: accept_auds must be a list of URLs")
        info = cls(
            organization_id=to18(org_id),
            is_sandbox=bool(data.get("is_sandbox", False)),
            api_version=version,
            username=str(data["username"]),
            consumer_key=str(data["consumer_key"]),
            name=str(data.get("name") or "Mock Org"),
            accept_auds=tuple(a.rstrip("/") for a in auds),
        )
        return info, root / str(data.get("certificate") or "app.crt")


def _load_public_key(path: Path) -> RSAPublicKey:
    try:
        cert = x509.load_pem_x509_certificate(path.read_bytes())
    except OSError:
        raise ValueError(f"org snapshot: certificate {path} is missing or unreadable") from None
    except ValueError:
        raise ValueError(
            f"org snapshot: certificate {path} is not a PEM X.509 certificate"
        ) from None
    key = cert.public_key()
    if not isinstance(key, RSAPublicKey):
        raise ValueError(f"org snapshot: certificate {path} does not hold an RSA key")
    return key


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    with path.open(encoding="utf-8") as handle:
        for lineno, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(
                    f"org snapshot: {path}:{lineno}: invalid JSON ({exc.msg})"
                ) from None
            if not isinstance(record, dict):
                raise ValueError(f"org snapshot: {path}:{lineno}: a record must be a JSON object")
            records.append(record)
    return records


# ------------------------------------------------------------------------- responses


def _json_response(
    status: int, payload: Any, headers: Mapping[str, str] | None = None
) -> MockResponse:
    out = Headers({"Content-Type": JSON_TYPE})
    out.update(headers or {})
    return MockResponse(status, out, json.dumps(payload, separators=(",", ":")).encode())


def _sf_error(status: int, code: str, message: str) -> MockResponse:
    return _json_response(status, [{"message": message, "errorCode": code}])


def _not_found() -> MockResponse:
    return _sf_error(404, "NOT_FOUND", NOT_FOUND_MESSAGE)


def _oauth_error(error: str, description: str, status: int = 400) -> MockResponse:
    return _json_response(status, {"error": error, "error_description": description})


def _accepts_gzip(accept_encoding: str) -> bool:
    for part in accept_encoding.split(","):
        name, _, params = part.strip().partition(";")
        if name.strip().lower() in ("gzip", "*"):
            quality = params.strip().replace(" ", "")
            return quality not in ("q=0", "q=0.0", "q=0.00", "q=0.000")
    return False


def _to_wire(value: Any) -> Any:
    """Datetimes given to the mutation API become Salesforce datetime strings."""
    if isinstance(value, datetime):
        return _datetime_wire(value)
    return value


def _datetime_wire(value: datetime) -> str:
    """A datetime as a Salesforce datetime string (a naive one is taken as UTC)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return format_datetime_ms(parse_datetime_ms(value.isoformat()))


# ---------------------------------------------------------------------------- org


@dataclass
class _Token:
    calls: int = 0


@dataclass
class _Locator:
    result: QueryResult
    page_size: int
    api_version: str


@dataclass
class _Routed:
    response: MockResponse
    page_no: int | None = None


class MockOrg:
    """A Salesforce org served from a snapshot; ``handle`` is the whole HTTP surface.

    Thread-safe: one re-entrant lock guards tokens, tables, query locators and log files.
    ``on_request(request, page_no)`` — if set — runs after each request is answered
    (outside the lock, so it may call the mutation API); ``page_no`` is 0 for a query's
    first page, 1, 2, … for ``nextRecordsUrl`` pages and None for anything else.
    """

    def __init__(
        self,
        info: OrgInfo,
        public_key: RSAPublicKey,
        tables: Mapping[str, Table] | None = None,
        logfiles: Mapping[str, bytes | Path] | None = None,
        *,
        page_size: int = 2000,
        long_text_page_size: int | None = None,
        faults: Faults | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        if page_size < 1:
            raise ValueError("page_size must be at least 1")
        self.info = info
        self.public_key = public_key
        self.page_size = page_size
        self.long_text_page_size = long_text_page_size
        self.faults = faults or Faults()
        self.request_log = RequestLog()
        self.on_request: Callable[[MockRequest, int | None], None] | None = None
        self._clock = clock or (lambda: datetime.now(timezone.utc))
        self._lock = threading.RLock()
        self._tables: dict[str, Table] = {}
        self._logfiles: dict[str, bytes | Path] = {k[:15]: v for k, v in (logfiles or {}).items()}
        self._tokens: dict[str, _Token] = {}
        self._locators: OrderedDict[str, _Locator] = OrderedDict()
        self._locator_ids = itertools.count(1)
        self._record_ids = itertools.count(1)
        self._republish_seq = itertools.count(1)
        #: Hourly EventLogFile records hidden by the ``late_hourly`` fault
        self._late_hourly: list[dict[str, Any]] = []
        #: the Data 360 side (token exchange + tenant), from DIR/data360 (connector.mock.data360)
        self.data360: Any = None
        for table in (tables or {}).values():
            self._tables[table.name.lower()] = table
        self._tables["organization"] = self._organization_table()
        if "eventlogfile" in self._tables:
            self._tables["eventlogfile"].add_known_field(KNOWN_FIELDS["EventLogFile"]["LogFile"])

    # ---------------------------------------------------------------- construction
    @classmethod
    def from_snapshot(
        cls,
        path: str | Path,
        *,
        page_size: int = 2000,
        long_text_page_size: int | None = None,
        faults: Faults | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> MockOrg:
        """Load ``path`` (SPEC §8 layout); ``ValueError`` with one line if it is unusable."""
        root = Path(path)
        if not root.is_dir():
            raise ValueError(f"org snapshot {root}: no such directory")
        info, cert_path = OrgInfo.load(root)
        public_key = _load_public_key(cert_path)
        org = cls(
            info,
            public_key,
            page_size=page_size,
            long_text_page_size=long_text_page_size,
            faults=faults,
            clock=clock,
        )
        objects = root / "objects"
        for jsonl in sorted(objects.glob("*.jsonl")) if objects.is_dir() else []:
            org._load_object(jsonl.stem, _read_jsonl(jsonl))
        logfiles = root / "logfiles"
        for csv_path in sorted(logfiles.glob("*.csv")) if logfiles.is_dir() else []:
            org._logfiles[csv_path.stem[:15]] = csv_path
        from .data360 import Data360Tenant

        org.data360 = Data360Tenant.from_snapshot(root, core_token_ok=org._has_token)
        target = org.faults.republish_id
        elf = org._tables.get("eventlogfile")
        if target and (elf is None or elf.find(target) is None):
            raise ValueError(f"fault 'republish_id': no EventLogFile {target} in {root}")
        return org

    def _has_token(self, token: str) -> bool:
        with self._lock:
            return token in self._tokens

    def _load_object(self, sobject: str, records: list[dict[str, Any]]) -> None:
        now = self._now_wire()
        for record in records:
            self._complete(sobject, record, now, existing=None)
        try:
            table = Table.build(sobject, records, _known_fields(sobject))
        except ValueError as exc:
            raise ValueError(f"org snapshot: objects/{sobject}.jsonl: {exc}") from None
        if sobject.lower() == "eventlogfile":
            table.add_known_field(KNOWN_FIELDS["EventLogFile"]["LogFile"])
        self._tables[sobject.lower()] = table

    def _organization_table(self) -> Table:
        record = {
            "Id": self.info.organization_id,
            "Name": self.info.name,
            "IsSandbox": self.info.is_sandbox,
            "OrganizationType": "Enterprise Edition",
            "CreatedDate": "2020-01-01T00:00:00.000+0000",
            "SystemModstamp": "2020-01-01T00:00:00.000+0000",
        }
        return Table.build("Organization", [record], _known_fields("Organization"))

    def _now_wire(self) -> str:
        return _datetime_wire(self._clock())

    def _new_id(self, sobject: str, table: Table | None) -> str:
        prefix = KEY_PREFIXES.get(sobject) or ("a0" + chr(ord("A") + len(sobject) % 26))
        while True:
            candidate = to18(f"{prefix}MOCK{next(self._record_ids):08d}")
            if table is None or table.find(candidate) is None:
                return candidate

    def _complete(
        self, sobject: str, record: dict[str, Any], now: str, existing: Table | None
    ) -> None:
        """Give ``record`` (in place) an Id, CreatedDate and SystemModstamp if absent."""
        for key, value in record.items():
            if isinstance(value, datetime):
                record[key] = _to_wire(value)
        if not record.get("Id"):
            record["Id"] = self._new_id(sobject, existing)
        record.setdefault("CreatedDate", now)
        record.setdefault("SystemModstamp", record["CreatedDate"])

    # ---------------------------------------------------------------- mutation API
    def add_records(self, sobject: str, records: Iterable[Mapping[str, Any]]) -> list[str]:
        """Insert records (a new sObject if unknown); returns their 18-character ids."""
        ids: list[str] = []
        with self._lock:
            table = self._tables.get(sobject.lower())
            if table is None:
                table = Table(sobject, _known_fields(sobject))
                for name in ("Id", "CreatedDate", "SystemModstamp"):
                    table.add_known_field(_known_fields(sobject)[name])
                self._tables[sobject.lower()] = table
            now = self._now_wire()
            for record in records:
                new = dict(record)
                self._complete(table.name, new, now, table)
                if table.find(new["Id"]) is not None:
                    raise ValueError(f"{table.name} {new['Id']} already exists")
                table.append(new)
                ids.append(to18(new["Id"]))
        return ids

    def update_record(
        self,
        sobject: str,
        record_id: str,
        changes: Mapping[str, Any],
        system_modstamp: datetime | str | None = None,
    ) -> None:
        """Change fields of one record; ``SystemModstamp`` becomes ``system_modstamp``
        (default: now). ``KeyError`` if the object or record does not exist."""
        with self._lock:
            table = self._table(sobject)
            row = table.find(record_id)
            if row is None:
                raise KeyError(f"{table.name} {record_id} does not exist")
            new = dict(table.records[row])
            new.update({k: _to_wire(v) for k, v in changes.items()})
            new["SystemModstamp"] = (
                _to_wire(system_modstamp) if system_modstamp else self._now_wire()
            )
            table.replace(row, new)

    def add_logfile(self, record: Mapping[str, Any], csv_bytes: bytes) -> str:
        """Publish an EventLogFile record and its body; returns the 18-character id.

        Re-publishing an existing ``Id`` replaces that record (give it a later
        ``CreatedDate``) and its body. ``LogFileLength`` and ``LogFileFieldNames`` default
        to the body's size and header row.
        """
        new = dict(record)
        new.setdefault("LogFileLength", float(len(csv_bytes)))
        new.setdefault("LogFileFieldNames", _csv_header(csv_bytes))
        with self._lock:
            table = self._tables.get("eventlogfile")
            if table is None:
                self.add_records("EventLogFile", [])
                table = self._tables["eventlogfile"]
                table.add_known_field(KNOWN_FIELDS["EventLogFile"]["LogFile"])
            row = table.find(new["Id"]) if new.get("Id") else None
            now = self._now_wire()
            if row is None:
                self._complete("EventLogFile", new, now, table)
                table.append(new)
            else:
                new.setdefault("CreatedDate", now)
                new["SystemModstamp"] = new.get("SystemModstamp") or now
                self._complete("EventLogFile", new, now, table)
                table.replace(row, new)
            self._logfiles[new["Id"][:15]] = bytes(csv_bytes)
            return to18(new["Id"])

    def records(self, sobject: str) -> list[dict[str, Any]]:
        """A copy of the stored records of ``sobject`` (raw snapshot form)."""
        with self._lock:
            return [dict(r) for r in self._table(sobject).records]

    def revoke_tokens(self) -> None:
        """Invalidate every access token issued so far (as if the session was logged out)."""
        with self._lock:
            self._tokens.clear()

    def _table(self, sobject: str) -> Table:
        table = self._tables.get(sobject.lower())
        if table is None:
            raise KeyError(f"sObject {sobject} does not exist in the mock org")
        return table

    # ---------------------------------------------------------------- dispatch
    def handle(self, req: MockRequest) -> MockResponse:
        """Answer one request (thread-safe)."""
        routed = self._route(req)
        response = routed.response
        if req.path.startswith("/services/data"):
            used, total = self.faults.usage()
            response.headers["Sforce-Limit-Info"] = f"api-usage={used}/{total}"
        records = None
        if (
            routed.page_no is not None
            and response.status == 200
            and isinstance(response.body, bytes)
        ):
            records = len(json.loads(response.body).get("records", []))
        self.request_log.append(
            LoggedRequest(req.method, req.path, urlencode(req.query), response.status, records)
        )
        hook = self.on_request
        if hook is not None:
            hook(req, routed.page_no)
        return response

    def _route(self, req: MockRequest) -> _Routed:
        path = req.path
        if path == "/services/oauth2/token":
            return _Routed(self._token_endpoint(req))
        if path in ("/services/data", "/services/data/"):
            return _Routed(self._versions(req))
        if self.data360 is not None and self.data360.serves(path):
            return _Routed(self.data360.handle(req))
        if path.startswith("/services/data/"):
            return self._api(req)
        return _Routed(_not_found())

    # ---------------------------------------------------------------- OAuth
    def _token_endpoint(self, req: MockRequest) -> MockResponse:
        if req.method != "POST":
            return _oauth_error("invalid_request", "must use HTTP POST")
        form: dict[str, str] = {}
        if (
            req.headers.get("Content-Type", "")
            .lower()
            .startswith("application/x-www-form-urlencoded")
        ):
            form = dict(parse_qsl(req.body.decode("utf-8", "replace"), keep_blank_values=True))
        if form.get("grant_type") != JWT_GRANT_TYPE:
            return _oauth_error("unsupported_grant_type", "grant type not supported")
        refusal = self._check_assertion(form.get("assertion", ""), req.base_url)
        if refusal is not None:
            return refusal
        token = f"{self.info.organization_id[:15]}!AQ{secrets.token_urlsafe(72)}"
        with self._lock:
            self._tokens[token] = _Token()
        return _json_response(
            200,
            {
                "access_token": token,
                "scope": "api",
                "instance_url": req.base_url,
                "id": f"{req.base_url}/id/{self.info.organization_id}/{self._user_id()}",
                "token_type": "Bearer",
                "issued_at": str(int(time.time() * 1000)),
            },
        )

    def _check_assertion(self, assertion: str, base_url: str) -> MockResponse | None:
        """None if the JWT is acceptable, else the OAuth error Salesforce would give."""
        try:
            header = jwt.get_unverified_header(assertion)
            claims = jwt.decode(assertion, options={"verify_signature": False})
        except jwt.PyJWTError:
            return _oauth_error("invalid_grant", "invalid assertion")
        if claims.get("iss") != self.info.consumer_key:
            return _oauth_error("invalid_client_id", "client identifier invalid")
        if header.get("alg") != "RS256":
            return _oauth_error("invalid_grant", "invalid assertion: algorithm must be RS256")
        try:
            jwt.decode(
                assertion,
                self.public_key,
                algorithms=["RS256"],
                options={
                    "verify_exp": False,
                    "verify_aud": False,
                    "verify_iat": False,
                    "verify_nbf": False,
                    "verify_iss": False,
                    "verify_sub": False,
                    "verify_jti": False,
                },
            )
        except jwt.PyJWTError:
            return _oauth_error("invalid_grant", "invalid assertion: signature does not verify")
        audience = claims.get("aud")
        allowed = {base_url.rstrip("/"), *self.info.accept_auds}
        if not isinstance(audience, str) or audience.rstrip("/") not in allowed:
            return _oauth_error("invalid_grant", "audience is invalid")
        subject = claims.get("sub")
        if not isinstance(subject, str) or subject.lower() != self.info.username.lower():
            return _oauth_error("invalid_grant", "user hasn't approved this consumer")
        expires = claims.get("exp")
        if isinstance(expires, bool) or not isinstance(expires, (int, float)):
            return _oauth_error("invalid_grant", "invalid assertion: exp must be a number")
        if expires <= time.time():
            return _oauth_error("invalid_grant", "expired authorization code")
        return None

    def _user_id(self) -> str:
        digest = int(hashlib.sha256(self.info.username.encode()).hexdigest(), 16) % 10**8
        return to18(f"005MOCK{digest:08d}")

    def _authorise(self, req: MockRequest) -> bool:
        """Whether the request carries a live token (counts the call against it)."""
        scheme, _, token = req.headers.get("Authorization", "").partition(" ")
        if scheme.lower() not in ("bearer", "oauth") or not token:
            return False
        limit = self.faults.token_call_limit
        with self._lock:
            state = self._tokens.get(token.strip())
            if state is None:
                return False
            if limit is not None and state.calls >= limit:
                del self._tokens[token.strip()]
                return False
            state.calls += 1
            return True

    # ---------------------------------------------------------------- REST API
    def _versions(self, req: MockRequest) -> MockResponse:
        top = int(self.info.api_version_number)
        versions = [
            {
                "label": _release_label(major),
                "url": f"/services/data/v{major}.0",
                "version": f"{major}.0",
            }
            for major in range(MIN_API_VERSION, top + 1)
        ]
        return _json_response(200, versions)

    def _api(self, req: MockRequest) -> _Routed:
        if not self._authorise(req):
            return _Routed(_sf_error(401, "INVALID_SESSION_ID", "Session expired or invalid"))
        failure: FailureReply | None = self.faults.take_failure()
        if failure is not None:
            return _Routed(_json_response(failure.status, failure.body()))
        self.faults.count_api_call()
        self._sync_late_hourly()
        rest = req.path[len("/services/data/") :]
        version_text, _, rest = rest.partition("/")
        match = _VERSION_RE.fullmatch(version_text)
        if (
            not match
            or not MIN_API_VERSION <= float(version_text[1:]) <= self.info.api_version_number
        ):
            return _Routed(_not_found())
        version = version_text[1:]
        parts = [p for p in rest.split("/") if p]
        if req.method != "GET":
            return _Routed(
                _sf_error(
                    405,
                    "METHOD_NOT_ALLOWED",
                    f"HTTP Method '{req.method}' not allowed. Allowed are GET,HEAD",
                )
            )
        return self._dispatch(req, version, parts)

    def _dispatch(self, req: MockRequest, version: str, parts: list[str]) -> _Routed:
        if not parts:
            return _Routed(self._resources(version))
        head, args = parts[0], parts[1:]
        if head in ("query", "queryAll") and not args:
            return _Routed(self._query_first(req, version), page_no=0)
        if head in ("query", "queryAll") and len(args) == 1:
            return self._query_next(args[0])
        if head == "limits" and not args:
            return _Routed(self._limits())
        if head == "sobjects":
            return _Routed(self._sobjects(req, version, args))
        return _Routed(_not_found())

    def _resources(self, version: str) -> MockResponse:
        base = f"/services/data/v{version}"
        return _json_response(
            200, {name: f"{base}/{name}" for name in ("sobjects", "query", "queryAll", "limits")}
        )

    def _limits(self) -> MockResponse:
        used, total = self.faults.usage()
        return _json_response(
            200, {"DailyApiRequests": {"Max": total, "Remaining": max(0, total - used)}}
        )

    # -- query
    def _query_first(self, req: MockRequest, version: str) -> MockResponse:
        text = req.query.get("q")
        if not text:
            return _sf_error(400, "MALFORMED_QUERY", "A query string has to be specified")
        try:
            query = parse(text)
            with self._lock:
                result = execute(query, self._tables, float(version))
        except SoqlError as exc:
            return _json_response(400, exc.body())
        locator = _Locator(result, self._page_size_for(req, result), version)
        response = self._page(locator, self._new_locator_id(locator), 0)
        sobject = result.table_name.lower()
        if sobject == "eventlogfile" and self.faults.take_elf_listing():
            self._release_late_hourly()
        first_page = [] if result.count_only else result.records[: locator.page_size]
        if sobject == "agentworkitem" and first_page:
            rows = self.faults.take_insert_at_page_edge()
            if rows:
                self.insert_at_page_edge(first_page[-1], rows)
        return response

    def _page_size_for(self, req: MockRequest, result: QueryResult) -> int:
        size = self.page_size
        options = req.headers.get("Sforce-Query-Options", "")
        for option in options.split(","):
            key, _, value = option.strip().partition("=")
            if key.strip().lower() == "batchsize" and value.strip().isdigit():
                size = min(size, max(200, min(2000, int(value))))
        if result.long_text and self.long_text_page_size:
            size = min(size, self.long_text_page_size)
        return size

    def _new_locator_id(self, locator: _Locator) -> str:
        with self._lock:
            locator_id = f"01gMOCK{next(self._locator_ids):011d}"
            self._locators[locator_id] = locator
            while len(self._locators) > MAX_OPEN_LOCATORS:
                self._locators.popitem(last=False)
        return locator_id

    def _query_next(self, token: str) -> _Routed:
        locator_id, _, offset_text = token.rpartition("-")
        with self._lock:
            locator = self._locators.get(locator_id)
            if locator is not None:
                self._locators.move_to_end(locator_id)
        if (
            locator is None
            or not offset_text.isdigit()
            or not 0 < int(offset_text) < locator.result.total_size
        ):
            return _Routed(_sf_error(400, "INVALID_QUERY_LOCATOR", "invalid query locator"))
        offset = int(offset_text)
        return _Routed(self._page(locator, locator_id, offset), page_no=offset // locator.page_size)

    def _page(self, locator: _Locator, locator_id: str, offset: int) -> MockResponse:
        result = locator.result
        stop = min(offset + locator.page_size, result.total_size)
        if result.count_only:
            stop = result.total_size
        payload: dict[str, Any] = {
            "totalSize": result.total_size,
            "done": stop >= result.total_size,
        }
        if stop < result.total_size:
            payload["nextRecordsUrl"] = (
                f"/services/data/v{locator.api_version}/query/{locator_id}-{stop}"
            )
        payload["records"] = result.render(offset, stop, locator.api_version)
        return _json_response(200, payload)

    # -- sobjects
    def _sobjects(self, req: MockRequest, version: str, args: list[str]) -> MockResponse:
        api = float(version)
        if not args:
            with self._lock:
                names = sorted(t.name for t in self._tables.values())
            return _json_response(
                200,
                {
                    "encoding": "UTF-8",
                    "maxBatchSize": 200,
                    "sobjects": [
                        {
                            "name": n,
                            "label": n,
                            "queryable": True,
                            "urls": {
                                "sobject": f"/services/data/v{version}/sobjects/{n}",
                                "describe": f"/services/data/v{version}/sobjects/{n}/describe",
                            },
                        }
                        for n in names
                    ],
                },
            )
        with self._lock:
            table = self._tables.get(args[0].lower())
            if table is None:
                return _not_found()
            if len(args) == 2 and args[1] == "describe":
                return _json_response(
                    200,
                    {
                        "name": table.name,
                        "label": table.name,
                        "queryable": True,
                        "custom": table.name.endswith("__c"),
                        "fields": [f.describe() for f in table.visible_fields(api)],
                    },
                )
            if len(args) == 2:
                return self._retrieve(req, table, args[1], version)
            if len(args) == 3:
                return self._blob(req, table, args[1], args[2])
        return _not_found()

    def _retrieve(
        self, req: MockRequest, table: Table, record_id: str, version: str
    ) -> MockResponse:
        row = table.find(record_id)
        if row is None:
            return _not_found()
        api = float(version)
        fields = table.visible_fields(api)
        wanted = req.query.get("fields")
        if wanted:
            fields = []
            for name in wanted.split(","):
                fdef = table.field(name.strip(), api)
                if fdef is None:
                    return _sf_error(
                        400,
                        "INVALID_FIELD",
                        f"No such column '{name.strip()}' on entity '{table.name}'",
                    )
                fields.append(fdef)
        return _json_response(200, render_record(table.name, fields, table.records[row], version))

    # -- LogFile
    def _blob(
        self, req: MockRequest, table: Table, record_id: str, field_name: str
    ) -> MockResponse:
        if table.name.lower() != "eventlogfile" or field_name != "LogFile":
            return _not_found()
        row = table.find(record_id)
        source = self._logfiles.get(record_id[:15]) if row is not None else None
        if source is None:
            return _not_found()
        size = len(source) if isinstance(source, bytes) else source.stat().st_size
        chunks = _chunks(source)
        if self.faults.take_cut_logfile(record_id):
            chunks = _cut(chunks, size // 2)
        headers = Headers({"Content-Type": "text/csv"})
        self._after_download()  # the body is bound to its source: a re-publish can't touch it
        if _accepts_gzip(req.headers.get("Accept-Encoding", "")):
            headers["Content-Encoding"] = "gzip"
            return MockResponse(200, headers, _gzip(chunks))
        headers["Content-Length"] = str(size)
        return MockResponse(200, headers, chunks)

    # ---------------------------------------------------------------- mutation faults
    def _after_download(self) -> None:
        plan = self.faults.take_republish()
        if plan is not None:
            self.republish(plan)

    def republish(self, plan: RepublishPlan) -> str | None:
        """Re-publish a Daily AgentAction log file (``plan.file_id``, else the newest
        Daily): as a new EventLogFile (same LogDate, Interval, Sequence) or, with
        ``plan.same_id``, under its own Id; CreatedDate now. The body has one row's
        TOTAL_TOKENS and AWU_COUNT raised (the first row with a WORK_ITEM_ID) and one
        ELF-only row appended (a copy of that row with a new REQUEST_ID and SESSION_KEY
        and no WORK_ITEM_ID). Returns the file's 18-character id (None if nothing fits)."""
        with self._lock:
            table = self._tables.get("eventlogfile")
            record = _republish_source(table, plan.file_id, self._logfiles)
            source = self._logfiles.get(str(record["Id"])[:15]) if record else None
            if record is None or source is None:
                _log.warning("republish fault: no EventLogFile to re-publish (%s)", plan.file_id)
                return None
            body = source if isinstance(source, bytes) else source.read_bytes()
            new_body = _republished_body(body, next(self._republish_seq))
            if new_body is None:
                _log.warning("republish fault: %s has no row to change", record["Id"])
                return None
            now = self._now_wire()
            fields = {
                k: v
                for k, v in record.items()
                if k not in ("LogFileLength", "CreatedDate", "SystemModstamp", "LogFile")
            }
            if not plan.same_id:
                del fields["Id"]
            fields.update(CreatedDate=now, SystemModstamp=now)
            return self.add_logfile(fields, new_body)

    def _sync_late_hourly(self) -> None:
        """Hide Hourly files while the ``late_hourly`` fault is on; show them once off."""
        pending = self.faults.late_hourly_pending
        with self._lock:
            if pending:
                self._hide_late_hourly()
            elif self._late_hourly:
                self._release_late_hourly()

    def _hide_late_hourly(self) -> None:
        with self._lock:
            table = self._tables.get("eventlogfile")
            if table is None:
                return
            hidden = {row for row, r in enumerate(table.records) if _is_hourly_action(r)}
            if not hidden:
                return
            self._late_hourly.extend(table.records[row] for row in sorted(hidden))
            self._tables["eventlogfile"] = _table_without(table, hidden)

    def _release_late_hourly(self) -> None:
        """The hidden Hourly files appear now (CreatedDate and SystemModstamp now)."""
        with self._lock:
            late, self._late_hourly = self._late_hourly, []
            table = self._tables.get("eventlogfile")
            if table is None or not late:
                return
            now = self._now_wire()
            for record in late:
                if table.find(str(record["Id"])) is None:  # unless re-published meanwhile
                    table.append({**record, "CreatedDate": now, "SystemModstamp": now})

    def insert_at_page_edge(self, edge: Mapping[str, Any], rows: int) -> list[str]:
        """Insert ``rows`` AgentWorkItem records copied from ``edge`` (a stored record)
        with its SystemModstamp, Ids above every existing one and fresh session ids."""
        with self._lock:
            table = self._table("AgentWorkItem")
            ids = [str(r.get("Id") or "")[:15] for r in table.records]
            top = max((i for i in ids if is_sf_id(i)), default=None)
            records = []
            for n in range(1, rows + 1):
                new_id = to18(_id_after(top, n)) if top else self._new_id(table.name, table)
                new = {**edge, "Id": new_id}
                for key in edge:
                    if "sessionid" in key.lower():
                        new[key] = f"EdgeSession{new_id}"
                records.append(new)
            return self.add_records(table.name, records)


# ------------------------------------------------------------------------- streaming


def _chunks(source: bytes | Path) -> Iterator[bytes]:
    if isinstance(source, bytes):
        for start in range(0, len(source), LOGFILE_CHUNK):
            yield source[start : start + LOGFILE_CHUNK]
        return
    with source.open("rb") as handle:
        while chunk := handle.read(LOGFILE_CHUNK):
            yield chunk


def _cut(chunks: Iterator[bytes], keep: int) -> Iterator[bytes]:
    """Yield the first ``keep`` bytes of ``chunks``, then raise ``TruncatedBody``."""
    sent = 0
    for chunk in chunks:
        if sent + len(chunk) >= keep:
            if keep > sent:
                yield chunk[: keep - sent]
            break
        sent += len(chunk)
        yield chunk
    raise TruncatedBody(f"LogFile download cut off after {keep} bytes (fault injection)")


def _gzip(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """Gzip-compress a byte stream on the fly (a cut-off stream is flushed, then cut)."""
    compressor = zlib.compressobj(wbits=31)
    try:
        for chunk in chunks:
            data = compressor.compress(chunk)
            if data:
                yield data
    except TruncatedBody:
        yield compressor.flush(zlib.Z_SYNC_FLUSH)
        raise
    yield compressor.flush()


def _csv_header(csv_bytes: bytes) -> str:
    first_line = csv_bytes.split(b"\n", 1)[0].decode("utf-8-sig", "replace").strip("\r")
    row = next(csv.reader(io.StringIO(first_line)), [])
    return ",".join(row)


# ---------------------------------------------------------------- mutation-fault helpers


def _is_hourly_action(record: Mapping[str, Any]) -> bool:
    return record.get("EventType") == "AgentAction" and record.get("Interval") == "Hourly"


def _table_without(table: Table, drop: set[int]) -> Table:
    """A copy of ``table`` (same schema) without the rows numbered in ``drop``."""
    out = Table(table.name)
    for fdef in table.fields.values():
        out.add_known_field(fdef)
    for row, record in enumerate(table.records):
        if row not in drop:
            out.append(record)
    return out


def _id_after(id15: str, steps: int) -> str:
    """The id ``steps`` places after ``id15`` in Salesforce's (ASCII) id order."""
    digits = [_ID_CHARS.index(c) for c in id15]
    carry = steps
    for pos in range(len(digits) - 1, -1, -1):
        carry, digits[pos] = divmod(digits[pos] + carry, len(_ID_CHARS))
        if not carry:
            break
    return "".join(_ID_CHARS[d] for d in digits)


def _republish_source(
    table: Table | None, file_id: str | None, logfiles: Mapping[str, bytes | Path]
) -> dict[str, Any] | None:
    """The EventLogFile record to re-publish: ``file_id``, else the newest Daily one."""
    if table is None:
        return None
    if file_id:
        row = table.find(file_id)
        return table.records[row] if row is not None else None
    daily = [
        r
        for r in table.records
        if r.get("EventType") == "AgentAction"
        and r.get("Interval") == "Daily"
        and str(r.get("Id"))[:15] in logfiles
    ]
    if not daily:
        return None

    def newest(r: dict[str, Any]) -> tuple[int, int, str]:
        return (
            parse_datetime_ms(str(r.get("LogDate") or "1970-01-01T00:00:00Z")),
            parse_datetime_ms(str(r["CreatedDate"])),
            str(r["Id"]),
        )

    return max(daily, key=newest)


def _bump(text: str, delta: int) -> str:
    try:
        return str(int(text) + delta)
    except ValueError:
        return str(float(text) + delta)


def _republished_body(body: bytes, seq: int) -> bytes | None:
    """``body`` with one row's TOTAL_TOKENS and AWU_COUNT raised and an ELF-only copy of
    that row appended; None if no row has numeric TOTAL_TOKENS and AWU_COUNT."""
    text = body.decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(text)))
    if not rows:
        return None
    header, data = rows[0], [r for r in rows[1:] if any(c.strip() for c in r)]
    index = {name.strip(): i for i, name in enumerate(header)}
    tokens, awu = index.get("TOTAL_TOKENS"), index.get("AWU_COUNT")
    request, work_item = index.get("REQUEST_ID"), index.get("WORK_ITEM_ID")
    if tokens is None or awu is None or request is None:
        return None

    def numeric(row: list[str]) -> bool:
        try:
            float(row[tokens]), float(row[awu])
        except (IndexError, ValueError):
            return False
        return len(row) > request

    usable = [i for i, r in enumerate(data) if numeric(r)]
    if not usable:
        return None
    with_item = [
        i
        for i in usable
        if work_item is not None and len(data[i]) > work_item and data[i][work_item].strip()
    ]
    target = (with_item or usable)[0]
    original = data[target]
    changed = list(original)
    changed[tokens] = _bump(original[tokens].strip(), REPUBLISH_TOKENS_DELTA)
    changed[awu] = _bump(original[awu].strip(), REPUBLISH_AWU_DELTA)
    data[target] = changed
    taken = {r[request] for r in data if len(r) > request}
    new_request = f"4MockRepublish{seq:08d}"
    while new_request in taken:
        seq += 1000
        new_request = f"4MockRepublish{seq:08d}"
    added = list(original)
    added[request] = new_request
    if work_item is not None and len(added) > work_item:
        added[work_item] = ""
    session = index.get("SESSION_KEY")
    if session is not None and len(added) > session:
        added[session] = f"MockRepublishSession{seq:04d}"
    data.append(added)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n" if b"\r\n" in body[:4096] else "\n")
    writer.writerow(header)
    writer.writerows(data)
    return out.getvalue().encode()
