"""Data 360 for the mock org (SPEC §11): the `/services/a360/token` exchange and a tenant
that serves `GET /api/v1/metadata`, `POST /api/v2/query` and `GET /api/v2/query/{batch}`
over `DIR/data360/<object API name>.jsonl` — and, when the snapshot has
`data360/computeConsumption.json`, the Digital Wallet action
`/services/data/vXX.X/actions/standard/computeConsumption` (API 63.0+, core token).

The SQL is executed for real: every object is loaded into an in-memory SQLite table and a
query runs as written, after one dialect step (``TIMESTAMP '…'`` literals become the
stored text form). Values come back typed the way the Query API v2 types them — DECIMAL as
a decimal string, TIMESTAMP as ``YYYY-MM-DD hh:mm:ss.fff UTC``, BOOLEAN as a JSON
boolean — with rows as arrays ordered by ``metadata[col].placeInOrder`` and the metadata
object itself deliberately in another key order.

The tenant answers on its own host: the exchange's ``instance_url`` is a host without a
scheme (``localhost:PORT`` when the core org was reached at ``127.0.0.1:PORT`` and the
other way round, one server for both), and a ``/api/`` call that reaches the core host
answers 404 — so a client that queries the core URL fails as it would against a real org.

Faults (``Data360Tenant.faults``): tenant tokens that expire after N calls, 503s on the
next query or batch requests, an expired batch id, a refused exchange.
"""

from __future__ import annotations

import itertools
import json
import re
import secrets
import sqlite3
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from .data360_db import TYPES, Data360Db, logical, render
from .http import Headers, MockRequest, MockResponse
from .snapshot import read_jsonl

__all__ = [
    "Data360Faults",
    "Data360Tenant",
    "EXCHANGE_GRANT_TYPE",
    "ACCESS_TOKEN_TYPE",
    "EXCHANGE_PATH",
]

EXCHANGE_PATH = "/services/a360/token"
EXCHANGE_GRANT_TYPE = "urn:salesforce:grant-type:external:cdp"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
TOKEN_LIFETIME_S = 7200
DEFAULT_BATCH_ROWS = 1000
_JSON = "application/json;charset=UTF-8"

_ACTION_PATH = re.compile(r"/services/data/v(\d+\.\d)/actions/standard/computeConsumption/?")


def _json_response(status: int, payload: Any) -> MockResponse:
    return MockResponse(
        status,
        Headers({"Content-Type": _JSON}),
        json.dumps(payload, separators=(",", ":")).encode(),
    )


def _error(status: int, code: str, message: str) -> MockResponse:
    return _json_response(status, [{"errorCode": code, "message": message}])


@dataclass
class _Batch:
    query_id: str
    columns: list[tuple[str, str]]
    rows: list[tuple[Any, ...]]
    offset: int


@dataclass
class Data360Faults:
    """Switch faults on per test; every field is consumed (or read) under the lock."""

    expire_token_after: int | None = None  # each tenant token answers N calls, then 401
    unavailable_queries: int = 0  # the next K POST /api/v2/query answer 503
    unavailable_batches: int = 0  # the next K GET /api/v2/query/{id} answer 503 (id kept)
    expire_batches: int = 0  # the next K GET /api/v2/query/{id}: the id has expired
    refuse_exchange: bool = False  # the exchange answers 400 invalid_grant
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def take(self, name: str) -> bool:
        with self.lock:
            left = getattr(self, name)
            if left:
                setattr(self, name, left - 1)
                return True
            return False


@dataclass
class LoggedCall:
    """One request the tenant answered (the core org's request log has no bodies)."""

    method: str
    path: str
    base_url: str
    status: int
    token: str | None = None
    form: dict[str, str] | None = None
    sql: str | None = None


class Data360Tenant:
    """The Data 360 side of one mock org. Thread-safe."""

    def __init__(
        self,
        tables: dict[str, list[dict[str, Any]]],
        *,
        core_token_ok: Callable[[str], bool],
        family: str | None = None,
        dataspaces: tuple[str, ...] = ("default",),
        batch_rows: int = DEFAULT_BATCH_ROWS,
        api_version: float = 62.0,
        consumption_cards: list[dict[str, Any]] | None = None,
    ) -> None:
        self.family = family
        self.api_version = api_version
        #: the Digital Wallet computeConsumption action's cards (None: the org lacks it)
        self.consumption_cards = consumption_cards
        self.dataspaces = dataspaces
        self.batch_rows = batch_rows
        self.faults = Data360Faults()
        self.log: list[LoggedCall] = []
        self.queries: list[str] = []
        self._core_token_ok = core_token_ok
        self._lock = threading.RLock()
        self._db = Data360Db(self._lock)
        self._tokens: dict[str, int] = {}  # tenant token → calls answered
        self._exchanged: set[str] = set()
        self._tenant_hosts: set[str] = set()
        self._batches: dict[str, _Batch] = {}
        self._ids = itertools.count(1)
        for name, rows in tables.items():
            self._db.load(name, rows)

    # ---------------------------------------------------------------- loading
    @classmethod
    def from_snapshot(
        cls, root: Path, *, core_token_ok: Callable[[str], bool]
    ) -> Data360Tenant | None:
        """The tenant of snapshot `root`, or None when it has no `data360/` directory."""
        folder = root / "data360"
        if not folder.is_dir():
            return None
        info = json.loads((root / "org.json").read_text(encoding="utf-8")).get("data360") or {}
        if not isinstance(info, dict):
            raise ValueError(f"org snapshot {root}: org.json data360 must be an object")
        tables: dict[str, list[dict[str, Any]]] = {}
        for path in sorted(folder.glob("*.jsonl")):
            tables[path.stem] = read_jsonl(path)
        spaces = info.get("dataspaces") or ["default"]
        cards = None
        if (folder / "computeConsumption.json").is_file():
            cards = json.loads((folder / "computeConsumption.json").read_text("utf-8"))["cards"]
        version = json.loads((root / "org.json").read_text(encoding="utf-8"))["api_version"]
        return cls(
            tables,
            core_token_ok=core_token_ok,
            family=info.get("family"),
            dataspaces=tuple(spaces),
            api_version=float(version),
            consumption_cards=cards,
        )

    # ---------------------------------------------------------------- mutation (tests)
    def add_rows(self, name: str, rows: list[dict[str, Any]]) -> None:
        """Append rows to an object (a new object if unknown), e.g. late-arriving events."""
        self._db.add_rows(name, rows)

    def rows(self, name: str) -> list[dict[str, Any]]:
        """The object's rows in snapshot form (timestamps ISO, booleans JSON)."""
        return self._db.rows(name)

    def drop_object(self, name: str) -> None:
        self._db.drop_object(name)

    def drop_column(self, name: str, column: str) -> None:
        self._db.drop_column(name, column)

    def revoke_tokens(self) -> None:
        with self._lock:
            self._tokens.clear()

    @property
    def exchanges(self) -> list[LoggedCall]:
        return [c for c in list(self.log) if c.path == EXCHANGE_PATH]

    # ---------------------------------------------------------------- dispatch
    def serves(self, path: str) -> bool:
        if self.consumption_cards is not None and _ACTION_PATH.fullmatch(path):
            return True
        return path == EXCHANGE_PATH or path.startswith(("/api/v1/metadata", "/api/v2/query"))

    def handle(self, req: MockRequest) -> MockResponse:
        call = LoggedCall(req.method, req.path, req.base_url, 0)
        match = _ACTION_PATH.fullmatch(req.path)
        if match:
            response = self._compute_consumption(req, float(match.group(1)))
        elif req.path == EXCHANGE_PATH:
            response = self._exchange(req, call)
        else:
            response = self._tenant(req, call)
        call.status = response.status
        with self._lock:
            self.log.append(call)
        return response

    # ---------------------------------------------------------------- Digital Wallet
    def _compute_consumption(self, req: MockRequest, version: float) -> MockResponse:
        """`/services/data/vXX.X/actions/standard/computeConsumption` (core token, 63.0+)."""
        scheme, _, token = req.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not self._core_token_ok(token.strip()):
            return _error(401, "INVALID_SESSION_ID", "Session expired or invalid")
        if not 63.0 <= version <= self.api_version:
            return _error(404, "NOT_FOUND", "The requested resource does not exist")
        if req.method not in ("GET", "POST"):
            return _error(405, "METHOD_NOT_ALLOWED", f"HTTP Method '{req.method}' not allowed")
        return _json_response(
            200,
            [
                {
                    "actionName": "computeConsumption",
                    "errors": None,
                    "isSuccess": True,
                    "outputValues": {"cards": self.consumption_cards},
                }
            ],
        )

    # ---------------------------------------------------------------- token exchange
    def tenant_host(self, core_base_url: str) -> str:
        """`host:port` of the tenant for a core org reached at `core_base_url`."""
        parts = urlsplit(core_base_url)
        host = parts.hostname or "127.0.0.1"
        other = "localhost" if host == "127.0.0.1" else "127.0.0.1"
        return f"{other}:{parts.port}" if parts.port else other

    def _exchange(self, req: MockRequest, call: LoggedCall) -> MockResponse:
        if req.method != "POST":
            return _json_response(
                400, {"error": "invalid_request", "error_description": "must use HTTP POST"}
            )
        form = dict(parse_qsl(req.body.decode("utf-8", "replace"), keep_blank_values=True))
        call.form = form
        if form.get("grant_type") != EXCHANGE_GRANT_TYPE:
            return _json_response(
                400,
                {
                    "error": "unsupported_grant_type",
                    "error_description": "grant type not supported",
                },
            )
        if form.get("subject_token_type") != ACCESS_TOKEN_TYPE:
            return _json_response(
                400,
                {"error": "invalid_request", "error_description": "unsupported subject_token_type"},
            )
        subject = form.get("subject_token", "")
        space = form.get("dataspace")
        with self._lock:
            if self.faults.refuse_exchange:
                return _json_response(
                    400, {"error": "invalid_grant", "error_description": "token exchange refused"}
                )
            if not subject or not self._core_token_ok(subject):
                return _json_response(
                    401, {"error": "invalid_token", "error_description": "subject token invalid"}
                )
            if subject in self._exchanged:  # a core token is exchanged once
                return _json_response(
                    400,
                    {"error": "invalid_grant", "error_description": "subject token already used"},
                )
            if space is not None and space not in self.dataspaces:
                return _json_response(
                    400,
                    {"error": "invalid_request", "error_description": f"unknown dataspace {space}"},
                )
            self._exchanged.add(subject)
            token = "a360." + secrets.token_urlsafe(48)
            self._tokens[token] = 0
            tenant = self.tenant_host(req.base_url)
            self._tenant_hosts.add(tenant.lower())
        return _json_response(
            200,
            {
                "access_token": token,
                "instance_url": tenant,
                "token_type": "Bearer",
                "issued_token_type": "urn:ietf:params:oauth:token-type:jwt",
                "expires_in": TOKEN_LIFETIME_S,
            },
        )

    # ---------------------------------------------------------------- tenant API
    def _tenant(self, req: MockRequest, call: LoggedCall) -> MockResponse:
        host = urlsplit(req.base_url).netloc
        scheme, _, token = req.headers.get("Authorization", "").partition(" ")
        call.token = token.strip() or None
        if not self._is_tenant_host(host):
            return _error(404, "NOT_FOUND", "The requested resource does not exist")
        if not self._authorise(scheme, token.strip()):
            return _error(401, "UNAUTHORIZED", "Invalid or expired token")
        path = req.path.rstrip("/")
        if path == "/api/v1/metadata" and req.method == "GET":
            return self._metadata(req)
        if path == "/api/v2/query" and req.method == "POST":
            return self._query(req, call)
        if path.startswith("/api/v2/query/") and req.method == "GET":
            return self._next_batch(path.rsplit("/", 1)[1])
        return _error(404, "NOT_FOUND", "The requested resource does not exist")

    def _is_tenant_host(self, host: str) -> bool:
        # the tenant answers on the host the exchange handed out (one server, two names)
        with self._lock:
            return host.lower() in self._tenant_hosts

    def _authorise(self, scheme: str, token: str) -> bool:
        if scheme.lower() != "bearer" or not token:
            return False
        with self._lock:
            calls = self._tokens.get(token)
            if calls is None:
                return False
            limit = self.faults.expire_token_after
            if limit is not None and calls >= limit:
                del self._tokens[token]
                return False
            self._tokens[token] = calls + 1
            return True

    def _metadata(self, req: MockRequest) -> MockResponse:
        wanted = req.query.get("entityName")
        entity_type = req.query.get("entityType")
        out = []
        for table in self._db.objects():
            if wanted and table.name.lower() != wanted.lower():
                continue
            kind = "DataLakeObject" if table.name.endswith("__dll") else "DataModelObject"
            if entity_type and entity_type != kind:
                continue
            out.append(
                {
                    "name": table.name,
                    "displayName": logical(table.name.replace("__dlm", "").replace("__dll", "")),
                    "category": "Engagement",
                    "entityType": kind,
                    "primaryKeys": [
                        {"name": c, "displayName": "Id"}
                        for c, _ in table.columns
                        if logical(c) == "Id"
                    ],
                    "fields": [
                        {"name": c, "displayName": logical(c), "type": TYPES[t][1]}
                        for c, t in table.columns
                    ],
                }
            )
        return _json_response(200, {"metadata": out})

    def _query(self, req: MockRequest, call: LoggedCall) -> MockResponse:
        try:
            body = json.loads(req.body or b"{}")
        except json.JSONDecodeError:
            return _error(400, "INVALID_ARGUMENT", "request body is not JSON")
        sql = body.get("sql") if isinstance(body, dict) else None
        if not isinstance(sql, str) or not sql.strip():
            return _error(400, "INVALID_ARGUMENT", "sql is required")
        call.sql = sql
        with self._lock:
            self.queries.append(sql)
        if self.faults.take("unavailable_queries"):
            return _error(503, "SERVICE_UNAVAILABLE", "Service Unavailable")
        if not re.match(r"\s*(SELECT|WITH)\b", sql, re.IGNORECASE):
            return _error(400, "INVALID_ARGUMENT", "only SELECT statements are supported")
        try:
            translated = self._db.translate(sql)
        except ValueError as exc:
            return _error(400, "INVALID_ARGUMENT", f"bad TIMESTAMP literal: {exc}")
        try:
            names, rows = self._db.execute(translated)
        except sqlite3.Error as exc:
            return _error(400, "INVALID_ARGUMENT", f"query failed: {exc}")
        columns = [(n, self._db.result_type(n, i, rows)) for i, n in enumerate(names)]
        batch = _Batch(str(uuid.uuid4()), columns, rows, 0)
        return self._page(batch)

    def _next_batch(self, batch_id: str) -> MockResponse:
        if self.faults.take("unavailable_batches"):
            return _error(503, "SERVICE_UNAVAILABLE", "Service Unavailable")
        with self._lock:
            batch = self._batches.pop(batch_id, None)  # a batch id is usable once
        if batch is None or self.faults.take("expire_batches"):
            return _error(400, "INVALID_ARGUMENT", f"batch id {batch_id} is invalid or expired")
        return self._page(batch)

    def _page(self, batch: _Batch) -> MockResponse:
        start = batch.offset
        stop = min(start + self.batch_rows, len(batch.rows))
        data = [
            [render(v, t) for v, (_, t) in zip(row, batch.columns, strict=False)]
            for row in batch.rows[start:stop]
        ]
        # key order is the reverse of placeInOrder: clients must not rely on it
        metadata = {
            name: {"type": typ, "placeInOrder": i, "typeCode": TYPES[typ][0]}
            for i, (name, typ) in reversed(list(enumerate(batch.columns)))
        }
        now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        payload: dict[str, Any] = {
            "data": data,
            "startTime": now,
            "endTime": now,
            "rowCount": len(data),
            "queryId": batch.query_id,
            "done": stop >= len(batch.rows),
            "metadata": metadata,
        }
        if stop < len(batch.rows):
            next_id = f"{batch.query_id}-{next(self._ids)}"
            with self._lock:
                self._batches[next_id] = _Batch(batch.query_id, batch.columns, batch.rows, stop)
            payload["nextBatchId"] = next_id
        return _json_response(200, payload)
