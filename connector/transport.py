"""One transport policy for every Salesforce endpoint (REST, LogFile, Data 360): a pure
classifier that decides what a failure means, and the loop that acts on it — renew the
session once when the org refuses it, back off (bounded, exponential with jitter, via
tenacity) on transient failures, fail at once otherwise."""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from typing import Any, TypeVar

import httpx

from connector.config import SyncConfig
from connector.errors import AuthError, RateLimited, SalesforceError

__all__ = ["Decision", "call_with_retries", "classify", "first_error", "network_error"]

T = TypeVar("T")

TRANSIENT_STATUS = frozenset({429, 500, 502, 503, 504})
TRANSIENT_CODES = frozenset({"UNABLE_TO_LOCK_ROW", "SERVER_UNAVAILABLE", "QUERY_TIMEOUT"})


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
    if error_code in TRANSIENT_CODES:
        return Decision.BACKOFF
    if status == 403 and error_code == "REQUEST_LIMIT_EXCEEDED":
        return Decision.FAIL  # the org's daily API limit: retrying only makes it worse
    if status in TRANSIENT_STATUS:
        return Decision.BACKOFF
    return Decision.FAIL


class _Transient(Exception):
    """Internal: a failure the retry loop backs off from."""

    def __init__(self, error: SalesforceError):
        super().__init__(str(error))
        self.error = error


def call_with_retries(
    attempt: Callable[[], T],
    *,
    refresh: Callable[[], object],
    sync: SyncConfig,
    service: str,
    refused: str,
    sleep: Callable[[float], None] | None = None,
) -> T:
    """Run `attempt` (which raises SalesforceError on failure) under the policy above.
    `refresh` renews the session; `refused` is the AuthError message when a renewed
    session is refused too; `service` names the endpoint in the give-up message."""

    def once() -> T:
        refreshed = False
        while True:
            try:
                return attempt()
            except SalesforceError as err:
                decision = classify(err.status, err.error_code)
                if decision is Decision.REFRESH and not refreshed:
                    refreshed = True
                    refresh()
                    continue
                if decision is Decision.REFRESH:
                    raise AuthError(refused) from None
                if decision is Decision.BACKOFF:
                    raise _Transient(err) from None
                raise

    try:
        return once()
    except _Transient as exc:
        failed = exc
    try:
        return _retry(once, failed, sync, sleep or time.sleep)
    except _Transient as exc:
        raise RateLimited(
            f"{service} kept failing after {sync.max_retries} retries: {exc.error}",
            status=exc.error.status,
            error_code=exc.error.error_code,
        ) from None


def _retry(
    once: Callable[[], T], failed: _Transient, sync: SyncConfig, sleep: Callable[[float], None]
) -> T:
    """Back off and retry after the first attempt `failed`, as if tenacity had made that
    attempt too (it counts towards the attempts and its wait comes first). tenacity is
    imported here, on the first transient failure: most calls succeed at once, and the
    import (asyncio with it) is a tenth of a run that finds nothing new."""
    from tenacity import (
        Retrying,
        retry_if_exception_type,
        stop_after_attempt,
        wait_random_exponential,
    )

    replay: list[_Transient] = [failed]

    def attempt() -> T:
        if replay:
            raise replay.pop()
        return once()

    retrying = Retrying(
        stop=stop_after_attempt(sync.max_retries + 1),
        wait=wait_random_exponential(multiplier=sync.backoff_base_s, max=sync.backoff_max_s),
        retry=retry_if_exception_type(_Transient),
        reraise=True,
        sleep=sleep,
    )
    return retrying(attempt)


def first_error(body: Any) -> tuple[str | None, str | None]:
    """(errorCode, message) of a Salesforce, OAuth or Data 360 error body."""
    if isinstance(body, list) and body and isinstance(body[0], dict):
        return body[0].get("errorCode"), body[0].get("message")
    if isinstance(body, dict):
        return (
            body.get("errorCode") or body.get("error"),
            body.get("message") or body.get("error_description"),
        )
    if isinstance(body, str):
        return None, body[:200]
    return None, None


def network_error(exc: BaseException, url: str, *, service: str = "Salesforce") -> SalesforceError:
    """A request that got no answer: TLS trust failures fail at once (error_code TLS),
    everything else is transient."""
    host = _host_of(url) or service
    if "CERTIFICATE_VERIFY_FAILED" in str(exc):
        return SalesforceError(
            f"TLS certificate of {host} not trusted — set salesforce.ca_bundle for a private CA",
            status=None,
            error_code="TLS",
        )
    detail = str(exc).splitlines()[0][:160] if str(exc) else ""
    return SalesforceError(
        f"network error talking to {host}: {type(exc).__name__} {detail}".strip()
    )


def _host_of(url: str) -> str | None:
    try:
        return httpx.URL(url).host or None
    except httpx.InvalidURL:
        return None
