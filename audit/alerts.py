"""Alerts: an outbox in the store, and the Slack and email channels that drain it.

An `Alert` has a deterministic id (kind | period | threshold | day), so each budget
threshold fires once per period and the digest once per day: `enqueue` inserts an alert
and one 'pending' delivery per channel only if the id is new, and `deliver_pending`
tries every delivery not yet 'sent', recording each outcome as soon as it is known. A
failed delivery is retried by the next run; a sent one is never sent again.

Secrets (the Slack webhook URL, the SMTP password) never appear in an error, a log line
or the store.
"""

from __future__ import annotations

import hashlib
import json
import logging
import smtplib
import socket
import ssl
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx
import jinja2

from audit.config import Config, EmailConfig
from audit.engine.model import format_iso_ms
from audit.errors import DeliveryError
from audit.store import FindingLike, Store

__all__ = [
    "ALERT_KINDS",
    "Alert",
    "Channel",
    "SlackChannel",
    "EmailChannel",
    "alert_id",
    "enqueue",
    "deliver_pending",
    "already_sent_thresholds",
    "alert_exists",
    "channels_from_config",
    "send_test",
    "digest_alert",
    "budget_threshold_alert",
    "forecast_alert",
    "spike_alert",
    "slack_payload",
    "email_message",
]

ALERT_KINDS = ("BUDGET_THRESHOLD", "FORECAST_DEPLETION", "SPIKE", "DIGEST", "TEST")

_SLACK_MAX_WAIT_S = 30.0
_SLACK_429_RETRIES = 2
_SLACK_DEFAULT_RETRY_AFTER_S = 1.0


def _fmt_threshold(threshold: float | None) -> str:
    return "" if threshold is None else f"{float(threshold):g}"


def alert_id(kind: str, period: str, threshold: float | None, day: str | None) -> str:
    """sha256 of kind|period|threshold|day (threshold as %g: 75 and 75.0 are one alert)."""
    text = f"{kind}|{period}|{_fmt_threshold(threshold)}|{day or ''}"
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class Alert:
    kind: str  # one of ALERT_KINDS
    period: str  # 'YYYY-MM'
    threshold: float | None
    day: str | None  # 'YYYY-MM-DD' for per-day alerts (DIGEST, SPIKE)
    title: str
    text: str  # plain-text body
    fields: tuple[tuple[str, str], ...] = ()
    top_findings: tuple[str, ...] = ()  # one-sentence explanations

    def __post_init__(self) -> None:
        if self.kind not in ALERT_KINDS:
            raise ValueError(f"unknown alert kind {self.kind!r}")

    @property
    def id(self) -> str:
        return alert_id(self.kind, self.period, self.threshold, self.day)

    def to_payload(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "period": self.period,
            "threshold": self.threshold,
            "day": self.day,
            "title": self.title,
            "text": self.text,
            "fields": [list(f) for f in self.fields],
            "top_findings": list(self.top_findings),
        }

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> Alert:
        threshold = payload.get("threshold")
        return cls(
            kind=payload["kind"],
            period=payload["period"],
            threshold=None if threshold is None else float(threshold),
            day=payload.get("day"),
            title=payload.get("title", ""),
            text=payload.get("text", ""),
            fields=tuple((str(k), str(v)) for k, v in payload.get("fields", ())),
            top_findings=tuple(str(s) for s in payload.get("top_findings", ())),
        )


class Channel(Protocol):
    """Something that delivers an alert or raises DeliveryError (a line with no secret)."""

    name: str

    def send(self, alert: Alert) -> None: ...


# --- outbox ----------------------------------------------------------------------------------


def _iso(now: datetime) -> str:
    return format_iso_ms(now if now.tzinfo else now.replace(tzinfo=timezone.utc))


def alert_exists(store: Store, alert_id: str) -> bool:
    row = store.db.conn.execute('SELECT 1 FROM alerts WHERE "id" = ?', (alert_id,)).fetchone()
    return row is not None


def already_sent_thresholds(store: Store, period: str) -> set[float]:
    """Budget thresholds already enqueued for `period` (delivered or not)."""
    rows = store.db.conn.execute(
        'SELECT "threshold" FROM alerts WHERE "kind" = \'BUDGET_THRESHOLD\' AND "period" = ?',
        (period,),
    )
    return {float(r[0]) for r in rows if r[0] is not None}


def enqueue(
    store: Store,
    alerts: Iterable[Alert],
    channels: Sequence[str],
    run_id: str,
    now: datetime,
) -> list[str]:
    """Record each alert whose id is new, with one 'pending' delivery per channel.

    Returns the ids enqueued by this call. An alert that exists already is left alone:
    a re-run never re-creates or re-sends it. With no channels the alert is still recorded
    (it has fired) but has nothing to deliver.
    """
    created: list[str] = []
    with store.transaction():
        for alert in alerts:
            aid = alert.id
            if aid in created or alert_exists(store, aid):
                continue
            store.upsert(
                "alerts",
                [
                    {
                        "id": aid,
                        "kind": alert.kind,
                        "period": alert.period,
                        "threshold": alert.threshold,
                        "day": alert.day,
                        "title": alert.title,
                        "payload": alert.to_payload(),
                        "created_run": run_id,
                        "created_at": _iso(now),
                    }
                ],
                "id",
            )
            store.upsert(
                "alert_deliveries",
                [
                    {"alert_id": aid, "channel": ch, "state": "pending", "attempts": 0}
                    for ch in dict.fromkeys(channels)
                ],
                ("alert_id", "channel"),
            )
            created.append(aid)
    return created


def deliver_pending(
    store: Store,
    channels: Mapping[str, Channel],
    run_id: str,
    now: datetime,
    *,
    channel_errors: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """Try every delivery not yet 'sent'; record each outcome as soon as it is known.

    A delivery whose channel is not in `channels` fails with its `channel_errors` line
    (e.g. "AWU_SLACK_WEBHOOK_URL is not set") or "<name> is not configured".
    Returns the alerts this call delivered, in §7 `alerts_sent` form:
    [{"kind", "period", "threshold" (absent when None), "day" (absent when None),
      "channels": [channels that accepted it in this call]}].
    """
    errors = dict(channel_errors or {})
    pending = store.db.conn.execute(
        'SELECT d."alert_id", d."channel", a."payload" FROM alert_deliveries d '
        'JOIN alerts a ON a."id" = d."alert_id" '
        'WHERE d."state" != \'sent\' ORDER BY a."created_at", a.rowid, d.rowid'
    ).fetchall()
    delivered: dict[str, dict[str, Any]] = {}
    for aid, channel_name, payload in pending:
        alert = Alert.from_payload(json.loads(payload))
        channel = channels.get(channel_name)
        error: str | None
        if channel is None:
            error = errors.get(channel_name) or f"{channel_name} is not configured"
        else:
            try:
                channel.send(alert)
                error = None
            except DeliveryError as exc:
                error = str(exc)
            except Exception as exc:  # a channel bug must not stop the other deliveries
                error = f"{channel_name} failed unexpectedly ({type(exc).__name__})"
        _record_delivery(store, aid, channel_name, error, run_id, now)
        if error is None:
            entry = delivered.setdefault(aid, _alerts_sent_entry(alert))
            entry["channels"].append(channel_name)
    return list(delivered.values())


def _record_delivery(
    store: Store, aid: str, channel: str, error: str | None, run_id: str, now: datetime
) -> None:
    with store.transaction():
        if error is None:
            store.db.conn.execute(
                "UPDATE alert_deliveries SET state = 'sent', attempts = attempts + 1, "
                "last_error = NULL, delivered_at = ?, delivered_run = ? "
                "WHERE alert_id = ? AND channel = ?",
                (_iso(now), run_id, aid, channel),
            )
        else:
            store.db.conn.execute(
                "UPDATE alert_deliveries SET state = 'failed', attempts = attempts + 1, "
                "last_error = ? WHERE alert_id = ? AND channel = ?",
                (error[:500], aid, channel),
            )


def _number(value: float) -> float | int:
    return int(value) if float(value).is_integer() else value


def _alerts_sent_entry(alert: Alert) -> dict[str, Any]:
    entry: dict[str, Any] = {"kind": alert.kind, "period": alert.period}
    if alert.threshold is not None:
        entry["threshold"] = _number(alert.threshold)
    if alert.day is not None:
        entry["day"] = alert.day
    entry["channels"] = []
    return entry


# --- secrets in logs -------------------------------------------------------------------------


class _RedactSecrets(logging.Filter):
    """Scrubs registered secrets from records of the HTTP libraries' loggers (httpx logs
    every request URL at INFO, and a Slack webhook URL is a credential)."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            message = record.getMessage()
            redacted = _redact(message, self.secrets)
            if redacted != message:
                record.msg, record.args = redacted, ()
        return True


_REDACTOR = _RedactSecrets()
_REDACTED_LOGGERS = ("httpx", "httpcore", "httpcore.http11", "httpcore.connection")


def _register_secrets(secrets: Iterable[str]) -> None:
    _REDACTOR.secrets.update(secrets)
    for name in _REDACTED_LOGGERS:
        logger = logging.getLogger(name)
        if _REDACTOR not in logger.filters:
            logger.addFilter(_REDACTOR)


def _redact(text: str, secrets: Iterable[str]) -> str:
    for secret in sorted(secrets, key=len, reverse=True):  # longest first
        if secret:
            text = text.replace(secret, "<redacted>")
    return text


def _webhook_secrets(url: str) -> list[str]:
    """The URL and the credential parts of its path (/services/T…/B…/token): a server may
    echo any of them."""
    path = urlsplit(url).path
    segments = [s for s in path.split("/") if s]
    parts = [url, path] + ["/".join(segments[i:]) for i in range(1, len(segments))]
    return [p for p in dict.fromkeys(parts) if len(p) >= 6]


# --- Slack -----------------------------------------------------------------------------------


def _mrkdwn(text: str) -> str:
    # Slack's mrkdwn needs only these three escaped; escaping < also defuses links
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _mrkdwn_text(text: str) -> dict[str, str]:
    return {"type": "mrkdwn", "text": text}


def slack_payload(alert: Alert) -> dict[str, Any]:
    """Block Kit message: header, body, fields, top findings, context; plain fallback text."""
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": _clip(alert.title, 150)}},
    ]
    if alert.text:
        blocks.append({"type": "section", "text": _mrkdwn_text(_clip(_mrkdwn(alert.text), 3000))})
    fields = [
        {"type": "mrkdwn", "text": _clip(f"*{_mrkdwn(label)}*\n{_mrkdwn(value)}", 2000)}
        for label, value in alert.fields
    ]
    for i in range(0, len(fields), 10):  # Slack allows 10 fields per section
        blocks.append({"type": "section", "fields": fields[i : i + 10]})
    if alert.top_findings:
        lines = "\n".join(f"• {_clip(_mrkdwn(s), 400)}" for s in alert.top_findings)
        blocks.append(
            {"type": "section", "text": _mrkdwn_text(_clip(f"*Top findings*\n{lines}", 3000))}
        )
    context = " · ".join(p for p in ("awu-audit", alert.kind, alert.period, alert.day) if p)
    blocks.append({"type": "context", "elements": [_mrkdwn_text(context)]})
    fallback = _mrkdwn(f"{alert.title}\n{alert.text}".strip())
    return {"text": _clip(fallback, 3000), "blocks": blocks}


def _retry_after(value: str | None) -> float:
    try:
        return max(0.0, float(value)) if value is not None else _SLACK_DEFAULT_RETRY_AFTER_S
    except ValueError:  # an HTTP-date: rare from Slack; wait the default
        return _SLACK_DEFAULT_RETRY_AFTER_S


class SlackChannel:
    """Posts Block Kit messages to a Slack incoming webhook. The URL is a secret."""

    name = "slack"

    def __init__(
        self,
        webhook_url: str,
        *,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        max_wait_s: float = _SLACK_MAX_WAIT_S,
        retries_429: int = _SLACK_429_RETRIES,
    ):
        self._url = webhook_url
        self._secrets = _webhook_secrets(webhook_url)
        self._timeout = timeout
        self._transport = transport
        self._sleep = sleep
        self._max_wait_s = max_wait_s
        self._retries_429 = retries_429
        _register_secrets(self._secrets)

    def __repr__(self) -> str:
        return "SlackChannel(<webhook redacted>)"

    def send(self, alert: Alert) -> None:
        payload = slack_payload(alert)
        retries = 0
        with httpx.Client(transport=self._transport, timeout=self._timeout) as client:
            while True:
                try:
                    response = client.post(self._url, json=payload)
                except httpx.HTTPError as exc:
                    reason = _redact(str(exc), self._secrets) or type(exc).__name__
                    raise DeliveryError(f"Slack webhook unreachable: {reason}") from None
                if response.status_code != 429:
                    break
                wait = _retry_after(response.headers.get("Retry-After"))
                if retries >= self._retries_429 or wait > self._max_wait_s:
                    raise DeliveryError(
                        f"Slack rate-limited the webhook (HTTP 429, Retry-After {wait:g} s); "
                        "will retry next run"
                    )
                retries += 1
                self._sleep(wait)
        status = response.status_code
        if 200 <= status < 300:
            return
        body = _redact(response.text.strip(), self._secrets)[:200]
        if status >= 500:
            raise DeliveryError(f"Slack webhook answered HTTP {status}; will retry next run")
        raise DeliveryError(f"Slack webhook refused the message: HTTP {status} {body}".rstrip())


# --- email -----------------------------------------------------------------------------------

_TEMPLATES = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).with_name("templates")),
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


def _one_line(text: str) -> str:
    return " ".join(text.split())


def email_message(alert: Alert, cfg: EmailConfig, *, now: datetime | None = None) -> EmailMessage:
    """text/plain with a text/html alternative (jinja2, autoescaped)."""
    msg = EmailMessage()
    msg["From"] = cfg.from_addr
    msg["To"] = ", ".join(cfg.to)
    msg["Subject"] = _one_line(f"[awu-audit] {alert.title}")
    msg["Date"] = formatdate((now or datetime.now(timezone.utc)).timestamp(), localtime=False)
    domain = cfg.from_addr.rpartition("@")[2] or None
    msg["Message-ID"] = make_msgid("awu-audit", domain=domain)
    msg.set_content(_plain_body(alert))
    paragraphs = [p.strip() for p in alert.text.split("\n\n") if p.strip()]
    html = _TEMPLATES.get_template("alert_email.html.j2").render(alert=alert, paragraphs=paragraphs)
    msg.add_alternative(html, subtype="html")
    return msg


def _smtp_reason(exc: BaseException) -> str:
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
        return f"{exc.smtp_code} {_one_line(message)}"
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

    def __init__(self, cfg: EmailConfig, password: str | None = None, username: str | None = None):
        self.cfg = cfg
        self._password = password
        self._username = username

    def __repr__(self) -> str:
        return f"EmailChannel({self.cfg.smtp_host}:{self.cfg.smtp_port})"

    def send(self, alert: Alert) -> None:
        cfg = self.cfg
        msg = email_message(alert, cfg)
        try:
            with smtplib.SMTP(cfg.smtp_host, cfg.smtp_port, timeout=cfg.timeout_s) as smtp:
                if cfg.starttls:
                    cafile = str(cfg.ca_bundle) if cfg.ca_bundle else None
                    smtp.starttls(context=ssl.create_default_context(cafile=cafile))
                if self._username and self._password:
                    smtp.login(self._username, self._password)
                smtp.send_message(msg)
        except (smtplib.SMTPException, OSError) as exc:
            reason = _redact(_smtp_reason(exc), [self._password or ""])
            raise DeliveryError(
                f"email via {cfg.smtp_host}:{cfg.smtp_port} failed: {reason}"
            ) from None


# --- configuration ---------------------------------------------------------------------------


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
        elif not url.startswith(("https://", "http://")):
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
        if problems:
            errors["email"] = "; ".join(problems)
        else:
            if password and not username:
                username = email.from_addr
            channels["email"] = EmailChannel(email, password=password, username=username)
    return channels, errors


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
    return dict(sorted(results.items()))


# --- alert builders --------------------------------------------------------------------------


def _credits(value: float) -> str:
    return f"{value:,.0f}"


def _usd(value: float) -> str:
    return f"${value:,.2f}"


def digest_alert(
    day: str,
    new_findings: Sequence[FindingLike],
    *,
    totals: Mapping[str, Any] | None = None,
    resolved: int = 0,
    top_n: int = 5,
) -> Alert | None:
    """One DIGEST alert for a night's new findings; None when there is nothing new.

    Counts by kind (with that kind's wasted dollars — kinds overlap, so no grand total),
    the top `top_n` by wasted_usd as one-sentence explanations, and the window's totals
    (§7 `totals` keys) when given.
    """
    if not new_findings:
        return None
    by_kind = Counter(f.kind for f in new_findings)
    usd_by_kind: dict[str, float] = {}
    for f in new_findings:
        usd_by_kind[f.kind] = usd_by_kind.get(f.kind, 0.0) + float(f.wasted_usd)
    n = len(new_findings)
    fields: list[tuple[str, str]] = [
        (kind, f"{count} · {_usd(usd_by_kind[kind])} wasted")
        for kind, count in sorted(by_kind.items(), key=lambda kv: (-kv[1], kv[0]))
    ]
    sentences = [f"awu-audit found {n} new finding{'s' if n != 1 else ''} on {day}."]
    if resolved:
        sentences.append(f"{resolved} earlier finding{'s' if resolved != 1 else ''} resolved.")
    if totals:
        sentences.append(
            f"The window had {int(totals.get('actions', 0)):,} actions, "
            f"{float(totals.get('awu', 0.0)):,.1f} AWU, "
            f"{_credits(float(totals.get('credits', 0.0)))} credits "
            f"({_usd(float(totals.get('cost_usd', 0.0)))})."
        )
    top = sorted(new_findings, key=lambda f: (-float(f.wasted_usd), f.started_at, f.id))[:top_n]
    return Alert(
        kind="DIGEST",
        period=day[:7],
        threshold=None,
        day=day,
        title=f"awu-audit: {n} new finding{'s' if n != 1 else ''} on {day}",
        text=" ".join(sentences),
        fields=tuple(fields),
        top_findings=tuple(_one_line(f.explanation) for f in top),
    )


def budget_threshold_alert(
    period: str,
    threshold: float,
    *,
    used_credits: float,
    budget_credits: float,
    depletion_date: str | None = None,
    top_findings: Sequence[str] = (),
) -> Alert:
    """BUDGET_THRESHOLD: `threshold` % of the period's credit budget is used."""
    pct = 100.0 * used_credits / budget_credits if budget_credits else 0.0
    fields = [
        ("Used", f"{_credits(used_credits)} of {_credits(budget_credits)} credits ({pct:.1f}%)"),
        ("Threshold", f"{_fmt_threshold(threshold)}%"),
    ]
    if depletion_date:
        fields.append(("Forecast depletion", depletion_date))
    return Alert(
        kind="BUDGET_THRESHOLD",
        period=period,
        threshold=float(threshold),
        day=None,
        title=f"Agentforce budget {period}: {_fmt_threshold(threshold)}% reached",
        text=(
            f"Agentforce usage for {period} has reached {pct:.1f}% of the "
            f"{_credits(budget_credits)}-credit budget."
        ),
        fields=tuple(fields),
        top_findings=tuple(top_findings),
    )


def forecast_alert(
    period: str,
    depletion_date: str,
    *,
    used_credits: float,
    budget_credits: float,
    burn_per_day: float,
    top_findings: Sequence[str] = (),
) -> Alert:
    """FORECAST_DEPLETION: at the current burn rate the budget runs out before period end."""
    return Alert(
        kind="FORECAST_DEPLETION",
        period=period,
        threshold=None,
        day=None,
        title=f"Agentforce budget {period} forecast to run out on {depletion_date}",
        text=(
            f"At the current burn rate of {_credits(burn_per_day)} credits a day, the "
            f"{_credits(budget_credits)}-credit budget for {period} runs out on "
            f"{depletion_date}, before the period ends."
        ),
        fields=(
            ("Used", f"{_credits(used_credits)} of {_credits(budget_credits)} credits"),
            ("Burn rate", f"{_credits(burn_per_day)} credits/day"),
            ("Depletion", depletion_date),
        ),
        top_findings=tuple(top_findings),
    )


def spike_alert(
    day: str,
    *,
    credits: float,
    baseline_credits: float,
    top_findings: Sequence[str] = (),
) -> Alert:
    """SPIKE: one day's credits far above the trailing baseline (once per day)."""
    ratio = credits / baseline_credits if baseline_credits else float("inf")
    ratio_text = f"{ratio:.1f}×" if baseline_credits else "no baseline"
    return Alert(
        kind="SPIKE",
        period=day[:7],
        threshold=None,
        day=day,
        title=f"Agentforce usage spike on {day}: {_credits(credits)} credits ({ratio_text})",
        text=(
            f"Usage on {day} was {_credits(credits)} credits against a trailing average of "
            f"{_credits(baseline_credits)} credits a day."
        ),
        fields=(
            ("Credits", _credits(credits)),
            ("Trailing average", _credits(baseline_credits)),
            ("Ratio", ratio_text),
        ),
        top_findings=tuple(top_findings),
    )
