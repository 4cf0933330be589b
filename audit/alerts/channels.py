"""The configured channels, and `audit alerts test`'s one-off TEST alert."""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from typing import Protocol
from urllib.parse import urlsplit

from audit.alerts.email import EmailChannel
from audit.alerts.redaction import MIN_SECRET_LEN
from audit.alerts.slack import SlackChannel
from audit.config import Config, EmailConfig
from audit.engine.alerts import Alert
from audit.engine.model import format_iso_ms
from audit.errors import DeliveryError

__all__ = ["Channel", "channels_from_config", "send_test"]


class Channel(Protocol):
    """Something that delivers an alert or raises DeliveryError (a line with no secret)."""

    name: str

    def send(self, alert: Alert) -> None: ...


def channels_from_config(cfg: Config) -> tuple[dict[str, Channel], dict[str, str]]:
    """The usable channels, and a one-line error for each configured channel that is not.

    Email logs in when alerts.email.password_env is set: as the user in username_env, or
    as the From address when username_env is empty.
    """
    channels: dict[str, Channel] = {}
    errors: dict[str, str] = {}
    slack = cfg.alerts.slack
    if slack is not None and slack.enabled:
        url = cfg.secret(slack.webhook_url_env)
        if not url:
            env = slack.webhook_url_env or "alerts.slack.webhook_url_env"
            errors["slack"] = f"{env} is not set"
        elif not _webhook_url_ok(url):
            # the URL is the secret: never sent in clear text, except to this machine
            errors["slack"] = f"{slack.webhook_url_env} does not hold an https:// webhook URL"
        else:
            channels["slack"] = SlackChannel(url, timeout=slack.timeout_s)
    email = cfg.alerts.email
    if email is not None and email.enabled:
        problems = []
        username = cfg.secret(email.username_env) if email.username_env else None
        password = cfg.secret(email.password_env) if email.password_env else None
        if email.username_env and not username:
            problems.append(f"{email.username_env} is not set")
        if email.password_env and not password:
            problems.append(f"{email.password_env} is not set")
        problems += _login_problems(email, password)
        if problems:
            errors["email"] = "; ".join(problems)
        else:
            if password and not username:
                username = email.from_addr
            channels["email"] = EmailChannel(
                email, password=password, username=username, scope=_org_scope(cfg)
            )
    return channels, errors


def _login_problems(email: EmailConfig, password: str | None) -> list[str]:
    """Refusals that keep the SMTP password safe (validation checks the config; these hold
    for a Config built in code too)."""
    if not password:
        return []
    if len(password) < MIN_SECRET_LEN:
        return [
            f"{email.password_env} is shorter than {MIN_SECRET_LEN} characters: too short to "
            "redact reliably from error lines; use a longer password"
        ]
    if not email.starttls and not email.allow_plaintext_login:
        return ["SMTP login without STARTTLS refused: set alerts.email.starttls = true"]
    return []


def _org_scope(cfg: Config) -> str:
    """Tells two orgs' alerts apart in Message-IDs (alert ids are the same per org)."""
    sf = cfg.salesforce
    return hashlib.sha256(f"{sf.login_url}|{sf.username}".encode()).hexdigest()[:16]


def send_test(cfg: Config, *, now: datetime | None = None) -> dict[str, str]:
    """Send a TEST alert to every configured channel: channel → "ok" or the error line.
    Empty when no channel is configured. Nothing is written to the store."""
    now = now or datetime.now(timezone.utc)
    channels, errors = channels_from_config(cfg)
    alert = Alert(
        kind="TEST",
        period=now.strftime("%Y-%m"),
        threshold=None,
        day=now.strftime("%Y-%m-%d"),
        title="awu-audit test alert",
        text="If you can read this, awu-audit can deliver its alerts here.",
        fields=(("Sent at", format_iso_ms(now)),),
    )
    results: dict[str, str] = dict(errors)
    for name, channel in channels.items():
        try:
            channel.send(alert)
            results[name] = "ok"
        except DeliveryError as exc:
            results[name] = str(exc)
        except Exception as exc:  # a channel bug must not hide the other channels' results
            results[name] = f"{name} failed unexpectedly ({type(exc).__name__})"
    return dict(sorted(results.items()))


def _webhook_url_ok(url: str) -> bool:
    """https://, or plain http:// to this machine only (a local relay, the tests)."""
    if url.startswith("https://"):
        return True
    host = urlsplit(url).hostname if url.startswith("http://") else None
    return host in ("127.0.0.1", "localhost", "::1")
