"""Table tests for the mock org's SOQL engine (connector.mock.soql)."""

from __future__ import annotations

from typing import Any

import pytest

from connector.mock.sobjects import COMMON_FIELDS, KNOWN_FIELDS
from connector.mock.soql import (
    FieldDef,
    SoqlError,
    Table,
    format_datetime_ms,
    infer_field_type,
    parse,
    parse_datetime_ms,
    run_query,
    to18,
)


def _fields(sobject: str) -> dict[str, FieldDef]:
    return {**COMMON_FIELDS, **KNOWN_FIELDS.get(sobject, {})}


def _awi(n: int, **values: Any) -> dict[str, Any]:
    record = {
        "Id": to18(f"0BzMOCK{n:08d}"),
        "CreatedDate": f"2026-10-0{n}T10:00:00.000+0000",
        "SystemModstamp": f"2026-10-0{n}T12:00:00.000+0000",
        "SessionId__c": f"S{n % 2}",
        "ActionName__c": "GetOrderHistory",
        "ActionType__c": "Query",
        "Status__c": "Success",
        "TokensConsumed__c": 1000 * n,
        "ActionInput__c": f'{{"order": {n}}}',
        "StartTime__c": f"2026-10-0{n}T09:00:00.000+0000",
        "CaseId__c": None,
    }
    record.update(values)
    return record


@pytest.fixture()
def tables() -> dict[str, Table]:
    records = [
        _awi(1, Status__c="Error", ErrorCode__c="TIMEOUT"),
        _awi(2, ActionType__c="Utility", TokensConsumed__c=None),
        _awi(3, ActionName__c="it's \\ fine"),
        _awi(4, Channel__c="Voice", CaseId__c=to18("500MOCK00000001")),
        _awi(5, SessionId__c="s1"),
    ]
    cases = [{"Id": to18("500MOCK00000001"), "Status": "Closed", "IsClosed": True,
              "ClosedDate": "2026-10-04T00:00:00.000+0000"},
             {"Id": to18("500MOCK00000002"), "Status": "New", "IsClosed": False,
              "ClosedDate": None}]
    for case in cases:
        case.setdefault("CreatedDate", "2026-10-01T00:00:00.000+0000")
        case.setdefault("SystemModstamp", "2026-10-01T00:00:00.000+0000")
    elf = [{"Id": to18("0ATMOCK00000001"), "EventType": "AgentAction", "Interval": "Hourly",
            "Sequence": 1, "LogDate": "2026-10-05T00:00:00.000+0000", "LogFileLength": 120,
            "LogFileFieldNames": "EVENT_TYPE", "CreatedDate": "2026-10-05T04:00:00.000+0000",
            "SystemModstamp": "2026-10-05T04:00:00.000+0000", "Custom__c": "x" * 300}]
    return {
        "agentworkitem": Table.build("AgentWorkItem", records, _fields("AgentWorkItem")),
        "case": Table.build("Case", cases, _fields("Case")),
        "eventlogfile": _with_blob(Table.build("EventLogFile", elf, _fields("EventLogFile"))),
    }


def _with_blob(table: Table) -> Table:
    table.add_known_field(KNOWN_FIELDS["EventLogFile"]["LogFile"])
    return table


def _ids(tables: dict[str, Table], soql: str, version: float = 62.0) -> list[int]:
    result = run_query(soql, tables, version)
    return [int(r["Id"][7:15]) for r in result.records]


# ------------------------------------------------------------------ evaluation

EVAL_CASES = [
    ("SELECT Id FROM AgentWorkItem", [1, 2, 3, 4, 5]),
    ("select id from agentworkitem where status__c = 'error'", [1]),
    ("SELECT Id FROM AgentWorkItem WHERE Status__c != 'Error'", [2, 3, 4, 5]),
    ("SELECT Id FROM AgentWorkItem WHERE Status__c <> 'Error'", [2, 3, 4, 5]),
    ("SELECT Id FROM AgentWorkItem WHERE SystemModstamp > 2026-10-03T12:00:00Z", [4, 5]),
    ("SELECT Id FROM AgentWorkItem WHERE SystemModstamp >= 2026-10-03T12:00:00.000+0000", [3, 4, 5]),
    ("SELECT Id FROM AgentWorkItem WHERE SystemModstamp < 2026-10-03T14:00:00+02:00", [1, 2]),
    ("SELECT Id FROM AgentWorkItem WHERE SystemModstamp <= 2026-10-02T12:00:00.000Z", [1, 2]),
    ("SELECT Id FROM AgentWorkItem WHERE TokensConsumed__c > 2500", [3, 4, 5]),
    ("SELECT Id FROM AgentWorkItem WHERE TokensConsumed__c = null", [2]),
    ("SELECT Id FROM AgentWorkItem WHERE TokensConsumed__c != null", [1, 3, 4, 5]),
    ("SELECT Id FROM AgentWorkItem WHERE TokensConsumed__c < 2500", [1]),  # null never <
    ("SELECT Id FROM AgentWorkItem WHERE TokensConsumed__c != 1000", [2, 3, 4, 5]),  # SOQL: null != 1000
    ("SELECT Id FROM AgentWorkItem WHERE ActionType__c IN ('Utility', 'Apex')", [2]),
    ("SELECT Id FROM AgentWorkItem WHERE ActionType__c NOT IN ('Utility')", [1, 3, 4, 5]),
    ("SELECT Id FROM AgentWorkItem WHERE Channel__c NOT IN ('Voice')", [1, 2, 3, 5]),
    ("SELECT Id FROM AgentWorkItem WHERE Channel__c IN ('Voice', null)", [1, 2, 3, 4, 5]),
    ("SELECT Id FROM AgentWorkItem WHERE ActionName__c = 'it\\'s \\\\ fine'", [3]),
    ("SELECT Id FROM AgentWorkItem WHERE ActionName__c LIKE 'get%'", [1, 2, 4, 5]),
    ("SELECT Id FROM AgentWorkItem WHERE ActionName__c LIKE 'it_s%'", [3]),
    ("SELECT Id FROM AgentWorkItem WHERE Status__c = 'Success' AND TokensConsumed__c > 2000", [3, 4, 5]),
    ("SELECT Id FROM AgentWorkItem WHERE Status__c = 'Error' OR Channel__c = 'Voice'", [1, 4]),
    ("SELECT Id FROM AgentWorkItem WHERE (Status__c = 'Error' OR Channel__c = 'Voice') "
     "AND TokensConsumed__c > 1000", [4]),
    ("SELECT Id FROM AgentWorkItem WHERE Status__c = 'Error' OR (Channel__c = 'Voice' "
     "AND TokensConsumed__c > 9000)", [1]),
    ("SELECT Id FROM AgentWorkItem WHERE NOT Status__c = 'Error'", [2, 3, 4, 5]),
    ("SELECT Id FROM AgentWorkItem WHERE Id = '0BzMOCK00000003'", [3]),
    (f"SELECT Id FROM AgentWorkItem WHERE Id IN ('{to18('0BzMOCK00000003')}', '0BzMOCK00000005')", [3, 5]),
    ("SELECT Id FROM AgentWorkItem WHERE CaseId__c = '500MOCK00000001'", [4]),
    ("SELECT Id FROM AgentWorkItem WHERE SessionId__c = 'S1'", [1, 3, 5]),  # case-insensitive
    ("SELECT Id FROM AgentWorkItem ORDER BY TokensConsumed__c DESC", [2, 5, 4, 3, 1]),
    ("SELECT Id FROM AgentWorkItem ORDER BY TokensConsumed__c DESC NULLS LAST", [5, 4, 3, 1, 2]),
    ("SELECT Id FROM AgentWorkItem ORDER BY TokensConsumed__c ASC NULLS FIRST", [2, 1, 3, 4, 5]),
    ("SELECT Id FROM AgentWorkItem ORDER BY SessionId__c, SystemModstamp DESC", [4, 2, 5, 3, 1]),
    ("SELECT Id FROM AgentWorkItem ORDER BY SystemModstamp DESC LIMIT 2", [5, 4]),
    ("SELECT Id FROM AgentWorkItem WHERE TokensConsumed__c > 1000 ORDER BY Id LIMIT 0", []),
]


@pytest.mark.parametrize(("soql", "expected"), EVAL_CASES)
def test_query_evaluates_like_salesforce(tables: dict[str, Table], soql: str, expected: list[int]) -> None:
    assert _ids(tables, soql) == expected


def test_records_have_attributes_and_select_order_with_wire_types(tables: dict[str, Table]) -> None:
    result = run_query("SELECT tokensconsumed__c, Id, StartTime__c, caseid__c, Status__c "
                       "FROM AgentWorkItem WHERE Id = '0BzMOCK00000004'", tables, 62.0)
    [record] = result.render(0, 10, "62.0")
    assert list(record) == ["attributes", "TokensConsumed__c", "Id", "StartTime__c",
                            "CaseId__c", "Status__c"]
    assert record["attributes"] == {
        "type": "AgentWorkItem",
        "url": f"/services/data/v62.0/sobjects/AgentWorkItem/{to18('0BzMOCK00000004')}"}
    assert record["TokensConsumed__c"] == 4000.0 and isinstance(record["TokensConsumed__c"], float)
    assert record["StartTime__c"] == "2026-10-04T09:00:00.000+0000"
    assert record["CaseId__c"] == to18("500MOCK00000001")


def test_boolean_int_and_blob_fields(tables: dict[str, Table]) -> None:
    result = run_query("SELECT Id, IsClosed, ClosedDate FROM Case WHERE IsClosed = false", tables)
    [record] = result.render(0, 5, "62.0")
    assert record["IsClosed"] is False and record["ClosedDate"] is None
    assert _ids(tables, "SELECT Id FROM Case WHERE IsClosed = null") == [2]
    elf = run_query("SELECT Sequence, LogFileLength, LogFile FROM EventLogFile "
                    "WHERE Interval = 'Hourly' AND LogDate = 2026-10-05T00:00:00Z", tables, 62.0)
    [row] = elf.render(0, 1, "62.0")
    assert row["Sequence"] == 1 and isinstance(row["Sequence"], int)
    assert row["LogFileLength"] == 120.0 and isinstance(row["LogFileLength"], float)
    assert row["LogFile"].endswith(f"/sobjects/EventLogFile/{to18('0ATMOCK00000001')}/LogFile")


def test_count_query(tables: dict[str, Table]) -> None:
    result = run_query("SELECT COUNT() FROM AgentWorkItem WHERE Status__c = 'Success'", tables)
    assert result.count_only and result.total_size == 4 and result.render(0, 10, "62.0") == []


# ---------------------------------------------------------------------- errors

ERROR_CASES = [
    # syntax
    ("", "MALFORMED_QUERY", "query string has to be specified"),
    ("SELECT FROM AgentWorkItem", "MALFORMED_QUERY", "unexpected token"),
    ("SELECT Id AgentWorkItem", "MALFORMED_QUERY", "unexpected token"),
    ("SELECT Id FROM AgentWorkItem WHERE", "MALFORMED_QUERY", "unexpected token: '<EOF>'"),
    ("SELECT Id FROM AgentWorkItem WHERE Status__c = 'a' AND Channel__c = 'b' OR Id = null",
     "MALFORMED_QUERY", "unexpected token: 'OR'"),
    ("SELECT Id FROM AgentWorkItem WHERE Status__c = 'a' OR Channel__c = 'b' AND Id = null",
     "MALFORMED_QUERY", "unexpected token: 'AND'"),
    ("SELECT Id FROM AgentWorkItem WHERE Status__c = 'open", "MALFORMED_QUERY", "unterminated"),
    ("SELECT Id FROM AgentWorkItem WHERE Status__c = 'a\\q'", "MALFORMED_QUERY", "Illegal character"),
    ("SELECT Id FROM AgentWorkItem WHERE SystemModstamp > 2026-10-05T00:00:00", "MALFORMED_QUERY",
     "unexpected token"),
    ("SELECT Id FROM AgentWorkItem WHERE SystemModstamp > 2026-13-05T00:00:00Z", "MALFORMED_QUERY",
     "invalid dateTime"),
    ("SELECT Id FROM AgentWorkItem WHERE Status__c IN ()", "MALFORMED_QUERY", "unexpected token"),
    ("SELECT Id FROM AgentWorkItem LIMIT 1.5", "MALFORMED_QUERY", "unexpected token"),
    ("SELECT Id FROM AgentWorkItem LIMIT", "MALFORMED_QUERY", "unexpected token"),
    ("SELECT Id FROM AgentWorkItem ORDER BY Id NULLS", "MALFORMED_QUERY", "unexpected token"),
    ("SELECT Id FROM AgentWorkItem WHERE Status__c = :bind", "MALFORMED_QUERY", "unexpected token"),
    ("SELECT Id, id FROM AgentWorkItem", "MALFORMED_QUERY", "duplicate field selected: Id"),
    ("SELECT Id FROM AgentWorkItem extra", "MALFORMED_QUERY", "unexpected token: 'extra'"),
    # names
    ("SELECT Id FROM Nope__c", "INVALID_TYPE", "sObject type 'Nope__c' is not supported"),
    ("SELECT Nope__c FROM AgentWorkItem", "INVALID_FIELD",
     "No such column 'Nope__c' on entity 'AgentWorkItem'"),
    ("SELECT Id FROM AgentWorkItem WHERE Nope = 'x'", "INVALID_FIELD", "No such column 'Nope'"),
    ("SELECT Id FROM AgentWorkItem ORDER BY Nope", "INVALID_FIELD", "No such column 'Nope'"),
    ("SELECT Owner.Name FROM AgentWorkItem", "INVALID_FIELD", "Didn't understand relationship 'Owner'"),
    # types
    ("SELECT Id FROM AgentWorkItem WHERE SystemModstamp > '2026-10-05T00:00:00Z'", "INVALID_FIELD",
     "value of filter criterion for field 'SystemModstamp' must be of type dateTime and should "
     "not be enclosed in quotes"),
    ("SELECT Id FROM AgentWorkItem WHERE SystemModstamp > 2026-10-05", "INVALID_FIELD",
     "must be of type dateTime"),
    ("SELECT Id FROM AgentWorkItem WHERE SystemModstamp > 5", "INVALID_FIELD", "must be of type dateTime"),
    ("SELECT Id FROM AgentWorkItem WHERE TokensConsumed__c > '5'", "INVALID_FIELD",
     "must be of type double and should not be enclosed in quotes"),
    ("SELECT Id FROM Case WHERE IsClosed = 'true'", "INVALID_FIELD", "must be of type boolean"),
    ("SELECT Id FROM EventLogFile WHERE Sequence = '1'", "INVALID_FIELD", "must be of type integer"),
    ("SELECT Id FROM AgentWorkItem WHERE Status__c = 5", "INVALID_FIELD",
     "must be of type string and should be enclosed in quotes"),
    ("SELECT Id FROM AgentWorkItem WHERE Status__c IN ('a', 5)", "INVALID_FIELD", "enclosed in quotes"),
    ("SELECT Id FROM AgentWorkItem WHERE Id = 'nope'", "INVALID_QUERY_FILTER_OPERATOR",
     "invalid ID field: nope"),
    ("SELECT Id FROM Case WHERE IsClosed > true", "INVALID_FIELD", "invalid operator"),
    ("SELECT Id FROM AgentWorkItem WHERE TokensConsumed__c LIKE '5%'", "INVALID_FIELD", "LIKE"),
    # long text
    ("SELECT Id FROM AgentWorkItem WHERE ActionInput__c = 'x'", "INVALID_FIELD",
     "field 'ActionInput__c' can not be filtered in a query call"),
    ("SELECT Id FROM AgentWorkItem WHERE actioninput__c != null", "INVALID_FIELD",
     "can not be filtered"),
    ("SELECT Id FROM AgentWorkItem ORDER BY ActionInput__c", "INVALID_FIELD",
     "field 'ActionInput__c' can not be sorted in a query call"),
    ("SELECT Id FROM EventLogFile WHERE LogFileFieldNames = 'x'", "INVALID_FIELD", "can not be filtered"),
    ("SELECT Id FROM EventLogFile WHERE Custom__c = 'x'", "INVALID_FIELD", "can not be filtered"),
]


@pytest.mark.parametrize(("soql", "code", "fragment"), ERROR_CASES)
def test_query_errors_like_salesforce(tables: dict[str, Table], soql: str, code: str, fragment: str) -> None:
    with pytest.raises(SoqlError) as caught:
        run_query(soql, tables, 62.0)
    assert caught.value.error_code == code
    assert fragment in caught.value.message
    assert caught.value.body() == [{"message": caught.value.message, "errorCode": code}]


def test_error_message_points_at_the_token(tables: dict[str, Table]) -> None:
    with pytest.raises(SoqlError) as caught:
        run_query("SELECT Id FROM AgentWorkItem WHERE Bogus__c = 'x'", tables)
    assert "ERROR at Row:1:Column:36" in caught.value.message


def test_fields_from_later_api_versions_do_not_exist_earlier(tables: dict[str, Table]) -> None:
    assert _ids_elf(tables, "SELECT Id, Interval, Sequence FROM EventLogFile", 37.0) == 1
    with pytest.raises(SoqlError) as caught:
        run_query("SELECT Id, Interval FROM EventLogFile", tables, 36.0)
    assert caught.value.error_code == "INVALID_FIELD"


def _ids_elf(tables: dict[str, Table], soql: str, version: float) -> int:
    return run_query(soql, tables, version).total_size


def test_parse_is_a_real_ast() -> None:
    query = parse("SELECT Id, Name FROM Case WHERE (Status = 'New' OR IsClosed = true) "
                  "AND ClosedDate > 2026-01-01T00:00:00Z ORDER BY Name DESC NULLS LAST, Id LIMIT 10")
    assert [f.name for f in query.fields] == ["Id", "Name"]
    assert query.sobject.name == "Case" and query.limit == 10
    assert query.where.op == "AND" and query.where.children[0].op == "OR"
    assert [(o.field.name, o.descending, o.nulls_last) for o in query.order_by] == [
        ("Name", True, True), ("Id", False, False)]


def test_datetime_helpers_round_trip() -> None:
    ms = parse_datetime_ms("2026-10-06T14:03:22.123Z")
    assert format_datetime_ms(ms) == "2026-10-06T14:03:22.123+0000"
    assert parse_datetime_ms("2026-10-06T16:03:22.123+02:00") == ms
    assert to18("001000000000001") == "001000000000001AAA"
    assert to18("0015000000aBcDe") == "0015000000aBcDeAAK"


@pytest.mark.parametrize(("values", "expected"), [
    ([1, 2.5, None], "double"), ([True, None], "boolean"),
    (["2026-10-06T14:03:22.000+0000"], "datetime"), (["2026-10-06"], "date"),
    (["x", 1], "string"), (["x" * 256], "textarea"), ([None], "string"),
])
def test_type_inference(values: list[Any], expected: str) -> None:
    assert infer_field_type(values) == expected


def test_200k_rows_filter_and_sort() -> None:
    """How fast this is: benchmarks/soql.py (by hand, not CI)."""
    stamps = [f"2026-10-01T{h:02d}:{m:02d}:{s:02d}.000+0000"
              for h in range(24) for m in range(60) for s in range(60)]
    records = [{
        "Id": f"0BzPERF{i:08d}AAA",
        "CreatedDate": stamps[i % len(stamps)],
        "SystemModstamp": stamps[(i * 7) % 50000],
        "Status__c": "Error" if i % 7 == 0 else "Success",
        "TokensConsumed__c": float(i % 30000),
        "ActionInput__c": "{}",
    } for i in range(200_000)]
    table = Table.build("AgentWorkItem", records, _fields("AgentWorkItem"))
    tables = {"agentworkitem": table}
    result = run_query("SELECT Id, SystemModstamp, ActionInput__c FROM AgentWorkItem "
                       "WHERE SystemModstamp >= 2026-10-01T05:00:00Z AND Status__c != 'Error' "
                       "ORDER BY SystemModstamp, Id", tables)
    page = result.render(0, 2000, "62.0")
    assert result.total_size > 100_000
    stamps = [r["SystemModstamp"] for r in page]
    assert stamps == sorted(stamps)


def test_distinct_values_follow_appended_and_replaced_records() -> None:
    """What a describe lists as a picklist's values is kept between describes, and follows
    every record added or replaced."""
    table = Table.build("Thing__c", [{"Id": "a01000000000001", "Channel__c": "Text"}])
    assert table.distinct_values("Channel__c") == ["Text"]
    table.append({"Id": "a01000000000002", "Channel__c": "Voice"})
    assert table.distinct_values("Channel__c") == ["Text", "Voice"]
    table.replace(0, {"Id": "a01000000000001", "Channel__c": "Email"})
    assert table.distinct_values("Channel__c") == ["Email", "Voice"]
