"""Data 360 values: Query API v2 results decoded by their column types, SQL literals, and
raw rows turned into the typed records a sink stores ("no value" is None everywhere)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import Any

from connector.checks import (
    DEFAULT_MAX_TOKENS,
    BadValue,
    check_amount,
    check_count,
    check_datetime,
    check_id,
    check_text,
    shown,
)
from connector.data360.discovery import DiscoveredObject
from connector.errors import SalesforceError
from connector.sink import BadRecord, D360Event, D360Session, D360Step
from connector.wire import format_iso_ms, parse_sf_datetime

__all__ = [
    "Undecodable",
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


@dataclass(frozen=True)
class Undecodable:
    """A value its column's type cannot hold (`"abc"` for a DECIMAL): kept as sent, so the
    record that carries it becomes a bad record rather than the query failing."""

    value: Any
    type: str


def decode_value(value: Any, typ: str) -> Any:
    """One Query API v2 value, typed by its metadata type; "no value" becomes None, a
    value the type cannot hold an `Undecodable`."""
    if is_nothing(value):
        return None
    base = typ.upper().split("(", 1)[0].strip()
    if base in _NUMERIC:
        if isinstance(value, bool):
            return Decimal(int(value))
        try:
            return Decimal(str(value).strip())
        except InvalidOperation:
            return Undecodable(value, typ)
    if base.startswith(_TIMESTAMPS):
        try:
            return parse_timestamp(str(value))
        except (ValueError, OverflowError):
            return Undecodable(value, typ)
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


def _flag(value: Any) -> int | None:
    return None if value is None else int(bool(value))


def _iso(value: Any) -> str | None:
    if isinstance(value, datetime):
        return format_iso_ms(value)
    return None


def _sound_text(value: Any) -> str | None:
    try:
        return check_text(_text(value), "text")
    except BadValue:
        return None


def _raw(value: Any) -> Any:
    return value.value if isinstance(value, Undecodable) else value


def _checked_event(raw: Mapping[str, Any], obj: DiscoveredObject, bound: int) -> D360Event:
    """The usage event's values, each checked (SPEC §3.5); BadValue on the first that
    cannot be data. Empty optional values stay None; tokens fall back to prompt +
    completion, and are `missing` only when none of the three is there."""

    def get(logical: str) -> Any:
        return _raw(_get(raw, obj, logical))

    def text(logical: str) -> str | None:
        return check_text(_text(get(logical)), logical)

    def count(logical: str) -> int | None:
        return check_count(get(logical), logical, required=False, bound=bound)

    prompt, completion = count("PromptInputTokenCount"), count("PromptCompletionTokenCount")
    tokens = count("PromptTotalTokenCount")
    if tokens is None and (prompt is not None or completion is not None):
        tokens = (prompt or 0) + (completion or 0)
    if tokens is None:
        raise BadValue("missing", "PromptTotalTokenCount", None)
    quantity = check_amount(get("UsageQuantity"), "UsageQuantity", required=False, bound=bound)
    started = check_datetime(get("Timestamp"), "Timestamp", required=True)
    assert started is not None
    return {
        "id": str(_text(get("Id"))),
        "request_id": text("RequestIdentifier"),
        "started_at": started,
        "session_id": text("AiAgentSessionId"),
        "interaction_id": text("AiAgentInteractionId"),
        "agent_id": check_id(get("AgentIdentifier"), "AgentIdentifier", required=False),
        "agent_name": text("AgentDeveloperName"),
        "tool_name": str(text("AiAgentToolName")),
        "user_id": check_id(get("UserId"), "UserId", required=False),
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "tokens": tokens,
        "usage_quantity": None if quantity is None else str(_get(raw, obj, "UsageQuantity")),
        "is_metered": _flag(get("IsMeteredIndicator")),
        "is_billable": _flag(get("IsBillableIndicator")),
        "skip_reason": text("MeteringSkipReasonCode"),
        "usage_type": text("UsageTypeCode"),
    }


def event_record(
    raw: Mapping[str, Any], obj: DiscoveredObject, *, max_tokens: int = DEFAULT_MAX_TOKENS
) -> D360Event | BadRecord | None:
    """A tool call's usage event, a bad record when one of its values cannot be data, or
    None for an event that is not a tool call (or has no id)."""
    event_id = _text(_raw(_get(raw, obj, "Id")))
    if event_id is None or _text(_raw(_get(raw, obj, "AiAgentToolName"))) is None:
        return None
    try:
        return _checked_event(raw, obj, max_tokens)
    except BadValue as bad:
        api = obj.columns.get(bad.field, bad.field)
        ts = _get(raw, obj, "Timestamp")
        return {
            "source": "data360",
            "key": event_id,
            "reason": bad.reason,
            "field": api,
            "detail": f"{api} = {shown(bad.value)}",
            "record_id": event_id,
            "file_id": None,
            "line": None,
            "at": _iso(ts),
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
        # text that is not valid Unicode is no input (the event is then a BAD_RECORD)
        "input_text": _sound_text(_get(raw, obj, "InputValueText")),
        "error_text": _sound_text(_get(raw, obj, "ErrorMessageText")),
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
