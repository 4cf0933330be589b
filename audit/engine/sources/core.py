"""Reconciliation (SPEC §3.3): the union of AgentWorkItem records and EventLogFile rows,
keyed by AgentWorkItem Id = ELF WORK_ITEM_ID (else REQUEST_ID), each action counted once.

Pure: stored source rows in logical names in, `Action`s out.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from audit.engine.model import Action, parse_sf_datetime

__all__ = ["reconcile", "elf_group_key"]


def elf_group_key(row: Mapping[str, Any]) -> str:
    return str(row.get("work_item_id") or row["request_id"])


def reconcile(
    awi_rows: Iterable[Mapping[str, Any]],
    elf_rows: Iterable[Mapping[str, Any]],
    *,
    window: tuple[datetime, datetime],
    use_awi: bool = True,
    use_elf: bool = True,
) -> list[Action]:
    """Merge both sources and keep the actions whose started_at lies in [start, end).

    Where both sources hold an action the AgentWorkItem values win and the log files'
    TOTAL_TOKENS is kept as `elf_tokens` (a difference is a SOURCE_GAP). Several
    REQUEST_IDs under one WORK_ITEM_ID are one action: tokens and AWU_COUNT are summed,
    started_at is the earliest row's. An ELF-only action takes its fields from the CSV.
    """
    start, end = window
    awi = {str(r["id"]): r for r in awi_rows} if use_awi else {}
    groups: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    if use_elf:
        for row in elf_rows:
            groups[elf_group_key(row)].append(row)

    actions: list[Action] = []
    for key, rec in awi.items():
        group = groups.pop(key, None)
        elf_tokens = sum(int(r.get("tokens") or 0) for r in group) if group else None
        source = "both" if group else "awi"
        action = _from_awi(rec, source=source, elf_tokens=elf_tokens)
        if start <= action.started_at < end:
            actions.append(action)
    # log rows carry only the agent's id: name ELF-only actions after their agent
    # (keyed by the id's first 15 characters: log files may carry the 15-character form)
    names = {
        str(r["agent_id"])[:15]: r["agent_name"]
        for r in awi.values()
        if r.get("agent_id") and r.get("agent_name")
    }
    for key, group in groups.items():
        action = _from_elf(key, group, names)
        if start <= action.started_at < end:
            actions.append(action)
    actions.sort(key=lambda a: (a.started_at, a.id))
    return actions


def _from_awi(rec: Mapping[str, Any], *, source: str, elf_tokens: int | None) -> Action:
    tokens = rec.get("tokens")
    if tokens is None:
        tokens = int(rec.get("prompt_tokens") or 0) + int(rec.get("completion_tokens") or 0)
    return Action(
        id=str(rec["id"]),
        session_id=rec.get("session_id"),
        action_name=str(rec.get("action_name") or ""),
        action_type=rec.get("action_type"),
        channel=_channel(rec.get("channel")),
        status=_status(rec.get("status")),
        tokens=int(tokens),
        started_at=_started_at(rec["started_at"]),
        reported_awu=_float_or_none(rec.get("reported_awu")),
        prompt_tokens=_int_or_none(rec.get("prompt_tokens")),
        completion_tokens=_int_or_none(rec.get("completion_tokens")),
        agent_id=rec.get("agent_id"),
        agent_name=rec.get("agent_name"),
        error_code=rec.get("error_code"),
        action_input=rec.get("action_input"),
        user_id=rec.get("user_id"),
        case_id=rec.get("case_id"),
        source=source,
        elf_tokens=elf_tokens,
    )


def _from_elf(key: str, group: list[Mapping[str, Any]], names: Mapping[str, str]) -> Action:
    rows = sorted(group, key=lambda r: (str(r["started_at"]), str(r["request_id"])))
    first = rows[0]
    reported = [_float_or_none(r.get("reported_awu")) for r in rows]
    return Action(
        id=key,
        session_id=first.get("session_id"),
        action_name=str(first.get("action_name") or ""),
        action_type=first.get("action_type"),
        channel=_channel(first.get("channel")),
        status=_status(first.get("status")),
        tokens=sum(int(r.get("tokens") or 0) for r in rows),
        started_at=_started_at(first["started_at"]),
        reported_awu=None if all(v is None for v in reported) else sum(v or 0.0 for v in reported),
        prompt_tokens=sum(int(r.get("prompt_tokens") or 0) for r in rows),
        completion_tokens=sum(int(r.get("completion_tokens") or 0) for r in rows),
        agent_id=first.get("agent_id"),
        agent_name=names.get(str(first.get("agent_id"))[:15]),
        user_id=first.get("user_id"),
        source="elf",
    )


# the values nearly every row carries, looked up before the general normalisation
_CHANNELS = {"Text": "Text", "Voice": "Voice", None: "Text"}
_STATUSES = {"Success": "Success", "Error": "Error", None: "Success"}


def _channel(value: Any) -> str:
    known = _CHANNELS.get(value) if isinstance(value, str) or value is None else None
    if known is not None:
        return known
    return "Voice" if str(value or "").strip().lower() == "voice" else "Text"


def _status(value: Any) -> str:
    known = _STATUSES.get(value) if isinstance(value, str) or value is None else None
    if known is not None:
        return known
    return (
        "Error" if str(value or "").strip().lower() in ("error", "failed", "failure") else "Success"
    )


def _started_at(value: Any) -> datetime:
    """The store's canonical `YYYY-MM-DDTHH:MM:SS.mmmZ` parses straight to aware UTC;
    anything else goes through the general parser."""
    text = str(value)
    if len(text) == 24 and text[-1] == "Z":
        try:
            return datetime.fromisoformat(text)
        except ValueError:
            pass
    return parse_sf_datetime(text)


def _float_or_none(value: Any) -> float | None:
    return None if value is None or value == "" else float(value)


def _int_or_none(value: Any) -> int | None:
    return None if value is None or value == "" else int(value)
