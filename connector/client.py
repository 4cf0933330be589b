"""Talking to Salesforce: a pure classifier that decides what a response means, a retry
loop kept apart from it, and a client that queries (simple-salesforce) and streams
LogFiles (httpx) through that loop.

Salesforce's own exceptions (simple-salesforce, requests, httpx) stop here: callers see
only `audit.errors`.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, Any, TypeVar, cast
from urllib.parse import quote

import httpx
import requests
from simple_salesforce import exceptions as sf_exc
from simple_salesforce.api import Salesforce
from tenacity import (
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_random_exponential,
)

from audit.config import Config
from audit.errors import (
    AuthError,
    ConfigError,
    QueryError,
    RateLimited,
    SalesforceError,
    SessionExpired,
)
from connector.auth import Token, TokenProvider, http_client, load_private_key

__all__ = ["Decision", "classify", "SalesforceClient", "ApiUsage"]

T = TypeVar("T")

_TRANSIENT_STATUS = {429, 500, 502, 503, 504}
_TRANSIENT_CODES = {"UNABLE_TO_LOCK_ROW", "SERVER_UNAVAILABLE", "QUERY_TIMEOUT"}


class Decision(enum.Enum):
    REFRESH = "refresh the token and retry once"
    BACKOFF = "back off and retry"
    FAIL = "fail at once"


def classify(status: int | None, error_code: str | None = None) -> Decision:
    """What an error response means. `status=None` is a network error (no response)."""
    if status is None:
        return Decision.FAIL if error_code == "TLS" else Decision.BACKOFF
    if status == 401 and error_code in (None, "INVALID_SESSION_ID"):
        return Decision.REFRESH
    if error_code in _TRANSIENT_CODES:
        return Decision.BACKOFF
    if status == 403 and error_code == "REQUEST_LIMIT_EXCEEDED":
        return Decision.FAIL  # the org's daily API limit: retrying only makes it worse
    if status in _TRANSIENT_STATUS:
        return Decision.BACKOFF
    return Decision.FAIL


@dataclass
class ApiUsage:
    used: int
    total: int

    @property
    def remaining_pct(self) -> float:
        return 100.0 * (self.total - self.used) / self.total if self.total else 100.0


class _Transient(Exception):
    """Internal: a failure the retry loop backs off from."""

    def __init__(self, error: SalesforceError):
        super().__init__(str(error))
        self.error = error


class SalesforceClient:
    """One authenticated connection to an org for the duration of a run."""

    def __init__(self, cfg: Config, *, sleep: Callable[[float], None] | None = None):
        self._cfg = cfg
        sf = cfg.salesforce
        for name, value in (("consumer_key", sf.consumer_key), ("username", sf.username)):
            if not value.strip():  # the config loader defaults them to ""
                raise ConfigError(
                    f"config key salesforce.{name} is required (the connected "
                    "app's consumer key and the integration user's username)"
                )
        key = load_private_key(sf.private_key_file)
        self._http = http_client(sf)
        self._session = requests.Session()
        if sf.ca_bundle is not None:
            self._session.trust_env = False
            self._session.verify = str(sf.ca_bundle)
        self._tokens = TokenProvider(sf, self._http, key)
        self._token: Token | None = None
        self._sf: Salesforce | None = None
        self._sleep = sleep
        self.api_calls = 0
        self.usage: ApiUsage | None = None
        self._sf_usage_seen: object = None

    # -- lifecycle ------------------------------------------------------------------------
    def connect(self) -> Token:
        self._token = self._tokens.fetch()
        self._sf = Salesforce(
            instance_url=self._token.instance_url,
            session_id=self._token.access_token,
            session=self._session,
            version=self._cfg.salesforce.api_version,
        )
        return self._token

    def close(self) -> None:
        self._http.close()
        self._session.close()

    def __enter__(self) -> SalesforceClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def token_exchanges(self) -> int:
        return self._tokens.exchanges

    @property
    def base_path(self) -> str:
        return f"/services/data/v{self._cfg.salesforce.api_version}"

    # -- calls ----------------------------------------------------------------------------
    def query_pages(self, soql: str) -> Iterator[list[dict[str, Any]]]:
        """Yield the result one page at a time, following nextRecordsUrl; each page request
        is retried on its own, so a fault mid-way does not restart the query."""
        page = self._call(lambda sf: sf.query(soql))
        while True:
            records = [_strip_attributes(r) for r in page.get("records", [])]
            yield records
            next_url = page.get("nextRecordsUrl")
            if page.get("done", True) or not next_url:
                return
            page = self._call(_next_page(next_url))

    def query_all(self, soql: str) -> list[dict[str, Any]]:
        return [r for page in self.query_pages(soql) for r in page]

    def describe(self, sobject: str) -> dict[str, Any]:
        path = f"sobjects/{quote(sobject)}/describe"
        result = self._call(lambda sf: sf.restful(path))
        return cast("dict[str, Any]", result)  # simple-salesforce types it Any | None

    def download_logfile(
        self, file_id: str, sink: IO[bytes], *, expected_size: int | None = None
    ) -> tuple[int, str]:
        """Stream one LogFile body into `sink` (decoded if gzip); returns (bytes, sha256).
        A download cut off midway raises and is retried from scratch: `sink` is truncated
        before each attempt, so a half file is never handed on."""

        def attempt(_: Salesforce) -> tuple[int, str]:
            sink.seek(0)
            sink.truncate()
            assert self._token is not None
            url = (
                f"{self._token.instance_url}{self.base_path}/sobjects/EventLogFile/"
                f"{quote(file_id)}/LogFile"
            )
            headers = {
                "Authorization": f"Bearer {self._token.access_token}",
                "Accept-Encoding": "gzip",
            }
            digest = hashlib.sha256()
            size = 0
            try:
                with self._http.stream("GET", url, headers=headers) as resp:
                    self._note_usage(resp.headers.get("Sforce-Limit-Info"))
                    if resp.status_code != 200:
                        resp.read()
                        raise _error_from_body(resp.status_code, _json_or_text(resp), url)
                    for chunk in resp.iter_bytes(65536):
                        sink.write(chunk)
                        digest.update(chunk)
                        size += len(chunk)
            except httpx.HTTPError as exc:
                raise _network_error(exc, url) from None
            sink.flush()
            if expected_size is not None and size != expected_size:
                # cut off without a protocol error: a transient failure, start again
                raise SalesforceError(
                    f"LogFile {file_id} arrived with {size} of {expected_size} bytes",
                    status=None,
                )
            return size, digest.hexdigest()

        return self._call(attempt)

    # -- the retry loop -------------------------------------------------------------------
    def _call(self, fn: Callable[[Salesforce], T]) -> T:
        """Run one request: refresh the token once on INVALID_SESSION_ID, back off on
        transient failures (bounded, exponential with jitter), fail at once otherwise."""
        if self._sf is None:
            self.connect()
        sync = self._cfg.sync
        retrying = Retrying(
            stop=stop_after_attempt(sync.max_retries + 1),
            wait=wait_random_exponential(multiplier=sync.backoff_base_s, max=sync.backoff_max_s),
            retry=retry_if_exception_type(_Transient),
            reraise=True,
            sleep=self._sleep or _default_sleep,
        )
        try:
            return retrying(lambda: self._once_with_refresh(fn))
        except _Transient as exc:
            raise RateLimited(
                f"Salesforce kept failing after {sync.max_retries} retries: {exc.error}",
                status=exc.error.status,
                error_code=exc.error.error_code,
            ) from None

    def _once_with_refresh(self, fn: Callable[[Salesforce], T]) -> T:
        refreshed = False
        while True:
            self._check_reserve()
            assert self._sf is not None
            self.api_calls += 1
            try:
                result = _translate(fn, self._sf)
                self._note_sf_usage()
                return result
            except SalesforceError as err:
                self._note_sf_usage()
                decision = classify(err.status, err.error_code)
                if decision is Decision.REFRESH and not refreshed:
                    refreshed = True
                    self.connect()
                    continue
                if decision is Decision.REFRESH:
                    raise AuthError(
                        "Salesforce refused a freshly issued token (INVALID_SESSION_ID): "
                        "check the connected app's session policies and the user's API access"
                    ) from None
                if decision is Decision.BACKOFF:
                    raise _Transient(err) from None
                raise

    # -- API budget -----------------------------------------------------------------------
    def _note_sf_usage(self) -> None:
        """Take the usage simple-salesforce parsed from its last response — only if that
        response is new: after a LogFile download (httpx) its value is older than ours."""
        if self._sf is not None:
            usage = self._sf.api_usage.get("api-usage")
            if usage is not None and usage is not self._sf_usage_seen:
                self._sf_usage_seen = usage
                self.usage = ApiUsage(int(usage.used), int(usage.total))

    def _note_usage(self, header: str | None) -> None:
        if header:
            usage = Salesforce.parse_api_usage(header).get("api-usage")
            if usage is not None:
                self.usage = ApiUsage(int(usage.used), int(usage.total))

    def _check_reserve(self) -> None:
        reserve = self._cfg.sync.api_reserve_pct
        if self.usage is not None and self.usage.remaining_pct < reserve:
            raise RateLimited(
                f"stopped: the org's daily API budget is down to {self.usage.remaining_pct:.1f}% "
                f"({self.usage.used}/{self.usage.total} used), below the {reserve:g}% reserve "
                "kept for the org's own integrations (sync.api_reserve_pct); the next run resumes"
            )


def _default_sleep(seconds: float) -> None:
    import time

    time.sleep(seconds)


def _next_page(url: str) -> Callable[[Salesforce], Any]:
    """The request for the page a query's nextRecordsUrl points at."""
    return lambda sf: sf.query_more(url, identifier_is_url=True)


def _translate(fn: Callable[[Salesforce], T], sf: Salesforce) -> T:
    try:
        return fn(sf)
    except sf_exc.SalesforceError as exc:
        raise _error_from_body(exc.status, exc.content, exc.url) from None
    except requests.exceptions.RequestException as exc:
        raise _network_error(exc, getattr(exc.request, "url", "") or "") from None


def _error_from_body(status: int, body: Any, url: str) -> SalesforceError:
    code, message = _first_error(body)
    path = _path_of(url)
    text = f"Salesforce answered HTTP {status} {code or ''} on {path}: {message or 'no message'}"
    text = " ".join(text.split())
    if status == 401:
        return SessionExpired(text, status=status, error_code=code or "INVALID_SESSION_ID")
    if status == 400 and code in ("MALFORMED_QUERY", "INVALID_FIELD", "INVALID_TYPE"):
        return QueryError(text, status=status, error_code=code)
    if status in (429, 503) or code in _TRANSIENT_CODES or code == "REQUEST_LIMIT_EXCEEDED":
        return RateLimited(text, status=status, error_code=code)
    return SalesforceError(text, status=status, error_code=code)


def _network_error(exc: BaseException, url: str) -> SalesforceError:
    kind = type(exc).__name__
    detail = str(exc).splitlines()[0][:160] if str(exc) else ""
    if "CERTIFICATE_VERIFY_FAILED" in str(exc):
        return SalesforceError(
            f"TLS certificate of {_host_of(url)} not trusted — set salesforce.ca_bundle "
            "for a private CA",
            status=None,
            error_code="TLS",
        )
    return SalesforceError(f"network error talking to {_host_of(url)}: {kind} {detail}".strip())


def _first_error(body: Any) -> tuple[str | None, str | None]:
    if isinstance(body, list) and body and isinstance(body[0], dict):
        return body[0].get("errorCode"), body[0].get("message")
    if isinstance(body, dict):
        return body.get("errorCode") or body.get("error"), body.get("message") or body.get(
            "error_description"
        )
    if isinstance(body, str):
        return None, body[:200]
    return None, None


def _json_or_text(resp: httpx.Response) -> Any:
    try:
        return resp.json()
    except ValueError:
        return resp.text[:200]


def _path_of(url: str) -> str:
    return httpx.URL(url).path if url else "?"


def _host_of(url: str) -> str:
    try:
        return httpx.URL(url).host or url
    except Exception:
        return "Salesforce"


def _strip_attributes(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k != "attributes"}
