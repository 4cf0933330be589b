"""Secrets (a Slack webhook URL, an SMTP password) kept out of errors and log lines."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from urllib.parse import urlsplit

__all__ = ["MIN_SECRET_LEN", "redact", "register_secrets", "webhook_secrets"]

#: a secret shorter than this is refused: replacing it in text would mangle ordinary words
MIN_SECRET_LEN = 8
_REDACTED = "<redacted>"


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
    """`text` with every whole occurrence of a secret replaced by <redacted>.

    A secret of MIN_SECRET_LEN characters or more is replaced wherever it appears (a long
    secret inside other text is still the secret). A shorter one — the channels refuse such
    secrets, so only a caller's own list can hold one — is replaced only where it stands
    alone, never inside a word: a password "p" must not turn "support" into "su…ort"."""
    for secret in sorted(set(secrets), key=len, reverse=True):  # longest first
        if not secret:
            continue
        if len(secret) >= MIN_SECRET_LEN:
            text = text.replace(secret, _REDACTED)
        else:
            text = re.sub(rf"(?<![\w]){re.escape(secret)}(?![\w])", _REDACTED, text)
    return text


def webhook_secrets(url: str) -> list[str]:
    """The URL and the credential parts of its path (/services/T…/B…/token): a server may
    echo any of them."""
    path = urlsplit(url).path
    segments = [s for s in path.split("/") if s]
    parts = [url, path] + ["/".join(segments[i:]) for i in range(1, len(segments))]
    return [p for p in dict.fromkeys(parts) if len(p) >= MIN_SECRET_LEN]
