"""Alert delivery: the outbox in the store, and the Slack and email channels that drain it.

What an alert says and its id are decisions, in `audit.engine.alerts`; they are re-exported
here. Modules: `outbox` (enqueue, deliver_pending), `channels` (the configured channels,
send_test), `slack`, `email`, `redaction` (secrets kept out of errors and logs).

Secrets (the Slack webhook URL, the SMTP password) never appear in an error, a log line
or the store.
"""

from __future__ import annotations

from audit.alerts.channels import Channel, channels_from_config, send_test
from audit.alerts.email import EmailChannel, email_message
from audit.alerts.outbox import already_sent_thresholds, deliver_pending, enqueue
from audit.alerts.slack import SlackChannel, slack_payload
from audit.engine.alerts import (
    ALERT_KINDS,
    Alert,
    alert_id,
    budget_threshold_alert,
    digest_alert,
    forecast_alert,
    spike_alert,
)

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
    "channels_from_config",
    "send_test",
    "digest_alert",
    "budget_threshold_alert",
    "forecast_alert",
    "spike_alert",
    "slack_payload",
    "email_message",
]
