"""Data 360 rows → `Action`s (SPEC §11): one action per tool-call usage event (the latest
copy of a request id), its input and error from the interaction step with the event's
gateway request id, voice from the session; reported AWU = `UsageQuantity` × the voice
multiplier, 0 for an unmetered event."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from audit.engine.model import Action, parse_sf_datetime

__all__ = ["SOURCE", "VOICE_CHANNELS", "actions_from_rows", "is_voice", "unmetered_counts"]

SOURCE = "data360"
VOICE_CHANNELS = frozenset({"voice", "pstn", "builder: voice preview"})


def is_voice(channel_type: str | None, voice_call_id: str | None) -> bool:
    """The session's channel is Voice, PSTN or a voice preview, or it has a voice call."""
    if channel_type is not None and channel_type.strip().lower() in VOICE_CHANNELS:
        return True
    return not _is_nothing(voice_call_id)


def _is_nothing(value: Any) -> bool:
    """Data 360's "no value": null, empty, or the `NOT_SET` sentinel."""
    return value is None or (isinstance(value, str) and value.strip() in ("", "NOT_SET"))


def actions_from_rows(
    rows: Iterable[Mapping[str, Any]], *, voice_multiplier: float
) -> list[Action]:
    """`rows`: usage events joined with their session and step (several per event when it
    has several steps), as the store reads them for a window."""
    best: dict[str, tuple[tuple[Any, ...], Mapping[str, Any]]] = {}
    for row in rows:
        action_id = row["request_id"] or row["id"]
        # one action per id: the latest event, and its best step (one with an input)
        rank = (
            row["started_at"],
            row["id"],
            row["input_text"] is not None,
            row["step_started"] or "",
            row["step_id"] or "",
        )
        if action_id not in best or rank > best[action_id][0]:
            best[action_id] = (rank, row)
    return [_action(action_id, row, voice_multiplier) for action_id, (_, row) in best.items()]


def _action(action_id: str, row: Mapping[str, Any], voice_multiplier: float) -> Action:
    voice = is_voice(row["channel_type"], row["voice_call_id"])
    flag = row["is_metered"] if row["is_metered"] is not None else row["is_billable"]
    metered = True if flag is None else bool(flag)
    multiplier = voice_multiplier if voice else 1.0
    reported: float | None
    if not metered:
        reported = 0.0  # unmetered: reported 0 whatever UsageQuantity says
    elif row["usage_quantity"] is None:
        reported = None
    else:
        reported = float(Decimal(row["usage_quantity"]) * Decimal(repr(multiplier)))
    error = row["error_text"]
    return Action(
        id=action_id,
        session_id=row["session_id"],
        action_name=row["tool_name"],
        action_type=None,
        channel="Voice" if voice else "Text",
        status="Error" if error else "Success",
        tokens=row["tokens"] or 0,
        started_at=parse_sf_datetime(row["started_at"]),
        reported_awu=reported,
        prompt_tokens=row["prompt_tokens"],
        completion_tokens=row["completion_tokens"],
        agent_id=row["agent_id"],
        agent_name=row["agent_name"],
        error_code=error[:255] if error else None,
        action_input=row["input_text"],
        user_id=row["user_id"],
        case_id=None,
        source=SOURCE,
        billable_override=metered,
        extra={
            "event_id": row["id"],
            "is_billable": row["is_billable"],
            "is_metered": row["is_metered"],
            "skip_reason": row["skip_reason"],
            "has_step": row["step_id"] is not None,
        },
    )


def unmetered_counts(actions: Iterable[Action]) -> dict[str, int]:
    """Unmetered actions, and those of them the feature meant to bill (reported, not hidden)."""
    unmetered = billable = 0
    for a in actions:
        if a.source == SOURCE and a.billable_override is False:
            unmetered += 1
            billable += a.extra.get("is_billable") == 1
    return {"unmetered_actions": unmetered, "billable_unmetered_actions": billable}
