"""Email: a text/plain message with an HTML alternative, sent through an SMTP relay.

smtplib, the email package and jinja2 are imported when a message is built or sent, not
with this module: most runs deliver nothing, and every run imports the channels."""

from __future__ import annotations

import functools
import hashlib
import socket
import ssl
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from audit.alerts.redaction import redact
from audit.config import EmailConfig
from audit.engine.alerts import Alert, one_line
from audit.errors import DeliveryError

if TYPE_CHECKING:
    from email.message import EmailMessage

    import jinja2

__all__ = ["EmailChannel", "email_message", "message_id"]


@functools.cache
def _templates() -> jinja2.Environment:
    """The alert templates: package data of `audit` (pyproject [tool.setuptools.package-data])."""
    import jinja2

    return jinja2.Environment(
        loader=jinja2.PackageLoader("audit", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )


def _plain_body(alert: Alert) -> str:
    parts = [alert.title, "", alert.text] if alert.text else [alert.title]
    if alert.fields:
        width = max(len(label) for label, _ in alert.fields)
        parts += [""] + [f"{label.ljust(width)}  {value}" for label, value in alert.fields]
    if alert.top_findings:
        parts += ["", "Top findings:"] + [f"  - {s}" for s in alert.top_findings]
    parts += ["", f"-- awu-audit · {alert.kind} · {alert.period}"]
    return "\n".join(parts) + "\n"


def message_id(alert: Alert, cfg: EmailConfig, scope: str = "") -> str:
    """The Message-ID of an alert's email: derived from the alert id (and `scope`, which
    tells two orgs' stores apart), so the same alert sent twice carries the same id — a
    mail client shows it as one message, or threads it. A TEST alert gets a fresh id."""
    domain = cfg.from_addr.rpartition("@")[2].strip("<> ") or "awu-audit.invalid"
    if alert.kind == "TEST":
        from email.utils import make_msgid

        return make_msgid("awu-audit", domain=domain)
    key = hashlib.sha256(f"{scope}|{alert.id}".encode()).hexdigest()[:40]
    return f"<awu-audit.{alert.kind.lower()}.{key}@{domain}>"


def email_message(
    alert: Alert, cfg: EmailConfig, *, now: datetime | None = None, scope: str = ""
) -> EmailMessage:
    """text/plain with a text/html alternative (jinja2, autoescaped)."""
    from email.message import EmailMessage
    from email.utils import formatdate

    msg = EmailMessage()
    msg["From"] = cfg.from_addr
    msg["To"] = ", ".join(cfg.to)
    msg["Subject"] = one_line(f"[awu-audit] {alert.title}")
    msg["Date"] = formatdate((now or datetime.now(timezone.utc)).timestamp(), localtime=False)
    msg["Message-ID"] = message_id(alert, cfg, scope)
    msg["X-Awu-Audit-Alert-Id"] = alert.id
    msg.set_content(_plain_body(alert))
    paragraphs = [p.strip() for p in alert.text.split("\n\n") if p.strip()]
    html = (
        _templates().get_template("alert_email.html.j2").render(alert=alert, paragraphs=paragraphs)
    )
    msg.add_alternative(html, subtype="html")
    return msg


def _smtp_reason(exc: BaseException) -> str:
    import smtplib

    if isinstance(exc, smtplib.SMTPAuthenticationError):
        return f"authentication refused ({exc.smtp_code})"
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return "recipients refused: " + ", ".join(sorted(exc.recipients))
    if isinstance(exc, smtplib.SMTPSenderRefused):
        return f"sender refused ({exc.smtp_code})"
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return f"server does not support it: {exc}"
    if isinstance(exc, smtplib.SMTPResponseException):
        raw = exc.smtp_error
        message = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
        return f"{exc.smtp_code} {one_line(message)}"
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return "server closed the connection"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (
            f"TLS certificate not trusted ({exc.verify_message}); "
            "set alerts.email.ca_bundle for a private CA"
        )
    if isinstance(exc, ssl.SSLError):
        return f"TLS error ({exc.reason or type(exc).__name__})"
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return "timed out"
    if isinstance(exc, OSError):
        return exc.strerror or type(exc).__name__
    return type(exc).__name__


class EmailChannel:
    """Sends alerts through an SMTP relay (STARTTLS when configured, login when credentials
    are given)."""

    name = "email"

    def __init__(
        self,
        cfg: EmailConfig,
        password: str | None = None,
        username: str | None = None,
        *,
        scope: str = "",
    ):
        self.cfg = cfg
        self._password = password
        self._username = username
        self._scope = scope

    def __repr__(self) -> str:
        return f"EmailChannel({self.cfg.smtp_host}:{self.cfg.smtp_port})"

    def send(self, alert: Alert) -> None:
        import smtplib

        cfg = self.cfg
        msg = email_message(alert, cfg, scope=self._scope)
        try:
            with smtplib.SMTP(cfg.smtp_host, cfg.smtp_port, timeout=cfg.timeout_s) as smtp:
                if cfg.starttls:
                    cafile = str(cfg.ca_bundle) if cfg.ca_bundle else None
                    smtp.starttls(context=ssl.create_default_context(cafile=cafile))
                if self._username and self._password:
                    smtp.login(self._username, self._password)
                smtp.send_message(msg)
        except (smtplib.SMTPException, OSError) as exc:
            reason = redact(_smtp_reason(exc), [self._password or ""])
            raise DeliveryError(
                f"email via {cfg.smtp_host}:{cfg.smtp_port} failed: {reason}"
            ) from None
