"""The REST client of one org: describes and REST actions through simple-salesforce, query
pages and LogFile bodies with httpx — every request under `connector.transport`'s policy.

simple-salesforce (with requests and zeep) is imported on the first describe or REST
action, not when the client is made: commands that never reach the org skip it.
simple-salesforce's, requests' and httpx's exceptions stop here: callers see only
`connector.errors`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any, TypeVar, cast
from urllib.parse import quote

import httpx

from connector.auth import Token, TokenProvider, http_client, load_private_key
from connector.config import ConnectorConfig
from connector.errors import (
    QueryError,
    RateLimited,
    SalesforceError,
    SessionExpired,
    SetupError,
)
from connector.transport import TRANSIENT_CODES, call_with_retries, first_error, network_error

if TYPE_CHECKING:
    import requests
    from simple_salesforce.api import Salesforce

__all__ = ["SalesforceClient", "ApiUsage"]

T = TypeVar("T")


@dataclass
class ApiUsage:
    used: int
    total: int

    @property
    def remaining_pct(self) -> float:
        return 100.0 * (self.total - self.used) / self.total if self.total else 100.0


class SalesforceClient:
    """One authenticated connection to an org for the duration of a run."""

    def __init__(self, cfg: ConnectorConfig, *, sleep: Callable[[float], None] | None = None):
        self._cfg = cfg
        sf = cfg.salesforce
        for name, value in (("consumer_key", sf.consumer_key), ("username", sf.username)):
            if not value.strip():  # the config loader defaults them to ""
                raise SetupError(
                    f"config key salesforce.{name} is required (the connected "
                    "app's consumer key and the integration user's username)"
                )
        key = load_private_key(sf.private_key_file)
        self._http = http_client(sf)
        self._tokens = TokenProvider(sf, self._http, key)
        self._token: Token | None = None
        #: simple-salesforce and its requests session, made for the first REST action
        self._sf: Salesforce | None = None
        self._session: requests.Session | None = None
        self._sleep = sleep
        self.api_calls = 0
        self.usage: ApiUsage | None = None
        self._sf_usage_seen: object = None

    # -- lifecycle ------------------------------------------------------------------------
    def connect(self) -> Token:
        self._token = self._tokens.fetch()
        self._sf = None  # made again on the new token when a REST action needs it
        return self._token

    def close(self) -> None:
        self._http.close()
        if self._session is not None:
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
        is retried on its own, so a fault mid-way does not restart the query.

        Pages come through httpx like LogFile bodies, not simple-salesforce: its per-page
        path (requests, an OrderedDict per record) cost more than the rest of the sync."""
        page = self._call(lambda: self._get_json(f"{self.base_path}/query", {"q": soql}))
        while True:
            records = page.get("records", [])
            for record in records:
                record.pop("attributes", None)
            yield records
            next_url = page.get("nextRecordsUrl")
            if page.get("done", True) or not next_url:
                return
            page = self._call(self._page_at(str(next_url)))

    def query_all(self, soql: str) -> list[dict[str, Any]]:
        return [r for page in self.query_pages(soql) for r in page]

    def describe(self, sobject: str) -> dict[str, Any]:
        """The sObject's describe, through simple-salesforce (a JSON object, or an error)."""
        path = f"sobjects/{quote(sobject)}/describe"
        result = self._call(lambda: _translate(lambda: self._salesforce().restful(path)))
        return cast("dict[str, Any]", result)  # simple-salesforce types it Any | None

    def invoke_action(self, name: str, inputs: list[dict[str, Any]]) -> Any:
        """POST a standard REST action (`actions/standard/<name>`) and return its answer."""
        path = f"actions/standard/{quote(name)}"
        return self._call(
            lambda: _translate(
                lambda: self._salesforce().restful(path, method="POST", json={"inputs": inputs})
            )
        )

    def download_logfile(
        self, file_id: str, sink: IO[bytes], *, expected_size: int | None = None
    ) -> tuple[int, str]:
        """Stream one LogFile body into `sink` (decoded if gzip); returns (bytes, sha256).
        A download cut off midway raises and is retried from scratch: `sink` is truncated
        before each attempt, so a half file is never handed on."""

        def attempt() -> tuple[int, str]:
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
                raise network_error(exc, url) from None
            sink.flush()
            if expected_size is not None and size != expected_size:
                # cut off without a protocol error: a transient failure, start again
                raise SalesforceError(
                    f"LogFile {file_id} arrived with {size} of {expected_size} bytes",
                    status=None,
                )
            return size, digest.hexdigest()

        return self._call(attempt)

    def _page_at(self, path: str) -> Callable[[], Any]:
        """The request for the page a query's nextRecordsUrl points at."""
        return lambda: self._get_json(path)

    def _salesforce(self) -> Salesforce:
        """simple-salesforce on this run's token and a requests session that trusts the
        configured CA bundle only (SPEC §10: else the environment's bundle wins)."""
        if self._session is None:
            import requests

            self._session = requests.Session()
            ca_bundle = self._cfg.salesforce.ca_bundle
            if ca_bundle is not None:
                self._session.trust_env = False
                self._session.verify = str(ca_bundle)
        if self._sf is None:
            from simple_salesforce.api import Salesforce

            assert self._token is not None
            self._sf = Salesforce(
                instance_url=self._token.instance_url,
                session_id=self._token.access_token,
                session=self._session,
                version=self._cfg.salesforce.api_version,
            )
        return self._sf

    def _get_json(self, path: str, params: dict[str, str] | None = None) -> Any:
        """One GET of a REST resource under the instance URL, its JSON body decoded."""
        assert self._token is not None
        url = f"{self._token.instance_url}{path}"
        headers = {"Authorization": f"Bearer {self._token.access_token}"}
        try:
            resp = self._http.get(url, params=params, headers=headers)
        except httpx.HTTPError as exc:
            raise network_error(exc, url) from None
        self._note_usage(resp.headers.get("Sforce-Limit-Info"))
        if resp.status_code != 200:
            raise _error_from_body(resp.status_code, _json_or_text(resp), url)
        try:
            return json.loads(resp.content)
        except ValueError:
            raise SalesforceError(f"Salesforce answered {_path_of(url)} with no JSON") from None

    # -- the retry loop -------------------------------------------------------------------
    def _call(self, fn: Callable[[], T]) -> T:
        """Run one request under the transport policy: the session renewed once when the
        org refuses it, transient failures backed off, the API reserve checked first."""
        if self._token is None:
            self.connect()
        return call_with_retries(
            lambda: self._once(fn),
            refresh=self.connect,
            sync=self._cfg.sync,
            service="Salesforce",
            refused="Salesforce refused a freshly issued token (INVALID_SESSION_ID): "
            "check the connected app's session policies and the user's API access",
            sleep=self._sleep,
        )

    def _once(self, fn: Callable[[], T]) -> T:
        self._check_reserve()
        self.api_calls += 1
        try:
            return fn()
        finally:
            self._note_sf_usage()

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
        """The org's API usage from a `Sforce-Limit-Info` header that came through httpx,
        read by simple-salesforce's own parser (it parses the ones that come through it)."""
        if header:
            from simple_salesforce.api import Salesforce

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


def _translate(fn: Callable[[], T]) -> T:
    """Run a simple-salesforce call, its exceptions (and requests') as ours."""
    import requests
    from simple_salesforce import exceptions as sf_exc

    try:
        return fn()
    except sf_exc.SalesforceError as exc:
        raise _error_from_body(exc.status, exc.content, exc.url) from None
    except requests.exceptions.RequestException as exc:
        raise network_error(exc, getattr(exc.request, "url", "") or "") from None


def _error_from_body(status: int, body: Any, url: str) -> SalesforceError:
    code, message = first_error(body)
    path = _path_of(url)
    text = f"Salesforce answered HTTP {status} {code or ''} on {path}: {message or 'no message'}"
    text = " ".join(text.split())
    if status == 401:
        return SessionExpired(text, status=status, error_code=code or "INVALID_SESSION_ID")
    if status == 400 and code in ("MALFORMED_QUERY", "INVALID_FIELD", "INVALID_TYPE"):
        return QueryError(text, status=status, error_code=code)
    if status in (429, 503) or code in TRANSIENT_CODES or code == "REQUEST_LIMIT_EXCEEDED":
        return RateLimited(text, status=status, error_code=code)
    return SalesforceError(text, status=status, error_code=code)


def _json_or_text(resp: httpx.Response) -> Any:
    try:
        return resp.json()
    except ValueError:
        return resp.text[:200]


def _path_of(url: str) -> str:
    return httpx.URL(url).path if url else "?"
