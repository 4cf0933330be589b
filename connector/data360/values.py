"""Data 360 values: Query API v2 results decoded by their column types, SQL literals, and
raw rows turned into the typed records a sink stores ("no value" is None everywhere)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import Any

from connector.data360.discovery import DiscoveredObject
from connector.errors import SalesforceError
from connector.sink import D360Event, D360Session, D360Step
from connector.wire import format_iso_ms, parse_sf_datetime

__all__ = [
    "decode_rows",
    "decode_value",
    "event_record",
    "is_nothing",
    "parse_timestamp",
    "session_record",
    "step_record",
    "str_literal",
    "ts_literal",
]


def is_nothing(value: Any) -> bool:
    """Data 360's "no value": null, empty, or the `NOT_SET` sentinel — in every column."""
    return value is None or (isinstance(value, str) and value.strip() in ("", "NOT_SET"))


def parse_timestamp(value: str) -> datetime:
    """`2026-10-06 14:03:22.123 UTC` (Query API v2), or any ISO form; aware UTC."""
    text = value.strip()
    if text.upper().endswith(" UTC"):
        text = text[:-4].strip()
    if len(text) > 10 and text[10] == " ":
        text = text[:10] + "T" + text[11:]
    return parse_sf_datetime(text)


_NUMERIC = (
    "DECIMAL",
    "NUMERIC",
    "NUMBER",
    "DOUBLE",
    "FLOAT",
    "REAL",
    "INT",
    "BIGINT",
    "SMALLINT",
    "TINYINT",
    "INTEGER",
)
_TIMESTAMPS = ("TIMESTAMP", "DATE_TIME", "DATETIME")


def decode_value(value: Any, typ: str) -> Any:
    """One Query API v2 value, typed by its metadata type; "no value" becomes None."""
    if is_nothing(value):
        return None
    base = typ.upper().split("(", 1)[0].strip()
    if base in _NUMERIC:
        if isinstance(value, bool):
            return Decimal(int(value))
        try:
            return Decimal(str(value).strip())
        except InvalidOperation:
            raise SalesforceError(f"Data 360 answered {value!r} for a {typ} column") from None
    if base.startswith(_TIMESTAMPS):
        try:
            return parse_timestamp(str(value))
        except ValueError:
            raise SalesforceError(f"Data 360 answered {value!r} for a {typ} column") from None
    if base in ("BOOLEAN", "BOOL"):
        if isinstance(value, bool):
            return value
        return str(value).strip().lower() in ("true", "1", "t", "yes")
    return value if isinstance(value, str) else str(value)


def decode_rows(payload: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A Query API v2 response's rows as dicts, columns by `placeInOrder`, values typed."""
    meta = payload.get("metadata") or {}
    if not isinstance(meta, Mapping):
        raise SalesforceError("Data 360 answered a query without column metadata")
    ordered = sorted(meta.items(), key=lambda kv: int(kv[1].get("placeInOrder", 0)))
    names = [n for n, _ in ordered]
    types = [str(m.get("type") or "VARCHAR") for _, m in ordered]
    rows = []
    for values in payload.get("data") or []:
        if isinstance(values, Mapping):  # tolerate keyed rows
            rows.append(
                {n: decode_value(values.get(n), t) for n, t in zip(names, types, strict=False)}
            )
            continue
        if len(values) != len(names):
            raise SalesforceError(
                f"Data 360 answered a row of {len(values)} values for {len(names)} columns"
            )
        rows.append({n: decode_value(v, t) for n, t, v in zip(names, types, values, strict=False)})
    return rows


def ts_literal(dt: datetime) -> str:
    return "TIMESTAMP '" + dt.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f") + "'"


def str_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _get(raw: Mapping[str, Any], obj: DiscoveredObject, logical: str) -> Any:
    api = obj.columns.get(logical)
    return None if api is None else raw.get(api)


def _text(value: Any) -> str | None:
    return None if is_nothing(value) else str(value)


def _int(value: Any) -> int | None:
    if value is None:
        return None
    try:
        return int(Decimal(str(value)).to_integral_value())
    except InvalidOperation:
        return None


def _flag(value: Any) -> int | None:
    return None if value is None else int(bool(value))


def _iso(value: Any) -> str | None:
    if isinstance(value, datetime):
        return format_iso_ms(value)
    return None


def event_record(raw: Mapping[str, Any], obj: DiscoveredObject) -> D360Event | None:
    event_id, ts = _text(_get(raw, obj, "Id")), _iso(_get(raw, obj, "Timestamp"))
    tool = _text(_get(raw, obj, "AiAgentToolName"))
    if event_id is None or ts is None or tool is None:
        return None
    quantity = _get(raw, obj, "UsageQuantity")
    prompt, completion = (
        _int(_get(raw, obj, "PromptInputTokenCount")),
        _int(_get(raw, obj, "PromptCompletionTokenCount")),
    )
    tokens = _int(_get(raw, obj, "PromptTotalTokenCount"))
    if tokens is None and (prompt is not None or completion is not None):
        tokens = (prompt or 0) + (completion or 0)
    return {
        "id": event_id,
        "request_id": _text(_get(raw, obj, "RequestIdentifier")),
        "started_at": ts,
        "session_id": _text(_get(raw, obj, "AiAgentSessionId")),
        "interaction_id": _text(_get(raw, obj, "AiAgentInteractionId")),
        "agent_id": _text(_get(raw, obj, "AgentIdentifier")),
        "agent_name": _text(_get(raw, obj, "AgentDeveloperName")),
        "tool_name": tool,
        "user_id": _text(_get(raw, obj, "UserId")),
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "tokens": tokens,
        "usage_quantity": None if quantity is None else str(quantity),
        "is_metered": _flag(_get(raw, obj, "IsMeteredIndicator")),
        "is_billable": _flag(_get(raw, obj, "IsBillableIndicator")),
        "skip_reason": _text(_get(raw, obj, "MeteringSkipReasonCode")),
        "usage_type": _text(_get(raw, obj, "UsageTypeCode")),
    }


def step_record(raw: Mapping[str, Any], obj: DiscoveredObject) -> D360Step | None:
    step_id, request_id = (
        _text(_get(raw, obj, "Id")),
        _text(_get(raw, obj, "GenAiGatewayRequestId")),
    )
    if step_id is None or request_id is None:
        return None
    return {
        "id": step_id,
        "request_id": request_id,
        "interaction_id": _text(_get(raw, obj, "AiAgentInteractionId")),
        "step_type": _text(_get(raw, obj, "AiAgentInteractionStepType")),
        "prev_step_id": _text(_get(raw, obj, "PrevStepId")),
        "input_text": _text(_get(raw, obj, "InputValueText")),
        "error_text": _text(_get(raw, obj, "ErrorMessageText")),
        "started_at": _iso(_get(raw, obj, "StartTimestamp")),
    }


def session_record(raw: Mapping[str, Any], obj: DiscoveredObject) -> D360Session | None:
    session_id = _text(_get(raw, obj, "Id"))
    if session_id is None:
        return None
    return {
        "id": session_id,
        "channel_type": _text(_get(raw, obj, "AiAgentChannelType")),
        "voice_call_id": _text(_get(raw, obj, "RelatedVoiceCallId")),
        "started_at": _iso(_get(raw, obj, "StartTimestamp")),
    }
