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

__all__ = [
    "AWI_FIELDS",
    "ELF_FIELDS",
    "agent_names",
    "elf_group_key",
    "reconcile",
    "reconcile_tuples",
]

#: the stored columns reconciliation reads, in the order of the tuples `reconcile_tuples`
#: takes: the store reads them straight into tuples, no dict per row
AWI_FIELDS = (
    "id", "session_id", "action_name", "action_type", "channel", "status", "tokens",
    "prompt_tokens", "completion_tokens", "started_at", "reported_awu", "agent_id",
    "agent_name", "error_code", "action_input", "user_id", "case_id",
)  # fmt: skip
ELF_FIELDS = (
    "request_id", "work_item_id", "session_id", "action_name", "action_type", "channel",
    "status", "tokens", "prompt_tokens", "completion_tokens", "started_at", "reported_awu",
    "agent_id", "user_id",
)  # fmt: skip
(_A_ID, _A_SESSION, _A_NAME, _A_TYPE, _A_CHANNEL, _A_STATUS, _A_TOKENS, _A_PROMPT,
 _A_COMPLETION, _A_STARTED, _A_REPORTED, _A_AGENT, _A_AGENT_NAME, _A_ERROR, _A_INPUT,
 _A_USER, _A_CASE) = range(len(AWI_FIELDS))  # fmt: skip
(_E_REQUEST, _E_WORK_ITEM, _E_SESSION, _E_NAME, _E_TYPE, _E_CHANNEL, _E_STATUS, _E_TOKENS,
 _E_PROMPT, _E_COMPLETION, _E_STARTED, _E_REPORTED, _E_AGENT,
 _E_USER) = range(len(ELF_FIELDS))  # fmt: skip

Row = tuple[Any, ...]


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
    """`reconcile_tuples` over rows as mappings of logical names (absent names: None)."""
    return reconcile_tuples(
        [tuple(r.get(c) for c in AWI_FIELDS) for r in awi_rows],
        [tuple(r.get(c) for c in ELF_FIELDS) for r in elf_rows],
        window=window,
        use_awi=use_awi,
        use_elf=use_elf,
    )


def reconcile_tuples(
    awi_rows: Iterable[Row],
    elf_rows: Iterable[Row],
    *,
    window: tuple[datetime, datetime],
    use_awi: bool = True,
    use_elf: bool = True,
    names: Mapping[str, str] | None = None,
    record_tokens: Iterable[tuple[str, Any]] = (),
) -> list[Action]:
    """Merge both sources and keep the actions whose started_at lies in [start, end).

    Rows are tuples of AWI_FIELDS and ELF_FIELDS. Where both sources hold an action the
    AgentWorkItem values win and the log files' TOTAL_TOKENS is kept as `elf_tokens` (a
    difference is a SOURCE_GAP). Several REQUEST_IDs under one WORK_ITEM_ID are one action:
    tokens and AWU_COUNT are summed, started_at is the earliest row's. An ELF-only action
    takes its fields from the CSV, and its agent's name from `names` (agent id's first 15
    characters → name; default: the names `awi_rows` carry, see `agent_names`).

    `record_tokens`: log rows known to belong to a record among `awi_rows`, as (its Id,
    TOTAL_TOKENS) — of such a row only its tokens count, so the store need not read the
    rest (`Store.core_chunk`); they are added to those `elf_rows` hold.
    """
    start, end = window
    awi = {str(r[_A_ID]): r for r in awi_rows} if use_awi else {}
    groups: dict[str, list[Row]] = defaultdict(list)
    logged: dict[str, int] = {}  # record Id → TOTAL_TOKENS of its log rows
    if use_elf:
        for key, tokens in record_tokens:
            logged[key] = logged.get(key, 0) + int(tokens or 0)
        for row in elf_rows:
            groups[str(row[_E_WORK_ITEM] or row[_E_REQUEST])].append(row)

    actions: list[Action] = []
    for key, rec in awi.items():
        group = groups.pop(key, None)
        elf_tokens = logged.get(key)
        if group:
            elf_tokens = (elf_tokens or 0) + sum(int(r[_E_TOKENS] or 0) for r in group)
        source = "awi" if elf_tokens is None else "both"
        action = _from_awi(rec, source=source, elf_tokens=elf_tokens)
        if start <= action.started_at < end:
            actions.append(action)
    if names is None:
        names = agent_names(awi.values())
    for key, group in groups.items():
        action = _from_elf(key, group, names)
        if start <= action.started_at < end:
            actions.append(action)
    actions.sort(key=lambda a: (a.started_at, a.id))
    return actions


def agent_names(awi_rows: Iterable[Row]) -> dict[str, str]:
    """Log rows carry only the agent's id: ELF-only actions are named after their agent
    from the AgentWorkItem rows, keyed by the id's first 15 characters (log files may carry
    the 15-character form); where rows disagree, the last one's name."""
    return {
        str(r[_A_AGENT])[:15]: r[_A_AGENT_NAME]
        for r in awi_rows
        if r[_A_AGENT] and r[_A_AGENT_NAME]
    }


def _from_awi(rec: Row, *, source: str, elf_tokens: int | None) -> Action:
    tokens = rec[_A_TOKENS]
    if tokens is None:
        tokens = int(rec[_A_PROMPT] or 0) + int(rec[_A_COMPLETION] or 0)
    return Action(
        id=str(rec[_A_ID]),
        session_id=rec[_A_SESSION],
        action_name=str(rec[_A_NAME] or ""),
        action_type=rec[_A_TYPE],
        channel=_channel(rec[_A_CHANNEL]),
        status=_status(rec[_A_STATUS]),
        tokens=int(tokens),
        started_at=_started_at(rec[_A_STARTED]),
        reported_awu=_float_or_none(rec[_A_REPORTED]),
        prompt_tokens=_int_or_none(rec[_A_PROMPT]),
        completion_tokens=_int_or_none(rec[_A_COMPLETION]),
        agent_id=rec[_A_AGENT],
        agent_name=rec[_A_AGENT_NAME],
        error_code=rec[_A_ERROR],
        action_input=rec[_A_INPUT],
        user_id=rec[_A_USER],
        case_id=rec[_A_CASE],
        source=source,
        elf_tokens=elf_tokens,
    )


def _from_elf(key: str, group: list[Row], names: Mapping[str, str]) -> Action:
    rows = sorted(group, key=lambda r: (str(r[_E_STARTED]), str(r[_E_REQUEST])))
    first = rows[0]
    reported = [_float_or_none(r[_E_REPORTED]) for r in rows]
    return Action(
        id=key,
        session_id=first[_E_SESSION],
        action_name=str(first[_E_NAME] or ""),
        action_type=first[_E_TYPE],
        channel=_channel(first[_E_CHANNEL]),
        status=_status(first[_E_STATUS]),
        tokens=sum(int(r[_E_TOKENS] or 0) for r in rows),
        started_at=_started_at(first[_E_STARTED]),
        reported_awu=None if all(v is None for v in reported) else sum(v or 0.0 for v in reported),
        prompt_tokens=sum(int(r[_E_PROMPT] or 0) for r in rows),
        completion_tokens=sum(int(r[_E_COMPLETION] or 0) for r in rows),
        agent_id=first[_E_AGENT],
        agent_name=names.get(str(first[_E_AGENT])[:15]),
        user_id=first[_E_USER],
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
