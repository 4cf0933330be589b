"""The audit's exception tree; the connector has its own (`connector.errors`), and the CLI
turns either into an exit code through the `exit_code` attribute both roots carry.

    AuditError                 root: every error of the audit side (exit 1)
    ├── ConfigError            bad or missing configuration / input (exit 2)
    ├── StoreError             the local SQLite store (locked, unreadable, newer schema) (2)
    └── DeliveryError          Slack or email delivery failed (retried next run)

    connector.errors.ConnectorError   Salesforce unreachable, login refused (3), or a
                                      connection setting to fix (SetupError, 2)

Third-party exceptions (httpx, requests, simple-salesforce, sqlite3) are translated at the
boundary where they arise; nothing above it sees them.
"""

from __future__ import annotations

from connector.errors import ConnectorError

__all__ = [
    "AuditError",
    "ConfigError",
    "StoreError",
    "DeliveryError",
    "KNOWN_ERRORS",
]


class AuditError(Exception):
    """Root of every audit-side error. `exit_code` is what the CLI exits with."""

    exit_code = 1


class ConfigError(AuditError):
    exit_code = 2


class StoreError(AuditError):
    exit_code = 2


class DeliveryError(AuditError):
    pass


#: every error the CLI reports as one line (anything else is a bug: traceback in debug)
KNOWN_ERRORS: tuple[type[Exception], ...] = (AuditError, ConnectorError)
