"""The outbox: alerts recorded once in the store, deliveries tried until they are sent.

`enqueue` records an alert and one 'pending' delivery per channel only if its id is new;
`deliver_pending` tries every delivery not yet 'sent', recording each outcome as soon as
it is known. A failed delivery is retried by the next run; a sent one is never sent again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from audit.alerts.channels import Channel
from audit.engine.alerts import Alert
from audit.engine.model import json_number
from audit.errors import DeliveryError
from audit.store import Store

__all__ = ["already_sent_thresholds", "deliver_pending", "enqueue"]


def already_sent_thresholds(store: Store, period: str) -> set[float]:
    """Budget thresholds already enqueued for `period` (delivered or not)."""
    return store.enqueued_thresholds(period)


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
    return store.enqueue_alerts(alerts, channels, run_id, now)


def deliver_pending(
    store: Store,
    channels: Mapping[str, Channel],
    run_id: str,
    now: datetime,
    *,
    channel_errors: Mapping[str, str] | None = None,
    checkpoint: Callable[[str], None] | None = None,
    failed: list[dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Try every delivery not yet 'sent'; record each outcome as soon as it is known.

    A delivery whose channel is not in `channels` fails with its `channel_errors` line
    (e.g. "AWU_SLACK_WEBHOOK_URL is not set") or "<name> is not configured".
    Returns the alerts this call delivered, in §7 `alerts_sent` form:
    [{"kind", "period", "threshold" (absent when None), "day" (absent when None),
      "channels": [channels that accepted it in this call]}].
    `checkpoint` is called with "sent:<channel>" once a channel accepted an alert and with
    "delivered:<channel>" once the store recorded it (audit.crashpoints). Between the two
    lies the one instant a crash makes a delivery happen twice (at-least-once).
    Each delivery that failed in this call is appended to `failed` (when given) in §7
    `alerts_failed` form: {"kind", "period", "threshold" (absent when None), "channel",
    "error"} — the error line carries no secret.
    """
    checkpoint = checkpoint or (lambda phase: None)
    errors = dict(channel_errors or {})
    delivered: dict[str, dict[str, Any]] = {}
    for pending in store.undelivered():
        aid, channel_name, alert = pending.alert_id, pending.channel, pending.alert
        channel = channels.get(channel_name)
        error: str | None
        if channel is None:
            error = errors.get(channel_name) or f"{channel_name} is not configured"
        else:
            try:
                channel.send(alert)
                error = None
                checkpoint(f"sent:{channel_name}")
            except DeliveryError as exc:
                error = str(exc)
            except Exception as exc:  # a channel bug must not stop the other deliveries
                error = f"{channel_name} failed unexpectedly ({type(exc).__name__})"
        store.record_delivery(aid, channel_name, error, run_id, now)
        if error is None:
            checkpoint(f"delivered:{channel_name}")
            entry = delivered.setdefault(aid, _alerts_sent_entry(alert))
            entry["channels"].append(channel_name)
        elif failed is not None:
            entry = _alerts_sent_entry(alert)
            del entry["channels"]
            failed.append({**entry, "channel": channel_name, "error": error})
    return list(delivered.values())


def _alerts_sent_entry(alert: Alert) -> dict[str, Any]:
    entry: dict[str, Any] = {"kind": alert.kind, "period": alert.period}
    if alert.threshold is not None:
        entry["threshold"] = json_number(alert.threshold)
    if alert.day is not None:
        entry["day"] = alert.day
    entry["channels"] = []
    return entry
