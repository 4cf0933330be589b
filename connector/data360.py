"""Data 360 as a source of agent actions (SPEC §11): token exchange, Query API v2, object
discovery across the naming families, incremental sync into the store, and the mapping of
generative-AI usage events to logical `Action`s.

Access: a fresh core token (JWT bearer) is exchanged at `{core}/services/a360/token` for a
tenant token and a tenant host (`instance_url`, no scheme). The tenant token is used until
the tenant refuses it; then a new core token is minted and exchanged once, and the request
repeated — `expires_in` is not trusted. Queries go to `https://{tenant}/api/v2/query` and
page through `nextBatchId` (each id usable once) until `done`; values are decoded by
`metadata[col].type` and columns ordered by `placeInOrder`.

Sync guarantees (as `connector.sync` for AgentWorkItem): usage events are read in keyset
order `(Timestamp, Id)`, capped at the sync's start; each page is committed with the
cursor it reaches, so a restart (an expired batch id, a killed run) resumes after the
last committed row with no gap at a page edge; every run re-reads `[data360]
settle_hours` of event time before the cursor, because usage rows arrive late. The
interaction steps and sessions of those events are read by id, whatever their own
timestamps, and only while the store lacks them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import quote

import httpx
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_random_exponential

from audit.config import Config
from audit.engine.model import Action, format_iso_ms, parse_sf_datetime
from audit.errors import AuthError, ConfigError, QueryError, RateLimited, SalesforceError
from connector.auth import TokenProvider, http_client, load_private_key
from connector.client import Decision, classify

__all__ = [
    "SOURCE",
    "EXCHANGE_GRANT_TYPE",
    "ACCESS_TOKEN_TYPE",
    "VOICE_CHANNELS",
    "ObjectSpec",
    "DiscoveredObject",
    "Data360Schema",
    "BatchExpired",
    "Data360Client",
    "Data360Report",
    "Data360Syncer",
    "candidates",
    "discover",
    "decode_rows",
    "decode_value",
    "parse_timestamp",
    "is_nothing",
    "load_actions",
    "unmetered_counts",
    "read_vendor_view",
]

SOURCE = "data360"  # sync_state key
EXCHANGE_PATH = "/services/a360/token"
EXCHANGE_GRANT_TYPE = "urn:salesforce:grant-type:external:cdp"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
VOICE_CHANNELS = frozenset({"voice", "pstn", "builder: voice preview"})
#: ids per `IN (…)` list: keeps each query short and selective
IN_CHUNK = 250
MAX_RESTARTS = 3


# --------------------------------------------------------------------------- objects


@dataclass(frozen=True)
class ObjectSpec:
    """A logical Data 360 object: the columns the audit needs and those it uses if there."""

    role: str
    base: str  # logical name, e.g. "AiAgentGenerativeAiUsage"
    required: tuple[str, ...]
    optional: tuple[str, ...] = ()
    one_of: tuple[str, ...] = ()  # at least one of these must exist


USAGE = ObjectSpec(
    "usage",
    "AiAgentGenerativeAiUsage",
    required=(
        "Id",
        "Timestamp",
        "AiAgentSessionId",
        "AiAgentToolName",
        "PromptTotalTokenCount",
        "UsageQuantity",
        "RequestIdentifier",
    ),
    optional=(
        "AgentIdentifier",
        "AgentDeveloperName",
        "UserId",
        "PromptInputTokenCount",
        "PromptCompletionTokenCount",
        "AiAgentInteractionId",
        "MeteringSkipReasonCode",
        "UsageTypeCode",
    ),
    one_of=("IsMeteredIndicator", "IsBillableIndicator"),
)
STEP = ObjectSpec(
    "step",
    "AiAgentInteractionStep",
    required=("Id", "GenAiGatewayRequestId", "InputValueText", "ErrorMessageText"),
    optional=("AiAgentInteractionId", "PrevStepId", "StartTimestamp", "AiAgentInteractionStepType"),
)
SESSION = ObjectSpec(
    "session",
    "AiAgentSession",
    required=("Id", "AiAgentChannelType"),
    optional=("RelatedVoiceCallId", "StartTimestamp"),
)
SPECS = (USAGE, STEP, SESSION)
_FAMILY_PREFIX = {"ssot": "ssot__", "std_dmo": "std__", "std": ""}
_IDENT = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


def candidates(base: str) -> list[tuple[str, str]]:
    """(family, object API name) to try, in order: ssot__X__dlm, std__XDmo__dlm, X_std__dlm."""
    return [
        ("ssot", f"ssot__{base}__dlm"),
        ("std_dmo", f"std__{base}Dmo__dlm"),
        ("std", f"{base}_std__dlm"),
    ]


def _logical_name(name: str) -> str:
    """`ssot__Timestamp__c` / `std__Timestamp__c` / `Timestamp__c` → `timestamp`."""
    stripped = re.sub(r"^(?:ssot__|std__)", "", name, flags=re.IGNORECASE)
    return re.sub(r"__c$", "", stripped, flags=re.IGNORECASE).lower()


@dataclass(frozen=True)
class DiscoveredObject:
    spec: ObjectSpec
    name: str  # the object's API name in this org
    family: str  # "ssot" | "std_dmo" | "std" | "other"
    columns: dict[str, str]  # logical → API column name (only those the org has)

    def col(self, logical: str) -> str | None:
        return self.columns.get(logical)


@dataclass(frozen=True)
class Data360Schema:
    usage: DiscoveredObject
    step: DiscoveredObject
    session: DiscoveredObject

    def as_json(self) -> dict[str, str]:
        return {o.spec.role: o.name for o in (self.usage, self.step, self.session)}


def discover(entities: Iterable[Mapping[str, Any]]) -> Data360Schema:
    """Pick each object's API name and columns from the metadata API's entities. Each
    object is discovered on its own (an org may mix families). ConfigError, one line,
    names the first missing object or the missing columns of an object."""
    by_name: dict[str, Mapping[str, Any]] = {}
    for entity in entities:
        name = entity.get("name")
        if isinstance(name, str):
            by_name[name.lower()] = entity
    found = {}
    for spec in SPECS:
        found[spec.role] = _discover_one(spec, by_name)
    return Data360Schema(usage=found["usage"], step=found["step"], session=found["session"])


def _discover_one(spec: ObjectSpec, by_name: Mapping[str, Mapping[str, Any]]) -> DiscoveredObject:
    """The first candidate that has every column the audit needs; if none has, the error
    names the first one found and what it lacks."""
    found: list[tuple[str, Mapping[str, Any]]] = []
    for fam, name in candidates(spec.base):
        entity = by_name.get(name.lower())
        if entity is not None:
            found.append((fam, entity))
    if not found:  # the families' variants, e.g. other capitalisation of "AiAgent"
        pattern = re.compile(
            rf"^(?:ssot__|std__)?{spec.base}(?:Dmo)?(?:_std)?__dlm$", re.IGNORECASE
        )
        found = [("other", by_name[n]) for n in sorted(by_name) if pattern.match(n)]
    if not found:
        tried = ", ".join(n for _, n in candidates(spec.base))
        raise ConfigError(
            f"Data 360 has no {spec.base} object (looked for {tried}) — turn on Agentforce "
            "session tracing and generative-AI usage data, and give the integration user the "
            "Data 360 permission set and access to the data space ([data360] dataspace)"
        )
    first_missing = ""
    for family, entity in found:
        obj, missing = _columns_of(spec, family, entity)
        if not missing:
            return obj
        first_missing = first_missing or missing
    raise ConfigError(first_missing)


def _columns_of(
    spec: ObjectSpec, family: str, entity: Mapping[str, Any]
) -> tuple[DiscoveredObject, str]:
    """The object with the columns it has, and an error line if it lacks needed ones."""
    name = str(entity["name"])
    fields = [str(f.get("name")) for f in entity.get("fields") or [] if isinstance(f, Mapping)]
    exact = {f.lower(): f for f in fields}
    loose: dict[str, str] = {}
    for f in fields:
        loose.setdefault(_logical_name(f), f)
    prefix = _FAMILY_PREFIX.get(family)
    columns: dict[str, str] = {}
    for logical in (*spec.required, *spec.optional, *spec.one_of):
        api = exact.get(f"{prefix}{logical}__c".lower()) if prefix is not None else None
        api = api or loose.get(logical.lower())
        if api is not None and _IDENT.match(api):  # unknown extra columns are never used
            columns[logical] = api
    missing = [f"{prefix or ''}{m}__c" for m in spec.required if m not in columns]
    if spec.one_of and not any(x in columns for x in spec.one_of):
        missing.append(" or ".join(f"{prefix or ''}{m}__c" for m in spec.one_of))
    error = ""
    if missing:
        error = (
            f"Data 360 object {name} lacks column(s) {', '.join(missing)} — the audit "
            "needs them (check the object's data model and field-level access)"
        )
    return DiscoveredObject(spec, name, family, columns), error


# --------------------------------------------------------------------------- values


def is_nothing(value: Any) -> bool:
    """Data 360's "no value": null, empty, or the `NOT_SET` sentinel — in every column."""
    return value is None or (isinstance(value, str) and value.strip() in ("", "NOT_SET"))


def parse_timestamp(value: str) -> datetime:
    """`2026-10-06 14:03:22.123 UTC` (Query API v2), or any ISO form; aware UTC."""
    text = value.strip()
    if text.upper().endswith(" UTC"):
        text = text[:-4].strip()
    if len(text) > 10 and text[10] == " ":
        text = text[:10] + "T" + text[11:]
    return parse_sf_datetime(text)


_NUMERIC = (
    "DECIMAL",
    "NUMERIC",
    "NUMBER",
    "DOUBLE",
    "FLOAT",
    "REAL",
    "INT",
    "BIGINT",
    "SMALLINT",
    "TINYINT",
    "INTEGER",
)
_TIMESTAMPS = ("TIMESTAMP", "DATE_TIME", "DATETIME")


def decode_value(value: Any, typ: str) -> Any:
    """One Query API v2 value, typed by its metadata type; "no value" becomes None."""
    if is_nothing(value):
        return None
    base = typ.upper().split("(", 1)[0].strip()
    if base in _NUMERIC:
        if isinstance(value, bool):
            return Decimal(int(value))
        try:
            return Decimal(str(value).strip())
        except InvalidOperation:
            raise SalesforceError(f"Data 360 answered {value!r} for a {typ} column") from None
    if base.startswith(_TIMESTAMPS):
        try:
            return parse_timestamp(str(value))
        except ValueError:
            raise SalesforceError(f"Data 360 answered {value!r} for a {typ} column") from None
    if base in ("BOOLEAN", "BOOL"):
        if isinstance(value, bool):
            return value
        return str(value).strip().lower() in ("true", "1", "t", "yes")
    return value if isinstance(value, str) else str(value)


def decode_rows(payload: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A Query API v2 response's rows as dicts, columns by `placeInOrder`, values typed."""
    meta = payload.get("metadata") or {}
    if not isinstance(meta, Mapping):
        raise SalesforceError("Data 360 answered a query without column metadata")
    ordered = sorted(meta.items(), key=lambda kv: int(kv[1].get("placeInOrder", 0)))
    names = [n for n, _ in ordered]
    types = [str(m.get("type") or "VARCHAR") for _, m in ordered]
    rows = []
    for values in payload.get("data") or []:
        if isinstance(values, Mapping):  # tolerate keyed rows
            rows.append(
                {n: decode_value(values.get(n), t) for n, t in zip(names, types, strict=False)}
            )
            continue
        if len(values) != len(names):
            raise SalesforceError(
                f"Data 360 answered a row of {len(values)} values for {len(names)} columns"
            )
        rows.append({n: decode_value(v, t) for n, t, v in zip(names, types, values, strict=False)})
    return rows


def _ts_literal(dt: datetime) -> str:
    return "TIMESTAMP '" + dt.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f") + "'"


def _str_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


# --------------------------------------------------------------------------- client


class BatchExpired(SalesforceError):
    """A `nextBatchId` the tenant no longer knows (used once, or expired): re-query."""


class _Transient(Exception):
    def __init__(self, error: SalesforceError):
        super().__init__(str(error))
        self.error = error


@dataclass
class _TenantToken:
    access_token: str
    base_url: str  # https://{instance_url}

    def __repr__(self) -> str:  # never print the token
        return f"_TenantToken(base_url={self.base_url!r})"


class Data360Client:
    """Token exchange and Query API v2 against one org's Data 360 tenant."""

    def __init__(self, cfg: Config, *, sleep: Callable[[float], None] | None = None):
        self._cfg = cfg
        sf = cfg.salesforce
        key = load_private_key(sf.private_key_file)
        self._http = http_client(sf)
        self._core_tokens = TokenProvider(sf, self._http, key)
        self._tenant: _TenantToken | None = None
        self._sleep = sleep
        self.exchanges = 0
        self.queries = 0
        self.batches = 0
        self.rows = 0
        self.requests = 0

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Data360Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def tenant_url(self) -> str | None:
        return self._tenant.base_url if self._tenant else None

    # -- token exchange -------------------------------------------------------------------
    def exchange(self) -> None:
        """A new core token (JWT bearer), exchanged once for a tenant token."""
        core = self._core_tokens.fetch()
        form = {
            "grant_type": EXCHANGE_GRANT_TYPE,
            "subject_token": core.access_token,
            "subject_token_type": ACCESS_TOKEN_TYPE,
        }
        if self._cfg.data360.dataspace:
            form["dataspace"] = self._cfg.data360.dataspace
        url = core.instance_url.rstrip("/") + EXCHANGE_PATH
        try:
            resp = self._http.post(url, data=form, headers={"Accept": "application/json"})
        except httpx.HTTPError as exc:
            raise _Transient(_network_error(exc, url)) from None
        self.exchanges += 1
        body = _json(resp)
        if resp.status_code >= 500:
            raise _Transient(
                SalesforceError(
                    f"Data 360 token exchange answered HTTP {resp.status_code}",
                    status=resp.status_code,
                )
            )
        if (
            resp.status_code != 200
            or not isinstance(body, dict)
            or not body.get("access_token")
            or not body.get("instance_url")
        ):
            error = body.get("error") if isinstance(body, dict) else None
            desc = body.get("error_description") if isinstance(body, dict) else None
            raise AuthError(
                f"Data 360 refused the token exchange ({error or resp.status_code}): "
                f"{desc or 'no description'} — the connected app needs the api, cdp_query_api "
                "and cdp_profile_api scopes and the user the Data 360 permission set"
                + (
                    " and access to data space " + self._cfg.data360.dataspace
                    if self._cfg.data360.dataspace
                    else ""
                )
            )
        instance = str(body["instance_url"]).strip().rstrip("/")
        base = instance if instance.startswith(("https://", "http://")) else f"https://{instance}"
        self._tenant = _TenantToken(str(body["access_token"]), base)

    # -- requests -------------------------------------------------------------------------
    def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: Mapping[str, str] | None = None,
    ) -> Any:
        """One tenant call: one re-exchange on 401, backoff on 5xx/429/network errors."""
        sync = self._cfg.sync
        retrying = Retrying(
            stop=stop_after_attempt(sync.max_retries + 1),
            wait=wait_random_exponential(multiplier=sync.backoff_base_s, max=sync.backoff_max_s),
            retry=retry_if_exception_type(_Transient),
            reraise=True,
            sleep=self._sleep or _default_sleep,
        )
        try:
            return retrying(self._once_with_refresh, method, path, json_body, params)
        except _Transient as exc:
            raise RateLimited(
                f"Data 360 kept failing after {sync.max_retries} retries: {exc.error}",
                status=exc.error.status,
                error_code=exc.error.error_code,
            ) from None

    def _once_with_refresh(
        self, method: str, path: str, json_body: Any, params: Mapping[str, str] | None
    ) -> Any:
        refreshed = False
        while True:
            if self._tenant is None:
                self.exchange()
                refreshed = True  # a token fresh from the exchange is not refreshed again
            assert self._tenant is not None
            url = self._tenant.base_url + path
            self.requests += 1
            try:
                resp = self._http.request(
                    method,
                    url,
                    json=json_body,
                    params=params,
                    headers={
                        "Authorization": f"Bearer {self._tenant.access_token}",
                        "Accept": "application/json",
                    },
                )
            except httpx.HTTPError as exc:
                error = _network_error(exc, url)
                if error.error_code == "TLS":
                    raise error from None
                raise _Transient(error) from None
            if resp.status_code == 200:
                body = _json(resp)
                if body is None:
                    raise SalesforceError(f"Data 360 answered {path} with a body that is not JSON")
                return body
            code, message = _first_error(_json(resp))
            text = " ".join(
                f"Data 360 answered HTTP {resp.status_code} {code or ''} on "
                f"{path.split('?')[0]}: {message or 'no message'}".split()
            )
            decision = classify(resp.status_code, None if resp.status_code == 401 else code)
            if decision is Decision.REFRESH and not refreshed:
                refreshed = True
                self._tenant = None
                continue
            if decision is Decision.REFRESH:
                raise AuthError(
                    "Data 360 refused a freshly exchanged token: check the integration user's "
                    "Data 360 permission set and the connected app's cdp_query_api scope"
                )
            if decision is Decision.BACKOFF:
                raise _Transient(SalesforceError(text, status=resp.status_code, error_code=code))
            if path.startswith("/api/v2/query/") and resp.status_code in (400, 404, 410):
                raise BatchExpired(text, status=resp.status_code, error_code=code)
            if resp.status_code == 400:
                raise QueryError(text, status=400, error_code=code)
            raise SalesforceError(text, status=resp.status_code, error_code=code)

    # -- API ------------------------------------------------------------------------------
    def metadata(self) -> list[dict[str, Any]]:
        body = self.request("GET", "/api/v1/metadata", params={"entityType": "DataModelObject"})
        entities = body.get("metadata") if isinstance(body, dict) else None
        if not isinstance(entities, list):
            raise SalesforceError("Data 360 metadata API answered without a metadata list")
        return [e for e in entities if isinstance(e, dict)]

    def query(self, sql: str) -> Iterator[list[dict[str, Any]]]:
        """Yield the result batch by batch (Query API v2), following nextBatchId to done.
        BatchExpired when a batch id is refused: the caller re-queries from its cursor."""
        payload = self.request("POST", "/api/v2/query", json_body={"sql": sql})
        self.queries += 1
        while True:
            rows = decode_rows(payload)
            self.batches += 1
            self.rows += len(rows)
            yield rows
            next_id = payload.get("nextBatchId")
            if not next_id or payload.get("done") is True:
                return
            payload = self.request("GET", f"/api/v2/query/{quote(str(next_id), safe='')}")


def _default_sleep(seconds: float) -> None:
    import time

    time.sleep(seconds)


def _json(resp: httpx.Response) -> Any:
    try:
        return resp.json()
    except ValueError:
        return None


def _first_error(body: Any) -> tuple[str | None, str | None]:
    if isinstance(body, list) and body and isinstance(body[0], dict):
        return body[0].get("errorCode"), body[0].get("message")
    if isinstance(body, dict):
        return (
            body.get("errorCode") or body.get("error"),
            body.get("message") or body.get("error_description"),
        )
    return None, None


def _network_error(exc: BaseException, url: str) -> SalesforceError:
    host = httpx.URL(url).host if url else "Data 360"
    if "CERTIFICATE_VERIFY_FAILED" in str(exc):
        return SalesforceError(
            f"TLS certificate of {host} not trusted — set salesforce.ca_bundle for a private CA",
            error_code="TLS",
        )
    detail = str(exc).splitlines()[0][:160] if str(exc) else ""
    return SalesforceError(
        f"network error talking to {host}: {type(exc).__name__} {detail}".strip()
    )


# --------------------------------------------------------------------------- sync


@dataclass
class Data360Report:
    events: int = 0  # tool-call usage events read
    records: int = 0  # of which new or changed in the store
    steps: int = 0
    sessions: int = 0
    restarts: int = 0
    earliest_changed: str | None = None
    notes: list[str] = field(default_factory=list)

    def changed(self, started_at: str) -> None:
        if self.earliest_changed is None or started_at < self.earliest_changed:
            self.earliest_changed = started_at


_EVENT_COLUMNS = (
    "id",
    "request_id",
    "started_at",
    "session_id",
    "interaction_id",
    "agent_id",
    "agent_name",
    "tool_name",
    "user_id",
    "prompt_tokens",
    "completion_tokens",
    "tokens",
    "usage_quantity",
    "is_metered",
    "is_billable",
    "skip_reason",
    "usage_type",
)


class Data360Syncer:
    """Syncs one org's Data 360 usage events (with their steps and sessions) into a store."""

    def __init__(
        self,
        client: Data360Client,
        store: Any,
        cfg: Config,
        *,
        run_id: str,
        sync_start: datetime,
        progress: Callable[[str, int, int | None], None] | None = None,
    ):
        self.client = client
        self.store = store
        self.cfg = cfg
        self.run_id = run_id
        self.sync_start = sync_start.astimezone(timezone.utc)
        self.progress = progress or (lambda stage, done, total: None)
        self.report = Data360Report()
        self._schema: Data360Schema | None = None

    def discover(self) -> Data360Schema:
        """Find the objects and columns once per run (before the store is opened)."""
        if self._schema is None:
            self._schema = discover(self.client.metadata())
        return self._schema

    # -- the sync -------------------------------------------------------------------------
    def sync(self, window: tuple[datetime, datetime] | None) -> None:
        from connector.sync import merge_intervals, subtract_intervals

        self.discover()
        state = self.store.get_sync_state(SOURCE) or {}
        cap = self.sync_start
        settle = timedelta(hours=self.cfg.data360.settle_hours)
        if state.get("since_bound"):
            since_bound = parse_sf_datetime(state["since_bound"])
        else:
            since_bound = _day_floor(cap - timedelta(days=self.cfg.sync.initial_days))
            state["since_bound"] = format_iso_ms(since_bound)

        if window is not None and window[0] < cap:
            todo = subtract_intervals(
                (format_iso_ms(window[0]), format_iso_ms(min(window[1], cap))),
                [
                    *(tuple(iv) for iv in state.get("covered", [])),
                    (format_iso_ms(since_bound), "9999-12-31T00:00:00.000Z"),
                ],
            )
            settled = format_iso_ms(cap - settle)
            for lo, hi in todo:
                self._fetch(parse_sf_datetime(lo), parse_sf_datetime(hi), state=None)
                state = {**(self.store.get_sync_state(SOURCE) or {}), **state}
                if lo < min(hi, settled):  # only settled event time counts as covered
                    state["covered"] = merge_intervals(
                        [*state.get("covered", []), (lo, min(hi, settled))]
                    )
                with self.store.transaction():
                    self.store.set_sync_state(SOURCE, state, self.run_id)

        # the incremental pass runs every time: it re-reads the settle margin
        cursor = state.get("cursor")
        start = parse_sf_datetime(cursor["ts"]) - settle if cursor else since_bound
        self._fetch(min(start, cap), cap, state=state)

    def audit_start(self, default: datetime) -> datetime:
        """Where a run without `--since` starts auditing: `default`, widened back to the day
        of the earliest event this sync added or changed — within what the store holds whole
        (since the first sync's start)."""
        state = self.store.get_sync_state(SOURCE) or {}
        earliest = self.report.earliest_changed
        if earliest is None or not state.get("since_bound"):
            return default
        day = _day_floor(parse_sf_datetime(earliest))
        return max(min(default, day), parse_sf_datetime(state["since_bound"]))

    def _fetch(self, lo: datetime, hi: datetime, *, state: dict[str, Any] | None) -> None:
        """Read usage events with lo <= Timestamp < hi in keyset order, committing each page
        (and, when `state` is given, the cursor it reaches)."""
        key: tuple[datetime, str] | None = None
        restarts = 0
        while True:
            try:
                for page in self.client.query(self._usage_sql(lo, hi, key)):
                    last = self._store_page(page, state)
                    if last is not None:
                        key = last
                break
            except BatchExpired as exc:
                restarts += 1
                self.report.restarts += 1
                if restarts > MAX_RESTARTS:
                    raise SalesforceError(
                        f"Data 360 batch ids kept expiring ({exc}); the next run resumes "
                        "from the last committed page"
                    ) from None
        if state is not None:
            # everything before `hi` has been read once: the next run starts a settle
            # margin before it
            state["cursor"] = {"ts": format_iso_ms(hi), "id": ""}
            with self.store.transaction():
                self.store.set_sync_state(SOURCE, state, self.run_id)

    def _usage_sql(self, lo: datetime, hi: datetime, after: tuple[datetime, str] | None) -> str:
        u = self.discover().usage
        ts, ident, tool = u.columns["Timestamp"], u.columns["Id"], u.columns["AiAgentToolName"]
        cols = ", ".join(dict.fromkeys(u.columns.values()))
        where = [
            f"{ts} >= {_ts_literal(lo)}",
            f"{ts} < {_ts_literal(hi)}",
            f"{tool} IS NOT NULL",
            f"{tool} <> ''",
            f"{tool} <> 'NOT_SET'",
        ]
        if after is not None:
            k = _ts_literal(after[0])
            where.append(f"({ts} > {k} OR ({ts} = {k} AND {ident} > {_str_literal(after[1])}))")
        return f"SELECT {cols} FROM {u.name} WHERE {' AND '.join(where)} ORDER BY {ts}, {ident}"

    def _store_page(
        self, page: list[dict[str, Any]], state: dict[str, Any] | None
    ) -> tuple[datetime, str] | None:
        schema = self.discover()
        events = []
        last: tuple[datetime, str] | None = None
        for raw in page:
            row = _event_row(raw, schema.usage)
            if row is None:
                continue
            events.append(row)
            ts = raw[schema.usage.columns["Timestamp"]]
            last = (ts, row["id"])
        if not page:
            return None
        steps = self._fetch_missing(
            schema.step,
            "GenAiGatewayRequestId",
            "d360_steps",
            "request_id",
            {e["request_id"] for e in events if e["request_id"]},
            _step_row,
        )
        sessions = self._fetch_missing(
            schema.session,
            "Id",
            "d360_sessions",
            "id",
            {e["session_id"] for e in events if e["session_id"]},
            _session_row,
        )
        changed = self._changed(events)
        with self.store.transaction():
            if events:
                self.store.upsert(
                    "d360_events", [{**e, "run_id": self.run_id} for e in events], pk="id"
                )
            if steps:
                self.store.upsert("d360_steps", steps, pk="id")
            if sessions:
                self.store.upsert("d360_sessions", sessions, pk="id")
            if state is not None and last is not None:
                state["cursor"] = {"ts": format_iso_ms(last[0]), "id": last[1]}
                self.store.set_sync_state(SOURCE, state, self.run_id)
        for e in changed:
            self.report.changed(e["started_at"])
        self.report.events += len(events)
        self.report.records += len(changed)
        self.report.steps += len(steps)
        self.report.sessions += len(sessions)
        self.progress("Data 360 usage events", self.report.events, None)
        return last

    def _fetch_missing(
        self,
        obj: DiscoveredObject,
        by: str,
        table: str,
        column: str,
        wanted: set[str],
        make: Callable[[dict[str, Any], DiscoveredObject], dict[str, Any] | None],
    ) -> list[dict[str, Any]]:
        """Rows of `obj` whose `by` column is in `wanted`, for the ids the store lacks."""
        known = self.store.existing(table, column, sorted(wanted))
        todo = sorted(wanted - known)
        cols = ", ".join(dict.fromkeys(obj.columns.values()))
        out = []
        for i in range(0, len(todo), IN_CHUNK):
            chunk = todo[i : i + IN_CHUNK]
            ids = ", ".join(_str_literal(x) for x in chunk)
            sql = f"SELECT {cols} FROM {obj.name} WHERE {obj.columns[by]} IN ({ids})"
            for page in self.client.query(sql):
                for raw in page:
                    row = make(raw, obj)
                    if row is not None:
                        out.append(row)
        return out

    def _changed(self, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        ids = [e["id"] for e in events]
        stored: dict[str, tuple[Any, ...]] = {}
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            marks = ",".join("?" * len(chunk))
            cols = ", ".join(_EVENT_COLUMNS)
            for r in self.store.db.conn.execute(
                f"SELECT {cols} FROM d360_events WHERE id IN ({marks})", chunk
            ):
                stored[r[0]] = tuple(r)
        return [e for e in events if stored.get(e["id"]) != tuple(e[c] for c in _EVENT_COLUMNS)]


def _get(raw: Mapping[str, Any], obj: DiscoveredObject, logical: str) -> Any:
    api = obj.columns.get(logical)
    return None if api is None else raw.get(api)


def _text(value: Any) -> str | None:
    return None if is_nothing(value) else str(value)


def _int(value: Any) -> int | None:
    if value is None:
        return None
    try:
        return int(Decimal(str(value)).to_integral_value())
    except InvalidOperation:
        return None


def _flag(value: Any) -> int | None:
    return None if value is None else int(bool(value))


def _iso(value: Any) -> str | None:
    if isinstance(value, datetime):
        return format_iso_ms(value)
    return None


def _event_row(raw: Mapping[str, Any], obj: DiscoveredObject) -> dict[str, Any] | None:
    event_id, ts = _text(_get(raw, obj, "Id")), _iso(_get(raw, obj, "Timestamp"))
    tool = _text(_get(raw, obj, "AiAgentToolName"))
    if event_id is None or ts is None or tool is None:
        return None
    quantity = _get(raw, obj, "UsageQuantity")
    prompt, completion = (
        _int(_get(raw, obj, "PromptInputTokenCount")),
        _int(_get(raw, obj, "PromptCompletionTokenCount")),
    )
    tokens = _int(_get(raw, obj, "PromptTotalTokenCount"))
    if tokens is None and (prompt is not None or completion is not None):
        tokens = (prompt or 0) + (completion or 0)
    return {
        "id": event_id,
        "request_id": _text(_get(raw, obj, "RequestIdentifier")),
        "started_at": ts,
        "session_id": _text(_get(raw, obj, "AiAgentSessionId")),
        "interaction_id": _text(_get(raw, obj, "AiAgentInteractionId")),
        "agent_id": _text(_get(raw, obj, "AgentIdentifier")),
        "agent_name": _text(_get(raw, obj, "AgentDeveloperName")),
        "tool_name": tool,
        "user_id": _text(_get(raw, obj, "UserId")),
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "tokens": tokens,
        "usage_quantity": None if quantity is None else str(quantity),
        "is_metered": _flag(_get(raw, obj, "IsMeteredIndicator")),
        "is_billable": _flag(_get(raw, obj, "IsBillableIndicator")),
        "skip_reason": _text(_get(raw, obj, "MeteringSkipReasonCode")),
        "usage_type": _text(_get(raw, obj, "UsageTypeCode")),
    }


def _step_row(raw: Mapping[str, Any], obj: DiscoveredObject) -> dict[str, Any] | None:
    step_id, request_id = (
        _text(_get(raw, obj, "Id")),
        _text(_get(raw, obj, "GenAiGatewayRequestId")),
    )
    if step_id is None or request_id is None:
        return None
    return {
        "id": step_id,
        "request_id": request_id,
        "interaction_id": _text(_get(raw, obj, "AiAgentInteractionId")),
        "step_type": _text(_get(raw, obj, "AiAgentInteractionStepType")),
        "prev_step_id": _text(_get(raw, obj, "PrevStepId")),
        "input_text": _text(_get(raw, obj, "InputValueText")),
        "error_text": _text(_get(raw, obj, "ErrorMessageText")),
        "started_at": _iso(_get(raw, obj, "StartTimestamp")),
    }


def _session_row(raw: Mapping[str, Any], obj: DiscoveredObject) -> dict[str, Any] | None:
    session_id = _text(_get(raw, obj, "Id"))
    if session_id is None:
        return None
    return {
        "id": session_id,
        "channel_type": _text(_get(raw, obj, "AiAgentChannelType")),
        "voice_call_id": _text(_get(raw, obj, "RelatedVoiceCallId")),
        "started_at": _iso(_get(raw, obj, "StartTimestamp")),
    }


def _day_floor(dt: datetime) -> datetime:
    return dt.astimezone(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)


# --------------------------------------------------------------------------- mapping


def is_voice(channel_type: str | None, voice_call_id: str | None) -> bool:
    """SPEC §11: the session's channel is Voice, PSTN or a voice preview, or it has a call."""
    if channel_type is not None and channel_type.strip().lower() in VOICE_CHANNELS:
        return True
    return not is_nothing(voice_call_id)


def load_actions(
    store: Any, window: tuple[datetime, datetime], *, voice_multiplier: float
) -> list[Action]:
    """The window's actions (usage event `Timestamp` in [start, end)) from the store."""
    start, end = window
    sql = """
        SELECT e.*, s.channel_type, s.voice_call_id,
               st.id AS step_id, st.input_text, st.error_text, st.started_at AS step_started
        FROM d360_events e
        LEFT JOIN d360_sessions s ON s.id = e.session_id
        LEFT JOIN d360_steps st ON st.request_id = e.request_id
        WHERE e.started_at >= ? AND e.started_at < ?
    """
    best: dict[str, tuple[tuple[Any, ...], dict[str, Any]]] = {}
    cur = store.db.conn.execute(sql, [format_iso_ms(start), format_iso_ms(end)])
    names = [d[0] for d in cur.description]
    for values in cur:
        row = dict(zip(names, values, strict=False))
        action_id = row["request_id"] or row["id"]
        # one action per id: the latest event, and its best step (one with an input)
        rank = (
            row["started_at"],
            row["id"],
            row["input_text"] is not None,
            row["step_started"] or "",
            row["step_id"] or "",
        )
        if action_id not in best or rank > best[action_id][0]:
            best[action_id] = (rank, row)
    actions = []
    for action_id, (_, row) in best.items():
        voice = is_voice(row["channel_type"], row["voice_call_id"])
        flag = row["is_metered"] if row["is_metered"] is not None else row["is_billable"]
        metered = True if flag is None else bool(flag)
        multiplier = voice_multiplier if voice else 1.0
        if not metered:
            reported: float | None = 0.0  # unmetered: reported 0 whatever UsageQuantity says
        elif row["usage_quantity"] is None:
            reported = None
        else:
            reported = float(Decimal(row["usage_quantity"]) * Decimal(repr(multiplier)))
        error = row["error_text"]
        actions.append(
            Action(
                id=action_id,
                session_id=row["session_id"],
                action_name=row["tool_name"],
                action_type=None,
                channel="Voice" if voice else "Text",
                status="Error" if error else "Success",
                tokens=row["tokens"] or 0,
                started_at=parse_sf_datetime(row["started_at"]),
                reported_awu=reported,
                prompt_tokens=row["prompt_tokens"],
                completion_tokens=row["completion_tokens"],
                agent_id=row["agent_id"],
                agent_name=row["agent_name"],
                error_code=error[:255] if error else None,
                action_input=row["input_text"],
                user_id=row["user_id"],
                case_id=None,
                source=SOURCE,
                billable_override=metered,
                extra={
                    "event_id": row["id"],
                    "is_billable": row["is_billable"],
                    "is_metered": row["is_metered"],
                    "skip_reason": row["skip_reason"],
                    "has_step": row["step_id"] is not None,
                },
            )
        )
    return actions


def unmetered_counts(actions: Iterable[Action]) -> dict[str, int]:
    """Unmetered actions, and those of them the feature meant to bill (reported, not hidden)."""
    unmetered = billable = 0
    for a in actions:
        if a.source == SOURCE and a.billable_override is False:
            unmetered += 1
            billable += a.extra.get("is_billable") == 1
    return {"unmetered_actions": unmetered, "billable_unmetered_actions": billable}


# --------------------------------------------------------------------------- vendor view

#: API versions from which the Digital Wallet objects exist (research/data360.md §3.3-3.4)
CONSUMPTION_ACTION_API = 63.0
CONSUMPTION_ALERT_API = 67.0
_ALERT_FIELDS = (
    "Id",
    "AlertType",
    "AlertScope",
    "AlertSubScope1",
    "AlertStatus",
    "TriggerType",
    "TriggerValue",
    "IsNotificationSent",
    "AlertTimestamp",
)
#: an org without the action (or without Wallet) answers one of these: absence is normal
_ABSENT = {400, 403, 404, 405}


def read_vendor_view(core: Any, api_version: str, *, sandbox: bool) -> dict[str, Any] | None:
    """Salesforce's own consumption figures, where the org has them: the Digital Wallet
    `computeConsumption` action (API 63+) and active `TenantConsumptionAlert` rows (API
    67+). None when neither is there — never a failure. `core` is the SalesforceClient."""
    version = float(api_version)
    cards: list[dict[str, Any]] | None = None
    alerts: list[dict[str, Any]] | None = None
    if version >= CONSUMPTION_ACTION_API:
        try:
            # the REST action endpoint takes a POST; SalesforceClient's retry loop runs it
            body = core._call(
                lambda sf: sf.restful(
                    "actions/standard/computeConsumption", method="POST", json={"inputs": [{}]}
                )
            )
        except SalesforceError as exc:
            if exc.status not in _ABSENT:
                raise
        else:
            cards = _cards(body)
    if version >= CONSUMPTION_ALERT_API:
        try:
            described = core.describe("TenantConsumptionAlert")
        except SalesforceError as exc:
            if exc.status not in _ABSENT:
                raise
        else:
            have = {str(f.get("name", "")).lower() for f in described.get("fields", [])}
            fields = [f for f in _ALERT_FIELDS if f.lower() in have]
            alerts = []
            if "alertstatus" in have:
                soql = (
                    f"SELECT {', '.join(fields)} FROM TenantConsumptionAlert "
                    "WHERE AlertStatus = 'Active' ORDER BY AlertScope, TriggerValue"
                )
                for rec in core.query_all(soql):
                    alerts.append(
                        {
                            "type": rec.get("AlertType"),
                            "scope": rec.get("AlertScope"),
                            "environment": rec.get("AlertSubScope1"),
                            "trigger_type": rec.get("TriggerType"),
                            "trigger_value": rec.get("TriggerValue"),
                            "notification_sent": rec.get("IsNotificationSent"),
                            "at": rec.get("AlertTimestamp"),
                        }
                    )
    if cards is None and alerts is None:
        return None
    env = "sandbox" if sandbox else "production"
    mine = [c for c in cards or [] if str(c.get("businessEnvType") or env).lower() == env]
    consumed = [
        c["unitsConsumed"] for c in mine if isinstance(c.get("unitsConsumed"), (int, float))
    ]
    entitled = [
        c["totalEntitlement"] for c in mine if isinstance(c.get("totalEntitlement"), (int, float))
    ]
    return {
        "units_consumed": float(sum(consumed)) if consumed else None,
        "total_entitlement": float(sum(entitled)) if entitled else None,
        "alerts": alerts or [],
        "cards": [
            {
                k: c.get(k)
                for k in (
                    "cardDefinitionDeveloperName",
                    "businessEnvType",
                    "usageModel",
                    "unitsConsumed",
                    "totalEntitlement",
                )
            }
            for c in mine
        ],
    }


def _cards(body: Any) -> list[dict[str, Any]]:
    """`cards` of the action's answer: a list of results with outputValues, or a dict."""
    results = body if isinstance(body, list) else [body]
    cards: list[dict[str, Any]] = []
    for result in results:
        if not isinstance(result, dict):
            continue
        values = result.get("outputValues", result)
        found = values.get("cards") if isinstance(values, dict) else None
        cards.extend(c for c in found or [] if isinstance(c, dict))
    return cards
