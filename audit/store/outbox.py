"""The alert outbox: each alert recorded once, with one delivery per channel whose state
('pending', 'sent', 'failed') is written as soon as it is known."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from audit.engine.alerts import Alert
from audit.store.db import StoreBase
from audit.store.values import iso

__all__ = ["Delivery", "Outbox"]


@dataclass(frozen=True)
class Delivery:
    """One undelivered (pending or failed) delivery of an alert to a channel."""

    alert_id: str
    channel: str
    alert: Alert


class Outbox(StoreBase):
    def alert_exists(self, alert_id: str) -> bool:
        return bool(self._where("alerts", '"id" = ?', [alert_id], select="1"))

    def enqueued_thresholds(self, period: str) -> set[float]:
        """Budget thresholds already enqueued for `period` (delivered or not)."""
        rows = self._where(
            "alerts",
            '"kind" = \'BUDGET_THRESHOLD\' AND "period" = ?',
            [period],
            select='"threshold"',
        )
        return {float(r["threshold"]) for r in rows if r["threshold"] is not None}

    def enqueue_alerts(
        self, alerts: Iterable[Alert], channels: Sequence[str], run_id: str, now: datetime
    ) -> list[str]:
        """Record each alert whose id is new, with one 'pending' delivery per channel, in
        one transaction; returns the ids recorded. An alert that exists is left alone."""
        created: list[str] = []
        with self.transaction():
            for alert in alerts:
                aid = alert.id
                if aid in created or self.alert_exists(aid):
                    continue
                row = {
                    "id": aid,
                    "kind": alert.kind,
                    "period": alert.period,
                    "threshold": alert.threshold,
                    "day": alert.day,
                    "title": alert.title,
                    "payload": alert.to_payload(),
                    "created_run": run_id,
                    "created_at": iso(now),
                }
                self._upsert("alerts", [row], "id")
                deliveries = [
                    {"alert_id": aid, "channel": ch, "state": "pending", "attempts": 0}
                    for ch in dict.fromkeys(channels)
                ]
                self._upsert("alert_deliveries", deliveries, ("alert_id", "channel"))
                created.append(aid)
        return created

    def undelivered(self) -> list[Delivery]:
        """Every delivery not yet 'sent', oldest alert first."""
        rows = self._tuples(
            'SELECT d."alert_id", d."channel", a."payload" FROM alert_deliveries d '
            'JOIN alerts a ON a."id" = d."alert_id" '
            'WHERE d."state" != \'sent\' ORDER BY a."created_at", a.rowid, d.rowid'
        )
        return [Delivery(aid, ch, Alert.from_payload(json.loads(p))) for aid, ch, p in rows]

    def record_delivery(
        self, alert_id: str, channel: str, error: str | None, run_id: str, now: datetime
    ) -> None:
        """A delivery attempt's outcome: sent (error None) or failed with `error`."""
        with self.transaction():
            if error is None:
                self._execute(
                    "UPDATE alert_deliveries SET state = 'sent', attempts = attempts + 1, "
                    "last_error = NULL, delivered_at = ?, delivered_run = ? "
                    "WHERE alert_id = ? AND channel = ?",
                    (iso(now), run_id, alert_id, channel),
                )
            else:
                self._execute(
                    "UPDATE alert_deliveries SET state = 'failed', attempts = attempts + 1, "
                    "last_error = ? WHERE alert_id = ? AND channel = ?",
                    (error[:500], alert_id, channel),
                )
