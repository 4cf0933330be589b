"""SPEC §3.3 reconciliation and §3.2 log-file parsing, on hand-made rows."""

from __future__ import annotations

import io
from datetime import datetime, timezone
from typing import Any

from audit.engine.sources.core import reconcile
from connector.ids import to_18
from connector.logfiles import BadLogFile, parse_logfile

W = (datetime(2026, 10, 1, tzinfo=timezone.utc), datetime(2026, 10, 2, tzinfo=timezone.utc))


def awi(id_: str, tokens: int = 100, at: str = "2026-10-01T10:00:00.000Z", **kw: object) -> dict[str, Any]:
    return {"id": id_, "session_id": "S1", "action_name": "Lookup", "action_type": "Query",
            "channel": "Text", "status": "Success", "tokens": tokens, "reported_awu": 1.0,
            "action_input": "{}", "started_at": at, **kw}


def elf(req: str, wid: str | None, tokens: int = 100, at: str = "2026-10-01T10:00:01.000Z", **kw: object) -> dict[str, Any]:
    return {"request_id": req, "work_item_id": wid, "session_id": "S1", "action_name": "Lookup",
            "action_type": "Query", "channel": "Text", "status": "Success", "tokens": tokens,
            "reported_awu": 1.0, "started_at": at, **kw}


def test_each_action_counted_once_with_awi_values() -> None:
    actions = reconcile([awi("A1", 120)], [elf("R1", "A1", 120), elf("R2", None, 50)], window=W)
    by_id = {a.id: a for a in actions}
    assert set(by_id) == {"A1", "R2"}
    assert by_id["A1"].source == "both" and by_id["A1"].elf_tokens == 120
    assert by_id["R2"].source == "elf" and by_id["R2"].action_input is None


def test_several_request_ids_of_one_work_item_are_one_action() -> None:
    actions = reconcile([awi("A1", 300)], [elf("R1", "A1", 100), elf("R2", "A1", 200)], window=W)
    assert len(actions) == 1 and actions[0].elf_tokens == 300


def test_work_item_id_without_record_keys_an_elf_only_action() -> None:
    actions = reconcile([], [elf("R1", "A9", 100), elf("R2", "A9", 50, at="2026-10-01T09:00:00.000Z")], window=W)
    assert len(actions) == 1
    a = actions[0]
    assert (a.id, a.source, a.tokens, a.reported_awu) == ("A9", "elf", 150, 2.0)
    assert a.started_at == datetime(2026, 10, 1, 9, tzinfo=timezone.utc)


def test_window_is_half_open() -> None:
    rows = [awi("A1", at="2026-10-01T00:00:00.000Z"), awi("A2", at="2026-10-02T00:00:00.000Z")]
    assert [a.id for a in reconcile(rows, [], window=W)] == ["A1"]


def test_awi_only_source_ignores_log_rows() -> None:
    actions = reconcile([awi("A1")], [elf("R2", None)], window=W, use_elf=False)
    assert [a.id for a in actions] == ["A1"]


def test_15_char_ids_are_normalised() -> None:
    assert to_18("a0B5e00000AbCdE") == "a0B5e00000AbCdEEAV"
    assert to_18("a0B5e00000AbCdEEAV") == "a0B5e00000AbCdEEAV"
    assert to_18("") is None


CSV = (
    "EVENT_TYPE,TIMESTAMP_DERIVED,REQUEST_ID,CPU_TIME,WORK_ITEM_ID,TOTAL_TOKENS,ACTION_NAME,AWU_COUNT\n"
    "AgentAction,2026-10-01T10:00:00.123Z,R1,5,a0B5e00000AbCdE,12000,Lookup,2\n"
)


def test_logfile_parsed_by_header_not_position() -> None:
    names = "EVENT_TYPE,TIMESTAMP_DERIVED,REQUEST_ID,CPU_TIME,WORK_ITEM_ID,TOTAL_TOKENS,ACTION_NAME,AWU_COUNT"
    rows = [r.event for r in parse_logfile(io.BytesIO(CSV.encode()), names)]
    assert all(r is not None for r in rows)
    assert rows[0]["tokens"] == 12000 and rows[0]["work_item_id"] == "a0B5e00000AbCdEEAV"
    assert rows[0]["reported_awu"] == 2.0 and rows[0]["action_name"] == "Lookup"


def test_logfile_header_disagreeing_with_field_names_is_bad() -> None:
    try:
        list(parse_logfile(io.BytesIO(CSV.encode()), "EVENT_TYPE,REQUEST_ID"))
    except BadLogFile as exc:
        assert "LogFileFieldNames" in str(exc)
    else:  # pragma: no cover
        raise AssertionError("expected BadLogFile")
