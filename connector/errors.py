"""The connector's exception tree. Third-party exceptions (httpx, requests,
simple-salesforce) are translated where they arise; nothing above the connector sees them.

    ConnectorError             root; `exit_code` is what a CLI exits with (3)
    ├── SetupError             a connection setting, key file or field mapping to fix (2)
    ├── AuthError              the org refused our credentials (3)
    └── SalesforceError        the org answered with an error or not at all (3)
        ├── RateLimited        429 / 503 / UNABLE_TO_LOCK_ROW after retries; API reserve
        ├── SessionExpired     401 INVALID_SESSION_ID (refresh the token, retry once)
        ├── QueryError         400 MALFORMED_QUERY / INVALID_FIELD
        └── BatchExpired       a Data 360 nextBatchId the tenant no longer knows
"""

from __future__ import annotations

__all__ = [
    "ConnectorError",
    "SetupError",
    "AuthError",
    "SalesforceError",
    "RateLimited",
    "SessionExpired",
    "QueryError",
    "BatchExpired",
]


class ConnectorError(Exception):
    """Root of every connector error."""

    exit_code = 3


class SetupError(ConnectorError):
    """Something in the connection's configuration to fix (key file, mapping, CA bundle)."""

    exit_code = 2


class AuthError(ConnectorError):
    pass


class SalesforceError(ConnectorError):
    def __init__(self, message: str, *, status: int | None = None, error_code: str | None = None):
        super().__init__(message)
        self.status = status
        self.error_code = error_code


class RateLimited(SalesforceError):
    pass


class SessionExpired(SalesforceError):
    pass


class QueryError(SalesforceError):
    pass


class BatchExpired(SalesforceError):
    """A `nextBatchId` the tenant no longer knows (used once, or expired): re-query."""
