"""The mock Salesforce org: a plain function from ``MockRequest`` to ``MockResponse``.

``MockOrg.handle`` speaks Salesforce's REST wire format over an org snapshot (SPEC §8), so
the same object serves in-process calls in unit tests and the threaded HTTPS server in
``connector.mock.server``. Endpoints:

* ``POST /services/oauth2/token`` — OAuth 2.0 JWT bearer (RS256 against ``app.crt``);
* ``GET /services/oauth2/userinfo`` and the identity URL ``/id/<org id>/<user id>``;
* ``GET /services/data/`` — API versions up to the org's release;
* ``GET /services/data/vXX.X/query[/]?q=…`` and ``…/query/<locator>-<offset>`` pages
  (``&columns=true``: the query's ``columnMetadata``), ``tooling/query`` alike;
* ``GET /services/data/vXX.X/sobjects[/<obj>/describe | /<obj>/<id>]``;
* ``GET /services/data/vXX.X/sobjects/EventLogFile/<id>/LogFile`` (streamed, gzip on
  ``Accept-Encoding: gzip``);
* ``GET /services/data/vXX.X/limits``.

``HEAD`` is answered like ``GET`` without the body. Organization and User carry the
standard fields real clients (the Salesforce CLI among them) read.

Every ``/services/data/vXX.X`` call needs a bearer token from the token endpoint, counts
against the daily allowance and carries ``Sforce-Limit-Info: api-usage=N/M``. Faults
(``connector.mock.faults``) and the runtime mutation API let tests play a live org; the
org itself carries out the faults that mutate it (a re-published log file, Hourly files
arriving late, rows inserted at a query page's edge).

This module routes and composes; each job lives in its own module: ``http`` (request and
response types), ``snapshot`` (loading), ``store`` (data and mutation API), ``oauth``,
``query``, ``sobjects``, ``logfiles`` and ``mutations`` (the data-changing faults).
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from .data360 import Data360Tenant
from .faults import FailureReply, Faults, RepublishPlan
from .http import (
    Headers,
    LoggedRequest,
    MockRequest,
    MockResponse,
    RequestLog,
    json_response,
    not_found,
    sf_error,
)
from .identity import Identity
from .limits import limits_body
from .logfiles import LOGFILE_CHUNK, logfile_response
from .mutations import Mutations
from .oauth import JWT_GRANT_TYPE, OAuth
from .query import QueryPager
from .snapshot import OrgInfo, load_public_key, logfile_paths, read_objects
from .sobjects import KNOWN_FIELDS, describe_response, retrieve_response, sobjects_response
from .soql import Table
from .store import Store, integration_user, organization_table, user_table
from .tooling import tooling_tables

__all__ = [
    "MockOrg",
    # re-exported: their home moved out of this module, callers may still import them here
    "Headers",
    "MockRequest",
    "MockResponse",
    "LoggedRequest",
    "RequestLog",
    "OrgInfo",
    "KNOWN_FIELDS",
    "JWT_GRANT_TYPE",
    "LOGFILE_CHUNK",
]

MIN_API_VERSION = 20
_VERSION_RE = re.compile(r"v(\d+)\.(\d)")
_SEASONS = ("Spring", "Summer", "Winter")


@dataclass
class _Routed:
    response: MockResponse
    #: 0 for a query's first page, 1, 2, … for ``nextRecordsUrl`` pages, else None
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
        self._lock = threading.RLock()  # shared by every part below: one consistent org
        clock = clock or (lambda: datetime.now(timezone.utc))
        self._store = Store(self._lock, clock, (tables or {}).values(), logfiles or {})
        self._store.tables["organization"] = organization_table(info)
        self._store.tables["user"] = user_table(info)
        self._tooling = tooling_tables()
        self._store.add_logfile_field()
        self._oauth = OAuth(info, public_key, self._lock)
        self._pager = QueryPager(self._lock)
        self._mutations = Mutations(self._store)
        self._identity = Identity(info, self._has_token)
        #: the Data 360 side (token exchange + tenant), from DIR/data360 (connector.mock.data360)
        self.data360: Any = None

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
        org = cls(
            info,
            load_public_key(cert_path),
            page_size=page_size,
            long_text_page_size=long_text_page_size,
            faults=faults,
            clock=clock,
        )
        for sobject, records in read_objects(root):
            org._store.load_object(sobject, records)
        if org._tables["user"].find(info.user_id) is None:  # a User.jsonl without them
            org._store.add_records("User", [integration_user(info)])
        org._store.logfiles.update(logfile_paths(root))
        org.data360 = Data360Tenant.from_snapshot(root, core_token_ok=org._has_token)
        target = org.faults.republish_id
        elf = org._tables.get("eventlogfile")
        if target and (elf is None or elf.find(target) is None):
            raise ValueError(f"fault 'republish_id': no EventLogFile {target} in {root}")
        return org

    @property
    def _tables(self) -> dict[str, Table]:
        """Tables by lower-cased sObject name (the store's own dict, not a copy)."""
        return self._store.tables

    def _has_token(self, token: str) -> bool:
        return self._oauth.has_token(token)

    # ---------------------------------------------------------------- mutation API
    def add_records(self, sobject: str, records: Iterable[Mapping[str, Any]]) -> list[str]:
        """Insert records (a new sObject if unknown); returns their 18-character ids."""
        return self._store.add_records(sobject, records)

    def update_record(
        self,
        sobject: str,
        record_id: str,
        changes: Mapping[str, Any],
        system_modstamp: datetime | str | None = None,
    ) -> None:
        """Change fields of one record; ``SystemModstamp`` becomes ``system_modstamp``
        (default: now). ``KeyError`` if the object or record does not exist."""
        self._store.update_record(sobject, record_id, changes, system_modstamp)

    def add_logfile(self, record: Mapping[str, Any], csv_bytes: bytes) -> str:
        """Publish an EventLogFile record and its body; returns the 18-character id.

        Re-publishing an existing ``Id`` replaces that record (give it a later
        ``CreatedDate``) and its body. ``LogFileLength`` and ``LogFileFieldNames`` default
        to the body's size and header row.
        """
        return self._store.add_logfile(record, csv_bytes)

    def records(self, sobject: str) -> list[dict[str, Any]]:
        """A copy of the stored records of ``sobject`` (raw snapshot form)."""
        return self._store.records(sobject)

    def revoke_tokens(self) -> None:
        """Invalidate every access token issued so far (as if the session was logged out)."""
        self._oauth.revoke()

    def republish(self, plan: RepublishPlan) -> str | None:
        """Re-publish a Daily AgentAction log file (see ``Mutations.republish``); returns
        the file's 18-character id (None if nothing fits)."""
        return self._mutations.republish(plan)

    def insert_at_page_edge(self, edge: Mapping[str, Any], rows: int) -> list[str]:
        """Insert ``rows`` AgentWorkItem records copied from ``edge`` (a stored record)
        with its SystemModstamp, Ids above every existing one and fresh session ids."""
        return self._mutations.insert_at_page_edge(edge, rows)

    # ---------------------------------------------------------------- dispatch
    def handle(self, req: MockRequest) -> MockResponse:
        """Answer one request (thread-safe). ``HEAD`` is answered as ``GET`` would be,
        with the body's ``Content-Length`` and no body."""
        routed = self._route(req)
        response = routed.response
        if req.path.startswith("/services/data"):
            used, total = self.faults.usage()
            response.headers["Sforce-Limit-Info"] = f"api-usage={used}/{total}"
        records = None
        if routed.page_no is not None and response.status == 200:
            records = response.records  # counted as the page was made: no decoding again
            if records is None and isinstance(response.body, bytes):
                records = len(json.loads(response.body).get("records", []))
        self.request_log.append(
            LoggedRequest(req.method, req.path, urlencode(req.query), response.status, records)
        )
        if req.method == "HEAD":
            _drop_body(response)
        hook = self.on_request
        if hook is not None:
            hook(req, routed.page_no)
        return response

    def _route(self, req: MockRequest) -> _Routed:
        path = req.path
        if path == "/services/oauth2/token":
            return _Routed(self._oauth.token_endpoint(req))
        if self._identity.serves(path):
            return _Routed(self._identity.handle(req))
        if path in ("/services/data", "/services/data/"):
            return _Routed(self._versions())
        if self.data360 is not None and self.data360.serves(path):
            return _Routed(self.data360.handle(req))
        if path.startswith("/services/data/"):
            return self._api(req)
        return _Routed(not_found())

    def _api(self, req: MockRequest) -> _Routed:
        """``/services/data/vXX.X/…``: authorise, count, apply faults, then dispatch."""
        if not self._oauth.authorise(req, self.faults.token_call_limit):
            return _Routed(sf_error(401, "INVALID_SESSION_ID", "Session expired or invalid"))
        failure: FailureReply | None = self.faults.take_failure()
        if failure is not None:
            return _Routed(json_response(failure.status, failure.body()))
        self.faults.count_api_call()
        self._mutations.sync_late_hourly(self.faults.late_hourly_pending)
        rest = req.path[len("/services/data/") :]
        version_text, _, rest = rest.partition("/")
        match = _VERSION_RE.fullmatch(version_text)
        if (
            not match
            or not MIN_API_VERSION <= float(version_text[1:]) <= self.info.api_version_number
        ):
            return _Routed(not_found())
        version = version_text[1:]
        parts = [p for p in rest.split("/") if p]
        if req.method not in ("GET", "HEAD"):
            return _Routed(
                sf_error(
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
            if req.query.get("columns", "").lower() == "true":
                return _Routed(self._columns(req, version))
            return _Routed(self._query_first(req, version), page_no=0)
        if head == "tooling":
            return _Routed(self._tooling_query(req, version, args))
        if head in ("query", "queryAll") and len(args) == 1:
            page = self._pager.next(args[0])
            return _Routed(page.response, page.page_no)
        if head == "limits" and not args:
            return _Routed(self._limits())
        if head == "sobjects":
            return _Routed(self._sobjects(req, version, args))
        return _Routed(not_found())

    # ---------------------------------------------------------------- REST API
    def _versions(self) -> MockResponse:
        top = int(self.info.api_version_number)
        versions = [
            {
                "label": _release_label(major),
                "url": f"/services/data/v{major}.0",
                "version": f"{major}.0",
            }
            for major in range(MIN_API_VERSION, top + 1)
        ]
        return json_response(200, versions)

    def _resources(self, version: str) -> MockResponse:
        base = f"/services/data/v{version}"
        names = ("tooling", "sobjects", "query", "queryAll", "limits")
        resources = {name: f"{base}/{name}" for name in names}
        resources["identity"] = f"/id/{self.info.organization_id}/{self.info.user_id}"
        return json_response(200, resources)

    def _limits(self) -> MockResponse:
        return json_response(200, limits_body(*self.faults.usage()))

    def _columns(self, req: MockRequest, version: str) -> MockResponse:
        """``query?q=…&columns=true``: no records, no locator, no query faults."""
        return self._pager.first(
            req, version, self._tables, self.page_size, self.long_text_page_size
        ).response

    def _tooling_query(self, req: MockRequest, version: str, args: list[str]) -> MockResponse:
        """``tooling/query?q=…`` and its ``nextRecordsUrl`` pages, over the Tooling objects."""
        if args == ["query"]:
            return self._pager.first(
                req, version, self._tooling, self.page_size, None, tooling=True
            ).response
        if len(args) == 2 and args[0] == "query":
            return self._pager.next(args[1]).response
        return not_found()

    def _query_first(self, req: MockRequest, version: str) -> MockResponse:
        first = self._pager.first(
            req, version, self._tables, self.page_size, self.long_text_page_size
        )
        # the faults that watch queries fire once the answer is fixed: it can't see them
        if first.sobject == "eventlogfile" and self.faults.take_elf_listing():
            self._mutations.release_late_hourly()
        if first.sobject == "agentworkitem" and first.records:
            rows = self.faults.take_insert_at_page_edge()
            if rows:
                self.insert_at_page_edge(first.records[-1], rows)
        return first.response

    def _sobjects(self, req: MockRequest, version: str, args: list[str]) -> MockResponse:
        if not args:
            with self._lock:
                names = sorted(t.name for t in self._tables.values())
            return sobjects_response(names, version)
        with self._lock:
            table = self._tables.get(args[0].lower())
            if table is None:
                return not_found()
            if len(args) == 2 and args[1] == "describe":
                others = list(self._tables.values())
                return describe_response(table, float(version), others, version)
            if len(args) == 2:
                return retrieve_response(req, table, args[1], version)
            if len(args) == 3:
                return self._blob(req, table, args[1], args[2])
        return not_found()

    def _blob(
        self, req: MockRequest, table: Table, record_id: str, field_name: str
    ) -> MockResponse:
        if table.name.lower() != "eventlogfile" or field_name != "LogFile":
            return not_found()
        row = table.find(record_id)
        source = self._store.logfiles.get(record_id[:15]) if row is not None else None
        if source is None:
            return not_found()
        response = logfile_response(req, source, self.faults.take_cut_logfile(record_id))
        # the body is bound to its source already: a re-publish can't touch it
        plan = self.faults.take_republish()
        if plan is not None:
            self.republish(plan)
        return response


def _drop_body(response: MockResponse) -> None:
    """Turn a GET answer into its HEAD answer: same headers (the length kept), no body."""
    body = response.body
    if isinstance(body, bytes):
        response.headers.setdefault("Content-Length", str(len(body)))
    else:
        close = getattr(body, "close", None)
        if close is not None:
            close()  # a generator reading a log file: let it close the file
    response.body = b""


def _release_label(major: int) -> str:
    """Release name of API ``major``.0 (60 → "Spring '24", 62 → "Winter '25")."""
    offset = major - 60
    return f"{_SEASONS[offset % 3]} '{24 + (offset + 1) // 3:02d}"
