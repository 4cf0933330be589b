"""The one exception tree of awu-audit.

    AuditError                 root: every error the CLI turns into one clear line
    ├── ConfigError            bad or missing configuration / input (exit 2)
    ├── AuthError              the org refused our credentials (exit 3)
    ├── SalesforceError        the org answered with an error or not at all (exit 3)
    │   ├── RateLimited        429 / 503 / UNABLE_TO_LOCK_ROW after retries; API reserve reached
    │   ├── SessionExpired     401 INVALID_SESSION_ID (refresh the token, retry once)
    │   └── QueryError         400 MALFORMED_QUERY / INVALID_FIELD
    ├── StoreError             the local SQLite store (locked, unreadable, newer schema)
    └── DeliveryError          Slack or email delivery failed (retried next run)

Third-party exceptions (httpx, requests, simple-salesforce, sqlite3) are translated at the
boundary; nothing above the connector sees them.
"""

from __future__ import annotations

__all__ = [
    "AuditError",
    "ConfigError",
    "AuthError",
    "SalesforceError",
    "RateLimited",
    "SessionExpired",
    "QueryError",
    "StoreError",
    "DeliveryError",
]


class AuditError(Exception):
    """Root of every awu-audit error. `exit_code` is what the CLI exits with."""

    exit_code = 1


class ConfigError(AuditError):
    exit_code = 2


class AuthError(AuditError):
    exit_code = 3


class SalesforceError(AuditError):
    exit_code = 3

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


class StoreError(AuditError):
    exit_code = 2


class DeliveryError(AuditError):
    pass
