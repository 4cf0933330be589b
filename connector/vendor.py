"""Salesforce's own consumption figures (the Digital Wallet), read where the org has them,
so the audit can show them beside its recomputed credits (SPEC §11)."""

from __future__ import annotations

from typing import Any

from connector.client import SalesforceClient
from connector.errors import SalesforceError

__all__ = ["CONSUMPTION_ACTION_API", "CONSUMPTION_ALERT_API", "read_vendor_view"]

#: API versions from which the Digital Wallet objects exist (research/data360.md §3.3-3.4)
CONSUMPTION_ACTION_API = 63.0
CONSUMPTION_ALERT_API = 67.0
_ALERT_FIELDS = (
    "Id",
    "AlertType",
    "AlertScope",
    "AlertSubScope1",
    "AlertStatus",
    "TriggerType",
    "TriggerValue",
    "IsNotificationSent",
    "AlertTimestamp",
)
#: an org without the action (or without Wallet) answers one of these: absence is normal
_ABSENT = {400, 403, 404, 405}


def read_vendor_view(
    core: SalesforceClient, api_version: str, *, sandbox: bool
) -> dict[str, Any] | None:
    """Salesforce's own consumption figures, where the org has them: the Digital Wallet
    `computeConsumption` action (API 63+) and active `TenantConsumptionAlert` rows (API
    67+). None when neither is there — never a failure."""
    version = float(api_version)
    cards = _consumption_cards(core) if version >= CONSUMPTION_ACTION_API else None
    alerts = _active_alerts(core) if version >= CONSUMPTION_ALERT_API else None
    if cards is None and alerts is None:
        return None
    env = "sandbox" if sandbox else "production"
    mine = [c for c in cards or [] if str(c.get("businessEnvType") or env).lower() == env]
    consumed = [
        c["unitsConsumed"] for c in mine if isinstance(c.get("unitsConsumed"), (int, float))
    ]
    entitled = [
        c["totalEntitlement"] for c in mine if isinstance(c.get("totalEntitlement"), (int, float))
    ]
    return {
        "units_consumed": float(sum(consumed)) if consumed else None,
        "total_entitlement": float(sum(entitled)) if entitled else None,
        "alerts": alerts or [],
        "cards": [{k: c.get(k) for k in _CARD_KEYS} for c in mine],
    }


_CARD_KEYS = (
    "cardDefinitionDeveloperName",
    "businessEnvType",
    "usageModel",
    "unitsConsumed",
    "totalEntitlement",
)


def _consumption_cards(core: SalesforceClient) -> list[dict[str, Any]] | None:
    try:
        body = core.invoke_action("computeConsumption", [{}])
    except SalesforceError as exc:
        if exc.status not in _ABSENT:
            raise
        return None
    return _cards(body)


def _active_alerts(core: SalesforceClient) -> list[dict[str, Any]] | None:
    try:
        described = core.describe("TenantConsumptionAlert")
    except SalesforceError as exc:
        if exc.status not in _ABSENT:
            raise
        return None
    have = {str(f.get("name", "")).lower() for f in described.get("fields", [])}
    if "alertstatus" not in have:
        return []
    fields = [f for f in _ALERT_FIELDS if f.lower() in have]
    soql = (
        f"SELECT {', '.join(fields)} FROM TenantConsumptionAlert "
        "WHERE AlertStatus = 'Active' ORDER BY AlertScope, TriggerValue"
    )
    return [
        {
            "type": rec.get("AlertType"),
            "scope": rec.get("AlertScope"),
            "environment": rec.get("AlertSubScope1"),
            "trigger_type": rec.get("TriggerType"),
            "trigger_value": rec.get("TriggerValue"),
            "notification_sent": rec.get("IsNotificationSent"),
            "at": rec.get("AlertTimestamp"),
        }
        for rec in core.query_all(soql)
    ]


def _cards(body: Any) -> list[dict[str, Any]]:
    """`cards` of the action's answer: a list of results with outputValues, or a dict."""
    results = body if isinstance(body, list) else [body]
    cards: list[dict[str, Any]] = []
    for result in results:
        if not isinstance(result, dict):
            continue
        values = result.get("outputValues", result)
        found = values.get("cards") if isinstance(values, dict) else None
        cards.extend(c for c in found or [] if isinstance(c, dict))
    return cards
