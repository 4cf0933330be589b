"""Bad data is data (SPEC §3.5): every value is checked where a source turns rows into
records. A poison table drives the three record parsers directly (every field × every
poison), a representative subset goes through the real CLI against the HTTPS mock org, and
Hypothesis fuzzes the CSV and JSON record parsers. Expected totals come from the fixture
labels, never from the code under test."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connector.checks import REASONS
from connector.config import AWI_FIELD_DEFAULTS, ConnectorConfig
from connector.core.agentworkitem import AgentWorkItemSync
from connector.data360.values import decode_rows, event_record
from connector.logfiles import ELF_COLUMNS, BadLogFile, parse_logfile
from connector.mock.faults import Faults
from connector.mock.org import MockOrg
from connector.mock.server import RunningMockOrg, serve
from fixtures.generator import generate_snapshot
from tests.helpers import SCHEMA, invoke, labels_of, make_config

# ----------------------------------------------------------------------------- poisons

INF, NAN = float("inf"), float("nan")

#: poison → (value as a JSON record carries it, value as a CSV cell)
POISON: dict[str, tuple[Any, str]] = {
    "negative": (-5.0, "-5"),
    "non_numeric": ("abc", "abc"),
    "empty": (None, ""),
    "fractional": (10000.9, "10000.9"),
    "1e30": (1e30, "1e30"),
    "inf": ("Infinity", "inf"),
    "nan": ("NaN", "NaN"),
    "huge": (1e15, "1000000000000000"),
    "bad_date": ("not-a-date", "not-a-date"),
    "impossible_date": ("2026-13-45T99:00:00.000+0000", "2026-13-45T99:00:00.000Z"),
    "ancient_date": ("1900-01-01T00:00:00.000+0000", "1900-01-01T00:00:00.000Z"),
    "wrong_id_length": ("005ABC", "005ABC"),
    "invalid_utf8": ("caf\udce9", "caf\udce9"),  # the byte 0xE9 alone, as decoding leaves it
}

_COUNT = {
    "negative": "negative",
    "non_numeric": "not_a_number",
    "fractional": "fractional",
    "1e30": "too_large",
    "inf": "not_finite",
    "nan": "not_finite",
    "huge": "too_large",
    "bad_date": "not_a_number",
    "impossible_date": "not_a_number",
    "ancient_date": "not_a_number",
    "wrong_id_length": "not_a_number",
    "invalid_utf8": "not_a_number",
}
_AMOUNT = {**_COUNT, "fractional": None}  # 10000.9 AWU is odd, not impossible
_DATE = {
    "negative": "bad_datetime",
    "non_numeric": "bad_datetime",
    "fractional": "bad_datetime",
    "1e30": "bad_datetime",
    "inf": "bad_datetime",
    "nan": "bad_datetime",
    "huge": "bad_datetime",
    "bad_date": "bad_datetime",
    "impossible_date": "bad_datetime",
    "ancient_date": "implausible_datetime",
    "wrong_id_length": "bad_datetime",
    "invalid_utf8": "bad_datetime",
}
_ID = {p: "bad_id" for p in POISON if p != "empty"}
_TEXT = {"invalid_utf8": "invalid_utf8"}  # text takes any other value as it comes


def _expect(kind: str, poison: str, *, required: bool, raw_bytes: bool = False) -> str | None:
    """The reason class a poison earns in a field of `kind` (None: the value is fine).
    Where text arrives as bytes (log files), an undecodable byte is `invalid_utf8` in any
    column; in JSON it is whatever the field's type makes of it."""
    if poison == "empty":
        return "missing" if required else None
    if poison == "invalid_utf8" and raw_bytes:
        return "invalid_utf8"
    table = {"count": _COUNT, "amount": _AMOUNT, "date": _DATE, "id": _ID, "text": _TEXT}[kind]
    return table.get(poison)


# logical field → (kind, required)
AWI_FIELDS = {
    "Id": ("id", True),
    "UserId__c": ("id", False),
    "CaseId__c": ("id", False),
    "PromptTokens__c": ("count", False),
    "CompletionTokens__c": ("count", False),
    "TokensConsumed__c": ("count", True),
    "AwuCount__c": ("amount", False),
    "StartTime__c": ("date", True),
    "CreatedDate": ("date", False),
    "SystemModstamp": ("date", False),
    "SessionId__c": ("text", False),
    "AgentName__c": ("text", False),
    "ActionName__c": ("text", False),
    "ActionInput__c": ("text", False),
    "ErrorCode__c": ("text", False),
}
ELF_FIELDS = {
    "TIMESTAMP_DERIVED": ("date", True),
    "USER_ID": ("id", False),
    "AGENT_ID": ("id", False),
    "WORK_ITEM_ID": ("id", False),
    "PROMPT_TOKENS": ("count", False),
    "COMPLETION_TOKENS": ("count", False),
    "TOTAL_TOKENS": ("count", True),
    "AWU_COUNT": ("amount", False),
    "SESSION_KEY": ("text", False),
    "ACTION_NAME": ("text", False),
    "STATUS": ("text", False),
}
D360_FIELDS = {
    "Timestamp": ("date", True),
    "UserId": ("id", False),
    "AgentIdentifier": ("id", False),
    "PromptTotalTokenCount": ("count", False),  # falls back to input + completion
    "PromptInputTokenCount": ("count", False),
    "PromptCompletionTokenCount": ("count", False),
    "UsageQuantity": ("amount", False),
    "AiAgentSessionId": ("text", False),
    "AgentDeveloperName": ("text", False),
}


def _table(fields: dict[str, tuple[str, bool]], *, raw_bytes: bool = False) -> list[Any]:
    return [
        pytest.param(f, p, _expect(kind, p, required=req, raw_bytes=raw_bytes), id=f"{f}-{p}")
        for f, (kind, req) in fields.items()
        for p in POISON
    ]


# ------------------------------------------------------------------ AgentWorkItem records

AWI_RECORD = {
    "Id": "1AW5g005waZWR5HGAX",
    "SessionId__c": "0e079ae1-9c63-44bb-979a-3a3714c4e0b7",
    "AgentId__c": "0Xx5g001jdUVhoKCAT",
    "AgentName__c": "HRHelper",
    "ActionName__c": "SendReply",
    "ActionType__c": "Response",
    "Channel__c": "Text",
    "Status__c": "Success",
    "ErrorCode__c": None,
    "PromptTokens__c": 6495.0,
    "CompletionTokens__c": 721.0,
    "TokensConsumed__c": 7216.0,
    "AwuCount__c": 1.0,
    "ActionInput__c": '{"tone": "friendly", "customer": "Zoë"}',
    "UserId__c": "0055g00AQIWTLcBA2X",
    "CaseId__c": "5005g00BmM8HXovAUG",
    "StartTime__c": "2026-09-30T05:11:29.697+0000",
    "CreatedDate": "2026-09-30T05:11:32.000+0000",
    "SystemModstamp": "2026-09-30T05:11:32.000+0000",
}


def _awi_sync() -> AgentWorkItemSync:
    return AgentWorkItemSync(
        client=None,  # type: ignore[arg-type]  # _record never calls the org
        cfg=ConnectorConfig(),
        fields=dict(AWI_FIELD_DEFAULTS),
        run_id="r1",
        sync_start=datetime(2026, 10, 8, tzinfo=timezone.utc),
        progress=lambda *_: None,
        on_changed=lambda _: None,
    )


def test_a_sound_awi_record_is_a_record() -> None:
    rec = _awi_sync()._record(dict(AWI_RECORD))
    assert "reason" not in rec
    assert rec["tokens"] == 7216 and rec["reported_awu"] == 1.0  # type: ignore[typeddict-item]
    assert rec["started_at"] == "2026-09-30T05:11:29.697Z"  # type: ignore[typeddict-item]


@pytest.mark.parametrize(("field", "poison", "reason"), _table(AWI_FIELDS))
def test_awi_poison(field: str, poison: str, reason: str | None) -> None:
    rec = {**AWI_RECORD, field: POISON[poison][0]}
    out: dict[str, Any] = dict(_awi_sync()._record(rec))
    if reason is None:
        assert "reason" not in out, out
        return
    assert out["reason"] == reason and out["field"] == field, out
    assert out["source"] == "agentworkitem"
    if field != "Id":  # located by its record id, dated by its start (else CreatedDate)
        assert out["key"] == out["record_id"] == AWI_RECORD["Id"]
        assert out["at"] is not None and out["at"].startswith("2026-09-30")


# ------------------------------------------------------------------------- log file rows

ELF_ROW = {
    "EVENT_TYPE": "AgentAction",
    "TIMESTAMP_DERIVED": "2026-09-30T06:00:37.615Z",
    "REQUEST_ID": "4HL3CmXd9rz7zPuTUUfEbA",
    "ORGANIZATION_ID": "00D5g00kUgecPEUEI2",
    "USER_ID": "0055g00AQIWTLbfA2H",
    "SESSION_KEY": "9fc69db8-9d38-4161-8b47-7af2f99d92cf",
    "AGENT_ID": "0Xx5g001jdUVhoJCAT",
    "ACTION_NAME": "LookupAccount",
    "ACTION_TYPE": "Retrieval",
    "CHANNEL": "Text",
    "STATUS": "Success",
    "PROMPT_TOKENS": "4027",
    "COMPLETION_TOKENS": "658",
    "TOTAL_TOKENS": "4685",
    "AWU_COUNT": "1.0",
    "WORK_ITEM_ID": "1AW5g005waZWR67GAH",
}


def _csv(rows: list[dict[str, str]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(ELF_COLUMNS)
    for row in rows:
        writer.writerow([row[c] for c in ELF_COLUMNS])
    # a lone surrogate stands for one undecodable byte: write that byte itself
    return out.getvalue().encode("utf-8", errors="surrogateescape")


def _parse(body: bytes) -> list[Any]:
    return list(parse_logfile(io.BytesIO(body), ",".join(ELF_COLUMNS)))


def _three_rows(field: str, cell: str) -> list[dict[str, str]]:
    return [
        {**ELF_ROW, "REQUEST_ID": "req-before"},
        {**ELF_ROW, field: cell},
        {**ELF_ROW, "REQUEST_ID": "req-after"},
    ]


@pytest.mark.parametrize(("field", "poison", "reason"), _table(ELF_FIELDS, raw_bytes=True))
def test_log_row_poison(field: str, poison: str, reason: str | None) -> None:
    rows = _parse(_csv(_three_rows(field, POISON[poison][1])))
    assert [r.line for r in rows] == [2, 3, 4]
    # the good rows around it are read as usual
    assert rows[0].event["request_id"] == "req-before" and rows[2].event is not None
    poisoned = rows[1]
    if reason is None:
        assert poisoned.event is not None and poisoned.bad is None
        return
    assert poisoned.event is None and poisoned.bad is not None
    assert (poisoned.bad.reason, poisoned.bad.field) == (reason, field)
    assert poisoned.request_id == ELF_ROW["REQUEST_ID"]  # its location: file Id + line / id


def test_log_row_with_a_missing_request_id_or_extra_field_is_bad() -> None:
    body = _csv(_three_rows("REQUEST_ID", "")) + b"AgentAction,2026-09-30T06:00:00.000Z,x,1\n"
    rows = _parse(body)
    assert rows[1].bad is not None and rows[1].bad.reason == "missing"
    assert rows[3].bad is not None and rows[3].bad.reason == "field_count" and rows[3].line == 5


@pytest.mark.parametrize(
    ("body", "retryable"),
    [
        pytest.param(b"", True, id="empty-body"),
        pytest.param(_csv([ELF_ROW]) + b'AgentAction,"2026-09-30T06:00:00.000Z,x\n', True,
                     id="unbalanced-quote"),
        pytest.param(_csv([ELF_ROW]).replace(b"AgentAction,2", b'"Agent"Action,2'), True,
                     id="broken-quoting"),
    ],
)
def test_a_file_that_does_not_parse_whole_is_a_bad_file(body: bytes, retryable: bool) -> None:
    with pytest.raises(BadLogFile) as info:
        _parse(body)
    assert info.value.retryable is retryable


def test_a_header_that_disagrees_is_a_permanent_bad_file() -> None:
    with pytest.raises(BadLogFile) as info:
        list(parse_logfile(io.BytesIO(_csv([ELF_ROW])), "EVENT_TYPE,REQUEST_ID"))
    assert not info.value.retryable


# --------------------------------------------------------------------- Data 360 events

D360_TYPES = {
    "Id": "VARCHAR",
    "Timestamp": "TIMESTAMP",
    "AiAgentToolName": "VARCHAR",
    "RequestIdentifier": "VARCHAR",
    "AiAgentSessionId": "VARCHAR",
    "AgentIdentifier": "VARCHAR",
    "AgentDeveloperName": "VARCHAR",
    "UserId": "VARCHAR",
    "PromptInputTokenCount": "DECIMAL",
    "PromptCompletionTokenCount": "DECIMAL",
    "PromptTotalTokenCount": "DECIMAL",
    "UsageQuantity": "DECIMAL",
    "IsMeteredIndicator": "BOOLEAN",
}
D360_ROW = {
    "Id": "9fd70574-5903-4b41-a0e4-5d217aaaef10",
    "Timestamp": "2026-10-02 01:03:31.557 UTC",
    "AiAgentToolName": "LookupAccount",
    "RequestIdentifier": "f86a92c5-760c-4991-a276-3aaaedf04e3a",
    "AiAgentSessionId": "5b569643-d037-4dff-bc24-0d4969d495dd",
    "AgentIdentifier": "0Xx5g001jdUVhoGCAT",
    "AgentDeveloperName": "ServiceAgent",
    "UserId": "0055g00AQIWTLbrA2H",
    "PromptInputTokenCount": "1332.000000000000000000",
    "PromptCompletionTokenCount": "100.000000000000000000",
    "PromptTotalTokenCount": "1432.000000000000000000",
    "UsageQuantity": "1.000000000000000000",
    "IsMeteredIndicator": True,
}
_USAGE = SimpleNamespace(columns={name: name for name in D360_TYPES})


def _d360(row: dict[str, Any]) -> Any:
    """One wire row through the Query API v2 decoder and the event parser."""
    payload = {
        "metadata": {n: {"type": t, "placeInOrder": i} for i, (n, t) in enumerate(D360_TYPES.items())},
        "data": [[row[n] for n in D360_TYPES]],
    }
    (decoded,) = decode_rows(payload)
    return event_record(decoded, _USAGE)  # type: ignore[arg-type]  # duck-typed object


def _d360_cell(field: str, poison: str) -> Any:
    value, cell = POISON[poison]
    if D360_TYPES[field] == "TIMESTAMP":
        return value if poison != "impossible_date" else "2026-13-45 99:00:00.000 UTC"
    return cell if D360_TYPES[field] == "DECIMAL" else value


@pytest.mark.parametrize(("field", "poison", "reason"), _table(D360_FIELDS))
def test_data360_poison(field: str, poison: str, reason: str | None) -> None:
    out = _d360({**D360_ROW, field: _d360_cell(field, poison)})
    if reason is None:
        assert out is not None and "reason" not in out, out
        return
    assert out["reason"] == reason and out["field"] == field, out
    assert out["key"] == out["record_id"] == D360_ROW["Id"]


def test_data360_tokens_missing_everywhere_is_a_bad_record() -> None:
    row = {**D360_ROW, "PromptInputTokenCount": None, "PromptCompletionTokenCount": None,
           "PromptTotalTokenCount": None}
    out = _d360(row)
    assert out["reason"] == "missing" and out["field"] == "PromptTotalTokenCount"


def test_every_reason_is_explained() -> None:
    used = {r for t in (_COUNT, _AMOUNT, _DATE, _ID) for r in t.values() if r}
    assert used | {"missing", "invalid_utf8", "field_count", "bad_file", "bad_input"} <= set(REASONS)


# ------------------------------------------------------------------------ fuzzing (Hypothesis)

_cells = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["", "-1", "1e30", "inf", "NaN", "10000.9", "5562.0", "2026-13-45T99:00:00Z",
                     "0055g00AQIWTLbfA2H", "\"", "\"\"", ",", "\n", "\r\n"]),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(_cells, min_size=0, max_size=len(ELF_COLUMNS) + 2), max_size=6),
       st.binary(max_size=40))
def test_fuzz_log_file_parser(rows: list[list[str]], junk: bytes) -> None:
    """Any body: rows (good or bad) or a BadLogFile — never another exception."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(ELF_COLUMNS)
    writer.writerows(rows)
    body = out.getvalue().encode("utf-8", errors="surrogatepass") + junk
    try:
        parsed = _parse(body)
    except BadLogFile:
        return
    for row in parsed:
        assert (row.event is None) != (row.bad is None)
        if row.bad is not None:
            assert row.bad.reason in REASONS


_json_values = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=30),
    st.sampled_from(["", "abc", "1e30", "NaN", "-5", "2026-13-45T99:00:00.000+0000",
                     "\udce9", "005ABC"]),
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(sorted(AWI_RECORD)), _json_values))
def test_fuzz_awi_record_parser(changes: dict[str, Any]) -> None:
    """Any JSON values in a record: a record or a bad-record verdict, nothing else."""
    out: dict[str, Any] = dict(_awi_sync()._record({**AWI_RECORD, **changes}))
    if "reason" in out:
        assert out["reason"] in REASONS and out["source"] == "agentworkitem"
    else:
        assert isinstance(out["tokens"], int) and 0 <= out["tokens"] <= 100_000_000


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(sorted(D360_TYPES)), _json_values))
def test_fuzz_data360_event_parser(changes: dict[str, Any]) -> None:
    out = _d360({**D360_ROW, **changes})
    if out is not None and "reason" in out:
        assert out["reason"] in REASONS


# ------------------------------------------------------------------ end to end, real CLI


def _sql(db: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(db)) as conn:
        return conn.execute(sql, params).fetchall()


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One small org for the module (Daily and Hourly log files, AgentWorkItem records)."""
    out = tmp_path_factory.mktemp("quality") / "org"
    generate_snapshot(out, seed=5, actions=400, days=3, start=date(2026, 10, 1))
    return out


@pytest.fixture
def served(small: Path, tmp_path: Path) -> Iterator[tuple[MockOrg, RunningMockOrg]]:
    org = MockOrg.from_snapshot(small)
    with serve(org, tls_dir=tmp_path / "tls") as server:
        yield org, server


def _run(config: Path, labels: dict[str, Any], *, code: int = 0) -> dict[str, Any]:
    proc = invoke("run", "--config", str(config), "--since", labels["window"]["since"],
                  "--until", labels["window"]["until"], "--json")
    assert proc.exit_code == code, proc.stderr
    out: dict[str, Any] = json.loads(proc.stdout)
    jsonschema.validate(out, json.loads(SCHEMA.read_text()))
    return out


_SUMMED = ("actions", "billable_actions", "tokens", "awu", "reported_awu")


def _quiet_action(labels: dict[str, Any]) -> dict[str, Any]:
    """An in-window action in both sources that no finding names (by id or session)."""
    named = " ".join(
        " ".join(map(str, f["keys"])) for f in labels["findings"].values()
    )
    for a in labels["actions"]:
        if (a["in_window"] and a["source"] == "both" and a["tags"] == ["filler"]
                and a["key"] not in named and a["session_id"] not in named):
            return a
    raise AssertionError("the fixture has no quiet action")  # pragma: no cover


def _of(row: list[str], header: list[str], work_item: str) -> bool:
    """Whether a log row belongs to `work_item` (log files may carry the 15-character id)."""
    cell = row[header.index("WORK_ITEM_ID")] if len(row) == len(header) else ""
    return bool(cell) and cell[:15] == work_item[:15]


def _log_files_with(org: MockOrg, small: Path, work_item: str) -> dict[str, list[list[str]]]:
    """Every log file holding a row of `work_item`: file Id → its CSV rows (header first)."""
    found = {}
    for rec in org.records("EventLogFile"):
        body = (small / "logfiles" / f"{rec['Id']}.csv").read_text(encoding="utf-8")
        rows = list(csv.reader(io.StringIO(body, newline="")))
        if rows and any(_of(r, rows[0], work_item) for r in rows[1:]):
            found[rec["Id"]] = rows
    return found


def _poison_log_rows(org: MockOrg, small: Path, work_item: str, column: str, cell: bytes,
                     *, newest_only: bool = False) -> int:
    """Re-publish (same Id, same record) every file with `work_item`'s rows (or only the
    newest), the column `column` of those rows set to the raw bytes `cell`; returns how
    many REQUEST_IDs."""
    request_ids = set()
    files = _log_files_with(org, small, work_item)
    if newest_only:
        created = {r["Id"]: r["CreatedDate"] for r in org.records("EventLogFile")}
        newest = max(files, key=lambda f: created[f])
        files = {newest: files[newest]}
    for file_id, rows in files.items():
        rec = next(r for r in org.records("EventLogFile") if r["Id"] == file_id)
        header, out = rows[0], io.BytesIO()
        for row in rows:
            cells = [c.encode() for c in row]
            if row is not header and _of(row, header, work_item):
                cells[header.index(column)] = cell
                request_ids.add(row[header.index("REQUEST_ID")])
            out.write(b",".join(cells) + b"\n")
        org.add_logfile({k: v for k, v in rec.items() if k != "LogFileLength"}, out.getvalue())
    return len(request_ids)


def _update(org: MockOrg, record_id: str, changes: dict[str, Any]) -> None:
    """Change a record a minute before the run (a SystemModstamp of now could fall after
    the run's start within the same second, and wait for the next run)."""
    stamp = datetime.now(timezone.utc) - timedelta(minutes=1)
    org.update_record("AgentWorkItem", record_id, changes, system_modstamp=stamp)


def _expect_gap(out: dict[str, Any], labels: dict[str, Any], reason: str, bad: int = 1) -> None:
    """The action is still there, from its sound copy alone: totals as labelled, one more
    SOURCE_GAP, the poisoned record counted under its reason."""
    assert {k: out["totals"][k] for k in _SUMMED} == pytest.approx(
        {k: labels["totals"][k] for k in _SUMMED})
    counts = {k: v["count"] for k, v in out["findings"].items()}
    expected = {k: v["count"] for k, v in labels["findings"].items()}
    expected["SOURCE_GAP"] += 1
    assert counts == expected
    dq = out["data_quality"]
    assert dq["bad_records"] == labels["data_quality"]["bad_records"] + bad
    assert dq["by_reason"][reason] == bad


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("TokensConsumed__c", 1e30, "too_large"),
        ("TokensConsumed__c", "10000.9", "fractional"),
        ("TokensConsumed__c", 1e15, "too_large"),
        ("AwuCount__c", -1.0, "negative"),
        ("StartTime__c", "1900-01-01T00:00:00.000+0000", "implausible_datetime"),
        ("UserId__c", "005ABC", "bad_id"),
    ],
)
def test_e2e_poisoned_record(field: str, value: Any, reason: str, small: Path,
                             served: tuple[MockOrg, RunningMockOrg], tmp_path: Path) -> None:
    org, server = served
    labels = labels_of(small)
    action = _quiet_action(labels)
    _update(org, action["key"], {field: value})
    config = make_config(tmp_path, small, server)
    out = _run(config, labels)
    _expect_gap(out, labels, reason)
    example = next(e for e in out["data_quality"]["examples"] if e["reason"] == reason)
    assert example["location"] == f"AgentWorkItem {action['key']}" and field in example["detail"]
    # the re-run reads the same verdict and loses nothing
    again = _run(config, labels)
    assert again["totals"] == out["totals"] and again["data_quality"] == out["data_quality"]


@pytest.mark.parametrize(
    ("column", "cell", "reason"),
    [
        ("TOTAL_TOKENS", b"inf", "not_finite"),
        ("TOTAL_TOKENS", b"-5", "negative"),
        ("AWU_COUNT", b"abc", "not_a_number"),
        ("TIMESTAMP_DERIVED", b"2026-13-45T99:00:00.000Z", "bad_datetime"),
        ("ACTION_NAME", b"Lookup\xe9", "invalid_utf8"),
    ],
)
def test_e2e_poisoned_log_row(column: str, cell: bytes, reason: str, small: Path,
                              served: tuple[MockOrg, RunningMockOrg], tmp_path: Path) -> None:
    org, server = served
    labels = labels_of(small)
    action = _quiet_action(labels)
    assert _poison_log_rows(org, small, action["key"], column, cell) == 1
    out = _run(make_config(tmp_path, small, server), labels)
    _expect_gap(out, labels, reason)
    example = next(e for e in out["data_quality"]["examples"] if e["reason"] == reason)
    assert example["location"].startswith("EventLogFile ") and " line " in example["location"]


def test_e2e_poisoned_newest_log_copy_outweighs_older_sound_copies(
    small: Path, served: tuple[MockOrg, RunningMockOrg], tmp_path: Path
) -> None:
    """Hourly and Daily files carry the same event; the newest copy is the event (SPEC
    §3.2), so when it cannot be data the older copies do not stand in for it."""
    org, server = served
    labels = labels_of(small)
    action = _quiet_action(labels)
    assert len(_log_files_with(org, small, action["key"])) >= 2  # an Hourly and a Daily copy
    _poison_log_rows(org, small, action["key"], "TOTAL_TOKENS", b"-5", newest_only=True)
    out = _run(make_config(tmp_path, small, server), labels)
    _expect_gap(out, labels, "negative")


def test_e2e_both_copies_poisoned_removes_the_action(
    small: Path, served: tuple[MockOrg, RunningMockOrg], tmp_path: Path
) -> None:
    """Totals are the clean run's minus that action (from its labels), nothing else moves."""
    org, server = served
    labels = labels_of(small)
    action = _quiet_action(labels)
    _update(org, action["key"], {"TokensConsumed__c": -5.0})
    _poison_log_rows(org, small, action["key"], "TOTAL_TOKENS", b"abc")
    out = _run(make_config(tmp_path, small, server), labels)
    minus = {"actions": 1, "billable_actions": int(action["billable"]), "tokens": action["tokens"],
             "awu": action["awu"], "reported_awu": action["reported_awu"]}
    assert {k: out["totals"][k] for k in _SUMMED} == pytest.approx(
        {k: labels["totals"][k] - minus[k] for k in _SUMMED})
    assert {k: v["count"] for k, v in out["findings"].items()} == {
        k: v["count"] for k, v in labels["findings"].items()}
    dq = out["data_quality"]
    assert dq["bad_records"] == labels["data_quality"]["bad_records"] + 2
    assert dq["by_reason"]["negative"] == 1 and dq["by_reason"]["not_a_number"] == 1


def _daily_file(org: MockOrg, labels: dict[str, Any]) -> dict[str, Any]:
    """A Daily AgentAction file that reads whole in the clean org."""
    return next(r for r in org.records("EventLogFile")
                if r["EventType"] == "AgentAction" and r["Interval"] == "Daily"
                and r["Id"] not in labels["elf"]["bad_file_ids"]
                and labels["window"]["since"][:10] <= r["LogDate"][:10] < labels["window"]["until"][:10])


@pytest.mark.parametrize("torn", ["unbalanced_quote", "empty_body", "shorter_than_listed"])
def test_e2e_torn_log_file_is_bad_retried_then_permanent(
    torn: str, small: Path, served: tuple[MockOrg, RunningMockOrg], tmp_path: Path
) -> None:
    org, server = served
    labels = labels_of(small)
    rec = _daily_file(org, labels)
    body = (small / "logfiles" / f"{rec['Id']}.csv").read_bytes()
    bad = body.replace(b"\n", b'\n"', 1) if torn == "unbalanced_quote" else b""
    # "shorter_than_listed" keeps LogFileLength: the body arrives short on every retry
    keep = ("LogFileLength",) if torn == "shorter_than_listed" else ()
    org.add_logfile({k: v for k, v in rec.items() if k != "LogFileLength" or keep}, bad)
    config = make_config(tmp_path, small, server)
    db = tmp_path / "store.db"
    before = labels["data_quality"]["bad_records"]
    for attempt in (1, 2, 3):
        out = _run(config, labels)
        assert out["data_quality"]["bad_files"] == len(labels["elf"]["bad_file_ids"]) + 1
        assert out["data_quality"]["bad_records"] == before + 1
        assert _sql(db, "SELECT bad, retryable, attempts, rows FROM elf_files WHERE id = ?",
                    (rec["Id"],)) == [(1, 1, attempt, 0)]
    org.request_log.clear()
    _run(config, labels)  # three readings: kept as a permanent bad file, not fetched again
    assert not org.request_log.matching(f"{rec['Id']}/LogFile")
    (row,) = _sql(db, "SELECT reason, detail FROM bad_records WHERE key = ?", (rec["Id"],))
    assert row[0] == "bad_file" and row[1]
    why = {"unbalanced_quote": "does not parse", "empty_body": "empty body",
           "shorter_than_listed": "where LogFileLength says"}[torn]
    assert why in row[1]


def test_e2e_torn_file_repaired_on_a_later_run_is_read_whole(
    small: Path, served: tuple[MockOrg, RunningMockOrg], tmp_path: Path
) -> None:
    from tests.helpers import assert_matches_labels

    org, server = served
    labels = labels_of(small)
    rec = _daily_file(org, labels)
    body = (small / "logfiles" / f"{rec['Id']}.csv").read_bytes()
    record = {k: v for k, v in rec.items() if k != "LogFileLength"}
    org.add_logfile(record, body.replace(b"\n", b'\n"', 1))
    config = make_config(tmp_path, small, server)
    _run(config, labels)
    org.add_logfile(record, body)  # same Id, same CreatedDate: only a retry reads it
    assert_matches_labels(_run(config, labels), labels)


def test_e2e_a_log_file_whose_own_record_is_unreadable_is_a_bad_file_not_a_crash(
    small: Path, served: tuple[MockOrg, RunningMockOrg], tmp_path: Path
) -> None:
    """A listed EventLogFile with a negative LogFileLength: the run goes on (exit 0), the
    file is a bad record naming the field, and it is never downloaded."""
    org, server = served
    labels = labels_of(small)
    rec = _daily_file(org, labels)
    body = (small / "logfiles" / f"{rec['Id']}.csv").read_bytes()
    org.add_logfile({**rec, "LogFileLength": -1.0}, body)
    db = tmp_path / "store.db"
    out = _run(make_config(tmp_path, small, server), labels)
    assert out["data_quality"]["bad_records"] >= labels["data_quality"]["bad_records"] + 1
    ((reason, detail),) = _sql(db, "SELECT reason, detail FROM bad_records WHERE key = ?",
                                (rec["Id"],))
    assert reason == "bad_file" and "LogFileLength" in detail
    assert not org.request_log.matching(f"{rec['Id']}/LogFile")
    assert _sql(db, "SELECT count(*) FROM elf_files WHERE id = ?", (rec["Id"],)) == [(0,)]


def test_e2e_log_file_republished_under_its_own_id_is_relisted(
    small: Path, tmp_path: Path
) -> None:
    """The newest Daily file is re-published under its own Id after the first download, so
    its body no longer has the listed size: the run re-lists it, reads the new body whole
    and exits 0 (it used to fail with exit 3 after five retries)."""
    labels = labels_of(small)
    clean = MockOrg.from_snapshot(small)
    before = {r["Id"]: r for r in clean.records("EventLogFile")}
    target = _daily_file(clean, labels)["Id"]
    faults = f"republish_same_id=1,republish_after=1,republish_id={target}"
    org = MockOrg.from_snapshot(small, faults=Faults.parse(faults))
    with serve(org, tls_dir=tmp_path / "tls") as server:
        _run(make_config(tmp_path, small, server), labels)
    (changed,) = [r for r in org.records("EventLogFile")
                  if r["CreatedDate"] != before[r["Id"]]["CreatedDate"]]
    file_id = changed["Id"]
    assert file_id == target
    # listed with the old size, downloaded (and retried) at the new one, then re-listed
    assert len(org.request_log.matching(f"/EventLogFile/{file_id}/LogFile")) >= 2
    ((created, size, bad, rows),) = _sql(
        tmp_path / "store.db", "SELECT created_date, bytes, bad, rows FROM elf_files WHERE id = ?",
        (file_id,))
    # what is stored is the re-published file, whole
    assert bad == 0 and rows > 0 and size == int(changed["LogFileLength"])
    assert size != int(before[file_id]["LogFileLength"])
    assert created[:19] == changed["CreatedDate"][:19]


# ------------------------------------------------------------------ Data 360, end to end


@pytest.fixture(scope="module")
def d360_small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("quality-d360") / "org"
    generate_snapshot(out, seed=5, actions=300, days=3, start=date(2026, 10, 1),
                      source="data360", family="ssot")
    return out


@pytest.mark.parametrize(
    ("column", "value", "reason"),
    [
        ("PromptTotalTokenCount__c", 2e8, "too_large"),  # (the mock serves < 1e10 only)
        ("PromptTotalTokenCount__c", -5, "negative"),
        ("PromptTotalTokenCount__c", 10000.9, "fractional"),
        ("UserId__c", "005ABC", "bad_id"),
    ],
)
def test_e2e_poisoned_data360_event(column: str, value: Any, reason: str, d360_small: Path,
                                    tmp_path: Path) -> None:
    """A poisoned usage event beside the labelled ones: totals stay the labels', the event
    is one more bad record."""
    labels = json.loads((d360_small / "labels_data360.json").read_text())
    org = MockOrg.from_snapshot(d360_small)
    usage = labels["objects"]["usage"]
    template = next(r for r in org.data360.rows(usage) if r["AiAgentToolName__c"] == "SendReply"
                    and labels["window"]["since"] <= r["Timestamp__c"] < labels["window"]["until"])
    org.data360.add_rows(usage, [{**template, "Id__c": "evt-poison",
                                  "RequestIdentifier__c": "req-poison", column: value}])
    with serve(org, tls_dir=tmp_path / "tls") as server:
        config = make_config(tmp_path, d360_small, server, extra='\n[source]\nkinds = ["data360"]\n')
        out = _run(config, labels)
    assert {k: out["totals"][k] for k in _SUMMED} == pytest.approx(
        {k: labels["totals"][k] for k in _SUMMED})
    dq = out["data_quality"]
    assert dq["bad_records"] == labels["data_quality"]["bad_records"] + 1
    assert dq["by_reason"][reason] == 1
    assert any(e["location"] == "Data 360 usage event evt-poison" for e in dq["examples"])


# ------------------------------------------------------------------ the store and the config


def _bad(key: str, reason: str = "negative", **kw: Any) -> dict[str, Any]:
    return {"source": "agentworkitem", "key": key, "reason": reason, "field": "TokensConsumed__c",
            "detail": "TokensConsumed__c = -5.0", "record_id": key, "file_id": None,
            "line": None, "at": "2026-10-01T10:00:00.000Z", **kw}


def _awi_row(record_id: str) -> dict[str, Any]:
    rec = _awi_sync()._record({**AWI_RECORD, "Id": record_id,
                               "StartTime__c": "2026-10-01T09:00:00.000+0000"})
    assert "reason" not in rec
    return dict(rec)


def test_store_keeps_bad_records_with_the_page_and_forgets_them_when_repaired(tmp_path: Path) -> None:
    from audit.store import Store
    from connector.sink import Page

    window = (datetime(2026, 10, 1, tzinfo=timezone.utc), datetime(2026, 10, 2, tzinfo=timezone.utc))
    good_id, bad_id = "1AW5g005waZWR5HGAX", "1AW5g005waZWR5JGAX"
    with Store.open(tmp_path / "s.db") as store:
        store.commit(Page("agentworkitem", "r1", awi_records=[_awi_row(good_id), _awi_row(bad_id)]))  # type: ignore[list-item]
        # the second record turns bad: it leaves its source, its verdict is kept with its page
        store.commit(Page("agentworkitem", "r2", awi_records=[], bad_records=[_bad(bad_id)]))  # type: ignore[list-item]
        assert set(store.awi_modstamps([good_id, bad_id])) == {good_id}
        assert store.bad_record_counts(window) == {"negative": 1}
        (row,) = store.bad_records(window, limit=5)
        assert (row["key"], row["reason"], row["record_id"]) == (bad_id, "negative", bad_id)
        # outside the window it is not counted
        later = (window[1], window[1].replace(day=3))
        assert store.bad_record_counts(later) == {} and store.bad_records(later) == []
        # repaired in the org: the good copy comes back and the verdict goes
        store.commit(Page("agentworkitem", "r3", awi_records=[_awi_row(bad_id)]))  # type: ignore[list-item]
        assert store.bad_record_counts(window) == {}
        assert set(store.awi_modstamps([bad_id])) == {bad_id}


def test_a_v3_store_keeps_its_bad_log_files_as_bad_records(tmp_path: Path) -> None:
    import sqlite_utils

    from audit.store import SCHEMA_VERSION, Store, migrate

    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    assert migrate(sqlite_utils.Database(conn), target=3) == 3
    conn.execute("INSERT INTO elf_files (id, log_date, created_date, rows, bad, error) VALUES "
                 "('0AT1', '2026-10-01T00:00:00.000Z', '2026-10-02T03:00:00.000Z', 0, 1, 'torn')")
    conn.close()
    window = (datetime(2026, 10, 1, tzinfo=timezone.utc), datetime(2026, 10, 2, tzinfo=timezone.utc))
    with Store.open(path) as store:
        assert store.schema_version == SCHEMA_VERSION
        assert store.bad_record_counts(window) == {"bad_file": 1}
        assert store.log_files_due(3) == []  # an old bad file: permanent (not known torn)


def test_max_tokens_per_action_is_a_rules_setting(tmp_path: Path) -> None:
    from audit.config import config_from_dict
    from audit.errors import ConfigError

    cfg = config_from_dict({"rules": {"max_tokens_per_action": 5000}})
    assert cfg.connector.sync.max_tokens_per_action == 5000
    sync = _awi_sync()
    object.__setattr__(sync, "cfg", cfg.connector)
    assert sync._record(dict(AWI_RECORD))["reason"] == "too_large"  # type: ignore[typeddict-item]
    with pytest.raises(ConfigError, match=r"rules\.max_tokens_per_action"):
        config_from_dict({"rules": {"max_tokens_per_action": 0}})
    with pytest.raises(ConfigError, match=r"sync\.max_tokens_per_action"):
        config_from_dict({"sync": {"max_tokens_per_action": 5}})
