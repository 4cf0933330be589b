"""Token exchange and Query API v2 against one org's Data 360 tenant.

A fresh core token (JWT bearer) is exchanged at `{core}/services/a360/token` for a tenant
token and a tenant host (`instance_url`, no scheme). The tenant token is used until the
tenant refuses it; then a new core token is minted and exchanged once, and the request
repeated — `expires_in` is not trusted. Queries go to `https://{tenant}/api/v2/query` and
page through `nextBatchId` (each id usable once) until `done`. Every call runs under
`connector.transport`'s policy, like the core REST client's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from connector.auth import TokenProvider, http_client, load_private_key
from connector.config import ConnectorConfig
from connector.data360.values import decode_rows
from connector.errors import AuthError, BatchExpired, QueryError, SalesforceError, SessionExpired
from connector.transport import Decision, call_with_retries, classify, first_error, network_error

__all__ = ["ACCESS_TOKEN_TYPE", "EXCHANGE_GRANT_TYPE", "EXCHANGE_PATH", "Data360Client"]

EXCHANGE_PATH = "/services/a360/token"
EXCHANGE_GRANT_TYPE = "urn:salesforce:grant-type:external:cdp"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
_REFUSED = (
    "Data 360 refused a freshly exchanged token: check the integration user's "
    "Data 360 permission set and the connected app's cdp_query_api scope"
)


@dataclass
class _TenantToken:
    access_token: str
    base_url: str  # https://{instance_url}

    def __repr__(self) -> str:  # never print the token
        return f"_TenantToken(base_url={self.base_url!r})"


class Data360Client:
    """Token exchange and Query API v2 against one org's Data 360 tenant."""

    def __init__(self, cfg: ConnectorConfig, *, sleep: Callable[[float], None] | None = None):
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
        dataspace = self._cfg.data360.dataspace
        if dataspace:
            form["dataspace"] = dataspace
        url = core.instance_url.rstrip("/") + EXCHANGE_PATH
        try:
            resp = self._http.post(url, data=form, headers={"Accept": "application/json"})
        except httpx.HTTPError as exc:
            raise network_error(exc, url, service="Data 360") from None
        self.exchanges += 1
        body = _json(resp)
        if resp.status_code >= 500:
            raise SalesforceError(
                f"Data 360 token exchange answered HTTP {resp.status_code}",
                status=resp.status_code,
            )
        if (
            resp.status_code != 200
            or not isinstance(body, dict)
            or not body.get("access_token")
            or not body.get("instance_url")
        ):
            error, desc = (
                (body.get("error"), body.get("error_description"))
                if isinstance(body, dict)
                else (None, None)
            )
            raise AuthError(
                f"Data 360 refused the token exchange ({error or resp.status_code}): "
                f"{desc or 'no description'} — the connected app needs the api, cdp_query_api "
                "and cdp_profile_api scopes and the user the Data 360 permission set"
                + (" and access to data space " + dataspace if dataspace else "")
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
        return call_with_retries(
            lambda: self._once(method, path, json_body, params),
            refresh=self._forget_tenant,
            sync=self._cfg.sync,
            service="Data 360",
            refused=_REFUSED,
            sleep=self._sleep,
        )

    def _forget_tenant(self) -> None:
        self._tenant = None  # the next attempt exchanges a fresh token

    def _once(
        self, method: str, path: str, json_body: Any, params: Mapping[str, str] | None
    ) -> Any:
        fresh = self._tenant is None
        if self._tenant is None:
            self.exchange()
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
            raise network_error(exc, url, service="Data 360") from None
        if resp.status_code == 200:
            body = _json(resp)
            if body is None:
                raise SalesforceError(f"Data 360 answered {path} with a body that is not JSON")
            return body
        if resp.status_code == 401 and fresh:
            raise AuthError(_REFUSED)  # a token fresh from the exchange is not renewed again
        raise _error_of(resp, path)

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


def _error_of(resp: httpx.Response, path: str) -> SalesforceError:
    """The error a non-200 tenant answer is, typed so the transport's classifier (and the
    sync, for an expired batch id) can act on it."""
    status = resp.status_code
    code, message = first_error(_json(resp))
    text = " ".join(
        f"Data 360 answered HTTP {status} {code or ''} on "
        f"{path.split('?')[0]}: {message or 'no message'}".split()
    )
    if status == 401:
        return SessionExpired(text, status=401, error_code=None)
    if classify(status, code) is Decision.BACKOFF:
        return SalesforceError(text, status=status, error_code=code)
    if path.startswith("/api/v2/query/") and status in (400, 404, 410):
        return BatchExpired(text, status=status, error_code=code)
    if status == 400:
        return QueryError(text, status=400, error_code=code)
    return SalesforceError(text, status=status, error_code=code)


def _json(resp: httpx.Response) -> Any:
    try:
        return resp.json()
    except ValueError:
        return None
