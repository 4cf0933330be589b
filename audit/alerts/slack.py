"""Slack: Block Kit messages posted to an incoming webhook (the URL is a secret)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx

from audit.alerts.redaction import redact, register_secrets, webhook_secrets
from audit.engine.alerts import Alert
from audit.errors import DeliveryError

__all__ = ["SlackChannel", "slack_payload"]

_SLACK_MAX_WAIT_S = 30.0
_SLACK_429_RETRIES = 2
_SLACK_DEFAULT_RETRY_AFTER_S = 1.0


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
    # the alert id makes a message sent twice (a crash between Slack accepting it and the
    # store recording that) recognisable as the same alert
    blocks.append(
        {
            "type": "context",
            "elements": [_mrkdwn_text(context), _mrkdwn_text(f"alert id {alert.id}")],
        }
    )
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
        self._secrets = webhook_secrets(webhook_url)
        self._timeout = timeout
        self._transport = transport
        self._sleep = sleep
        self._max_wait_s = max_wait_s
        self._retries_429 = retries_429
        register_secrets(self._secrets)

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
                    reason = redact(str(exc), self._secrets) or type(exc).__name__
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
        body = redact(response.text.strip(), self._secrets)[:200]
        if status >= 500:
            raise DeliveryError(f"Slack webhook answered HTTP {status}; will retry next run")
        raise DeliveryError(f"Slack webhook refused the message: HTTP {status} {body}".rstrip())
