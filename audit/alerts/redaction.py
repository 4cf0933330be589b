"""Secrets (a Slack webhook URL, an SMTP password) kept out of errors and log lines."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from urllib.parse import urlsplit

__all__ = ["redact", "register_secrets", "webhook_secrets"]


class _RedactSecrets(logging.Filter):
    """Scrubs registered secrets from records of the HTTP libraries' loggers (httpx logs
    every request URL at INFO, and a Slack webhook URL is a credential)."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            message = record.getMessage()
            redacted = redact(message, self.secrets)
            if redacted != message:
                record.msg, record.args = redacted, ()
        return True


_REDACTOR = _RedactSecrets()
_REDACTED_LOGGERS = ("httpx", "httpcore", "httpcore.http11", "httpcore.connection")


def register_secrets(secrets: Iterable[str]) -> None:
    _REDACTOR.secrets.update(secrets)
    for name in _REDACTED_LOGGERS:
        logger = logging.getLogger(name)
        if _REDACTOR not in logger.filters:
            logger.addFilter(_REDACTOR)


def redact(text: str, secrets: Iterable[str]) -> str:
    for secret in sorted(secrets, key=len, reverse=True):  # longest first
        if secret:
            text = text.replace(secret, "<redacted>")
    return text


def webhook_secrets(url: str) -> list[str]:
    """The URL and the credential parts of its path (/services/T…/B…/token): a server may
    echo any of them."""
    path = urlsplit(url).path
    segments = [s for s in path.split("/") if s]
    parts = [url, path] + ["/".join(segments[i:]) for i in range(1, len(segments))]
    return [p for p in dict.fromkeys(parts) if len(p) >= 6]
